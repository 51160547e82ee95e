"""dike.compress.distill: student init, loss, loss decreasing on real text, determinism, spec errors, save/load."""
import math
import pytest
import torch
import torch.nn.functional as F

from dike.core import SpecError
from dike.compress.spec import parse_spec
from dike.compress.apply import compress
from dike.compress.cache import save_compressed, load_compressed
from dike.models import tiny_model
from dike.compress.distill import student_layer_ids, make_student, kd_loss, mask_tokens, distill


def test_student_layer_ids_distilbert():
    assert student_layer_ids(12, 6) == [0, 2, 4, 7, 9, 11]          # DistilBERT's extraction script
    assert student_layer_ids(30, 15)[:4] == [0, 2, 4, 6] and student_layer_ids(30, 15)[-1] == 29
    assert student_layer_ids(4, 2) == [0, 3]
    with pytest.raises(SpecError):
        student_layer_ids(4, 4)


def test_make_student_copies_blocks_and_config():
    lm = tiny_model("causal", num_hidden_layers=4)
    s, ids = make_student(lm.model, 2)
    assert ids == [0, 3] and len(s.model.layers) == 2 and s.config.num_hidden_layers == 2
    assert lm.model.config.num_hidden_layers == 4
    assert torch.equal(s.model.layers[1].self_attn.q_proj.weight, lm.model.model.layers[3].self_attn.q_proj.weight)
    assert [l.self_attn.layer_idx for l in s.model.layers] == [0, 1]
    # generation with a KV cache works with the renumbered blocks
    out = s.generate(torch.tensor([[2, 10, 11]]), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


def test_kd_loss_hand_computed():
    # p_t = (1/2, 1/2), p_s = (3/4, 1/4) at T = 1: KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
    s = torch.tensor([[math.log(3), 0.0]]); t = torch.zeros(1, 2)
    assert math.isclose(kd_loss(s, t, 1.0).item(), 0.5 * math.log(4 / 3), rel_tol=1e-5)
    # equals torch's KL on explicit probabilities, times T^2
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    pt, ps = F.softmax(t / 3, -1), F.softmax(s / 3, -1)
    ref = (pt * (pt.log() - ps.log())).sum(-1).mean() * 9
    assert math.isclose(kd_loss(s, t, 3.0).item(), ref.item(), rel_tol=1e-5)


def test_mask_tokens_rates_and_specials():
    ids = torch.randint(10, 50, (200, 64), generator=torch.Generator().manual_seed(1)); ids[:, 0] = 1; ids[:, -1] = 2
    inp, lab = mask_tokens(ids, 3, 50, {1, 2}, torch.Generator().manual_seed(0))
    sel = lab != -100
    assert abs(sel.float().mean().item() - 0.15 * 62 / 64) < 0.01
    assert not sel[:, [0, -1]].any()
    assert abs((inp[sel] == 3).float().mean().item() - 0.8) < 0.02
    assert torch.equal(inp[~sel], ids[~sel])


@pytest.fixture(scope="module")
def tiny_llama_real():
    from dike.models import load_model
    return load_model("tiny-llama")


def test_distill_loss_decreases_on_real_text(data_dir, tiny_llama_real, monkeypatch):
    # the tiny-llama teacher is first fitted for 60 steps to real text (a random teacher has near-uniform logits, so
    # there would be little to distil); then a 1-block student is distilled from it on real text through compress()
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.corpora import text_corpus
    from dike.corpora import calib_batches
    import copy, dataclasses
    base = tiny_llama_real
    win = torch.cat([b for b in calib_batches(base, text_corpus(600, seed=0, data_dir=data_dir), seq_len=32)
                     if b.shape[1] == 32])
    m = copy.deepcopy(base.model).train()
    opt, g = torch.optim.AdamW(m.parameters(), lr=3e-3), torch.Generator().manual_seed(0)
    for _ in range(60):
        x = win[torch.randint(0, len(win), (16,), generator=g)]
        loss = m(input_ids=x, labels=x).loss; opt.zero_grad(); loss.backward(); opt.step()
    lm = dataclasses.replace(base, model=m.eval())
    n = len(m.model.layers)
    new, rep = compress(lm, "distill:1:steps=30:seq=32:bs=8:lr=1e-3:texts=600", seed=0, progress=False, report=False)
    st = rep["steps"][0]
    assert st["text_source"] == "dike.corpora.text_corpus" and st["train_tokens"] == 30 * 8 * 32
    assert st["kd_last"] < 0.5 * st["kd_first"], (st["kd_first"], st["kd_last"])
    assert st["loss_last"] < 0.95 * st["loss_first"], (st["loss_first"], st["loss_last"])
    assert len(new.model.model.layers) == 1 and len(lm.model.model.layers) == n
    assert st["params_student"] < st["params_teacher"]
    assert torch.equal(new.model.get_input_embeddings().weight, lm.model.get_input_embeddings().weight)   # frozen


def test_distill_same_spec_and_seed_identical_weights(data_dir, tiny_llama_real, monkeypatch):
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    lm = tiny_llama_real
    spec = "distill:1:steps=5:seq=32:bs=4:texts=200"
    a, _ = compress(lm, spec, seed=3, progress=False, report=False)
    b, _ = compress(lm, spec, seed=3, progress=False, report=False)
    c, _ = compress(lm, spec, seed=4, progress=False, report=False)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_distill_mlm_and_encoder_run_and_save(tmp_path):
    texts = ["the river was long and the city was old .", "a teacher and a doctor came to the school ."] * 40
    for kind in ("mlm", "encoder"):
        lm = tiny_model(kind, num_hidden_layers=4)
        student, kept = make_student(lm.model, 2)
        from dike.corpora import calib_batches
        win = torch.cat([b for b in calib_batches(lm, texts, seq_len=16) if b.shape[1] == 16])
        rep = distill(lm.model, student, win, kind, steps=30, bs=8, lr=3e-3, seed=0, tokenizer=lm.tokenizer)
        assert rep["loss_last"] < rep["loss_first"], (kind, rep["loss_first"], rep["loss_last"])
        if kind == "encoder":   # cosine loss only
            assert rep["lm_last"] == 0.0 and 0 <= rep["loss_first"] <= 2
    # a distilled student saves and loads as a smaller model
    lm = tiny_model("mlm", num_hidden_layers=4)
    import dataclasses
    s, _ = make_student(lm.model, 2)
    new = dataclasses.replace(lm, model=s)
    out = save_compressed(new, "distill:2", {"spec": "distill:2"}, tmp_path / "d")
    back = load_compressed(out)
    assert len(back.model.bert.encoder.layer) == 2
    x = torch.randint(7, 40, (1, 9))
    assert torch.allclose(back.model(x).logits, s(x).logits, atol=1e-5)


@pytest.mark.parametrize("bad", ["distill", "distill:0", "distill:two", "distill:2:steps=0", "distill:2:alpha=1.5",
                                 "distill:2:T=0", "distill:2:warmup=3"])
def test_bad_distill_specs(bad):
    with pytest.raises(SpecError) as e:
        parse_spec(bad)
    assert "distill:L[:steps=N]" in str(e.value) and "\n" not in str(e.value)


def test_distill_crr_tiny_llama(data_dir, monkeypatch):
    "distill:L:fair=crr: the swapped texts join the data, the teacher is role-reversed, another student results."
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.models import load_model
    from dike.compress.apply import compress, weight_digest
    lm = load_model("tiny-llama")
    a, ra = compress(lm, "distill:1:steps=5:texts=40:seq=32", progress=False, report=False)
    b, rb = compress(lm, "distill:1:steps=5:texts=40:seq=32:fair=crr", progress=False, report=False)
    sa, sb = ra["steps"][0], rb["steps"][0]
    assert sb["fair"] == "crr" and sb["crr_token_pairs"] > 0 and sb["texts"] == 2 * sa["texts"]
    assert weight_digest(a.model) != weight_digest(b.model)
