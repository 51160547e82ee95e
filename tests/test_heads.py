"""Head attribution on real StereoSet pairs (training half) and its ablation check on held-out pairs, tiny model."""
import numpy as np
import pytest
from dike.core import f32_tol, forward_terms


def _pairs(split, n):
    import dike.data as D
    d = D.load("stereoset", split=split)
    return d[d.task == "intrasentence"].head(n)[["item_id", "target", "stereotype", "anti_stereotype"]]


def test_attribution_and_ablation_on_stereoset_halves(data_dir, monkeypatch):
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.models import load_model
    from dike.anatomy import head_attribution, bias_gap
    from dike.heads import ablation_check
    lm = load_model("tiny-llama")
    train, held = _pairs("train", 12), _pairs("heldout", 12)
    assert not set(train.target) & set(held.target)                    # attribution never sees an evaluated target
    a = head_attribution(lm, train)
    L, H = lm.model.config.num_hidden_layers, lm.model.config.num_attention_heads
    assert len(a) == L * H and np.isfinite(a.attribution).all()
    g0 = float(bias_gap(lm, train).detach())                                # gated vs plain forward: round-off (00_core)
    assert a.gap.iloc[0] == pytest.approx(g0, abs=f32_tol(g0, forward_terms(lm.model.config)))
    pick, rho = ablation_check(lm, a, held, k=2, n_boot=100)
    assert len(pick) == 6 and -1 <= rho["rho"] <= 1 and rho["ci_low"] <= rho["ci_high"]
    assert np.isfinite(pick.measured).all()
