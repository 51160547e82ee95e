"""Data that builds a model is disjoint from every item a benchmark evaluates (ids and normalised sentences).

The shared helper is `dike.evaluate.assert_disjoint`; here it is applied to every data source dike builds models
from today (the StereoSet training half, the calibration sources, the distillation text), and shown to fail where
the data does overlap (the training half against the full StereoSet).
"""
import pandas as pd
import pytest

from dike.core import DataError
from dike.evaluate import assert_disjoint, leakage
import dike.data as D


def test_stereoset_training_half_is_disjoint_from_heldout(data_dir):
    train = D.load("stereoset", split="train", data_dir=data_dir)
    used = pd.concat([pd.DataFrame({"dataset": "stereoset", "item_id": train.item_id, "text": train[c]})
                      for c in ("context", "stereotype", "anti_stereotype", "unrelated")], ignore_index=True)
    assert_disjoint(used, ["stereoset_heldout"])
    # the helper can fail: the full StereoSet contains the training half, by id and by text
    hits = leakage(used, ["stereoset"])
    assert set(hits.kind) == {"id", "text"} and hits[hits.kind == "id"].item_id.nunique() == len(train)
    with pytest.raises(DataError, match="overlap"): assert_disjoint(used, ["stereoset"])


def _everything_but(*names):
    from dike.evaluate import BENCHMARKS
    D.discover()
    return sorted(set(BENCHMARKS) - set(names))


def test_calibration_sources_are_disjoint_from_every_benchmark(data_dir, monkeypatch):
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.corpora import calib_pool
    used = pd.concat([calib_pool("wikitext"), calib_pool("bold")], ignore_index=True).assign(dataset="")
    assert len(used) > 20000
    assert_disjoint(used, _everything_but())
    # the raw WikiText-2 valid paragraphs do leak (one Wikipedia article is also a GAP test item): the pool dropped them
    assert calib_pool("wikitext").attrs["dropped_leaks"] == ["wikitext2/valid/1831", "wikitext2/valid/1835", "wikitext2/valid/3268"]
    from dike.data import data_file
    lines = data_file("wikitext2/valid.txt").read_text(encoding="utf-8").splitlines()
    raw = pd.DataFrame({"dataset": "", "item_id": ["1831", "1835"], "text": [lines[1830], lines[1834]]})
    assert set(leakage(raw, ["gap"]).item_id) == {"test-606"}


def test_distillation_text_is_disjoint_from_every_benchmark(data_dir, monkeypatch):
    "BOLD Wikipedia + GAP development: GAP's development split is where its probe is fit, never an evaluated item."
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.corpora import text_pool
    pool = text_pool()
    calib = pool[pool.split == "calib"]
    used = pd.DataFrame({"dataset": "", "item_id": calib.item_id, "text": calib.text})
    assert_disjoint(used, _everything_but())


def test_methods_fit_part_probe_select_part_and_heldout_are_disjoint(data_dir, monkeypatch):
    """Issue 30 item 3: the pairs every method trains on (teach, cda, leace, steer, the fair methods: the fit part), the
    rows where strengths, layers and the concept probe are fit or chosen (the select part) and the evaluated held-out
    half share no item and no sentence; and the concept probe reads its fitting rows from the select part only."""
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.corpora import fair_pair_rows
    from dike.teach import load_concept_probe
    D.discover()
    def used(rows):
        return pd.concat([pd.DataFrame({"dataset": "stereoset", "item_id": rows.item_id, "text": rows[c]})
                          for c in ("stereotype", "anti_stereotype")], ignore_index=True)
    fit, sel = fair_pair_rows(None, 0, "fit"), fair_pair_rows(None, 0, "select")
    assert len(fit) > 500 and len(sel) > 400 and not set(fit.item_id) & set(sel.item_id)     # intrasentence: 553, 456
    assert_disjoint(used(fit), ["stereoset_select", "stereoset_heldout"])
    assert_disjoint(used(sel), ["stereoset_heldout"])
    probe = load_concept_probe()
    assert set(probe.split) == {"select", "heldout"} and set(probe.item_id[probe.split == "select"]) <= set(sel.item_id)
    with pytest.raises(DataError, match="overlap"): assert_disjoint(used(sel), ["stereoset_select"])   # the check can fail
