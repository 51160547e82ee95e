"""The README's recipe is true: a new figure is one notebook (a function and one registry line) and a grid's `products:`.

A copy of the project gets a toy product: one notebook `nbs/90_toyfig.ipynb` whose function draws one bar per run of a
grid and sets a macro, registered with `dike.paper.register_product`, and one grid file that asks for it under
`products:`. After `nbdev-export`, `dike figures` on that grid (two hand-written finished runs) draws the figure into
`paper/` and records it in `paper/generated.json`; the grid's run ids are those of the same grid without `products:`,
and no other source file of the copy changed (only the generated dike/ files).
"""
import hashlib, json, os, shutil, subprocess, sys
from pathlib import Path

import pytest
from recipe import ROOT, NBDEV_EXPORT, notebook, tree, project_copy


CELLS = [
    ("code", "#| default_exp toyfig"),
    ("markdown", "# toyfig\n\n> A toy product: one bar per run of a grid, and the number of runs as a macro."),
    ("code", """#| export
from dike.paper import Figure, register_product

def toy_runs(b):
    "One bar per run of the grid (the estimate of its first metric); the macro `ToyRuns`."
    runs = b["summary"].drop_duplicates("run_id")
    with (f := Figure(b.figures, "toy_runs", figsize=(3, 2))) as (fig, ax):
        ax.bar(range(len(runs)), runs.estimate)
    b.macro("ToyRuns", value=len(runs))
    return f.files

register_product("toy_runs", toy_runs, "one bar per run of a grid")"""),
]

GRID = """name: toyfig
paper: true
{products}experiments:
  - models: [tiny-llama]
    benchmarks: [crows_pairs]
    seeds: [0, 1]
"""

# writes a finished run (by hand) for every run of the grid; prints the run ids of the grid and of its twin file
FAKE_RUNS = """
import json, sys
import pandas as pd
from dike.runner import load_grid
from dike.store import fake_run
g, twin = load_grid(sys.argv[1], validate=False), load_grid(sys.argv[2], validate=False)
items = pd.DataFrame({"item_id": ["a", "b"], "stereotyped": [1, 0]})
for i, c in enumerate(g.runs):
    est = {"estimate": 50.0 + i, "ci_low": 40.0, "ci_high": 60.0, "n": 2, "unit": "pair"}
    fake_run(sys.argv[3], c["run_id"], c["compress"], items, {"pct_stereotype": est}, benchmark=c["benchmark"],
             model=c["model"], seed=c["seed"], config=c)
print(json.dumps([[c["run_id"] for c in g.runs], [c["run_id"] for c in twin.runs]]))
"""


@pytest.mark.skipif(not NBDEV_EXPORT.exists(), reason="nbdev-export is not installed next to this python")
def test_one_notebook_and_a_grid_key_add_a_figure(tmp_path):
    copy = tmp_path / "proj"
    project_copy(copy, ("nbs", "dike", "data", "tests", "experiments", "paper"))
    before = tree(copy)

    (copy / "nbs" / "90_toyfig.ipynb").write_text(json.dumps(notebook(CELLS), indent=1))
    grid = copy / "experiments" / "grids" / "toyfig.yaml"
    grid.write_text(GRID.format(products="products: [toy_runs]\n"))

    env = {**os.environ, "PYTHONPATH": str(copy), "DIKE_ROOT": str(copy), "DIKE_RESULTS_DIR": str(tmp_path / "results"),
           "DIKE_MANIFEST": str(copy / "data" / "manifest.csv"), "MPLBACKEND": "Agg"}
    r = subprocess.run([str(NBDEV_EXPORT)], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (copy / "dike" / "toyfig.py").exists()
    changed = {k for k in set(before) | set(tree(copy)) if before.get(k) != tree(copy).get(k)}
    assert changed == {"nbs/90_toyfig.ipynb", "experiments/grids/toyfig.yaml"}, changed

    twin = tmp_path / "twin.yaml"; twin.write_text(GRID.format(products=""))
    r = subprocess.run([sys.executable, "-c", FAKE_RUNS, str(grid), str(twin), str(tmp_path / "results")], cwd=copy,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ids, twin_ids = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(ids) == 2 and ids == twin_ids                     # `products:` is no part of a run's identity

    cli = [sys.executable, "-m", "dike.cli"]
    r = subprocess.run(cli + ["figures", "experiments/grids/toyfig.yaml"], cwd=copy, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    paper = copy / "paper"
    assert (paper / "figures" / "toyfig" / "toy_runs.png").stat().st_size > 0
    assert not (paper / "figures" / "toyfig" / "bias_vs_compression.png").exists()   # only what the grid asked for
    gen = json.loads((paper / "generated.json").read_text())["grids"]
    assert gen["toyfig"]["files"] == ["figures/toyfig/toy_runs.pdf", "figures/toyfig/toy_runs.png", "macros/toyfig.tex"]
    assert gen["toyfig"]["command"] == "dike figures experiments/grids/toyfig.yaml" and gen["toyfig"]["runs"] == 2
    assert {"default", "fair", "origins", "teach"} <= set(gen)   # the other sources' records are kept
    mac = (paper / "macros" / "toyfig.tex").read_text()
    assert "\\newcommand{\\DikeToyfigToyRuns}{2}" in mac and "\\newcommand{\\DikeToyfigNumRuns}{2}" in mac
    assert "\\input{macros/toyfig}" in (paper / "macros.tex").read_text()

    grid.write_text(GRID.format(products="products: [toy_runs, no_such_product]\n"))
    r = subprocess.run(cli + ["figures", "experiments/grids/toyfig.yaml"], cwd=copy, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "toyfig.yaml: products: unknown product 'no_such_product'" in r.stderr and "toy_runs" in r.stderr
