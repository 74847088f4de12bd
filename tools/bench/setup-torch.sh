#!/usr/bin/env bash
# Installs Debian's CPU PyTorch for the LoRA training benchmark's reference
# (tools/bench/torch_lora_step.py), with OpenBLAS: without libopenblas0-pthread torch falls back
# to the slow reference BLAS and the comparison flatters us.
#
#   tools/bench/setup-torch.sh
#
# Idempotent: when /usr/bin/python3 already imports torch and OpenBLAS is the BLAS alternative,
# it installs nothing and only prints what torch uses. Needs root (or sudo) and Debian's apt
# mirror. Debian's torch is built for the system python (/usr/bin/python3), not for a pyenv or
# virtualenv `python3` that may come first on PATH, so every use goes through /usr/bin/python3.
# Nothing here touches the repository.
set -euo pipefail

python=/usr/bin/python3
packages=(python3-torch libopenblas0-pthread)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "already installed: ${packages[*]}"
fi

# Debian selects the BLAS/LAPACK implementation through alternatives; make sure OpenBLAS
# (pthread) is the one libblas.so.3 resolves to, not the reference BLAS.
arch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")"
for lib in libblas.so.3 liblapack.so.3; do
  candidate="/usr/lib/$arch/openblas-pthread/$lib"
  if [ -e "$candidate" ] && update-alternatives --query "$lib-$arch" >/dev/null 2>&1; then
    current="$(update-alternatives --query "$lib-$arch" | sed -n 's/^Value: //p')"
    if [ "$current" != "$candidate" ]; then
      echo "switching $lib-$arch to $candidate (was $current)"
      as_root update-alternatives --set "$lib-$arch" "$candidate"
    fi
  fi
done

"$python" - <<'EOF'
import os, re, torch
print(f"torch {torch.__version__} for {os.path.realpath('/usr/bin/python3')}")
cfg = torch.__config__.show()
keys = re.findall(r"\b((?:BLAS_INFO|LAPACK_INFO|USE_MKLDNN|USE_OPENMP)=[^,]*)", cfg)
print("build:", ", ".join(keys) or "(no BLAS entry in torch.__config__.show())")
# Which BLAS shared library the process actually loaded (Debian resolves libblas.so.3 via alternatives).
a = torch.randn(256, 256); (a @ a).sum().item()
maps = open("/proc/self/maps").read()
loaded = sorted({m for m in re.findall(r"(/\S*(?:blas|lapack|mkl)\S*\.so[\.\d]*)", maps)})
print("loaded:", ", ".join(loaded) or "(none found)")
print("default intra-op threads:", torch.get_num_threads())
if not any("openblas" in p for p in loaded):
    print("WARNING: torch is not using OpenBLAS; install libopenblas0-pthread", flush=True)
    raise SystemExit(1)
EOF
