"""The README's recipe is true: a new benchmark is one notebook plus its manifest rows, nothing else.

A copy of the project gets a toy benchmark: one data file (in a data dir of its own), one manifest row, one notebook
`nbs/90_toybench.ipynb` that registers its files and its metric. After `nbdev-export`, `dike data check` lists it and
`dike eval` scores it on tiny-llama, and no other source file of the copy changed (only the generated dike/ files).
"""
import hashlib, json, os, shutil, subprocess, sys
from pathlib import Path

import pytest
from recipe import ROOT, NBDEV_EXPORT, notebook, tree, project_copy


CELLS = [
    ("code", "#| default_exp bench.toybench"),
    ("markdown", "# toybench\n\n> A toy benchmark: the share of sentences whose first variant the model prefers."),
    ("code", """#| export
import numpy as np
import pandas as pd
from dike.data import BenchmarkFiles, register_files, load as data_load
from dike.evaluate import Benchmark, register_benchmark
from dike.stats import bootstrap_ci

def _parse(r):
    rows = r.jsonl("toybench/items.jsonl")
    return pd.DataFrame([dict(item_id=o["id"], a=o["a"], b=o["b"]) for o in rows])

DATA = register_files(BenchmarkFiles("toybench", ("toybench",), _parse, text_columns=("a", "b"),
                                     count=lambda r: {"pairs": len(_parse(r))}))

def load(limit=None, seed=0): return data_load("toybench", limit=limit, seed=seed)

def score(lm, rows, scorer="loglik", batch_size=16, progress=False):
    from dike.scoring import loglik
    ll = np.asarray(loglik(lm, [("", s) for s in list(rows.a) + list(rows.b)], batch_size=batch_size, progress=False))
    return rows.assign(prefers_a=(ll[:len(rows)] > ll[len(rows):]).astype(float))

def metrics(items, n_boot=2000, seed=0):
    return {"pct_a": bootstrap_ci(100 * items.prefers_a.to_numpy(), n_boot=n_boot, seed=seed)}

register_benchmark(Benchmark(name="toybench", load=load, score=score, metrics=metrics, scorers={"loglik": ("causal",)},
                             default_scorer={"causal": "loglik"}, headline="pct_a", ideal={"pct_a": 50.0}))"""),
]

ITEMS = [{"id": f"t{k}", "a": f"The doctor said {w}.", "b": f"The nurse said {w}."} for k, w in
         enumerate(["hello", "goodbye", "yes", "no", "thanks", "maybe"])]


@pytest.mark.skipif(not NBDEV_EXPORT.exists(), reason="nbdev-export is not installed next to this python")
def test_one_notebook_and_manifest_rows_add_a_benchmark(tmp_path):
    copy = tmp_path / "proj"
    project_copy(copy, ("nbs", "dike", "data", "tests", "experiments"))
    before = tree(copy)

    data = tmp_path / "data"; (data / "toybench").mkdir(parents=True)
    f = data / "toybench" / "items.jsonl"
    f.write_text("".join(json.dumps(o) + "\n" for o in ITEMS))
    row = ["toybench", "toybench/items.jsonl", "https://example.org/toybench/items.jsonl",
           hashlib.sha256(f.read_bytes()).hexdigest(), str(f.stat().st_size), "CC0-1.0", "Toy 2026", "", "0"]
    with open(copy / "data" / "manifest.csv", "a", encoding="utf-8") as m: m.write(",".join(row) + "\n")
    (copy / "nbs" / "90_toybench.ipynb").write_text(json.dumps(notebook(CELLS), indent=1))

    env = {**os.environ, "PYTHONPATH": str(copy), "DIKE_DATA_DIR": str(data), "DIKE_ROOT": str(copy),
           "DIKE_MANIFEST": str(copy / "data" / "manifest.csv"), "DIKE_RESULTS_DIR": str(tmp_path / "results")}
    r = subprocess.run([str(NBDEV_EXPORT)], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (copy / "dike" / "bench" / "toybench.py").exists()
    changed = {k for k in set(before) | set(tree(copy)) if before.get(k) != tree(copy).get(k)}
    assert changed == {"nbs/90_toybench.ipynb", "data/manifest.csv"}, changed

    cli = [sys.executable, "-m", "dike.cli"]
    r = subprocess.run(cli + ["data", "check", "--json"], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    rep = json.loads(r.stdout)
    assert rep["benchmarks"]["toybench"]["status"] == "ok" and rep["benchmarks"]["toybench"]["counts"] == {"pairs": 6}
    assert "toybench/items.jsonl" not in rep["unclaimed"]

    out = tmp_path / "out"
    r = subprocess.run(cli + ["eval", "tiny-llama", "toybench", "--limit", "4", "--n-boot", "50", "--out", str(out), "--quiet"],
                       cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rec = json.loads((out / "toybench" / "metrics.json").read_text())
    assert rec["n_items"] == 4 and 0 <= rec["metrics"]["pct_a"]["estimate"] <= 100
    assert rec["data_files"] == {"toybench/items.jsonl": row[3]}
