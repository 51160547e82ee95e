"""A grid's wall time with one kernel (and one model load) per (model, spec) against one kernel per run.

Issue 15 §3: every (model, spec, benchmark) notebook used to load (and decompress / compress-from-cache) its model in a
fresh kernel. The baseline, measured in the same invocation on an empty store, is exactly that: `execute_run` for each
run on its own. The new path is `dike run`'s local backend (`run_groups` + one `SharedKernel` per group). Both stores
are compared item by item at the end (the per-item scores must be equal).

    DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_grid_reuse.py [GRID]

Without GRID: SmolLM2-135M, base and RTN 4-bit g128, on CrowS-Pairs, StereoSet held-out and WinoBias test, 40 items
each (6 runs in 2 groups). Compressed models come from the compression cache in both arms (warmed before timing).
"""
import sys, tempfile, time
from pathlib import Path
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
GRID = """name: bench-reuse
defaults: {seeds: [0], n_boot: 200, batch_size: 32}
experiments:
  - models: [smollm2-135m]
    compress: [none, "rtn:4:g128"]
    benchmarks: [crows_pairs, stereoset_heldout, winobias_test]
    limit: 40
"""


def main():
    from dike.runner import load_grid, execute_run, run_grid
    from dike.store import Store
    from dike.core import usable_cores
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        path = Path(sys.argv[1]) if len(sys.argv) > 1 else d / "bench-reuse.yaml"
        if len(sys.argv) <= 1: path.write_text(GRID)
        g = load_grid(path)
        from dike.compress.cache import load_or_compress  # warm the compression cache: both arms read it
        for spec in sorted({c["compress"] for c in g.runs} - {"none"}):
            for m in sorted({c["model"] for c in g.runs if c["compress"] == spec}): load_or_compress(m, spec)
        t0 = time.perf_counter()
        for c in g.runs:
            r = execute_run(c, d / "per-run", str(g.template), usable_cores())
            if r["state"] != "done": sys.exit(f"baseline run failed: {r}")
        base = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = run_grid(g, results=d / "grouped", progress=False)
        new = time.perf_counter() - t0
        if out["done"] != len(g.runs): sys.exit(f"grouped runs failed: {out['errors']}")
        diffs = 0
        for c in g.runs:
            a = pd.read_parquet(Store(d / "per-run").run_dir(c["run_id"]) / c["benchmark"] / "items.parquet")
            b = pd.read_parquet(Store(d / "grouped").run_dir(c["run_id"]) / c["benchmark"] / "items.parquet")
            try: pd.testing.assert_frame_equal(a, b)
            except AssertionError: diffs += 1
    groups = len({(c["model"], c["compress"]) for c in g.runs})
    print(f"grid {path.name}: {len(g.runs)} runs in {groups} (model, spec) groups, {usable_cores()} threads")
    print(f"  one kernel per run (baseline)    {base:8.1f} s")
    print(f"  one kernel per (model, spec)     {new:8.1f} s   ({base / new:4.2f}x faster)")
    print(f"  runs whose items differ          {diffs} of {len(g.runs)}")


if __name__ == "__main__":
    main()
