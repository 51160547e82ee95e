#!/usr/bin/env python
"""Seconds per model of the powered evaluation battery (issue 27 item 1), and bf16's agreement with fp32.

The battery is what the research grids score on every compressed model: full CrowS-Pairs (1,508 pairs), StereoSet
held-out (every item of the held-out target terms), WinoBias test (both types) and WikiText-2 (all 62 test articles, at
most 400 words each). For each dtype it times, as whole processes (import, model load, scoring, bootstrap CIs, writing):

  battery   one `dike eval MODEL B1 B2 B3 B4` (one process, the model loaded once);
  separate  one `dike eval MODEL B` per benchmark (four processes, four loads): the baseline, fp32 only unless
            --separate-all.

It prints each benchmark's own scoring seconds (`metrics.json`), the battery's wall time (= seconds per model), the
separate runs' total and the ratio, and for bf16 per benchmark: its speed-up over fp32 and the share of item
decisions equal to fp32's (`dike.analysis.decisions`: CrowS-Pairs' stereotyped choice, StereoSet's pro choice,
WinoBias' sign of ll_pro − ll_anti), or for WikiText-2 the mean |Δ NLL per token|. Medians over --repeats.

    DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_battery.py                         # smollm2-135m
    DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_battery.py --model gemma3-270m --no-separate
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import pandas as pd

BATTERY = ["crows_pairs", "stereoset_heldout", "winobias_test", "wikitext2"]


def dike_eval(model: str, benches: list[str], dtype: str, out: Path, limit: int | None = None) -> float:
    "Wall seconds of one `dike eval` process (its stdout/stderr kept in out.log); raises on failure."
    cmd = [sys.executable, "-m", "dike.cli", "eval", model, *benches, "--dtype", dtype, "--out", str(out), "--quiet",
           *(["--limit", str(limit)] if limit else [])]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    Path(f"{out}.log").write_text(r.stdout + r.stderr)
    if r.returncode: raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return wall


def seconds_of(out: Path, b: str) -> float:
    return float(json.loads((out / b / "metrics.json").read_text())["seconds"])


def agreement(b: str, fp32: pd.DataFrame, bf16: pd.DataFrame) -> str:
    from dike.analysis import decisions
    from dike.evaluate import get_benchmark
    from dike.stats import align_items
    a, c = align_items(fp32, bf16)
    if "nll" in a and "n_tokens" in a:
        return f"mean |d NLL/token| {np.mean(np.abs(c.nll / c.n_tokens - a.nll / a.n_tokens)):.2e}"
    da, _ = decisions(get_benchmark(b), a)
    dc, _ = decisions(get_benchmark(b), c)
    if da is None: return "no binary decision"
    return f"{100 * np.mean(da == dc):.1f} % of {len(da)} decisions equal"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--benchmarks", nargs="+", default=BATTERY)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-separate", action="store_true", help="skip the one-process-per-benchmark baseline")
    ap.add_argument("--separate-all", action="store_true", help="the baseline for every dtype, not fp32 only")
    ap.add_argument("--limit", type=int, help="a sample of N units per benchmark (a smoke test; the battery is whole)")
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args(argv)
    dtypes, res = a.dtypes.split(","), {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for dt in dtypes:
            bat, sep, per = [], [], {b: [] for b in a.benchmarks}
            for r in range(a.repeats):
                out = tmp / f"battery_{dt}_{r}"
                bat.append(dike_eval(a.model, a.benchmarks, dt, out, a.limit))
                for b in a.benchmarks: per[b].append(seconds_of(out, b))
                if not a.no_separate and (dt == dtypes[0] or a.separate_all):
                    sep.append(sum(dike_eval(a.model, [b], dt, tmp / f"sep_{dt}_{r}_{b}", a.limit) for b in a.benchmarks))
            res[dt] = {"battery_s": float(np.median(bat)), "separate_s": float(np.median(sep)) if sep else None,
                       "per_benchmark_s": {b: float(np.median(v)) for b, v in per.items()},
                       "items": {b: pd.read_parquet(tmp / f"battery_{dt}_0" / b / "items.parquet") for b in a.benchmarks}}
        print(f"{a.model}: {', '.join(a.benchmarks)}; {a.repeats} repeat(s), medians; threads {os.environ.get('DIKE_THREADS', 'all usable cores')}")
        for dt, r in res.items():
            line = f"  {dt}: battery {r['battery_s']:.1f} s per model"
            if r["separate_s"]:
                line += f"; one process per benchmark {r['separate_s']:.1f} s ({r['separate_s'] / r['battery_s']:.2f}x the battery)"
            print(line)
            print("    scoring + CIs: " + ", ".join(f"{b} {s:.1f} s" for b, s in r["per_benchmark_s"].items())
                  + f"; load and the rest {r['battery_s'] - sum(r['per_benchmark_s'].values()):.1f} s")
        if "fp32" in res:
            for dt in (d for d in res if d != "fp32"):
                print(f"  {dt} against fp32 (battery {res['fp32']['battery_s'] / res[dt]['battery_s']:.2f}x faster):")
                for b in a.benchmarks:
                    sp = res["fp32"]["per_benchmark_s"][b] / res[dt]["per_benchmark_s"][b]
                    print(f"    {b}: {sp:.2f}x; {agreement(b, res['fp32']['items'][b], res[dt]['items'][b])}")
        if a.json:
            Path(a.json).write_text(json.dumps({dt: {k: v for k, v in r.items() if k != "items"} for dt, r in res.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
