#!/usr/bin/env bash
# Installs node-llama-cpp (prebuilt llama.cpp binaries for Node) into a folder OUTSIDE this
# repository, for the generation benchmark's llama.cpp reference (tools/bench/llama-cpp-generate.mjs).
# node-llama-cpp is deliberately not a dependency of the product: nothing here touches the
# repository's package.json or node_modules.
#
#   tools/bench/setup-llama-cpp.sh [DIR]
#
# DIR defaults to $SEAL_BENCH_NLC_DIR, else ~/.cache/seal-bench/nlc. Idempotent: when DIR already
# holds the pinned version it does nothing. Needs the npm registry (the CPU binaries come as
# optional npm packages, so no compiler and no GitHub download are needed on linux-x64).
set -euo pipefail

version="3.22.1"
dir="${1:-${SEAL_BENCH_NLC_DIR:-$HOME/.cache/seal-bench/nlc}}"

installed_version() {
  node -e 'try { process.stdout.write(require(process.argv[1]).version) } catch { }' \
    "$dir/node_modules/node-llama-cpp/package.json"
}

if [ "$(installed_version)" = "$version" ]; then
  echo "node-llama-cpp@$version is already installed in $dir"
  exit 0
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
case "$dir/" in
  "$repo_root"/*)
    echo "refusing to install into $dir: it is inside the repository ($repo_root); pick a folder outside it" >&2
    exit 2
    ;;
esac

cd "$dir"
if [ ! -f package.json ]; then
  # A private package of its own, so npm does not walk up into some other project.
  printf '{\n  "name": "seal-bench-nlc",\n  "private": true,\n  "type": "module"\n}\n' > package.json
fi
npm install --no-audit --no-fund --save-exact "node-llama-cpp@$version"

if [ "$(installed_version)" != "$version" ]; then
  echo "node-llama-cpp@$version did not install into $dir" >&2
  exit 1
fi
echo "node-llama-cpp@$version installed in $dir"
echo "the generation benchmark finds it there by default, or set SEAL_BENCH_NLC_DIR=$dir"
