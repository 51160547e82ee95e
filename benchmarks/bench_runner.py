"""Runner overheads on the smoke grid: first execution, rerun of the finished grid, --dry-run.

Targets (issue: experiment pipeline): rerun of a finished grid <= 10 s, --dry-run < 2 s. The baseline measured in the
same run is a bare interpreter start (`python -c pass`), so the ratios say how much the runner adds to it.

    DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_runner.py [GRID]
"""
import os, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(args, env) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0: sys.exit(f"failed: {' '.join(args)}\n{r.stdout}\n{r.stderr}")
    return time.perf_counter() - t0


def main():
    grid = sys.argv[1] if len(sys.argv) > 1 else "experiments/grids/smoke.yaml"
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, DIKE_RESULTS_DIR=d)
        dike = [sys.executable, "-m", "dike.cli"]
        base = min(timed([sys.executable, "-c", "pass"], env) for _ in range(3))
        dry = min(timed(dike + ["run", grid, "--dry-run"], env) for _ in range(3))
        first = timed(dike + ["run", grid], env)
        rerun = min(timed(dike + ["run", grid], env) for _ in range(3))
    print(f"grid {grid}")
    print(f"  python -c pass (baseline)   {base:7.2f} s")
    print(f"  dike run --dry-run          {dry:7.2f} s   ({dry / base:5.1f}x baseline; target < 2 s: {'ok' if dry < 2 else 'MISSED'})")
    print(f"  dike run (first execution)  {first:7.2f} s")
    print(f"  dike run (finished grid)    {rerun:7.2f} s   ({rerun / first:5.3f}x first run; target <= 10 s: {'ok' if rerun <= 10 else 'MISSED'})")


if __name__ == "__main__":
    main()
