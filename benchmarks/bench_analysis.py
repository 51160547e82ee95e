"""The analysis stage on a finished grid: a cold analysis (no cached comparisons) against an unchanged rerun, and the
fast point path (`Benchmark.point` on numpy columns) against the old one (the benchmark's `metrics`, one replicate
drawn and ignored, on a DataFrame per resample), measured in the same run.

Targets (issue: compression effects as paired comparisons): the analysis of the default grid <= 3 min on 2 cores
(n_boot=1000, n_sim=500), an unchanged rerun <= 10 s. Printed, in this order:

1. per benchmark, on its base run: `point` against `metrics` (equal key by key, `dike.stats.check_point`, on the
   table and on one resample) and the time of one call of each (old: `metrics(items, n_boot=1)` on a DataFrame; new:
   `point` on a resample of `dike.stats.Columns`, as in the bootstrap) and their ratio;
2. per benchmark, one comparison (its first pair) by both paths with a small n_boot/n_sim: the largest difference
   between the two tables and the time ratio of the whole `compare_items`;
3. the cold analysis and the unchanged rerun of the whole grid, with the machine's load average.

The results store is only read; the cache goes to a temporary copy of `results/analysis/<grid>/`.

`--estimate` needs no finished run: for each benchmark of the grid, one `compare_items` on its real rows
(DIKE_DATA_DIR, the grid's limit) with seeded random scores (the item tables of `tests/test_analysis_point.py`), times
the number of comparisons of that benchmark in the grid (`comparison_pairs` of the grid's planned runs).

    DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_analysis.py experiments/grids/core.yaml \
        [--results DIR] [--n-boot B --n-sim S] [--include-stale] [--estimate]
"""
import argparse, dataclasses, os, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd


def _timed(f, reps: int) -> float:
    f(); t0 = time.perf_counter()
    for _ in range(reps): f()
    return (time.perf_counter() - t0) / reps


def _max_diff(d0: pd.DataFrame, d1: pd.DataFrame) -> float:
    "Largest relative difference between the numeric columns of two comparison tables (same rows and NaNs required)."
    if list(d0.metric) != list(d1.metric): return float("inf")
    worst = 0.0
    for c in ("a", "b", "delta", "ci_low", "ci_high", "p_value", "floor_low", "floor_high"):
        x, y = d0[c].to_numpy(float), d1[c].to_numpy(float)
        if not (np.isnan(x) == np.isnan(y)).all(): return float("inf")
        ok = ~np.isnan(x)
        worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]) / np.maximum(1.0, np.abs(x[ok])), initial=0.0)))
    return worst


def estimate(g, n_boot: int, n_sim: int):
    "The cold analysis time of grid `g` from one synthetic comparison per benchmark (see the module docstring)."
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_analysis_point import _items, _perturbed
    from dike.analysis import compare_items, comparison_pairs
    from dike.evaluate import get_benchmark
    from dike.stats import mcnemar_exact
    mcnemar_exact([1], [0])                                          # scipy.stats' import, once per process
    runs = pd.DataFrame(g.runs).assign(method=lambda r: r.compress.str.split(":").str[0], level=np.nan, stale=False)
    pairs = comparison_pairs(runs)
    total, load0 = 0.0, os.getloadavg()
    for (b, limit), k in pairs.groupby(["benchmark", "limit"], dropna=False).size().items():
        bench = get_benchmark(b)
        if not bench.compare: continue
        rows = bench.load(limit=None if pd.isna(limit) or limit in ("<NA>", "None") else int(limit))
        a = _items(b, rows, np.random.default_rng(0))
        t0 = time.perf_counter(); d, _ = compare_items(bench, a, _perturbed(b, rows, a, 1), n_boot, n_sim)
        t = time.perf_counter() - t0; total += k * t
        print(f"   {b:20s} {len(a):5d} items, {len(d):3d} metrics: {t:5.2f} s per comparison x {k} = {k * t:5.1f} s")
    print(f"estimated cold analysis of grid {g.name} ({len(pairs)} comparisons, n_boot={n_boot}, n_sim={n_sim}; without "
          f"reading files and populations): {total:.0f} s (target <= 180 s: {'met' if total <= 180 else 'NOT met'})")
    print(f"   load average (1, 5, 15 min) at start {tuple(round(x, 2) for x in load0)}, "
          f"at end {tuple(round(x, 2) for x in os.getloadavg())}; {os.cpu_count()} CPUs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("grid"); ap.add_argument("--results", default=None)
    ap.add_argument("--n-boot", type=int, default=1000); ap.add_argument("--n-sim", type=int, default=500)
    ap.add_argument("--include-stale", action="store_true", help="use runs of older code too (e.g. while a grid reruns)")
    ap.add_argument("--estimate", action="store_true", help="no runs needed: synthetic comparisons on real rows")
    a = ap.parse_args()
    from dike.runner import load_grid, grid_store
    from dike.store import collect
    from dike.analysis import analyze, compare_items, comparison_pairs, point_stat
    from dike.evaluate import get_benchmark
    from dike.stats import Columns, check_point
    from dike.core import results_dir
    g = load_grid(a.grid, validate=False)
    if a.estimate: return estimate(g, a.n_boot, a.n_sim)
    root = Path(a.results) if a.results else results_dir()
    load0 = os.getloadavg()
    summ = collect(g, grid_store(root), include_stale=a.include_stale, write=False)
    items = lambda rid, b: pd.read_parquet(root / "runs" / rid / b / "items.parquet")
    base = summ[summ.compress == "none"].drop_duplicates(["run_id"])
    rng = np.random.default_rng(0)
    print(f"1. one metric evaluation on each base run (old: metrics(n_boot=1) on a DataFrame; new: point on Columns)")
    old_t = new_t = 0.0
    for r in base.itertuples():
        bench = get_benchmark(r.benchmark)
        if bench.point is None or not bench.compare: continue
        it = items(r.run_id, r.benchmark)
        rows = rng.integers(0, len(it), len(it))
        check_point(bench.point, bench.metrics, it, rows=rows, n_boot=50)        # raises unless equal key by key
        ref = point_stat(dataclasses.replace(bench, point=None))
        cols = Columns.of(it).take(rows)
        to, tn = _timed(lambda: ref(it), 5), _timed(lambda: bench.point(cols), 50)
        old_t += to; new_t += tn
        print(f"   {r.benchmark:20s} {len(it):5d} items: point == metrics on {len(bench.point(it))} keys; "
              f"old {to * 1e3:6.2f} ms, new {tn * 1e3:6.3f} ms, ratio {to / tn:5.0f}x")
    print(f"   all base runs: old {old_t * 1e3:.1f} ms, new {new_t * 1e3:.2f} ms, ratio {old_t / new_t:.0f}x")
    print(f"2. one comparison per benchmark by both paths (n_boot=60, n_sim=30)")
    pairs = comparison_pairs(summ)
    for p in pairs.drop_duplicates("benchmark").itertuples():
        bench = get_benchmark(p.benchmark)
        if bench.point is None or not bench.compare: continue
        ia, ib = items(p.run_a, p.benchmark), items(p.run_b, p.benchmark)
        t0 = time.perf_counter(); d0, f0 = compare_items(dataclasses.replace(bench, point=None), ia, ib, 60, 30)
        t1 = time.perf_counter(); d1, f1 = compare_items(bench, ia, ib, 60, 30); t2 = time.perf_counter()
        print(f"   {p.benchmark:20s} {p.spec_a} -> {p.spec_b}: {len(d1)} metrics, largest difference {_max_diff(d0, d1):.1e}, "
              f"flips equal {f0 == f1}; old {t1 - t0:.2f} s, new {t2 - t1:.3f} s, ratio {(t1 - t0) / (t2 - t1):.0f}x")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / "results"; tmp.mkdir()
        (tmp / "runs").symlink_to((root / "runs").resolve())            # read the runs, write the cache elsewhere
        kw = dict(n_boot=a.n_boot, n_sim=a.n_sim, include_stale=a.include_stale)
        t0 = time.perf_counter(); res = analyze(g, tmp, **kw); cold = time.perf_counter() - t0
        t0 = time.perf_counter(); analyze(g, tmp, **kw); warm = time.perf_counter() - t0
    print(f"3. grid {g.name}: {summ.run_id.nunique()} runs, {len(res['flips'])} comparisons, n_boot={a.n_boot}, "
          f"n_sim={a.n_sim}{' (stale runs included)' if a.include_stale else ''}")
    print(f"   cold analysis: {cold:.1f} s (target <= 180 s: {'met' if cold <= 180 else 'NOT met'})")
    print(f"   unchanged rerun: {warm:.2f} s (target <= 10 s: {'met' if warm <= 10 else 'NOT met'})")
    print(f"   load average (1, 5, 15 min) at start {tuple(round(x, 2) for x in load0)}, "
          f"at end {tuple(round(x, 2) for x in os.getloadavg())}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
