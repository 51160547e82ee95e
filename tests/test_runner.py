"""The grid runner end to end: papermill runs on tiny models, kill -9 and resume, two runners on one store, a failing
run, bad grids, and the SLURM backend on a real single-node SLURM (started by .ci/slurm-up.sh)."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIKE = [sys.executable, "-m", "dike.cli"]


def grid_file(tmp_path, experiments: str, name="g", extra="") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\n{extra}defaults: {{n_boot: 50, limit: 6}}\nexperiments:\n{experiments}")
    return p


def dike(args, env, **kw):
    return subprocess.run(DIKE + args, env=env, cwd=ROOT, capture_output=True, text=True, **kw)


@pytest.fixture
def env(tmp_path, data_dir):
    e = dict(os.environ, DIKE_RESULTS_DIR=str(tmp_path / "results"), DIKE_DATA_DIR=str(data_dir),
             DIKE_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(tmp_path))
    return e


def finished(results: Path) -> dict:
    "run_id -> config of every finished run; also checks no visible run is partial."
    runs = results / "runs"
    out = {}
    for p in runs.iterdir() if runs.is_dir() else []:
        if p.name.startswith("."): continue
        cfg = json.loads((p / "config.json").read_text())       # a visible run always has its config ...
        assert (p / cfg["benchmark"] / "metrics.json").is_file()  # ... and its metrics
        assert (p / "evaluate.ipynb").is_file() and (p / "provenance.json").is_file()
        out[p.name] = cfg
    return out


THREE_SEEDS = "  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    seeds: [0, 1, 2]\n"


def test_kill9_mid_grid_then_resume(tmp_path, env):
    g = grid_file(tmp_path, THREE_SEEDS)
    res = tmp_path / "results"
    p = subprocess.Popen(DIKE + ["run", str(g)], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not finished(res):
        assert p.poll() is None, p.stdout.read().decode()
        time.sleep(0.5)
    os.killpg(p.pid, signal.SIGKILL); p.wait()                    # runner and its kernel, mid-grid
    first = finished(res)
    assert 1 <= len(first) < 3, "the kill came too late to test anything"
    stamp = {rid: (res / "runs" / rid / "config.json").stat().st_mtime_ns for rid in first}
    r = dike(["run", str(g)], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(first)} done, {3 - len(first)} to run" in r.stdout
    after = finished(res)
    assert len(after) == 3
    assert {rid: (res / "runs" / rid / "config.json").stat().st_mtime_ns for rid in first} == stamp   # reused
    assert not list((res / "runs").glob(".tmp-*")), "the killed run's temp folder was not cleaned"
    assert not list((res / "locks").glob("*.lock"))
    st = dike(["status", str(g), "--json"], env)
    assert json.loads(st.stdout)["counts"] == {"done": 3, "stale": 0, "failed": 0, "running": 0, "pending": 0}


SMOKE = ROOT / "experiments" / "grids" / "smoke.yaml"


def test_smoke_grid_two_runners_one_store(tmp_path, env):
    "The smoke grid on the local backend, by two runners sharing one store: every run executes exactly once."
    procs = [subprocess.Popen(DIKE + ["run", str(SMOKE)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=1200)[0] for p in procs]
    for p, o in zip(procs, outs):      # a runner that ends while the other still computes a run it found busy says so
        assert p.returncode == 0 or (p.returncode == 1 and " busy (another runner)" in o and " 0 failed" in o), o
    executed = sum(o.count("[   done]") for o in outs)
    assert executed == 5, f"each run must execute exactly once, got {executed}:\n" + "\n".join(outs)
    runs = finished(tmp_path / "results")
    assert sorted((c["model"], c["compress"], c["benchmark"]) for c in runs.values()) == [
        ("tiny-bert", "none", "crows_pairs"), ("tiny-llama", "magnitude:0.5", "crows_pairs"),
        ("tiny-llama", "magnitude:0.5", "winobias"), ("tiny-llama", "none", "crows_pairs"), ("tiny-llama", "none", "winobias")]
    t0 = time.time(); again = dike(["run", str(SMOKE)], env)           # a finished grid: nothing to do
    assert "5 done, 0 to run" in again.stdout and time.time() - t0 < 60
    check_figures_stay_in_their_grid(tmp_path, env)
    check_stale_after_a_code_change(tmp_path, env)


def _paper_state():
    files = {str(p.relative_to(ROOT)): (p.stat().st_size, p.stat().st_mtime_ns) for p in (ROOT / "paper").rglob("*")
             if p.is_file()}
    git = subprocess.run(["git", "status", "--porcelain", "--", "paper"], cwd=ROOT, capture_output=True, text=True).stdout
    return files, git


def check_figures_stay_in_their_grid(tmp_path, env):
    "The smoke grid's summary and figures go to results/grids/smoke/; paper/ is not touched."
    before = _paper_state()
    for cmd in (["collect", str(SMOKE)], ["figures", str(SMOKE)]):
        r = dike(cmd, env)
        assert r.returncode == 0, r.stdout + r.stderr
    own = tmp_path / "results" / "grids" / "smoke"
    assert (own / "summary.parquet").is_file() and (own / "macros.tex").is_file()
    assert (own / "figures" / "bias_vs_compression.png").is_file() and (own / "tables" / "index.tex").is_file()
    assert _paper_state() == before, "the smoke grid's figures touched paper/"


def check_stale_after_a_code_change(tmp_path, env):
    "One line changed in dike/bench/winobias.py: its 2 runs turn stale, the 3 CrowS-Pairs runs stay done."
    pkg = tmp_path / "pkg"
    shutil.copytree(ROOT / "dike", pkg / "dike", ignore=shutil.ignore_patterns("__pycache__"))
    f = pkg / "dike" / "bench" / "winobias.py"
    src, line = f.read_text(), '    items["diff"] = items["ll_pro"] - items["ll_anti"]\n'    # a line of its scorer
    assert src.count(line) == 1
    f.write_text(src.replace(line, line + "    items = items.copy()\n"))
    e = dict(env, PYTHONPATH=str(pkg), DIKE_ROOT=str(ROOT))
    run = lambda args: subprocess.run(DIKE + args, env=e, cwd=tmp_path, capture_output=True, text=True)
    st = run(["status", str(SMOKE), "--json"])
    assert st.returncode == 0, st.stderr
    states = {(r["benchmark"], r["state"]) for r in json.loads(st.stdout)["runs"]}
    assert states == {("crows_pairs", "done"), ("winobias", "stale")}, states
    assert json.loads(st.stdout)["counts"]["stale"] == 2
    co = run(["collect", str(SMOKE)])
    assert co.returncode == 2 and "results of older code" in co.stderr and len(co.stderr.strip().splitlines()) == 1
    co = run(["collect", str(SMOKE), "--include-stale"])
    assert co.returncode == 0 and "(2 stale)" in co.stdout, co.stdout + co.stderr
    import pandas as pd
    summ = pd.read_parquet(tmp_path / "results" / "grids" / "smoke" / "summary.parquet")
    assert summ.groupby("benchmark").stale.all().to_dict() == {"crows_pairs": False, "winobias": True}
    dry = run(["run", str(SMOKE), "--dry-run"])
    assert "3 done, 2 to run (2 of them stale" in dry.stdout, dry.stdout


PLUGIN = '''
import pandas as pd
from dike.evaluate import Benchmark, register_benchmark
def _load(limit=None, seed=0):
    return pd.DataFrame({"item_id": ["a", "b"]})
def _score(lm, rows, scorer, batch_size=16, progress=True):
    raise RuntimeError("boom: injected failure")
register_benchmark(Benchmark(name="toy_fail", load=_load, score=_score, metrics=lambda items, **k: {},
                             scorers={"x": ("causal",)}, default_scorer={"causal": "x"}))
'''


def test_failing_run_does_not_stop_the_grid(tmp_path, env):
    (tmp_path / "toy_plugin.py").write_text(PLUGIN)
    g = grid_file(tmp_path, "  - models: [tiny-llama]\n    benchmarks: [toy_fail, crows_pairs]\n",
                  extra="imports: [toy_plugin]\n")
    r = dike(["run", str(g)], env)
    assert r.returncode == 1, r.stdout + r.stderr                 # the grid reports the failure ...
    runs = finished(tmp_path / "results")
    assert [c["benchmark"] for c in runs.values()] == ["crows_pairs"]   # ... and the other run completed
    failed = list((tmp_path / "results" / "failed").iterdir())
    assert len(failed) == 1
    err = json.loads((failed[0] / "error.json").read_text())
    assert err["ename"] == "RuntimeError" and "boom" in err["evalue"]
    assert (failed[0] / "evaluate.ipynb").is_file()               # the partly executed notebook is kept
    again = dike(["run", str(g)], env)                            # failed runs are not retried silently ...
    assert "1 failed (use --retry-failed)" in again.stdout and again.returncode == 1   # ... nor hidden by exit 0 (issue 26)
    assert again.stdout.strip().splitlines()[-1].startswith("grid g: 1 of 2 done, 1 failed, 0 busy")


@pytest.mark.parametrize("body,msg", [
    ("  - models: [tiny-llama]\n    benchmark: [crows_pairs]\n", "unknown key(s) 'benchmark'"),
    ("  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    compress: ['nm:4:2']\n", "compress 'nm:4:2'"),
    ("  - models: [not-a-model]\n    benchmarks: [crows_pairs]\n", "model 'not-a-model'"),
])
def test_bad_grid_fails_before_anything_runs(tmp_path, env, body, msg):
    g = grid_file(tmp_path, "  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n" + body)
    r = dike(["run", str(g)], env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0] and str(g) in lines[0]
    assert not (tmp_path / "results" / "runs").exists() or not any((tmp_path / "results" / "runs").iterdir())


def test_smoke_grid_dry_run_lists_runs(env):
    r = dike(["run", "experiments/grids/smoke.yaml", "--dry-run"], env)
    assert r.returncode == 0 and "5 runs, 0 done, 5 to run" in r.stdout
    assert r.stdout.count("tiny-") == 5


def _slurm_ready() -> str | None:
    if shutil.which("sbatch") is None: return "sbatch not found (slurm-wlm not installed)"
    r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if r.returncode != 0 or not any(s in r.stdout for s in ("idle", "mixed", "alloc")):
        return f"no SLURM node is up (sinfo: {r.stdout.strip() or r.stderr.strip()})"
    return None


def test_smoke_grid_on_slurm(tmp_path, env):
    why = _slurm_ready()
    if why:
        msg = f"SLURM BACKEND NOT TESTED: {why}; run `sudo bash .ci/slurm-up.sh` (CI does)"
        if os.environ.get("DIKE_REQUIRE_SLURM") == "1": pytest.fail(msg)
        pytest.skip(msg)
    env = dict(env, DIKE_SLURM_CPUS="1", DIKE_SLURM_MEM_GB="2", DIKE_SLURM_TIME="20")
    r = dike(["run", str(SMOKE), "--backend", "slurm", "--jobs", "2"], env, timeout=1500)
    assert r.returncode == 0, r.stdout + r.stderr
    runs = finished(tmp_path / "results")
    assert len(runs) == 5
    logs = list((tmp_path / "results" / "slurm").glob("*_log.out"))
    assert len(logs) == 3, "expected one submitit array task per model group (3): the runs did not all go through SLURM"
    reused = sorted(json.loads((tmp_path / "results" / "runs" / rid / "provenance.json").read_text())["model_reused"]
                    for rid in runs)
    assert reused == [False, False, False, True, True], "each of the 3 groups loads its model once"
    again = dike(["run", str(SMOKE), "--backend", "slurm"], env)   # a finished grid submits nothing
    assert "5 done, 0 to run" in again.stdout


def test_seeds_mean_one_thing_each(tmp_path, data_dir):
    "Calibration seeds live in the spec, the item sample is fixed per grid, `seeds` only reseed the bootstrap."
    from dike.runner import load_grid
    from dike.evaluate import evaluate
    from dike.models import load_model
    from dike.core import ConfigError
    exp = "  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    seeds: [0, 1]\n    compress: [{}]\n"
    with pytest.raises(ConfigError, match=r"experiments\[0\]: run tiny-llama wanda:0.5 crows_pairs seed=0 is already in"):
        load_grid(grid_file(tmp_path, exp.format("none, 'wanda:0.5', 'wanda:0.5:seed=0'")))   # seed=0 is the default: one run
    g = load_grid(grid_file(tmp_path, exp.format("none, 'wanda:0.5', 'wanda:0.5:seed=1'")))
    g0 = load_grid(grid_file(tmp_path, exp.format("'wanda:0.5:seed=0'"), name="g0"))
    assert [c["run_id"] for c in g0.runs] == [c["run_id"] for c in g.runs if c["compress"] == "wanda:0.5"]
    assert sorted({c["compress"] for c in g.runs}) == ["none", "wanda:0.5", "wanda:0.5:seed=1"]
    assert len(g.runs) == 3 * 2 and {c["sample_seed"] for c in g.runs} == {0}
    lm = load_model("tiny-llama")
    a, ra = evaluate(lm, "crows_pairs", limit=8, seed=0, n_boot=50, progress=False)
    b, rb = evaluate(lm, "crows_pairs", limit=8, seed=1, n_boot=50, progress=False)
    c, _ = evaluate(lm, "crows_pairs", limit=8, seed=0, sample_seed=1, n_boot=50, progress=False)
    assert list(a.item_id) == list(b.item_id) and set(a.item_id) != set(c.item_id)
    m = ra["metrics"]["pct_stereotype"], rb["metrics"]["pct_stereotype"]
    assert m[0]["estimate"] == m[1]["estimate"] and (ra["seed"], rb["seed"], ra["sample_seed"]) == (0, 1, 0)


def test_one_kernel_per_model_matches_fresh_runs(tmp_path, env):
    """The runs of one (model, spec) share a kernel and the model loaded once; each keeps its own run folder, and its
    items equal, value for value, those of the same run executed alone in a fresh kernel."""
    import pandas as pd
    exp = "  - models: [tiny-llama]\n    compress: ['magnitude:0.5']\n    benchmarks: [crows_pairs, winobias, stereoset]\n"
    g = grid_file(tmp_path, exp)
    r = dike(["run", str(g)], env)
    assert r.returncode == 0, r.stdout + r.stderr
    runs = finished(tmp_path / "results")
    prov = {c["benchmark"]: json.loads((tmp_path / "results" / "runs" / rid / "provenance.json").read_text())
            for rid, c in runs.items()}
    assert {b: p["model_reused"] for b, p in prov.items()} == {"crows_pairs": False, "winobias": True, "stereoset": True}
    assert prov["winobias"]["load_seconds"] < prov["crows_pairs"]["load_seconds"]
    alone = grid_file(tmp_path, exp.replace("crows_pairs, winobias, stereoset", "stereoset"), name="alone")
    e2 = dict(env, DIKE_RESULTS_DIR=str(tmp_path / "fresh"))
    r = dike(["run", str(alone)], e2)
    assert r.returncode == 0, r.stdout + r.stderr
    (rid2, c2), = finished(tmp_path / "fresh").items()
    rid1 = next(rid for rid, c in runs.items() if c["benchmark"] == "stereoset")
    assert rid1 == rid2                                            # the same run id either way
    a = pd.read_parquet(tmp_path / "results" / "runs" / rid1 / "stereoset" / "items.parquet")
    b = pd.read_parquet(tmp_path / "fresh" / "runs" / rid2 / "stereoset" / "items.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert json.loads((tmp_path / "fresh" / "runs" / rid2 / "provenance.json").read_text())["model_reused"] is False


def test_slurm_requeue_keeps_finished_runs(tmp_path, env):
    """A SLURM task preempted mid-group (SIGUSR2, as SLURM sends before a preemption or the time limit) requeues itself:
    the runs finished before are kept untouched, the interrupted one starts again, no lock or half-written folder stays."""
    why = _slurm_ready()
    if why:
        msg = f"SLURM REQUEUE NOT TESTED: {why}; run `sudo bash .ci/slurm-up.sh` (CI does)"
        if os.environ.get("DIKE_REQUIRE_SLURM") == "1": pytest.fail(msg)
        pytest.skip(msg)
    g = grid_file(tmp_path, "  - models: [tiny-llama]\n    benchmarks: [crows_pairs, winobias, stereoset, bbq]\n")
    res = tmp_path / "results"
    env = dict(env, DIKE_SLURM_CPUS="1", DIKE_SLURM_MEM_GB="2", DIKE_SLURM_TIME="20")
    p = subprocess.Popen(DIKE + ["run", str(g), "--backend", "slurm"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 900
    while time.time() < deadline and not finished(res):
        assert p.poll() is None, p.stdout.read()
        time.sleep(0.5)
    first = finished(res)
    assert 1 <= len(first) < 4, "the signal came too late to test anything"
    stamp = {rid: (res / "runs" / rid / "config.json").stat().st_mtime_ns for rid in first}
    jobs = subprocess.run(["squeue", "-h", "-o", "%i", "-n", "dike"], capture_output=True, text=True).stdout.split()
    assert len(jobs) == 1, f"expected one array task for the one (model, spec) group, got {jobs}"
    subprocess.run(["scancel", "--signal=USR2", jobs[0]], check=True)
    out, _ = p.communicate(timeout=1500)
    assert p.returncode == 0, out
    after = finished(res)
    assert len(after) == 4, out
    assert {rid: (res / "runs" / rid / "config.json").stat().st_mtime_ns for rid in first} == stamp   # kept as they were
    assert not list((res / "runs").glob(".tmp-*")) and not list((res / "locks").glob("*.lock"))
    log = "".join(f.read_text() for f in (res / "slurm").glob("*_log.*"))
    assert "requeu" in log.lower(), "the task was not requeued: " + log[-2000:]
