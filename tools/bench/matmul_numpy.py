"""numpy side of tools/bench/matmul.ts: the same matMul cases, timed the same way.

Reads a JSON list of cases on stdin ({"name", "a", "b", "transposeA", "transposeB"}, shapes as
tfjs gives them: [..., rows, cols], transposes applied to the last two dimensions) and the
minimum time per round in milliseconds as argv[1]. Writes one JSON object to stdout:
{"numpy": version, "blas": {...}, "rows": [{"name", "gflops"}]}.
A missing numpy is reported as {"error": ...} with exit status 0, so the caller can print it.
"""

import json
import os
import sys
import time


def blas_info(np):
    """Which BLAS numpy runs on, from threadpoolctl when present, else numpy's build config."""
    info = {
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))},
    }
    try:
        import threadpoolctl  # optional: reports the BLAS actually loaded and its thread count

        info["threadpoolctl"] = [
            {k: v for k, v in lib.items() if k in ("internal_api", "version", "num_threads", "architecture", "prefix")}
            for lib in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        pass
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        info["build"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration") if k in blas}
    except Exception as error:  # older numpy: show_config has no dict mode
        info["build"] = {"error": str(error)}
    return info


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main():
    try:
        import numpy as np
    except ImportError as error:
        print(json.dumps({"error": f"numpy is missing: {error}"}))
        return
    cases = json.load(sys.stdin)
    min_ms = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rng = np.random.default_rng(0)
    rows = []
    for case in cases:
        a = rng.standard_normal(case["a"], dtype=np.float32)
        b = rng.standard_normal(case["b"], dtype=np.float32)
        # Transposed operands are views, as tfjs' transposeA/B flags are: BLAS sees the strides.
        a_op = np.swapaxes(a, -1, -2) if case["transposeA"] else a
        b_op = np.swapaxes(b, -1, -2) if case["transposeB"] else b
        inner = a_op.shape[-1]
        for _ in range(2):
            out = np.matmul(a_op, b_op)
        flops = 2.0 * out.size * inner
        rates = []
        for _ in range(rounds):
            iterations = 0
            start = time.perf_counter()
            while True:
                np.matmul(a_op, b_op)
                iterations += 1
                elapsed = time.perf_counter() - start
                if elapsed * 1000.0 >= min_ms:
                    break
            rates.append(flops * iterations / elapsed / 1e9)
        rows.append({"name": case["name"], "gflops": median(rates)})
    print(json.dumps({"numpy": np.__version__, "blas": blas_info(np), "rows": rows}))


if __name__ == "__main__":
    main()
