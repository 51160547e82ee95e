"""SEAT: parity of effect size and p-value with direct (loop / itertools) computations, scoring plumbing, end to end."""
import itertools, json, math, statistics
from types import SimpleNamespace
import numpy as np
import pandas as pd
import pytest
from dike.bench import seat
from dike.core import f32_tol, forward_terms


def _direct_s(w, A, B):
    cos = lambda u, v: sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))
    return statistics.fmean(cos(w, a) for a in A) - statistics.fmean(cos(w, b) for b in B)


def _rows_and_emb(nx, ny, na, nb, dim=5, seed=0, test="toy"):
    rng = np.random.default_rng(seed)
    sets = ["targ1"] * nx + ["targ2"] * ny + ["attr1"] * na + ["attr2"] * nb
    rows = pd.DataFrame({"item_id": [f"{test}-{i}" for i in range(len(sets))], "test": test, "set": sets,
                         "category": [s.upper() for s in sets], "text": [f"{test} sentence {i}." for i in range(len(sets))]})
    emb = rng.normal(size=(len(sets), dim)) + np.where(np.array(sets) == "targ1", 0.4, 0.0)[:, None]
    return rows, emb


def test_effect_size_matches_direct_loops():
    rows, emb = _rows_and_emb(6, 6, 5, 7)
    items = seat.seat_items(rows, emb)
    X, Y, A, B = (emb[(rows.set == k).to_numpy()].tolist() for k in seat.SETS)
    sx, sy = [_direct_s(w, A, B) for w in X], [_direct_s(w, A, B) for w in Y]
    d = (statistics.fmean(sx) - statistics.fmean(sy)) / statistics.stdev(sx + sy)   # sample std, as sent-bias
    np.testing.assert_allclose(items.s.to_numpy(), sx + sy, rtol=0, atol=1e-12)
    m = seat.seat_metrics(items, n_boot=100)
    assert m["effect_size/toy"].estimate == pytest.approx(d, abs=1e-12)
    # ddof=0 would give a different number: the test can tell the two apart
    assert abs(d - (statistics.fmean(sx) - statistics.fmean(sy)) / statistics.pstdev(sx + sy)) > 1e-3


def _itertools_p(sx, sy):
    xy, obs = np.concatenate([sx, sy]), np.sum(sx)
    combos = np.array(list(itertools.combinations(range(len(xy)), len(sx))))
    return float(np.mean(xy[combos].sum(1) >= obs - 1e-12)), len(combos)


def test_exact_pvalue_matches_itertools():
    rows, emb = _rows_and_emb(6, 6, 4, 4, seed=3)
    items = seat.seat_items(rows, emb)
    sx, sy = items.s[items.set == "targ1"].to_numpy(), items.s[items.set == "targ2"].to_numpy()
    p, n = _itertools_p(sx, sy)
    m = seat.seat_metrics(items, n_boot=50)
    assert n == 924 and m["p_value/toy"].n == 924 and m["p_value/toy"].unit == "partition (exact)"
    assert m["p_value/toy"].estimate == pytest.approx(p, abs=1e-12)


def test_sampled_pvalue_follows_sent_bias_rule():
    rng = np.random.default_rng(5)
    sx, sy = rng.normal(0.2, 1, 10), rng.normal(0, 1, 10)        # C(20,10) = 184,756 > 100,000: sampled
    p_exact, n = _itertools_p(sx, sy)
    r = seat.permutation_pvalue(sx, sy, n_samples=100_000, seed=0)
    assert not r["exact"] and r["n_permutations"] == 100_000 and n == 184_756
    k = r["p_value"] * 100_000
    assert abs(k - round(k)) < 1e-6 and round(k) >= 1                # (1 + #exceedances of 99,999 draws) / 100,000
    assert r["ci_low"] <= p_exact <= r["ci_high"]
    assert abs(r["p_value"] - p_exact) < 0.01


def test_score_embeds_each_text_once(monkeypatch):
    import dike.scoring
    rows, emb = _rows_and_emb(3, 3, 2, 2, seed=1)
    rows = pd.concat([rows, rows.assign(test="toy2", item_id=rows.item_id + "b")], ignore_index=True)  # same texts
    table = dict(zip(rows.text[:10], emb))
    calls = []
    def fake_embed(lm, texts, pooling="mean", batch_size=64, normalize=True, progress=False):
        calls.append(list(texts)); assert pooling == "mean" and normalize
        return np.stack([table[t] for t in texts])
    monkeypatch.setattr(dike.scoring, "embed", fake_embed, raising=False)
    items = seat.score(SimpleNamespace(tokenizer=SimpleNamespace(pad_token_id=0)), rows, "embed-mean")
    assert len(calls) == 1 and sorted(calls[0]) == sorted(set(rows.text))
    np.testing.assert_allclose(items.s[items.test == "toy"].to_numpy(), items.s[items.test == "toy2"].to_numpy())
    np.testing.assert_allclose(items.s[items.test == "toy"].to_numpy(), seat.seat_items(rows[:10], emb).s.to_numpy())
    with pytest.raises(Exception, match="unknown SEAT scorer"):
        seat.score(None, rows, "cls")


def test_real_tests_load(data_dir):
    rows = seat.load(data_dir=data_dir)
    assert sorted(rows.test.unique()) == sorted(seat.DEFAULT_TESTS)
    sizes = rows.groupby(["test", "set"]).size()
    assert sizes["sent-weat6", "targ1"] == 64 and sizes["sent-weat6", "attr2"] == 112
    assert sizes["sent-religion1b", "targ2"] == 84
    assert len(seat.load(tests="all", data_dir=data_dir).test.unique()) == 50
    small = seat.load(limit=3, seed=1, data_dir=data_dir)                  # limit = whole tests
    assert small.test.nunique() == 3 and small.attrs["files"] == rows.attrs["files"]
    assert (small.groupby(["test", "set"]).size() == sizes[sorted(set(small.test))]).all()


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
def test_end_to_end_tiny_models(data_dir, tmp_path, model):
    from dike.evaluate import evaluate
    from dike.models import load_model
    lm = load_model(model)
    items, rec = evaluate(lm, "seat", limit=2, n_boot=50, out_dir=tmp_path, progress=False)
    rows = seat.load(limit=2, data_dir=data_dir)
    t0 = sorted(rows.test.unique())[0]
    out = tmp_path / "seat"
    saved = pd.read_parquet(out / "items.parquet")
    js = json.loads((out / "metrics.json").read_text())
    n_targets = int(rows["set"].isin(["targ1", "targ2"]).sum())          # one item per target sentence
    assert len(saved) == n_targets and js["n_items"] == n_targets and js["scorer"] == "embed-mean"
    assert {f"effect_size/{t}" for t in rows.test.unique()} <= set(js["metrics"])
    # metrics are a function of items.parquet alone
    again = seat.seat_metrics(saved, n_boot=50)
    assert again[f"effect_size/{t0}"].estimate == pytest.approx(js["metrics"][f"effect_size/{t0}"]["estimate"])
    # one association score recomputed as bias-bench's SEAT runner does it: one text at a time (no padding), the
    # backbone's last hidden state averaged over all tokens (special tokens included), then L2-normalised
    import torch
    def bb_encode(text):
        with torch.no_grad():
            h = lm.model.base_model(**lm.tokenizer(text, return_tensors="pt")).last_hidden_state.mean(dim=1).view(-1)
        v = h.double().numpy()
        return v / np.linalg.norm(v)
    g = rows[rows.test == t0]
    E = {k: np.stack([bb_encode(t) for t in g.text[g.set == k]]) for k in seat.SETS}
    ref = (E["targ1"] @ E["attr1"].T).mean(1) - (E["targ1"] @ E["attr2"].T).mean(1)
    got = saved[(saved.test == t0) & (saved.set == "targ1")]
    assert got.text.tolist() == g.text[g.set == "targ1"].tolist()
    np.testing.assert_allclose(got.s.to_numpy(), ref, atol=2 * f32_tol(1.0, forward_terms(lm.model.config)))   # two cosines of unit vectors
