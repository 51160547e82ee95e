"""Speed of the pruning methods on a real model (issue 4 targets, 2 cores: magnitude < 30 s, Wanda < 2 min).

Usage: DIKE_THREADS=2 python benchmarks/bench_compress.py [--model smollm2-135m] [--specs magnitude:0.5,wanda:0.5]
       [--n-calib 128] [--report]

For each spec it times `dike.compress.apply.compress` (the compression alone; `--report` adds one full compression
report for the first spec) and prints, next to the seconds, a baseline measured in the same process: one forward pass of
the base model over 2048 tokens, so that a slow (shared) machine can be told apart from a slow method; the CPU seconds
of the process are printed too (on a machine shared with other jobs, wall time overstates the method's cost).
"""
from __future__ import annotations
import argparse, json, os, time
import torch
from dike.core import set_threads
from dike.models import load_model
from dike.compress.apply import compress
from dike.corpora import calib_batches, text_sample

TARGETS = {"magnitude": 30.0, "wanda": 120.0}


def forward_baseline(lm, repeats: int = 3) -> float:
    "Median seconds of one forward pass over 8 x 256 = 2048 calibration tokens."
    texts, _ = text_sample("calib", 256, 1)
    ids = torch.cat([b for b in calib_batches(lm, texts, seq_len=256) if b.shape[1] == 256])[:8]
    ts = []
    with torch.inference_mode():
        for _ in range(repeats):
            t = time.perf_counter(); lm.model(input_ids=ids); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--specs", default="magnitude:0.5,magnitude-global:0.5,nm:2:4,wanda:0.5,ffn:0.25,heads:0.25")
    ap.add_argument("--n-calib", type=int, default=128)
    ap.add_argument("--report", action="store_true", help="also time one full compression report (first spec)")
    ap.add_argument("--json", default=None, help="write the results to this file")
    a = ap.parse_args(argv)
    threads = set_threads()
    t = time.perf_counter(); lm = load_model(a.model); load_s = time.perf_counter() - t
    c = time.process_time(); base = forward_baseline(lm); base_cpu = (time.process_time() - c) / 3
    print(f"{a.model}: {lm.n_params / 1e6:.1f}M params, torch threads {threads}, load {load_s:.1f} s, "
          f"baseline forward over 2048 tokens {base:.2f} s wall, {base_cpu:.2f} s CPU, load average {os.getloadavg()[0]:.1f}")
    rows = []
    for spec in a.specs.split(","):
        t, c = time.perf_counter(), time.process_time()
        new, rep = compress(lm, spec, seed=0, n_calib=a.n_calib, progress=False, report=False)
        sec, cpu = time.perf_counter() - t, time.process_time() - c
        step = rep["steps"][0]
        target = TARGETS.get(spec.split(":")[0])
        row = {"spec": rep["spec"], "seconds": round(sec, 1), "cpu_seconds": round(cpu, 1), "x_forward_2048": round(sec / base, 1),
               "target_s": target, "within_target": None if target is None else sec < target,
               "calib_tokens": step.get("calib_tokens")}
        rows.append(row)
        print(json.dumps(row))
        del new
    if a.report:
        t = time.perf_counter()
        _, rep = compress(lm, a.specs.split(",")[0], n_calib=a.n_calib, progress=False)
        print(json.dumps({"report_for": rep["spec"], "seconds_with_report": round(time.perf_counter() - t, 1),
                          **{k: v for k, v in rep.items() if k not in ("layers", "steps")}}, default=str))
    if a.json:
        with open(a.json, "w") as f: json.dump({"model": a.model, "threads": threads, "baseline_forward_2048_s": base,
                                                "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
