"""Run ids and compressed-weight keys follow the code that computed them (issue: runs keyed by the code).

Each test copies the `dike` package into a temporary folder, edits one line of one module, and computes the ids of a
grid with the copy first on PYTHONPATH, in a fresh interpreter: exactly the runs that module computes get new ids."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

GRID = """name: ids
experiments:
  - models: [tiny-llama]
    compress: [none, "magnitude:0.5", "rtn:4:g16"]
    benchmarks: [stereoset, crows_pairs, winobias, winogender, bbq]
"""

IDS = """
import json, sys
import dike; print(dike.__file__, file=sys.stderr)
from dike.runner import load_grid
from dike.compress.apply import compress_key
from dike.evaluate import metrics_key, get_benchmark
g = load_grid(sys.argv[1], validate=False)
print(json.dumps({"runs": {f"{c['benchmark']}|{c['compress']}": [c["run_id"], c["config_key"]] for c in g.runs},
                  "keys": {s: compress_key("abc", s) for s in ("magnitude:0.5", "wanda:0.5", "rtn:4:g16")},
                  "metrics": {c["benchmark"]: metrics_key(get_benchmark(c["benchmark"])) for c in g.runs}}))
"""


def ids(tmp_path, data_dir, pkg=None) -> dict:
    grid = tmp_path / "ids.yaml"; grid.write_text(GRID)
    env = dict(os.environ, DIKE_DATA_DIR=str(data_dir), DIKE_ROOT=str(ROOT), DIKE_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(pkg or ROOT))               # this checkout (or the edited copy), not the installed dike
    r = subprocess.run([sys.executable, "-c", IDS, str(grid)], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)                           # not cwd=ROOT: `python -c` puts the cwd first on sys.path
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.splitlines()[0].startswith(str(pkg or ROOT)), r.stderr   # the copy, not the checkout, was imported
    return json.loads(r.stdout.strip().splitlines()[-1])


def edited_copy(tmp_path, rel: str, old: str, new: str) -> Path:
    pkg = tmp_path / "pkg"
    shutil.copytree(ROOT / "dike", pkg / "dike", ignore=shutil.ignore_patterns("__pycache__"))
    f = pkg / "dike" / rel
    src = f.read_text()
    assert src.count(old) == 1, f"{old!r} must occur once in {rel}"
    f.write_text(src.replace(old, new))
    return pkg


@pytest.fixture(scope="module")
def base(tmp_path_factory, data_dir):
    return ids(tmp_path_factory.mktemp("base"), data_dir)


def changed(a: dict, b: dict) -> set[str]:
    assert a["runs"].keys() == b["runs"].keys()
    for k in a["runs"]: assert a["runs"][k][1] == b["runs"][k][1], "config keys never follow the code"
    return {k for k in a["runs"] if a["runs"][k][0] != b["runs"][k][0]}


def test_one_line_of_bbq_changes_only_bbq_runs(tmp_path, data_dir, base):
    src = (ROOT / "dike" / "bench" / "bbq.py").read_text()
    line = next(l for l in src.splitlines() if l.startswith("    ") and not l.startswith("     ") and " = " in l
                and "#" not in l and '"' not in l and all(l.count(a) == l.count(b) for a, b in ("()", "[]", "{}"))
                and src.count(l + "\n") == 1)
    pkg = edited_copy(tmp_path, "bench/bbq.py", line + "\n", line + "\n    _edited = 1\n")
    after = ids(tmp_path, data_dir, pkg)
    assert changed(base, after) == {k for k in base["runs"] if k.startswith("bbq|")}
    assert len(changed(base, after)) == 3
    assert after["keys"] == base["keys"]                       # no compressed weights are invalidated


def test_docstring_and_comment_edits_change_nothing(tmp_path, data_dir, base):
    src = (ROOT / "dike" / "bench" / "bbq.py").read_text()
    doc = src.split('"""')[1]
    pkg = edited_copy(tmp_path, "bench/bbq.py", f'"""{doc}"""', f'"""{doc} Edited prose."""\n# a new comment')
    assert changed(base, ids(tmp_path, data_dir, pkg)) == set()


def test_a_pruning_change_recompresses_pruning_only(tmp_path, data_dir, base):
    pkg = edited_copy(tmp_path, "compress/prune.py", "    return int(math.floor(frac * n + 0.5))",
                      "    return int(math.floor(frac * n + 0.5)) + 0")
    after = ids(tmp_path, data_dir, pkg)
    assert changed(base, after) == {k for k in base["runs"] if k.endswith("|magnitude:0.5")}
    assert after["keys"]["magnitude:0.5"] != base["keys"]["magnitude:0.5"]
    assert after["keys"]["wanda:0.5"] != base["keys"]["wanda:0.5"]
    assert after["keys"]["rtn:4:g16"] == base["keys"]["rtn:4:g16"]


def test_a_report_change_recompresses_nothing(tmp_path, data_dir, base):
    pkg = edited_copy(tmp_path, "compress/report.py", '        "latency_ratio": lat_n / lat_b if lat_b else None,',
                      '        "latency_ratio": lat_n / lat_b if lat_b else float("nan"),')
    after = ids(tmp_path, data_dir, pkg)
    assert after["keys"] == base["keys"] and changed(base, after) == set()


def test_a_change_of_shared_weight_code_recompresses(tmp_path, data_dir, base):
    pkg = edited_copy(tmp_path, "corpora.py", "    chunks = [pre + c + post for c in chunks if len(c) >= 8]",
                      "    chunks = [pre + c + post for c in chunks if len(c) >= 9]")
    after = ids(tmp_path, data_dir, pkg)
    assert after["keys"]["wanda:0.5"] != base["keys"]["wanda:0.5"]     # calibration packing decides Wanda's weights


def runs_of(base, *benches) -> set[str]:
    return {k for k in base["runs"] if k.split("|")[0] in benches}


def test_a_statistics_edit_recomputes_no_run(tmp_path, data_dir, base):
    "Run ids key the code that computed the items; a bootstrap change only makes the metrics re-derivable."
    pkg = edited_copy(tmp_path, "stats.py", "    rng = np.random.default_rng(seed)\n    if units is None:",
                      "    rng = np.random.default_rng(seed + 0)\n    if units is None:")
    after = ids(tmp_path, data_dir, pkg)
    assert changed(base, after) == set() and after["keys"] == base["keys"]
    assert all(after["metrics"][b] != base["metrics"][b] for b in base["metrics"])   # every metrics record is re-derived


def test_a_scoring_edit_stales_exactly_the_runs_that_call_it(tmp_path, data_dir, base):
    # dike.scoring.loglik: the scorer of WinoBias and WinoGender on a causal model; CrowS-Pairs (lm-eval), StereoSet
    # (bias-bench) and BBQ's default (loglik-char) call loglik_tokens directly and keep their ids (BBQ's loglik-lmeval
    # scorer calls loglik, and its runs would change)
    pkg = edited_copy(tmp_path, "scoring.py", "    return np.array([float(v.sum()) for v in toks], dtype=np.float64)",
                      "    return np.asarray([float(v.sum()) for v in toks], dtype=np.float64)")
    assert changed(base, ids(tmp_path, data_dir, pkg)) == runs_of(base, "winobias", "winogender")
    # bias-bench's causal rule: StereoSet's default scorer calls it; CrowS-Pairs' default (lm-eval) does not
    pkg = edited_copy(tmp_path / "b", "scoring.py", "        out[i] = np.power(2.0, np.mean(ln / np.log(2.0)))",
                      "        out[i] = 2.0 ** np.mean(ln / np.log(2.0))")
    after = ids(tmp_path / "b", data_dir, pkg)
    assert changed(base, after) == runs_of(base, "stereoset") and after["metrics"] == base["metrics"]
