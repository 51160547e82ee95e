"""First run and hard days (issue 26): the README's commands on a machine without the lab's data folder."""
import shutil, subprocess
import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make(args, cwd, env=None):
    import os
    e = {k: v for k, v in os.environ.items() if k != "DIKE_DATA_DIR"} | (env or {})
    return subprocess.run(["make", "-s", *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=60)


def test_without_the_shared_data_folder_reproduce_fetches_the_pinned_files(tmp_path):
    repo = tmp_path / "clone"; repo.mkdir()                    # no ../shared/data beside it
    for f in ("Makefile", "pyproject.toml"): shutil.copy(ROOT / f, repo / f)
    assert make(["print-data-dir"], repo).stdout.strip() == "DIKE_DATA_DIR=<unset: data/raw cache>"
    assert make(["print-data-dir"], repo, {"DIKE_DATA_DIR": "/elsewhere"}).stdout.strip() == "DIKE_DATA_DIR=/elsewhere"
    plan = make(["-n", "reproduce"], repo).stdout
    assert plan.index("dike data fetch --optional") < plan.index("dike data check") < plan.index("dike run")
    (tmp_path / "shared" / "data").mkdir(parents=True)         # the lab's layout: the copy beside the checkout is used
    assert make(["print-data-dir"], repo).stdout.strip() == f"DIKE_DATA_DIR={tmp_path / 'shared' / 'data'}"


def test_data_check_catches_an_edit_that_keeps_size_and_mtime_and_verify_overrules_the_cache(tmp_path):
    "Same size, same mtime, one byte changed: caught; and `--verify` reads the bytes even when the cache vouches for them."
    import hashlib, json, os, sys
    from dike.data import manifest
    src = Path(os.environ.get("DIKE_DATA_DIR", ROOT.parent / "shared" / "data"))
    rel = "winogender/all_sentences.tsv"
    data = tmp_path / "data"; shutil.copytree(src / "winogender", data / "winogender")
    env = dict(os.environ, DIKE_DATA_DIR=str(data), DIKE_CACHE_DIR=str(tmp_path / "cache"))
    run = lambda *a: json.loads(subprocess.run([sys.executable, "-m", "dike.cli", "data", "check", "--json", *a], env=env,
                                               capture_output=True, text=True, timeout=300).stdout)["benchmarks"]["winogender"]
    ok = run()
    assert ok["verified"] == ok["files"] > 0 and not ok["corrupt"]
    f = data / rel; st = f.stat(); b = bytearray(f.read_bytes()); b[100] ^= 1
    f.write_bytes(bytes(b)); os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = f.stat()
    assert (st2.st_size, st2.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert [x["path"] for x in run()["corrupt"]] == [rel]                  # the cache keys on ctime too: caught
    key = f"sha256|{f.resolve()}|{st2.st_ino}|{st2.st_size}|{st2.st_mtime_ns}|{st2.st_ctime_ns}"
    (tmp_path / "cache" / "checksums" / hashlib.sha1(key.encode()).hexdigest()).write_text(manifest()[rel].sha256)
    assert not run()["corrupt"]                                            # a cache entry that lies is believed ...
    assert [x["path"] for x in run("--verify")["corrupt"]] == [rel]        # ... except by --verify


SLOW_PLUGIN = '''
import os, time
import pandas as pd
from dike.evaluate import Benchmark, register_benchmark
def _load(limit=None, seed=0):
    return pd.DataFrame({"item_id": ["a", "b"]})
def _score(lm, rows, scorer, batch_size=16, progress=True):
    open(os.environ["TOY_SLOW_MARK"], "w").write(str(os.getpid()))      # the kernel computing this run
    time.sleep(120)
    open(os.environ["TOY_SLOW_MARK"] + ".after", "w").write("the kernel outlived the interrupt")
    return rows.assign(x=1.0)
register_benchmark(Benchmark(name="toy_slow", load=_load, score=_score, metrics=lambda items, **k: {},
                             scorers={"x": ("causal",)}, default_scorer={"causal": "x"}))
'''


def _gone(pid) -> bool:
    "No such process, or one that has ended (a zombie computes nothing)."
    try: return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError: return True


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_leaves_the_interrupted_run_pending_and_stops_its_kernel(tmp_path, data_dir, jobs):
    """Ctrl-C (SIGINT to the runner's process group, as a terminal sends it) while a run computes: the run stays pending
    (not failed), its kernel (a process group of its own) is killed, no `.tmp-` folder or lock is left, `dike run` ends with
    a summary and exit 130; before issue 26 the run was filed as failed and the kernel computed on."""
    import json, os, signal, sys, time
    (tmp_path / "toy_slow.py").write_text(SLOW_PLUGIN)
    g = tmp_path / "g.yaml"
    g.write_text("name: g\nimports: [toy_slow]\ndefaults: {n_boot: 50, limit: 6}\nexperiments:\n"
                 "  - models: [tiny-llama]\n    benchmarks: [crows_pairs, toy_slow, winobias]\n"
                 "  - models: [tiny-bert]\n    benchmarks: [crows_pairs]\n")
    mark, res = tmp_path / "mark", tmp_path / "results"
    env = dict(os.environ, DIKE_RESULTS_DIR=str(res), DIKE_DATA_DIR=str(data_dir), DIKE_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(tmp_path), TOY_SLOW_MARK=str(mark))
    dike = [sys.executable, "-m", "dike.cli"]
    p = subprocess.Popen(dike + ["run", str(g), "--jobs", jobs], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True,
                         # a shell that ran pytest in the background (`make test &`) hands SIGINT down ignored, and
                         # Python then installs no KeyboardInterrupt handler: give the runner a terminal's default
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not mark.exists():
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.2)
    kernel = int(mark.read_text())
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, out + err
    last = out.strip().splitlines()[-1]
    assert last.startswith("grid g: ") and " of 4 done, 0 failed, 0 busy (another runner), " in last and "; interrupted" in last
    time.sleep(1)
    assert _gone(kernel), f"the kernel {kernel} still computes"             # it was stopped with its run
    assert not (res / "failed").exists() or not any((res / "failed").iterdir())
    assert not list((res / "runs").glob(".tmp-*")) and not list((res / "locks").glob("*.lock"))
    st = json.loads(subprocess.run(dike + ["status", str(g), "--json"], env=env, cwd=ROOT, capture_output=True,
                                   text=True).stdout)
    slow = [r for r in st["runs"] if r["benchmark"] == "toy_slow"]
    assert [r["state"] for r in slow] == ["pending"] and st["counts"]["failed"] == 0
    assert st["counts"]["done"] + st["counts"]["pending"] == 4 and st["counts"]["done"] == int(last.split()[2])
    assert not (tmp_path / "mark.after").exists()


def _racer(root, barrier, q, trials):
    from dike.store import Store
    st = Store(root)
    for t in range(trials):
        barrier.wait()
        q.put((t, st.acquire(f"r{t}")))


def test_eight_processes_racing_for_a_stale_lock_exactly_one_wins(tmp_path):
    """300 trials: a stale lock (a dead pid on this host, or another host's past DIKE_LOCK_TTL), then 8 processes call
    `acquire` at once: exactly one gets it each time (before issue 26 two took the same lock in 53 of 300 trials)."""
    import json, multiprocessing as mp, socket, time
    from dike.store import Store
    st, n, trials, t0 = Store(tmp_path), 8, 300, time.time()
    ctx = mp.get_context("fork")
    barrier, q = ctx.Barrier(n + 1), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(tmp_path, barrier, q, trials)) for _ in range(n)]
    for p in procs: p.start()
    winners = []
    try:
        for t in range(trials):
            holder = ({"host": socket.gethostname(), "pid": 2**22 + 12345, "time": time.time()} if t % 2 else
                      {"host": "node-that-died", "pid": 1, "time": time.time() - 2 * 86400})
            (st.locks / f"r{t}.lock").write_text(json.dumps(holder))
            barrier.wait(timeout=30)
            got = [q.get(timeout=30) for _ in range(n)]
            assert {g[0] for g in got} == {t}
            winners.append(sum(g[1] for g in got))
    finally:
        for p in procs: p.join(5); p.kill()
    bad = [(t, w) for t, w in enumerate(winners) if w != 1]
    assert not bad, f"{len(bad)} of {trials} trials did not have exactly one winner: {bad[:10]}"
    assert time.time() - t0 < 60
    assert not [f.name for f in st.locks.iterdir() if f.name.startswith(".")]    # no candidate or breaker file left


def test_status_names_the_holder_of_a_lock_and_the_ttl_clears_a_dead_nodes_lock(tmp_path, data_dir):
    "`dike status` shows host, pid and age of a run's lock; `DIKE_LOCK_TTL` (README: Interrupting and locks) lets it go."
    import json, os, sys, time
    g = tmp_path / "g.yaml"
    g.write_text("name: g\ndefaults: {n_boot: 50, limit: 6}\nexperiments:\n  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n")
    env = dict(os.environ, DIKE_RESULTS_DIR=str(tmp_path / "results"), DIKE_DATA_DIR=str(data_dir))
    dike = lambda *a, **e: subprocess.run([sys.executable, "-m", "dike.cli", *a], env=dict(env, **e), cwd=ROOT,
                                          capture_output=True, text=True)
    rid = dike("run", str(g), "--dry-run").stdout.splitlines()[1].split()[0]
    (tmp_path / "results" / "locks").mkdir(parents=True, exist_ok=True)
    (tmp_path / "results" / "locks" / f"{rid}.lock").write_text(json.dumps({"host": "node7", "pid": 4242, "time": time.time() - 300}))
    st = dike("status", str(g))
    row = [l for l in st.stdout.splitlines() if l.startswith(rid)][0]
    assert "running" in row and row.rstrip().endswith("node7:4242, 5 min"), st.stdout
    assert json.loads(dike("status", str(g), "--json").stdout)["runs"][0]["holder"] == "node7:4242, 5 min"
    assert json.loads(dike("status", str(g), "--json", DIKE_LOCK_TTL="60").stdout)["runs"][0]["state"] == "pending"


OUT_CASES = [   # (arguments, what the one line says); the model does not exist: the check must come before loading it
    (["eval", "no-such-model", "crows_pairs", "--out", "{tmp}/afile"], "--out {tmp}/afile is a file; give a folder"),
    (["eval", "no-such-model", "crows_pairs", "--out", "/proc/dike-out/x"], "--out /proc/dike-out/x cannot be written"),
    (["eval", "no-such-model", "crows_pairs", "--out", "{tmp}/taken"], "{tmp}/taken/crows_pairs already holds a result"),
    (["compress", "no-such-model", "magnitude:0.5", "--out", "{tmp}/taken"], "--out {tmp}/taken already exists"),
    (["eval", "no-such-model", "crows_pairs", "--seed", "-1"], "dike eval: argument --seed: must be >= 0, got -1"),
    (["eval", "no-such-model", "crows_pairs", "--n-boot", "0"], "dike eval: argument --n-boot: must be >= 1, got 0"),
    (["eval", "no-such-model", "crows_pairs", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["eval", "no-such-model", "crows_pairs", "--limit", "many"], "argument --limit: 'many' is not a whole number"),
    (["compress", "no-such-model", "magnitude:0.5", "--out", "{tmp}/new", "--n-calib", "0"], "argument --n-calib: must be >= 1"),
    (["run", "g.yaml", "--jobs", "0"], "dike run: argument --jobs: must be >= 1, got 0"),
]


@pytest.mark.parametrize("args,msg", OUT_CASES)
def test_bad_arguments_and_output_folders_fail_before_any_work(tmp_path, args, msg):
    "Before issue 26 these failed after scoring or compressing (several with a traceback), or not at all (--batch-size 0)."
    import os, sys
    (tmp_path / "afile").write_text("x"); (tmp_path / "taken" / "crows_pairs").mkdir(parents=True)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = subprocess.run([sys.executable, "-m", "dike.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, DIKE_RESULTS_DIR=str(tmp_path / "results")))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert msg.replace("{tmp}", str(tmp_path)) in lines[0], lines[0]
    assert not (tmp_path / "new").exists()


GRID_CASES = [   # (experiments, what the one line says after the file name)
    ("  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    compress: []\n", ": experiments[0]: `compress` is empty"),
    ("  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    seeds: []\n", ": experiments[0]: `seeds` is empty"),
    ("  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    seeds: [0, -2]\n", ": experiments[0]: seeds[1] must be"),
    ("  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    limit: -3\n", ": experiments[0]: `limit` must be a whole number >= 1"),
    ("  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    n_boot: many\n",
     ": experiments[0]: `n_boot` must be a whole number >= 1 (bootstrap resamples), got 'many'"),
    ("  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    batch_size: 0\n", ": experiments[0]: `batch_size` must be"),
    ("  - models: [tiny-llama\n    benchmarks: [crows_pairs]\n", ":5:15: invalid YAML (while parsing a flow sequence; expected ','"),
    ("  - models: [tiny-llama]\n    benchmarks: [crows_pairs, winobias]\n  - models: [tiny-llama]\n    benchmarks: [winobias]\n",
     ": experiments[1]: run tiny-llama none winobias seed=0 is already in experiments[0]; list each run once"),
    ("  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    compress: ['magnitude:0.5', 'magnitude:.5']\n",
     ": experiments[0]: run tiny-llama magnitude:0.5 crows_pairs seed=0 is already in experiments[0]"),
]


@pytest.mark.parametrize("body,msg", GRID_CASES)
def test_bad_grid_fields_are_one_line_naming_file_and_entry_even_on_dry_run(tmp_path, data_dir, body, msg):
    "Before issue 26: empty lists ran '0 runs' with exit 0, limit -3 passed --dry-run, n_boot 'many' gave a traceback, YAML errors lost their line, duplicates merged."
    import os, sys
    g = tmp_path / "g.yaml"
    g.write_text("name: g\ndefaults: {n_boot: 50, limit: 6}\nexperiments:\n" + body)
    r = subprocess.run([sys.executable, "-m", "dike.cli", "run", str(g), "--dry-run"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, DIKE_RESULTS_DIR=str(tmp_path / "results"),
                                                        DIKE_DATA_DIR=str(data_dir)))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stdout + r.stderr
    assert lines[0].startswith(f"error: {g}{msg}"), lines[0]


def test_local_backend_honours_dike_threads_and_provenance_records_them(tmp_path, data_dir):
    "DIKE_THREADS = cores + 1 (a number cores // jobs cannot give): the run's torch threads, as provenance records them."
    import json, os, sys
    from dike.core import usable_cores
    n = usable_cores() + 1
    g = tmp_path / "g.yaml"
    g.write_text("name: g\ndefaults: {n_boot: 20, limit: 4}\nexperiments:\n  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n")
    r = subprocess.run([sys.executable, "-m", "dike.cli", "run", str(g)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, DIKE_RESULTS_DIR=str(tmp_path / "results"), DIKE_DATA_DIR=str(data_dir),
                                DIKE_THREADS=str(n)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "grid g: 1 of 1 done, 0 failed, 0 busy (another runner), 0 pending"
    (prov,) = (tmp_path / "results" / "runs").glob("*/provenance.json")
    assert json.loads(prov.read_text())["torch"]["threads"] == n


def test_dike_list_names_benchmarks_scorers_and_methods_one_form_a_line(tmp_path):
    "Before issue 26 no command listed them; the grammar of the methods came only inside a bad spec's 4,000-character error."
    import json, os, sys
    run = lambda *a: subprocess.run([sys.executable, "-m", "dike.cli", "list", *a], cwd=ROOT, capture_output=True,
                                    text=True, timeout=120, env=dict(os.environ, DIKE_RESULTS_DIR=str(tmp_path)))
    from dike.compress.spec import list_methods
    ms = list_methods()
    out = run("methods")
    assert out.returncode == 0, out.stderr
    heads = [l for l in out.stdout.splitlines() if not l.startswith("    ")]
    assert [h.split(" [")[0] for h in heads] == [m.prefix for m in ms]                       # one header per method ...
    assert sum(l.startswith("    ") for l in out.stdout.splitlines()) == sum(len(m.forms) for m in ms)   # ... a line per form
    assert any(l.startswith("    magnitude:S") for l in out.stdout.splitlines())
    b = run("benchmarks").stdout.splitlines()
    assert any(l.startswith("crows_pairs: ") and "nangia (mlm)" in l for l in b)
    assert "nangia [mlm]: " in run("scorers").stdout
    js = json.loads(run("benchmarks", "--json").stdout)
    assert {r["benchmark"] for r in js} >= {"crows_pairs", "stereoset", "winobias", "bbq"}
    # benchmarks that a method module registers (dike.teach's probes, documented as benchmarks) are found too (issue 26)
    assert {"gender_probe", "concept_probe"} <= {r["benchmark"] for r in js}


def _eval(tmp_path, data_dir, bench: str, limit: int, n_boot: int):
    "`dike eval tiny-llama BENCH` in a fresh process: exit 0, its stdout."
    import os, sys
    r = subprocess.run([sys.executable, "-m", "dike.cli", "eval", "tiny-llama", bench, "--limit", str(limit), "--n-boot",
                        str(n_boot), "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, DIKE_RESULTS_DIR=str(tmp_path), DIKE_DATA_DIR=str(data_dir), DIKE_THREADS="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_dike_eval_finds_the_probe_benchmarks(tmp_path, data_dir):
    "`dike eval MODEL concept_probe` failed with 'unknown benchmark' unless a grid imported dike.teach (issue 26)."
    r = _eval(tmp_path, data_dir, "concept_probe", 6, 20)
    assert "concept_probe (" in r.stdout and "auc" in r.stdout


def test_dike_eval_says_a_group_of_one_has_no_interval(tmp_path, data_dir):
    "A group with n = 1 printed a CI of [100, 100] without a word (issue 26): its interval is blank, with a note."
    r = _eval(tmp_path, data_dir, "crows_pairs", 12, 50)
    rows = [l.split() for l in r.stdout.splitlines() if l.startswith("pct_stereotype")]
    ones = [x for x in rows if "n = 1: no interval" in " ".join(x)]
    assert ones and all(len(x) == 8 for x in ones)                     # metric, estimate, n and the 5-word note: no CI
    assert all(len(x) == 5 for x in rows if x not in ones)             # the others keep estimate, ci_low, ci_high, n
