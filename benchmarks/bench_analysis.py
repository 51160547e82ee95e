"""The analysis stage on a finished grid: a cold analysis (no cached comparisons) against an unchanged rerun.

Targets (issue: compression effects as paired comparisons): the analysis of the default grid <= 3 min, an unchanged
rerun <= 10 s. The baseline measured in the same run is one call of every benchmark's own metric function on its
base run (what one bootstrap replicate costs), so the printed ratios say how many metric evaluations the analysis
costs. The results store is only read; the cache goes to a temporary copy of `results/analysis/<grid>/`.

    DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_analysis.py experiments/grids/core.yaml [--n-boot B --n-sim S]
"""
import argparse, tempfile, time
from pathlib import Path
import pandas as pd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("grid"); ap.add_argument("--results", default=None)
    ap.add_argument("--n-boot", type=int, default=1000); ap.add_argument("--n-sim", type=int, default=500)
    a = ap.parse_args()
    from dike.runner import load_grid
    from dike.report import collect
    from dike.analysis import analyze, point_stat
    from dike.evaluate import get_benchmark
    from dike.core import results_dir
    g = load_grid(a.grid, validate=False)
    root = Path(a.results) if a.results else results_dir()
    summ = collect(g, root, write=False)
    base = summ[summ.compress == "none"].drop_duplicates(["run_id"])
    t0 = time.perf_counter()
    for r in base.itertuples():
        point_stat(get_benchmark(r.benchmark))(pd.read_parquet(root / "runs" / r.run_id / r.benchmark / "items.parquet"))
    one = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / "results"; tmp.mkdir()
        (tmp / "runs").symlink_to((root / "runs").resolve())            # read the runs, write the cache elsewhere
        t0 = time.perf_counter(); res = analyze(g, tmp, n_boot=a.n_boot, n_sim=a.n_sim); cold = time.perf_counter() - t0
        t0 = time.perf_counter(); analyze(g, tmp, n_boot=a.n_boot, n_sim=a.n_sim); warm = time.perf_counter() - t0
    print(f"grid {g.name}: {summ.run_id.nunique()} runs, {len(res['flips'])} comparisons, n_boot={a.n_boot}, n_sim={a.n_sim}")
    print(f"baseline (each base run's metrics once): {one:.2f} s")
    print(f"cold analysis: {cold:.1f} s ({cold / one:.0f}x baseline; target <= 180 s: {'met' if cold <= 180 else 'NOT met'})")
    print(f"unchanged rerun: {warm:.2f} s ({warm / one:.1f}x baseline; target <= 10 s: {'met' if warm <= 10 else 'NOT met'})")


if __name__ == "__main__":
    main()
