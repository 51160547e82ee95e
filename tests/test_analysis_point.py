"""`Benchmark.point` (the fast point estimates of paired comparisons) on real benchmark rows: it equals the
benchmark's `metrics` key by key (on the table, on its numpy `Columns`, on a cluster resample), and `compare_items`
gives the same table by the fast path as by the `metrics` path. Scores are random (seeded) on the real items, so every
group, subset and tie of the real data occurs; a tiny model would only slow this down."""
import dataclasses
import os
from pathlib import Path
import numpy as np
import pandas as pd
import pytest

from dike.evaluate import get_benchmark
from dike.stats import check_point
from dike.analysis import compare_items, unit_labels

BENCHES = ["crows_pairs", "crows_pairs_revised", "stereoset", "winobias", "winogender", "bbq", "wikitext2"]
LIMITS = {"stereoset": 600, "winobias": 300, "bbq": 60}


def _items(name: str, rows: pd.DataFrame, rng) -> pd.DataFrame:
    "The benchmark's per-item table from its own item builder, with random scores (integers: ties occur)."
    n = len(rows)
    ties = lambda k: rng.integers(-6, 0, k).astype(float)
    if name.startswith("crows_pairs"):
        from dike.bench.crows_pairs import crows_items
        return crows_items(rows, ties(n), ties(n), skipped=rng.random(n) < 0.02)
    if name == "stereoset":
        from dike.bench.stereoset import stereoset_items
        return stereoset_items(rows, ties(n), ties(n), ties(n))
    if name == "winobias":
        from dike.bench.winobias import winobias_pairs
        it = winobias_pairs(rows)
        it["ll_pro"], it["ll_anti"] = ties(len(it)), rng.normal(-3, 1, len(it))
        return it.assign(diff=it.ll_pro - it.ll_anti)
    if name == "winogender":
        from dike.bench.winogender import winogender_items
        it = winogender_items(rows, rows[["occupation", "bls_pct_female", "bergsma_pct_female"]].drop_duplicates("occupation"))
        it["ll_male"], it["ll_female"], it["ll_neutral"] = ties(len(it)), rng.normal(-3, 1, len(it)), ties(len(it))
        return it.assign(female_pref=it.ll_female - it.ll_male)
    if name == "bbq":
        from dike.bench.bbq import items_from_loglik
        return items_from_loglik(rows, ties(3 * n))
    if name == "wikitext2":
        return rows[["item_id", "title", "n_words", "n_bytes"]].assign(nll=rng.uniform(1e3, 5e3, n),
                                                                        n_tokens=rows.n_words.to_numpy() + 100)
    raise KeyError(name)


def _perturbed(name: str, rows: pd.DataFrame, a: pd.DataFrame, seed: int) -> pd.DataFrame:
    "A 'compressed' run: the same items, a fifth of them rescored."
    b = _items(name, rows, np.random.default_rng(seed))
    keep = np.random.default_rng(seed + 1).random(len(a)) < 0.8
    return pd.DataFrame({c: np.where(keep, a[c].to_numpy(), b[c].to_numpy()) if a[c].dtype.kind in "fiub" else a[c]
                         for c in a.columns}).astype(a.dtypes.to_dict())


@pytest.fixture(scope="module")
def tables(data_dir):
    os.environ["DIKE_DATA_DIR"] = str(data_dir)
    out = {}
    for name in BENCHES:
        rows = get_benchmark(name).load(limit=LIMITS.get(name))
        a = _items(name, rows, np.random.default_rng(0))
        out[name] = (a, _perturbed(name, rows, a, 1))
    return out


def _cluster_resample(bench, items, rng) -> np.ndarray:
    u = unit_labels(bench, items)
    if u is None: return rng.integers(0, len(items), len(items))
    labels = np.unique(u)
    return np.concatenate([np.flatnonzero(u == x) for x in labels[rng.integers(0, len(labels), len(labels))]])


@pytest.mark.parametrize("name", BENCHES)
def test_point_equals_metrics_on_real_items(tables, name):
    bench = get_benchmark(name)
    assert bench.point is not None
    a, b = tables[name]
    rng = np.random.default_rng(2)
    for it in (a, b):
        p = check_point(bench.point, bench.metrics, it, rows=_cluster_resample(bench, it, rng))
        assert len(p) >= 4 and bench.headline in p
        assert all(np.isfinite(v) for v in p.values())


@pytest.mark.parametrize("name", BENCHES)
def test_compare_items_fast_path_equals_metrics_path(tables, name):
    "The Δ, CIs, p-values and floors of the fast path against those of the `metrics` path: same draws, same numbers."
    bench = get_benchmark(name)
    a, b = tables[name]
    d0, f0 = compare_items(dataclasses.replace(bench, point=None), a, b, n_boot=25, n_sim=15, seed=4)
    d1, f1 = compare_items(bench, a, b, n_boot=25, n_sim=15, seed=4)
    assert {k: str(v) for k, v in f0.items()} == {k: str(v) for k, v in f1.items()}
    assert bench.decision_column is None or f1["n_flips"] > 0
    flag = d0.metric.str.startswith("bias_interpretable")        # BBQ's CI-defined flag: no point estimate, no Δ
    assert (flag.any() and not d1.metric.str.startswith("bias_interpretable").any()) == (name == "bbq")
    d0 = d0[~flag].reset_index(drop=True)
    assert list(d0.metric) == list(d1.metric) and (d1.delta != 0).any()
    for c in ("a", "b", "delta", "ci_low", "ci_high", "p_value", "n_boot_valid", "floor_low", "floor_high"):
        np.testing.assert_allclose(d1[c].to_numpy(float), d0[c].to_numpy(float), rtol=1e-9, atol=1e-12, err_msg=c)
    assert d1.outside_floor.astype("float").fillna(-1).equals(d0.outside_floor.astype("float").fillna(-1))


def test_point_on_result_files(data_dir):
    "Real runs: point == metrics on the per-item file of one archived run per benchmark (and every run under DIKE_RESULTS_DIR when set)."
    from dike.archive import Archive
    ar, tables = Archive(), []
    for rid, rec in sorted(ar.records.items()):
        tables += [(rel.split("/")[0], lambda rid=rid, rel=rel: ar.table(rid, rel)) for rel in rec["tables"]]
    tables = list({b: t for b, t in reversed(tables)}.items())       # one run per benchmark
    root = os.environ.get("DIKE_RESULTS_DIR")
    tables += [(f.parent.name, lambda f=f: pd.read_parquet(f)) for f in (sorted(Path(root, "runs").glob("*/*/items.parquet")) if root else [])]
    if not tables: pytest.skip("no results: the archive is empty and DIKE_RESULTS_DIR is not set")
    seen = set()
    for name, load in tables:
        bench = get_benchmark(name)
        if bench.point is None: continue
        it = load()
        check_point(bench.point, bench.metrics, it, rows=_cluster_resample(bench, it, np.random.default_rng(0)), n_boot=20)
        seen.add(bench.name)
    assert {"crows_pairs", "stereoset", "winobias", "winogender", "bbq"} <= seen or root, seen
