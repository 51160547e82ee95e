"""WikiText-2 perplexity: the documented slice on real data, batched windows = a naive loop, the registry, SmolLM2."""
import time
import numpy as np
import pandas as pd
import pytest
import torch

from dike.bench import wikitext2 as wt
from dike.core import f32_tol, forward_terms


def _naive_nll(lm, text, L, S):
    "One window at a time: feed seq[b:e] alone, score the targets no earlier window scored."
    from dike.scoring import prefix_token_id
    seq = [prefix_token_id(lm.tokenizer)] + lm.tokenizer.encode(text, add_special_tokens=False)
    T, done, b, tot = len(seq) - 1, 0, 0, 0.0
    with torch.inference_mode():
        while done < T:
            e = min(b + L, T)
            lp = torch.log_softmax(lm.model(torch.tensor([seq[b:e]])).logits[0].float(), -1)
            tot -= sum(float(lp[t - 1 - b, seq[t]]) for t in range(done + 1, e + 1))
            done, b = e, b + S
    return tot


def test_slice_on_real_data(data_dir, monkeypatch):
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    rows = wt.load()
    assert len(rows) == wt.N_DOCS == 62 and rows.item_id.is_unique
    assert int(rows.n_words.sum()) == 24273 and rows.n_words.max() == wt.MAX_WORDS == 400
    assert rows.title.iloc[0] == "Robert <unk>" and rows.text.iloc[0].startswith("= Robert <unk> =")
    assert set(rows.attrs["files"]) == {"wikitext2/test.txt"}
    full = wt.split_articles((data_dir / "wikitext2" / "test.txt").read_text(encoding="utf-8"))
    assert len(full) == 62 and all(full[i][1].startswith(rows.text.iloc[i]) for i in range(62))
    assert sorted(wt.load(limit=5, seed=1).item_id) == sorted(wt.load(limit=5, seed=1).item_id)


def test_tiny_llama_batched_windows_equal_naive_loop(data_dir, monkeypatch, tmp_path):
    from dike.models import load_model
    from dike.evaluate import evaluate
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    lm = load_model("tiny-llama")
    rows = wt.load().iloc[[0, 14]]                          # 1,000 and 461 words: many tiny-BPE windows
    rows = rows.assign(text=rows.text.str[:1500])
    got = wt.score(lm, rows, window=96, stride=40, batch_size=3, progress=False)
    assert (got.n_tokens > 96).all()
    ref = [_naive_nll(lm, t, 96, 40) for t in rows.text]            # other batch shapes: round-off (00_core)
    np.testing.assert_allclose(got.nll, ref, rtol=0, atol=f32_tol(ref, forward_terms(lm.model.config)))
    items, rec = evaluate(lm, "wikitext2", limit=2, n_boot=100, out_dir=tmp_path, progress=False)
    assert rec["scorer"] == "perplexity" and rec["n_items"] == 2
    saved = pd.read_parquet(tmp_path / "wikitext2" / "items.parquet")
    assert {"item_id", "nll", "n_tokens", "n_words", "n_bytes"} <= set(saved)
    ppl = rec["metrics"]["perplexity"]
    assert ppl["estimate"] == pytest.approx(np.exp(saved.nll.sum() / saved.n_tokens.sum()))
    assert ppl["unit"] == "document" and ppl["ci_low"] <= ppl["estimate"] <= ppl["ci_high"]


def test_registry_and_scorers():
    from dike.evaluate import get_benchmark, resolve_scorer
    from dike.core import ScoringError
    b = get_benchmark("wikitext2")
    assert b.headline == "perplexity" and b.decision_column is None and b.files == "wikitext2"
    assert resolve_scorer(b, "causal") == "perplexity" and resolve_scorer(b, "mlm") == "pseudo-perplexity"
    with pytest.raises(ScoringError): resolve_scorer(b, "encoder")


def test_paired_comparison_of_two_runs():
    "The per-document table is what dike.stats.paired_cluster_bootstrap needs: a uniform 10% nll rise is a Δ > 0 on every resample."
    from dike.stats import paired_cluster_bootstrap
    rng = np.random.default_rng(0)
    a = pd.DataFrame({"item_id": [f"test/{i:02d}" for i in range(25)], "n_tokens": rng.integers(500, 1500, 25)})
    a["nll"] = a.n_tokens * rng.uniform(2.5, 3.5, 25); a["n_words"] = a.n_tokens // 1.3; a["n_bytes"] = a.n_tokens * 4
    b = a.assign(nll=a.nll * 1.1)
    r = paired_cluster_bootstrap(a, b, wt.point_metrics, n_boot=500).set_index("metric")
    pa = wt.point_metrics(a)["nll_per_token"]
    assert r.loc["nll_per_token", "delta"] == pytest.approx(0.1 * pa)
    # every resample raises the nll of every document by 10%: Δ* = 0.1 x the resample's nll/token, always > 0
    assert 0.1 * 2.5 < r.loc["nll_per_token", "ci_low"] < r.loc["nll_per_token", "delta"] < r.loc["nll_per_token", "ci_high"] < 0.1 * 3.5
    assert (r.p_value == 2 / 501).all() and (r.n_units == 25).all()


@pytest.mark.slow
def test_smollm2_perplexity(data_dir, monkeypatch):
    from dike.models import load_model
    from dike.evaluate import evaluate
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    lm = load_model("smollm2-135m")
    t0 = time.perf_counter()
    items, rec = evaluate(lm, "wikitext2", progress=False)
    dt = time.perf_counter() - t0
    ppl = rec["metrics"]["perplexity"]
    print(f"smollm2-135m wikitext2 perplexity {ppl['estimate']:.3f} [{ppl['ci_low']:.3f}, {ppl['ci_high']:.3f}], "
          f"word_perplexity {rec['metrics']['word_perplexity']['estimate']:.2f}, {int(items.n_tokens.sum())} tokens, {dt:.0f} s")
    assert int(items.n_tokens.sum()) == 31575 and len(items) == 62
    assert np.isfinite(items.nll).all() and (items.nll > 0).all()
    assert 5 < ppl["estimate"] < 100 and ppl["ci_low"] < ppl["estimate"] < ppl["ci_high"]
