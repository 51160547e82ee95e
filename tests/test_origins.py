"""Origins sweeps: scoped cells of one spec on a tiny model, paired against the base, heat map, resume, CLI."""
import json, subprocess, sys

import numpy as np
import pandas as pd
import pytest


def test_tiny_sweep_end_to_end(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.models import load_model
    from dike.origins import run_origins, fig_origins, additivity
    kw = dict(limits={"crows_pairs": 12}, n_bands=2, modules=["q", "up"], n_boot=100)
    tab = run_origins(load_model("tiny-llama"), "magnitude:0.5", ["crows_pairs"], tmp_path, **kw)
    head = tab[tab.headline]
    assert head.metric.unique().tolist() == ["pct_stereotype"] and len(head) == 1 + 2 + 2 + 4
    assert set(head.spec) >= {"magnitude:0.5", "magnitude:0.5:layers=0", "magnitude:0.5:modules=up",
                              "magnitude:0.5:layers=1:modules=q"}
    assert head.p_holm.between(0, 1).all() and (head.ci_low <= head.delta + 1e-12).all()
    add = additivity(head).set_index("family")
    w = head.delta[head.family == "whole"].item()
    assert add.loc["band", "sum_of_cells"] == pytest.approx(head.delta[head.family == "band"].sum())
    assert add.loc["band", "interaction"] == pytest.approx(w - add.loc["band", "sum_of_cells"])
    assert [p.name for p in fig_origins(tab, tmp_path / "fig")] == ["origins.pdf", "origins.png"]
    assert len(list((tmp_path / "cells").glob("*.parquet"))) == 9
    again = run_origins(load_model("tiny-llama"), "magnitude:0.5", ["crows_pairs"], tmp_path, **kw)   # resumed
    key = ["cell", "metric"]
    assert again.sort_values(key).delta.tolist() == tab.sort_values(key).delta.tolist()
    # item-level additivity is on the signed margin score_more − score_less (likelihood_diff is its absolute value)
    from dike.origins import items_path
    ia = pd.read_parquet(tmp_path / "additivity.parquet").set_index("family")
    b0, w0 = (pd.read_parquet(items_path(tmp_path, c, "crows_pairs")) for c in ("base", head.cell[head.family == "whole"].item()))
    assert (ia.margin == "signed").all() and ia.loc["band", "whole"] == pytest.approx(
        ((w0.score_more - w0.score_less) - (b0.score_more - b0.score_less)).mean())
    ia.drop(columns="margin").reset_index().to_parquet(tmp_path / "additivity.parquet")     # as a sweep wrote it before
    monkeypatch.setattr("dike.models.load_model", lambda *a, **k: pytest.fail("a finished sweep loaded its model"))
    run_origins("tiny-llama", "magnitude:0.5", ["crows_pairs"], tmp_path, **kw)              # finished: no model loaded
    again = pd.read_parquet(tmp_path / "additivity.parquet").set_index("family")
    assert (again.margin == "signed").all() and again.n_cells.to_dict() == ia.n_cells.to_dict() == {"band": 2, "module": 2, "cell": 4}


def test_cli_origins_refuses_a_scoped_spec(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dike.cli", "origins", "tiny-llama", "magnitude:0.5:layers=0", "crows_pairs",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "already scoped" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_origins_runs_a_sweep_file(data_dir, tmp_path):
    f = tmp_path / "origins.yaml"
    f.write_text("name: t\nsweeps:\n  - {model: tiny-llama, spec: 'rtn:4', benchmarks: [crows_pairs], limit: {crows_pairs: 8},"
                 " bands: 2, families: [whole, band], n_boot: 50}\n")
    env = {**__import__("os").environ, "DIKE_DATA_DIR": str(data_dir), "DIKE_RESULTS_DIR": str(tmp_path / "r")}
    r = subprocess.run([sys.executable, "-m", "dike.cli", "origins", str(f)], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    tab = pd.read_parquet(tmp_path / "r" / "origins" / "tiny-llama__rtn_4" / "origins.parquet")
    assert sorted(tab.family.unique()) == ["band", "whole"] and tab[tab.headline].shape[0] == 1 + 2
    bad = subprocess.run([sys.executable, "-m", "dike.cli", "origins", str(f), "rtn:4"], capture_output=True, text=True,
                         timeout=300, env=env)
    assert bad.returncode == 2 and "study file takes no spec" in bad.stderr


def test_study_file_writes_paper_figures_and_macros(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.origins import run_study
    f = tmp_path / "study.yaml"
    f.write_text("name: ostudy\npaper: true\nsweeps:\n  - {model: tiny-llama, spec: 'magnitude:0.5', benchmarks: [crows_pairs],"
                 " limit: {crows_pairs: 8}, bands: 2, modules: [q, up], n_boot: 50}\n"
                 "heads: {model: tiny-llama, specs: ['magnitude:0.5'], n_train: 6, n_heldout: 6, k: 2, n_boot: 50}\n")
    r = run_study(f, results=tmp_path / "r", paper_dir=tmp_path / "paper", progress=False)
    mac = (tmp_path / "paper" / "macros" / "ostudy.tex").read_text()
    whole = r["tables"]["magnitude:0.5"].query("family == 'whole' and headline").delta.item()
    assert f"\\newcommand{{\\DikeOriginsMagnitudeZeropFiveCrowsPairsPctStereotypeWhole}}{{{whole:.3g}}}" in mac
    assert f"\\newcommand{{\\DikeHeadsAblationRho}}{{{r['heads']['ablation']['rho']:.3g}}}" in mac
    gen = json.loads((tmp_path / "paper" / "generated.json").read_text())["grids"]["ostudy"]
    assert gen["command"].startswith("dike origins") and "figures/ostudy/heads/heads.pdf" in gen["files"]
    assert "figures/ostudy/tiny-llama__magnitude_0.5/origins.png" in gen["files"]
    assert all((tmp_path / "paper" / p).is_file() for p in gen["files"])
