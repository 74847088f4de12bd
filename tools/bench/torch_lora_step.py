#!/usr/bin/python3
"""LoRA training step in plain PyTorch (CPU), the reference for tools/bench/lora-train.ts.

The same model shape and the same step as ours (`trainLora` in packages/gpu/src/train/Trainer.ts):

  model   Llama block x layers: RMSNorm, RoPE (rotate_half), multi-head causal attention with an
          additive [B, 1, T, T] mask, SwiGLU MLP; untied LM head; float32; random base weights
          N(0, 0.02) (o/down scaled by 1/sqrt(2 layers)), frozen
  LoRA    rank r on q, k, v, o of every layer, scale alpha / r, dropout 0, A ~ U(+-1/sqrt(in)), B = 0
  step    forward, causal LM loss (mean next-token cross-entropy over B x (T-1) targets),
          backward to the LoRA parameters only, global-norm clip at 1, AdamW (weight decay 0)

Defaults: vocab 512, d 128, 4 layers, 4 heads (head dim 32), intermediate 512, batch 8 x seq 128,
rank 8, alpha 16. Warm-up steps are not timed; then `--steps` steps are timed one by one.

Each thread count runs in a fresh child process with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set
before torch loads (torch.set_num_threads alone does not reach OpenBLAS's own pool), plus
torch.set_num_threads(n) and one inter-op thread. OMP_WAIT_POLICY defaults to PASSIVE (unless set):
with OpenMP's default spin-waiting, 2 threads on 2 shared cores, next to OpenBLAS's own pool, took
2-4 s per step instead of ~0.1 s here, which would flatter us.

  /usr/bin/python3 tools/bench/torch_lora_step.py [--threads 1,2] [--steps 20] [--warmup 3] [--phases]

Prints one JSON object on the last line of stdout. Needs Debian's python3-torch and
libopenblas0-pthread (tools/bench/setup-torch.sh).
"""

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts, one child process each")
    p.add_argument("--steps", type=int, default=20, help="timed steps per thread count")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phases", action="store_true", help="also time forward / backward / optimizer separately")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_one(args):
    """One thread count (taken from OMP_NUM_THREADS), in this process."""
    import torch
    import torch.nn.functional as F

    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)
    V, d, L, H, f = args.vocab, args.hidden, args.layers, args.heads, args.intermediate
    hd = d // H
    B, T, r = args.batch, args.seq, args.rank
    scale = args.alpha / r
    eps = 1e-5
    std = 0.02

    def normal(*shape, s=std):
        return torch.randn(*shape) * s

    # Base weights stored [in, out] (as ours keeps them on the device), frozen.
    embed = normal(V, d)
    lm_head = normal(d, V)
    final_norm = torch.ones(d)
    resid = std / math.sqrt(2 * L)
    layers = []
    for _ in range(L):
        layers.append({
            "in_norm": torch.ones(d),
            "post_norm": torch.ones(d),
            "q": normal(d, H * hd), "k": normal(d, H * hd), "v": normal(d, H * hd),
            "o": normal(H * hd, d, s=resid),
            "gate": normal(d, f), "up": normal(d, f), "down": normal(f, d, s=resid),
        })

    # LoRA, stored transposed like ours: A^T [in, r], B^T [r, out].
    lora = []
    params = []
    for _ in range(L):
        mods = {}
        for name in ("q", "k", "v", "o"):
            fan_in = d
            a_t = ((torch.rand(fan_in, r) * 2 - 1) / math.sqrt(fan_in)).requires_grad_(True)
            b_t = torch.zeros(r, d, requires_grad=True)
            mods[name] = (a_t, b_t)
            params += [a_t, b_t]
        lora.append(mods)
    trainable = sum(p.numel() for p in params)

    # RoPE tables (rotate_half layout), theta 10000.
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd // 2, dtype=torch.float64) * 2 / hd))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1).float()[None, None]  # [1, 1, T, hd]
    sin = torch.cat([ang.sin(), ang.sin()], -1).float()[None, None]
    causal = torch.full((T, T), -1e9).triu(1)
    mask = causal.expand(B, 1, T, T).contiguous()  # [B, 1, T, T] additive, like ours

    def rms_norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def rope(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def proj(layer, name, x):
        y = x @ layers[layer][name]
        if name in lora[layer]:
            a_t, b_t = lora[layer][name]
            y = y + (x @ a_t) @ b_t * scale
        return y

    def heads(x):
        return x.view(B, T, H, hd).transpose(1, 2)

    def forward(ids):
        x = embed[ids]
        for i in range(L):
            w = layers[i]
            h = rms_norm(x, w["in_norm"])
            q = rope(heads(proj(i, "q", h)))
            k = rope(heads(proj(i, "k", h)))
            v = heads(proj(i, "v", h))
            s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + mask
            a = torch.softmax(s, -1) @ v
            x = x + proj(i, "o", a.transpose(1, 2).reshape(B, T, H * hd))
            h2 = rms_norm(x, w["post_norm"])
            x = x + proj(i, "down", F.silu(proj(i, "gate", h2)) * proj(i, "up", h2))
        return rms_norm(x, final_norm) @ lm_head

    def loss_of(ids):
        logits = forward(ids)
        return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))

    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 1)
    data = torch.randint(0, V, (B, T), generator=gen)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_of(data)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    losses = []
    for _ in range(args.warmup):
        losses.append(step())
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)

    phases = None
    if args.phases:
        fwd, bwd, upd = [], [], []
        for _ in range(max(5, args.steps // 2)):
            opt.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss = loss_of(data)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            loss.item()
            t3 = time.perf_counter()
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            upd.append(t3 - t2)
        phases = {
            "forwardMs": 1000 * statistics.median(fwd),
            "backwardMs": 1000 * statistics.median(bwd),
            "optimizerMs": 1000 * statistics.median(upd),
        }

    tokens = B * T
    median = statistics.median(times)
    return {
        "threads": threads,
        "waitPolicy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "torchThreads": torch.get_num_threads(),
        "stepsTimed": len(times),
        "stepMs": [1000 * t for t in times],
        "medianStepMs": 1000 * median,
        "tokensPerStep": tokens,
        "tokensPerSecond": tokens / median,
        "meanTokensPerSecond": tokens * len(times) / sum(times),
        "firstLoss": losses[0],
        "lastLoss": losses[-1],
        "trainableParams": trainable,
        "phases": phases,
    }


def blas_libraries():
    """The BLAS/LAPACK shared objects this process loaded (after importing torch)."""
    import torch

    (torch.ones(64, 64) @ torch.ones(64, 64)).sum().item()
    with open("/proc/self/maps") as fh:
        maps = fh.read()
    return sorted(set(re.findall(r"(/\S*(?:blas|lapack|mkl)\S*\.so[.\d]*)", maps)))


def main():
    args = parse_args(sys.argv[1:])
    if args.child:
        print(json.dumps(run_one(args)))
        return
    import torch

    config = {
        "vocab": args.vocab, "hidden": args.hidden, "layers": args.layers, "heads": args.heads,
        "headDim": args.hidden // args.heads, "intermediate": args.intermediate, "batch": args.batch,
        "seq": args.seq, "rank": args.rank, "alpha": args.alpha, "targets": ["q", "k", "v", "o"],
        "warmup": args.warmup, "steps": args.steps,
    }
    results = []
    errors = []
    for n in [int(t) for t in args.threads.split(",") if t.strip()]:
        env = dict(os.environ, OMP_NUM_THREADS=str(n), OPENBLAS_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", *sys.argv[1:]],
            env=env, capture_output=True, text=True,
        )
        lines = child.stdout.strip().splitlines()
        if child.returncode != 0 or not lines:
            errors.append(f"{n} threads: exit {child.returncode}: {(child.stderr.strip().splitlines() or [''])[-1]}")
            continue
        results.append(json.loads(lines[-1]))
    print(json.dumps({
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "blas": blas_libraries(),
        "config": config,
        "results": results,
        "errors": errors,
    }))


if __name__ == "__main__":
    main()
