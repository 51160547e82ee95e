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
    from dike.compress.core import calib_pool
    from dike.bench.bold import text_pool
    wiki = calib_pool("wikitext")
    used = pd.DataFrame({"dataset": "", "item_id": [f"wikitext2/valid/{k}" for k in range(len(wiki))], "text": wiki})
    bold = text_pool(sources=("bold",))
    used = pd.concat([used, pd.DataFrame({"dataset": "", "item_id": bold.item_id, "text": bold.text})], ignore_index=True)
    assert len(used) > 20000
    assert_disjoint(used, _everything_but())


def test_distillation_text_is_disjoint_from_every_benchmark(data_dir, monkeypatch):
    "BOLD Wikipedia + GAP development: GAP's development split is where its probe is fit, never an evaluated item."
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.bench.bold import text_pool
    pool = text_pool()
    calib = pool[pool.split == "calib"]
    used = pd.DataFrame({"dataset": "", "item_id": calib.item_id, "text": calib.text})
    assert_disjoint(used, _everything_but())
