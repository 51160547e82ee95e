"""Teaching fairness (dike.teach) and its baselines (dike.debias) on the tiny random Llama with real StereoSet pairs.

s = 0 is the base model per item; W(s) - W(0) is linear in s; the adapter cache ignores s; the step round-trips through
`dike compress` and `dike eval --compress`; its data is the fit part of StereoSet's training half (and the check fails on a planted
overlap); composition with compression in both orders; CDA trains and LEACE erases through the registry.
"""
import json
import pandas as pd
import pytest
import torch

from dike.core import DataError, SpecError
from dike.compress.apply import compress, compress_key, weight_digest
from dike.compress.cache import load_compressed
from dike.anatomy import prunable_linears

FAST = "steps=4:pairs=8:bs=4:kl_bs=1:seq=64:lr=0.005:rank=2"


@pytest.fixture
def env(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DIKE_CACHE_DIR", str(tmp_path / "cache"))
    from dike.models import load_model
    return load_model("tiny-llama")


def _teach(lm, s, extra=FAST, pre=""):
    return compress(lm, f"{pre}teach:s={s}:{extra}", n_calib=2, progress=False, report=False)


def test_s0_is_the_base_model_per_item(env):
    from dike.evaluate import evaluate
    lm = env
    t0, r0 = _teach(lm, 0)
    assert weight_digest(t0.model) == weight_digest(lm.model)          # every tensor, byte for byte
    assert r0["steps"][0]["tensors_changed"] == 0 and r0["steps"][0]["merged_layers"] == 0
    t1, _ = _teach(lm, 1)
    assert weight_digest(t1.model) != weight_digest(lm.model)
    ib, _ = evaluate(lm, "stereoset_heldout", limit=12, n_boot=20, progress=False)
    i0, _ = evaluate(t0, "stereoset_heldout", limit=12, n_boot=20, progress=False)
    i1, _ = evaluate(t1, "stereoset_heldout", limit=12, n_boot=20, progress=False)
    cols = ["score_stereotype", "score_anti_stereotype", "score_unrelated"]
    assert (ib[cols] - i0[cols]).abs().to_numpy().max() == 0            # max |delta| = 0 per item
    assert (ib[cols] - i1[cols]).abs().to_numpy().max() > 0             # the taught model does differ


def test_s_scales_the_delta_linearly_and_the_adapter_is_trained_once(env):
    lm = env
    base = {n: l.weight.detach().clone() for n, l in prunable_linears(lm.model).items()}
    outs = {s: _teach(lm, s) for s in (0.5, 1, 1.5, -1)}
    reps = {s: r["steps"][0] for s, (_, r) in outs.items()}
    assert [reps[s]["adapter"]["hit"] for s in (0.5, 1, 1.5, -1)] == [False, True, True, True]
    assert len({reps[s]["adapter"]["key"] for s in reps}) == 1           # one adapter for every s
    d = {s: {n: l.weight.detach() - base[n] for n, l in prunable_linears(m.model).items()} for s, (m, _) in outs.items()}
    moved = [n for n in base if d[1][n].abs().max() > 0]
    assert len(moved) == len(base)                                      # every block Linear was adapted
    for n in moved:
        torch.testing.assert_close(d[1.5][n], 3 * d[0.5][n], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(d[-1][n], -d[1][n], rtol=1e-4, atol=1e-6)
    # a different budget is a different adapter
    _, r = _teach(lm, 1, FAST.replace("steps=4", "steps=5"))
    assert r["steps"][0]["adapter"]["hit"] is False and r["steps"][0]["adapter"]["key"] != reps[1]["adapter"]["key"]


def test_the_training_cache_key_ignores_s_but_the_model_key_does_not(env):
    from dike.teach import adapter_key, train_cfg
    from dike.compress.spec import parse_spec
    lm = env
    k = lambda s: adapter_key(lm.model, train_cfg(parse_spec(f"teach:s={s}")[0], ["a"], ["i"], ["t"]))
    assert k(0.5) == k(1) == k(1.5)
    assert adapter_key(lm.model, train_cfg(parse_spec("teach:s=1:steps=7")[0], ["a"], ["i"], ["t"])) != k(1)
    assert compress_key("abc", "teach:s=0.5") != compress_key("abc", "teach:s=1")   # the compressed models differ


def test_teach_step_round_trips_through_the_cli(env, tmp_path, capsys):
    from dike.cli import main
    lm = env
    out = tmp_path / "taught"
    spec = f"teach:s=0.75:{FAST}"
    assert main(["compress", "tiny-llama", spec, "--out", str(out), "--quiet", "--n-calib", "2"]) == 0
    rep = json.loads((out / "report.json").read_text())
    st = rep["steps"][0]
    assert rep["spec"] == "teach:bs=4:kl_bs=1:lr=0.005:pairs=8:rank=2:s=0.75:seq=64:steps=4"   # keywords sorted
    assert st["s"] == 0.75 and st["adapter"]["hit"] is False and len(st["fair_items"]) == 8
    assert rep["calib_items"] and all(i.startswith("wikitext2/valid/") for v in rep["calib_items"].values() for i in v)
    back = load_compressed(out)
    mem, _ = _teach(lm, 0.75)                                            # same adapter (cache hit), same merge
    assert weight_digest(back.model) == weight_digest(mem.model)
    capsys.readouterr()
    for out_ev in ("ev1", "ev2"):                                       # dike eval --compress: compressed, then from the cache
        assert main(["eval", "tiny-llama", "stereoset_heldout", "--compress", spec, "--limit", "6", "--n-boot", "20",
                     "--quiet", "--out", str(tmp_path / out_ev)]) == 0
    m1, m2 = (json.loads((tmp_path / e / "stereoset_heldout" / "metrics.json").read_text()) for e in ("ev1", "ev2"))
    assert m1["model"]["compress"] == spec and m1["n_items"] == 6
    assert m1["model"]["compress_report"]["steps"][0]["method"] == "teach"
    assert (m1["model"]["compress_report"]["cache"]["hit"], m2["model"]["compress_report"]["cache"]["hit"]) == (False, True)
    i1, i2 = (pd.read_parquet(tmp_path / e / "stereoset_heldout" / "items.parquet") for e in ("ev1", "ev2"))
    pd.testing.assert_frame_equal(i1, i2)                               # the saved and reloaded model scores the same


def test_teaching_data_is_the_fit_part_and_the_check_fails_on_a_planted_overlap(env):
    import dike.data as D
    from dike.evaluate import assert_disjoint
    from dike.teach import used_rows
    lm = env
    _, rep = _teach(lm, 1)
    ids = rep["steps"][0]["fair_items"]
    from dike.corpora import fair_pair_rows
    assert set(ids) <= set(fair_pair_rows(None, 0, "fit").item_id)          # the fit part: never where settings are chosen
    used = used_rows(ids)
    assert_disjoint(used, ["stereoset_heldout", "stereoset_select", "crows_pairs", "winobias"])
    held = D.load("stereoset", split="heldout").iloc[0]
    planted = pd.concat([used, pd.DataFrame([{"dataset": "other", "item_id": "planted", "text": held.stereotype}])])
    with pytest.raises(DataError, match="stereoset_heldout text"):
        assert_disjoint(planted, ["stereoset_heldout"])


def test_composition_with_compression_in_both_orders(env):
    lm = env
    a, ra = compress(lm, f"teach:s=1:{FAST}+rtn:4:g32", n_calib=2, progress=False, report=False)
    b, rb = compress(lm, f"rtn:4:g32+teach:s=1:{FAST}", n_calib=2, progress=False, report=False)
    plain, _ = _teach(lm, 1)
    key_base = ra["steps"][0]["adapter"]["key"]
    assert key_base == _teach(lm, 1)[1]["steps"][0]["adapter"]["key"]     # teach first: trained on the base
    assert rb["steps"][1]["adapter"]["key"] != key_base                   # after rtn: trained on the quantized model
    assert rb["steps"][1]["bits"] == 32 and ra["steps"][1]["bits"] == 4
    for n, l in prunable_linears(a.model).items():                        # teach -> rtn: still a 4-bit grid
        w = l.weight.detach().reshape(l.out_features, -1, 32)
        assert int((w.sort(-1).values.diff(dim=-1) != 0).sum(-1).max()) + 1 <= 16, n
    c, rc = compress(lm, f"magnitude:0.5+teach:s=1:{FAST}", n_calib=2, progress=False, report=False)
    assert rc["steps"][1]["masked_layers"] == len(prunable_linears(lm.model))
    for n, l in prunable_linears(c.model).items():                        # pruned weights stay pruned
        assert int((l.weight == 0).sum()) == l.weight.numel() // 2, n


def test_cda_and_leace_steps(env):
    import dike.data as D
    from sklearn.metrics import roc_auc_score
    from dike.teach import CONCEPT_PROBE, concept_rows
    lm = env
    c, rc = compress(lm, "cda:steps=3:pairs=8:bs=4:kl_bs=1:seq=64:lr=0.005:rank=2", n_calib=2, progress=False, report=False)
    st = rc["steps"][0]
    assert st["method"] == "cda" and st["tensors_changed"] > 0 and st["augmented_texts"] == 2 * rc["calib_texts"]
    from dike.corpora import fair_pair_rows
    assert set(st["fair_items"]) <= set(fair_pair_rows(None, 0, "fit").item_id)
    assert "lm_text" in st["history"] and len(st["history"]["lm_text"]) == 3
    # same budget and data as teach, another objective: another adapter
    assert st["adapter"]["key"] != _teach(lm, 1, FAST.replace("steps=4", "steps=3"))[1]["steps"][0]["adapter"]["key"]
    e, re_ = compress(lm, "leace:pairs=60", progress=False, report=False)
    st = re_["steps"][0]
    assert st["class_gap_after"] < 1e-3 * st["class_gap_before"]
    # on the training pairs the erased features carry no linear signal: the probe's training AUC is 0.5
    # (the concept_probe benchmark's probe, fit on LEACE's own 60 fit-part items and scored on those same rows)
    tr = concept_rows("fit", 60)
    rows = pd.concat([tr.assign(split="select"), tr.assign(split="heldout")], ignore_index=True)
    train_auc = lambda m: (lambda d: roc_auc_score(d.label, d.score))(CONCEPT_PROBE.score(m, rows, progress=False))
    pe, pb = train_auc(e), train_auc(lm)
    assert pb > 0.9 and pe < 0.75, (pb, pe)
    with pytest.raises(SpecError, match="must come last"):
        compress(lm, "leace+rtn:4", progress=False)
