#!/usr/bin/env python
"""CrowS-Pairs on one model: the same items scored on the CPU (fp32) and on DEVICE (fp32, then bf16), in one run.

Prints per-device wall time and input tokens/s, the largest per-sentence difference of the device's fp32 scores from
the CPU's (the target: <= 1e-3 nats), and bf16's agreement with fp32 on the per-pair decision (more > less).
Exit 1 when fp32 disagrees by more than --tol nats. With --device cpu it only checks that the path runs (difference 0).

    .venv/bin/python benchmarks/gpu_smoke.py --device cuda --model smollm2-135m            # all 1,508 pairs
    .venv/bin/python benchmarks/gpu_smoke.py --device cpu --limit 16 --model tiny-llama     # a CPU-only dry run
"""
from __future__ import annotations
import argparse, sys, time
import numpy as np


def score(model: str, device: str, dtype: str, limit, batch_size: int):
    import torch
    from dike.models import load_model
    from dike.evaluate import evaluate
    lm = load_model(model, dtype=dtype, device=device)
    evaluate(lm, "crows_pairs", limit=4, n_boot=10, progress=False, batch_size=batch_size)      # warm-up (kernels, caches)
    if device.startswith("cuda"): torch.cuda.synchronize()
    t = time.perf_counter()
    items, rec = evaluate(lm, "crows_pairs", limit=limit, n_boot=10, progress=False, batch_size=batch_size)
    if device.startswith("cuda"): torch.cuda.synchronize()
    sec = time.perf_counter() - t
    tok = lm.tokenizer
    ntok = sum(len(tok.encode(s)) for s in list(items.sent_more) + list(items.sent_less))
    del lm
    return items.sort_values("item_id").reset_index(drop=True), sec, ntok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--limit", type=int, default=None, help="pairs (default: all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--tol", type=float, default=1e-3, help="largest allowed fp32 difference from the CPU, in nats")
    a = ap.parse_args(argv)
    from dike.models import resolve_device
    dev = resolve_device(a.device)
    cpu, t_cpu, ntok = score(a.model, "cpu", "fp32", a.limit, a.batch_size)
    d32, t_d32, _ = score(a.model, dev, "fp32", a.limit, a.batch_size)
    d16, t_d16, _ = score(a.model, dev, "bf16" if dev != "cpu" else "fp32", a.limit, a.batch_size)
    assert (cpu.item_id.to_numpy() == d32.item_id.to_numpy()).all() and (cpu.item_id.to_numpy() == d16.item_id.to_numpy()).all()
    ok = ~cpu.skipped.to_numpy().astype(bool)
    diff = max(float(np.max(np.abs(cpu[c].to_numpy()[ok] - d32[c].to_numpy()[ok]))) for c in ("score_more", "score_less"))
    dec = lambda d: (d.score_more.to_numpy() > d.score_less.to_numpy())[ok]
    agree = float(np.mean(dec(d16) == dec(d32)))
    print(f"crows_pairs on {a.model}: {int(ok.sum())} pairs, {ntok} input tokens")
    for name, sec in (("cpu fp32", t_cpu), (f"{dev} fp32", t_d32), (f"{dev} {'bf16' if dev != 'cpu' else 'fp32'}", t_d16)):
        print(f"  {name:>14}: {sec:8.2f} s  {ntok / sec:10.0f} tokens/s")
    print(f"  max |{dev} fp32 - cpu fp32| per sentence: {diff:.2e} nats (target <= {a.tol:g})")
    print(f"  bf16 vs fp32 decision agreement: {agree:.4f}; speed-up of {dev} fp32 over cpu: {t_cpu / t_d32:.1f}x")
    return 0 if diff <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
