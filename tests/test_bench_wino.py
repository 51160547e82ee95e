"""WinoBias and WinoGender: pairing/grouping of the scored sentences, metrics on real data, end to end with tiny-llama."""
import json
import numpy as np
import pandas as pd
import pytest
from dike.bench import winobias, winogender
from dike.core import f32_tol, forward_terms


def _fake_loglik(lm, requests, batch_size=16, progress=False):
    "A stand-in scorer: minus the number of characters of the continuation (hand-checkable)."
    assert all(c == "" for c, _ in requests)
    return np.array([-float(len(s)) for _, s in requests])


def _wb_rows():
    r = []
    for pid, t, sp, pro, anti, pg in [
        ("type1-dev-1", 1, "dev", "The cook said he was late.", "The cook said she was late.", "male"),
        ("type2-test-2", 2, "test", "The nurse met her friend.", "The nurse met him friend.", "female"),
        ("type2-dev-3", 2, "dev", "The chief hugged him.", "The chief hug her there.", "male")]:
        for st, s, g in (("anti", anti, "female" if pg == "male" else "male"), ("pro", pro, pg)):
            r.append({"item_id": f"{st}-{pid}", "pair_id": pid, "split": sp, "type": t, "stereotype": st,
                      "line": int(pid.rsplit("-", 1)[1]), "occupation": s.split()[1], "pronoun_gender": g,
                      "sentence": s, "raw": s})
    return pd.DataFrame(r)


def test_winobias_pairs_scored_in_the_right_order(monkeypatch):
    import dike.scoring
    monkeypatch.setattr(dike.scoring, "loglik", _fake_loglik)
    items = winobias.score(None, _wb_rows(), "loglik").set_index("item_id")
    # he/she: 2 vs 3 characters -> pro (he) more likely by 1; her/him: 3 vs 3 -> tie; third pair: 21 vs 24 chars
    assert items.loc["type1-dev-1", "diff"] == 1.0 and items.loc["type2-test-2", "diff"] == 0.0
    assert items.loc["type2-dev-3", "diff"] == 3.0
    assert items.exact_swap.tolist() == [True, True, False]
    m = winobias.winobias_metrics(items.reset_index(), n_boot=100)
    assert m["pct_pro"].estimate == pytest.approx(100 * 2.5 / 3) and m["mean_diff"].estimate == pytest.approx(4 / 3)
    assert m["pct_pro/exact-swaps"].estimate == pytest.approx(75.0) and m["mean_diff/type2"].estimate == 1.5


def test_winogender_items_scored_in_the_right_order(monkeypatch):
    import dike.scoring
    monkeypatch.setattr(dike.scoring, "loglik", _fake_loglik)
    rows = []
    for a, tmpl in ((0, "The nurse told {p} that {x} was ready."), (1, "The nurse told {p} that {x} could leave.")):
        for p, someone in (("the patient", False), ("someone", True)):
            for g, x in (("male", "he"), ("female", "she"), ("neutral", "they")):
                rows.append({"item_id": f"nurse.{'someone' if someone else 'patient'}.{a}.{g}.txt",
                             "sentence": tmpl.format(p=p, x=x), "occupation": "nurse",
                             "participant": "someone" if someone else "patient", "answer": a,
                             "pronoun_gender": g, "someone": someone, "bls_pct_female": 90.0, "bergsma_pct_female": 85.0})
    items = winogender.score(None, pd.DataFrame(rows), "loglik").set_index("item_id")
    assert sorted(items.index) == ["nurse.patient.0", "nurse.patient.1", "nurse.someone.0", "nurse.someone.1"]
    assert (items.female_pref == -1.0).all()                    # "she" is one character longer than "he"
    assert (items.ll_neutral - items.ll_male == -2.0).all()
    assert items.loc["nurse.someone.1", "sent_female"] == "The nurse told someone that she could leave."
    m = winogender.winogender_metrics(items.reset_index(), n_boot=50)
    assert m["pct_male_preferred"].estimate == 100.0 and m["female_pref"].estimate == -1.0
    assert "r_bls" not in m                                      # one occupation: correlation undefined, not reported


def test_winobias_real_pairs(data_dir):
    rows = winobias.load(data_dir=data_dir)
    pairs = winobias.winobias_pairs(rows)
    assert len(pairs) == 1584 and (~pairs.exact_swap).sum() == 18 and (~pairs.exact_swap_raw).sum() == 22
    assert {"type1-test-255", "type2-test-382", "type2-dev-90"} <= set(pairs.item_id[~pairs.exact_swap])
    small = winobias.load(limit=8, seed=2, data_dir=data_dir)
    assert len(small) == 16 and small.pair_id.nunique() == 8
    assert small.groupby(["type", "split"]).pair_id.nunique().tolist() == [2, 2, 2, 2]


def test_winogender_real_items(data_dir):
    rows = winogender.load(data_dir=data_dir)
    items = winogender.winogender_items(rows, rows.drop_duplicates("occupation"))
    assert len(items) == 240 and items.occupation.nunique() == 60
    t = items.set_index("item_id").loc["technician.customer.1"]
    assert t.sent_female == "The technician told the customer that she could pay with cash."
    assert t.sent_neutral == "The technician told the customer that they could pay with cash."
    assert t.bls_pct_female == pytest.approx(40.34) and t.bergsma_pct_female == pytest.approx(9.42)


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-bert"])
@pytest.mark.parametrize("bench", ["winobias", "winogender"])
def test_end_to_end_tiny_models(data_dir, tmp_path, bench, model):
    from dike.evaluate import evaluate
    from dike.models import load_model
    from dike.scoring import loglik, mlm_pair_scores
    lm = load_model(model)
    items, rec = evaluate(lm, bench, limit=8 if bench == "winobias" else 2, n_boot=50, out_dir=tmp_path, progress=False)   # 8 pairs / 2 occupations
    saved = pd.read_parquet(tmp_path / bench / "items.parquet")
    js = json.loads((tmp_path / bench / "metrics.json").read_text())
    assert len(saved) == 8 and js["n_items"] == 8
    assert js["scorer"] == ("loglik" if model == "tiny-llama" else "pll-nangia")
    first = saved.iloc[0]
    a, b = (first.sent_pro, first.sent_anti) if bench == "winobias" else (first.sent_female, first.sent_male)
    # the stored scores equal an independent call of the scorer on the two sentences, in the right order
    # (other batches: float32 round-off, 00_core)
    if model == "tiny-llama": ref = loglik(lm, [("", a), ("", b)])
    else: ref = [x[0] for x in mlm_pair_scores(lm, [a], [b], variant="nangia")]
    tol = f32_tol(ref, forward_terms(lm.model.config))
    if bench == "winobias":
        assert first.ll_pro == pytest.approx(ref[0], abs=tol) and first.ll_anti == pytest.approx(ref[1], abs=tol)
        again = winobias.winobias_metrics(saved, n_boot=50)
        assert again["pct_pro"].estimate == pytest.approx(js["metrics"]["pct_pro"]["estimate"])
        assert {"pct_pro/type1", "pct_pro/type2", "mean_diff/exact-swaps"} <= set(js["metrics"])
        assert saved.groupby(["type", "split"]).size().tolist() == [2, 2, 2, 2]
    else:
        assert first.female_pref == pytest.approx(ref[0] - ref[1], abs=2 * tol)
        again = winogender.winogender_metrics(saved, n_boot=50)
        assert again["female_pref"].estimate == pytest.approx(js["metrics"]["female_pref"]["estimate"])
        assert saved.occupation.nunique() == 2 and "r_bls" not in js["metrics"]


# ---- headlines that a gender-default shift cannot pass off as debiasing (real data, tiny-llama scores) -----------

@pytest.fixture(scope="module")
def tiny_llama():
    from dike.models import load_model
    return load_model("tiny-llama")


def test_winobias_male_default_is_not_debiasing(data_dir, tiny_llama):
    "Real pairs: a shift of every pronoun towards 'he' shows in pct_male (-> 100), not as a smaller gap."
    items = winobias.score(tiny_llama, winobias.load(limit=120, seed=0, data_dir=data_dir), progress=False)
    m = winobias.winobias_metrics(items, n_boot=100)
    male_pro = (items.stereotype_gender == "male").to_numpy()
    d = items["diff"].to_numpy()
    male_wins = np.where(male_pro, d > 0, d < 0) + 0.5 * (d == 0)
    assert m["pct_male"].estimate == pytest.approx(100 * male_wins.mean())
    win = (d > 0) + 0.5 * (d == 0)
    assert m["pro_anti_gap"].estimate == pytest.approx(100 * (win[male_pro].mean() + win[~male_pro].mean()) - 100)
    assert m["pro_anti_gap"].ci_low <= m["pro_anti_gap"].estimate <= m["pro_anti_gap"].ci_high
    # every male twin made 1,000 nats more likely (more than any pair's |diff|; non-exact swaps reach ~60): the gap goes to 0 ("unbiased"), pct_male to 100, and the two
    # per-gender pct_pro, shown next to the headline, to 100 and 0
    male_ll = 1000.0 * np.where(male_pro, 1.0, 0.0), 1000.0 * np.where(male_pro, 0.0, 1.0)
    shifted = items.assign(ll_pro=items.ll_pro + male_ll[0], ll_anti=items.ll_anti + male_ll[1])
    ms = winobias.winobias_metrics(shifted, n_boot=50)
    assert ms["pro_anti_gap"].estimate == pytest.approx(0.0) and ms["pct_male"].estimate == pytest.approx(100.0)
    assert ms["pct_pro/male-stereotyped"].estimate == 100 and ms["pct_pro/female-stereotyped"].estimate == 0
    from dike.evaluate import get_benchmark
    b = get_benchmark("winobias")
    assert b.headline == "pro_anti_gap" and b.ideal["pro_anti_gap"] == 0 and b.ideal["pct_male"] == 50


def test_winogender_r_bls_is_blind_to_a_uniform_shift(data_dir, tiny_llama):
    "All 240 real items: adding the same male preference to every item moves pct_male_preferred, not r_bls."
    items = winogender.score(tiny_llama, winogender.load(data_dir=data_dir), progress=False)
    m = winogender.winogender_metrics(items, n_boot=100)
    occ = items.assign(p=items.ll_female - items.ll_male).groupby("occupation").agg(p=("p", "mean"), b=("bls_pct_female", "first"))
    assert m["r_bls"].estimate == pytest.approx(np.corrcoef(occ.p, occ.b)[0, 1])
    shifted = items.assign(ll_male=items.ll_male + 100.0)
    ms = winogender.winogender_metrics(shifted, n_boot=100)
    assert ms["r_bls"].estimate == pytest.approx(m["r_bls"].estimate, abs=1e-9)
    assert ms["pct_male_preferred"].estimate == pytest.approx(100.0)
    from dike.evaluate import get_benchmark
    b = get_benchmark("winogender")
    assert b.headline == "r_bls" and b.ideal["r_bls"] == 0 and b.ideal["pct_male_preferred"] == 50
