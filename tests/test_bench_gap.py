"""GAP downstream fairness: official-scorer and fairlearn parity of the metrics, real data, tiny encoder end to end."""
import importlib
import json
import numpy as np
import pandas as pd
import pytest

from dike.bench import gap
from dike.core import f32_tol, forward_terms


def _official_counts(gold, pred, fem):
    "GAP's gap_scorer.py tally restated: every example adds its A and B decision to 'overall' and to its gender."
    sc = {k: dict(tp=0, fp=0, fn=0, tn=0) for k in (None, True, False)}
    for g2, p2, f in zip(gold, pred, fem):
        for key in (None, bool(f)):
            for g, p in zip(g2, p2):
                k = "tp" if g and p else "fp" if p else "fn" if g else "tn"
                sc[key][k] += 1
    def f1(c):
        r = 100.0 * c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
        p = 100.0 * c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
        return 2 * p * r / (p + r) if p + r else 0.0
    return {k: f1(c) for k, c in sc.items()}, sc


def _random_items(n=300, seed=0):
    rng = np.random.default_rng(seed)
    who = rng.integers(0, 3, n)                       # gold: A, B or neither (never both, as in GAP)
    return pd.DataFrame({"item_id": [f"t{i}" for i in range(n)], "gender": rng.choice(["female", "male"], n),
                         "a_coref": (who == 0).astype(int), "b_coref": (who == 1).astype(int),
                         "pred_a": rng.integers(0, 2, n), "pred_b": rng.integers(0, 2, n)})


def test_parity_with_official_scorer_and_fairlearn():
    from fairlearn.metrics import MetricFrame, true_positive_rate, equal_opportunity_difference
    it = _random_items()
    m = gap.gap_metrics(it, n_boot=50)
    gold, pred = it[["a_coref", "b_coref"]].to_numpy(), it[["pred_a", "pred_b"]].to_numpy()
    f1, _ = _official_counts(gold, pred, it.gender == "female")
    assert m["f1"].estimate == pytest.approx(f1[None] / 100)
    assert m["f1/feminine"].estimate == pytest.approx(f1[True] / 100)
    assert m["f1/masculine"].estimate == pytest.approx(f1[False] / 100)
    assert m["bias_ratio"].estimate == pytest.approx(f1[True] / f1[False])
    yt, yp, sf = gold.ravel(), pred.ravel(), np.repeat(it.gender.to_numpy(), 2)
    mf = MetricFrame(metrics=true_positive_rate, y_true=yt, y_pred=yp, sensitive_features=sf)
    assert m["eo_gap"].estimate == pytest.approx(mf.by_group["female"] - mf.by_group["male"])
    assert abs(m["eo_gap"].estimate) == pytest.approx(equal_opportunity_difference(yt, yp, sensitive_features=sf))
    assert m["f1"].ci_low < m["f1"].estimate < m["f1"].ci_high and m["f1"].n == len(it)


def test_metrics_by_hand():
    # 2 feminine examples: gold A / pred A (TP, TN), gold B / pred none (FN, TN) -> P 1, R 1/2, F1 2/3, TPR 1/2
    # 2 masculine: gold A / pred A,B (TP, FP), gold none / pred none (TN, TN) -> P 1/2, R 1, F1 2/3, TPR 1
    it = pd.DataFrame({"item_id": list("abcd"), "gender": ["female", "female", "male", "male"],
                       "a_coref": [1, 0, 1, 0], "b_coref": [0, 1, 0, 0], "pred_a": [1, 0, 1, 0], "pred_b": [0, 0, 1, 0]})
    m = gap.gap_metrics(it, n_boot=20)
    assert m["f1/feminine"].estimate == pytest.approx(2 / 3) and m["f1/masculine"].estimate == pytest.approx(2 / 3)
    assert m["bias_ratio"].estimate == pytest.approx(1.0)
    assert m["eo_gap"].estimate == pytest.approx(-0.5)
    assert m["fpr_gap"].estimate == pytest.approx(0 - 1 / 3)
    assert m["f1"].estimate == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))   # P 2/3, R 2/3


def test_real_data_load_and_offsets(data_dir):
    importlib.import_module("dike.data")
    rows = gap.load_gap(data_dir=data_dir)
    assert rows.groupby("split").size().to_dict() == {"development": 2000, "test": 2000}
    # every annotated offset points at its mention, and every mention covers at least one token
    for m, o in (("Pronoun", "Pronoun-offset"), ("A", "A-offset"), ("B", "B-offset")):
        assert all(t[k:k + len(x)] == x for t, x, k in zip(rows.Text, rows[m], rows[o]))
    models = importlib.import_module("dike.models")
    tok = models.load_model("tiny-bert").tokenizer
    for t, k, x in zip(rows.Text[:300], rows["A-offset"][:300], rows.A[:300]):
        assert gap.token_span_index(tok(t, return_offsets_mapping=True)["offset_mapping"], k, k + len(x))
    s = gap.load_gap(limit=80, seed=1, data_dir=data_dir)                 # 80 in all: a quarter per (split, gender)
    assert s.groupby(["split", "gender"]).size().tolist() == [20, 20, 20, 20]
    assert s.attrs.get("files") and s.attrs["files"] == rows.attrs["files"]
    # gold is never both A and B
    assert not (gap._as_bool(rows["A-coref"]) & gap._as_bool(rows["B-coref"])).any()


def test_tiny_bert_end_to_end(data_dir, tmp_path, monkeypatch):
    importlib.import_module("dike.data"); models = importlib.import_module("dike.models")
    importlib.import_module("dike.scoring")
    from dike.evaluate import evaluate
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    lm = models.load_model("tiny-bert")
    # sample_seed 8: a sample without any of the 1.9% of GAP texts longer than tiny-bert's 512 positions (its small
    # word-level vocabulary makes long sequences; the scorer refuses them rather than truncate)
    items, rec = evaluate(lm, "gap", limit=48, n_boot=50, out_dir=tmp_path, progress=False, sample_seed=8)
    rows = gap.load_gap(limit=48, seed=8, data_dir=data_dir)
    assert len(items) == 24 and set(items.item_id) == set(rows.item_id[rows.split == "test"])
    assert (items.gender.value_counts() == 12).all() and (items.n_train == 24).all()
    assert items[["p_a", "p_b"]].apply(lambda c: c.between(0, 1)).all().all()
    assert ((items.p_a >= 0.5).astype(int) == items.pred_a).all()
    # deterministic up to fp32 reduction order (evaluate sets the thread count): same data and model, same probe
    again = gap.score_gap(lm, rows, progress=False)
    np.testing.assert_allclose(again.p_a.to_numpy(), items.p_a.to_numpy(), atol=f32_tol(1.0, forward_terms(lm.model.config)))
    saved = json.loads((tmp_path / "gap" / "metrics.json").read_text())
    assert saved["metrics"]["f1"]["estimate"] == pytest.approx(gap.gap_scores(
        np.column_stack([items.a_coref, items.b_coref, items.pred_a, items.pred_b, items.gender == "female"]))["f1"])


def test_gap_hardt_end_to_end_tiny_bert(data_dir, tmp_path, monkeypatch):
    "Hardt post-processing on a real model's probe: fitted on validation, scored on test, before and after in one run."
    models = importlib.import_module("dike.models")
    from dike.evaluate import evaluate
    from fairlearn.metrics import equal_opportunity_difference
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    lm = models.load_model("tiny-bert")
    # sample_seed 11: 72 examples (32 development, 8 validation, 32 test) without a text longer than tiny-bert's 512
    items, rec = evaluate(lm, "gap_hardt", limit=72, n_boot=50, out_dir=tmp_path, progress=False, sample_seed=11)
    assert len(items) == 32 and (items.n_train == 32).all() and (items.n_valid == 8).all() and rec["scorer"] == "probe+eo"
    m = rec["metrics"]
    assert {"eo_gap", "raw_eo_gap", "f1", "raw_f1"} <= set(m)
    y = np.concatenate([items.a_coref, items.b_coref]); g = np.concatenate([items.gender] * 2)
    for pre in ("", "raw_"):
        pred = np.concatenate([items[f"{pre}pred_a"], items[f"{pre}pred_b"]])
        assert abs(m[f"{pre}eo_gap"]["estimate"]) == pytest.approx(equal_opportunity_difference(y, pred, sensitive_features=g), abs=1e-12)
    assert ((items.p_a >= 0.5).astype(int) == items.raw_pred_a).all()
