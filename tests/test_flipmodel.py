"""Flip model and flip overlap on real items of a tiny model: base vs two compressed variants on CrowS-Pairs."""
import numpy as np
import pytest


def test_flip_model_on_real_crows_items(data_dir, monkeypatch):
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.models import load_model
    from dike.compress.apply import compress
    from dike.evaluate import evaluate, get_benchmark
    from dike.analysis import decisions
    from dike.flipmodel import flip_table, flip_model, flip_overlap, delta_correlation
    lm = load_model("tiny-llama")
    run = lambda m: evaluate(m, "crows_pairs", limit=150, n_boot=1, progress=False)[0]
    base = run(lm)
    bench = get_benchmark("crows_pairs")
    dec = lambda items: decisions(bench, items)[0]
    tabs = {s: flip_table("crows_pairs", base, run(compress(lm, s, report=False, progress=False)[0]), dec, lm.tokenizer)
            for s in ("magnitude:0.5", "rtn:4:g128")}
    t = tabs["magnitude:0.5"]
    assert len(t) == 150 and set(t.flip.unique()) <= {0, 1} and t.zipf.notna().mean() > 0.9
    assert (t.flip == (np.sign(t.signed) != np.sign(t.signed_comp)).astype(int)).mean() > 0.97   # a flip = the sign changes
    m = flip_model(t)
    assert t.flip.sum() >= 5                                              # enough flips to fit: the model is fitted
    assert {"margin", "n_tokens", "zipf"} <= set(m.term) and (m.ci_low <= m.odds_ratio).all() and (m.odds_ratio <= m.ci_high).all()
    o = flip_overlap({k: v.flip.to_numpy() for k, v in tabs.items()}, n_perm=200)
    assert len(o) == 1 and 0 <= o.p_value.item() <= 1
    c = delta_correlation({k: (v.signed_comp - v.signed).to_numpy() for k, v in tabs.items()})
    assert -1 <= c.spearman.item() <= 1
