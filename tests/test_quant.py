"""dike.compress.quant: RTN grid, GPTQ vs RTN reconstruction error, int8 dynamic, determinism, spec errors."""
import math
import pytest
import torch
from torch import nn

from dike.core import SpecError, f32_tol
from dike.anatomy import prunable_linears
from dike.compress.spec import parse_spec
from dike.compress.apply import compress
from dike.models import load_model, tiny_model
from dike.compress.quant import (quant_grid, rtn_quantize, gptq_quantize, layer_error, rtn_model, gptq_model,
                                 int8_dynamic_model, packed_bytes, Int8DynamicLinear)


def rand_batches(seed, n=3, b=4, T=32, vocab=60):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(7, vocab, (b, T), generator=g) for _ in range(n)]


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group", [None, 32, 48])
def test_rtn_at_most_2_pow_b_values_per_group(bits, group):
    torch.manual_seed(bits)
    W = torch.randn(24, 100) * torch.rand(24, 1) * 3
    Q = rtn_quantize(W, bits, group)
    g = group or 100
    for r in range(24):
        for a in range(0, 100, g):
            vals = torch.unique(Q[r, a:a + g])
            assert len(vals) <= 2 ** bits
            # the values lie on the grid s*(k - z), k = 0..2^B-1
            s, z = quant_grid(W[r:r + 1, a:a + g], bits)
            k = vals / s[0] + z[0]
            assert torch.allclose(k, k.round(), atol=1e-3) and k.min() >= -1e-3 and k.max() <= 2 ** bits - 1 + 1e-3


def test_rtn_hand_computed():
    # B=2, row (-1, 0, 0.5, 2): s = 3/3 = 1, z = 1, grid {-1, 0, 1, 2}; 0.5 -> round-half-even 0
    assert rtn_quantize(torch.tensor([[-1.0, 0.0, 0.5, 2.0]]), 2).tolist() == [[-1.0, 0.0, 0.0, 2.0]]
    # B=1, row (0.2, 1.0): range [0, 1], s = 1, z = 0: 0.2 -> 0, 1 -> 1
    assert rtn_quantize(torch.tensor([[0.2, 1.0]]), 1).tolist() == [[0.0, 1.0]]


def test_gptq_lower_reconstruction_error_than_rtn():
    torch.manual_seed(0)
    n, d_in, d_out = 4096, 96, 48
    X = torch.randn(n, d_in) @ torch.randn(d_in, d_in) * 0.2 + torch.randn(d_in) * 0.5
    W = torch.randn(d_out, d_in) * 0.1
    H = 2 * X.T @ X / n
    for bits, group, act in [(4, None, False), (3, 32, False), (4, 32, True), (2, None, False)]:
        eg = layer_error(W, gptq_quantize(W, H, bits, group, act_order=act), X)
        er = layer_error(W, rtn_quantize(W, bits, group), X)
        assert eg < 0.8 * er, (bits, group, act, eg, er)


def test_layer_error_matches_trace_formula():
    torch.manual_seed(1)
    X, W, Q = torch.randn(50, 8), torch.randn(4, 8), torch.randn(4, 8)
    H = X.T @ X / 50
    D = W - Q
    assert math.isclose(layer_error(W, Q, X), float(torch.trace(D @ H @ D.T)), rel_tol=1e-4)


@pytest.mark.parametrize("kind", ["causal", "mlm", "encoder"])
def test_gptq_model_every_layer_beats_rtn_and_is_deterministic(kind):
    l1, l2 = tiny_model(kind), tiny_model(kind)
    emb = l1.model.get_input_embeddings().weight.clone()
    r1 = gptq_model(l1, rand_batches(0), 3, 16)
    gptq_model(l2, rand_batches(0), 3, 16)
    assert r1["n_layers"] == len(prunable_linears(l1.model)) and r1["layers"]
    assert all(v["rel_err_gptq"] < v["rel_err_rtn"] for v in r1["layers"].values())
    assert r1["calib_tokens"] == 3 * 4 * 32
    for a, b in zip(l1.model.state_dict().values(), l2.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(l1.model.get_input_embeddings().weight, emb)


def test_gptq_model_changes_only_block_linears():
    lm, ref = load_model("tiny-llama"), load_model("tiny-llama")
    gptq_model(lm, rand_batches(1), 4)
    lin = {f"{n}.weight" for n in prunable_linears(lm.model)}
    for (n, a), b in zip(lm.model.state_dict().items(), ref.model.state_dict().values()):
        assert torch.equal(a, b) == (n not in lin), n


def test_rtn_model_report_and_untouched_head():
    m = load_model("tiny-llama").model
    emb = m.model.embed_tokens.weight.clone()
    rep = rtn_model(m, 4, 16)
    lins = prunable_linears(m).values()
    n = sum(l.weight.numel() for l in lins)
    assert rep["quantized_params"] == n and rep["fp32_bytes"] == 4 * n
    assert rep["packed_bytes"] == sum(packed_bytes(tuple(l.weight.shape), 4, 16) for l in lins)
    # (48, 48) weight, group 32 -> 2 groups per row: 48*48/2 bytes + 48*2*(2 + 0.5) = 1152 + 240
    assert packed_bytes((48, 48), 4, 32) == 1392
    assert torch.equal(m.model.embed_tokens.weight, emb)


@pytest.mark.parametrize("act", ["token", "tensor"])
def test_int8_dynamic_close_to_fp32_tiny(act):
    m = load_model("tiny-llama").model
    qm, rep = int8_dynamic_model(m, act)
    x = torch.randint(7, 60, (3, 40), generator=torch.Generator().manual_seed(0))
    a, b = m(x).logits, qm(x).logits
    cos = nn.functional.cosine_similarity(a, b, dim=-1)
    # per-tensor activation scales lose more: tiny-llama's down_proj inputs reach |x| ~ 12 against ~ 4 elsewhere
    assert cos.min() > (0.99 if act == "token" else 0.98) and not torch.equal(a, b)
    assert rep["bits"] == 8 and rep["reapply_on_load"] is True
    assert type(qm.lm_head) is nn.Linear


def test_int8_linear_matches_integer_reference():
    # the int32 GEMM equals the exact integer product of the quantized operands
    torch.manual_seed(3)
    lin = nn.Linear(40, 24)
    q = Int8DynamicLinear(lin, outlier=0)
    x = torch.randn(9, 40)
    sx = x.abs().amax(1, keepdim=True) / 127
    qx = torch.round(x / sx).clamp(-127, 127)
    ref = (qx.double() @ q.qweight_t.double()) * sx.double() * q.w_scale.double() + lin.bias.double()
    assert torch.allclose(q(x).double(), ref, atol=1e-5)
    # weights: per output channel, max |q| = 127 in every row
    assert (q.qweight_t.abs().amax(0) == 127).all()


def test_int8_outlier_columns_exact():
    # a column with |x| >= 6 is computed in fp32 with the dequantized int8 weight; the rest stays int8
    torch.manual_seed(4)
    lin = nn.Linear(16, 8, bias=False)
    q = Int8DynamicLinear(lin, outlier=6.0)
    x = torch.randn(5, 16).clamp(-2, 2)
    x[2, 3] = 50.0
    wd = (q.qweight_t.float() * q.w_scale).t()        # dequantized weight (8, 16)
    xi = x.clone(); xi[:, 3] = 0
    sx = xi.abs().amax(1, keepdim=True) / 127
    ref = (torch.round(xi / sx) * sx) @ wd.t() + x[:, 3:4] * wd[:, 3]
    assert torch.allclose(q(x), ref, rtol=0, atol=f32_tol(ref, 16))   # another order of the 16-term sums (00_core)


@pytest.mark.parametrize("bad", ["rtn:0", "rtn:1", "rtn:9", "rtn", "rtn:4:g0", "rtn:4:128", "rtn:four", "gptq:0",
                                 "gptq:4:act=2", "gptq:4:damp=1.5", "int8-dynamic:8", "int8-dynamic+rtn:4",
                                 "int8-dynamic:tensor:outlier=2", "int8-dynamic:outlier=-1"])
def test_bad_specs_one_error_listing_valid_forms(bad):
    with pytest.raises(SpecError) as e:
        parse_spec(bad)
    msg = str(e.value)
    assert "\n" not in msg and "Valid forms:" in msg and len(msg) < 600      # one short line (issue 26)
    step = bad.split("+")[0].split(":")[0]                                      # its own forms, or every method by name
    assert f"Valid forms: {step}" in msg or ("a method among" in msg and all(m in msg for m in ("rtn", "gptq", "int8-dynamic")))


def test_same_spec_and_seed_identical_weights_through_compress():
    lm = load_model("tiny-llama")
    texts = ["the river was long and the city was old .", "a teacher and a doctor came to the school ."] * 30
    a, ra = compress(lm, "gptq:3:g16:act=1", seed=0, calib=texts, progress=False, report=False)
    b, _ = compress(lm, "gptq:3:g16:act=1", seed=0, calib=texts, progress=False, report=False)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)
    assert ra["steps"][0]["mean_err_ratio_gptq_over_rtn"] < 1
    # the input LM is untouched
    assert not torch.equal(a.model.model.layers[0].mlp.up_proj.weight, lm.model.model.layers[0].mlp.up_proj.weight)


@pytest.fixture(scope="module")
def real_texts(data_dir):
    from dike.corpora import text_corpus
    return text_corpus(16, seed=0, split="heldout", data_dir=data_dir)


@pytest.mark.slow
def test_int8_dynamic_smollm2_logits_close_on_real_text(real_texts):
    from dike.models import load_model
    lm = load_model("smollm2-135m")
    qm, _ = int8_dynamic_model(lm.model)     # W8A8 per-token + LLM.int8 outliers
    cos = []
    with torch.inference_mode():
        for t in real_texts[:8]:
            ids = lm.tokenizer(t, return_tensors="pt")["input_ids"]
            cos.append(nn.functional.cosine_similarity(lm.model(ids).logits[0], qm(ids).logits[0], dim=-1))
    cos = torch.cat(cos)
    assert cos.mean() > 0.99 and cos.min() > 0.5, (cos.mean(), cos.min())


def test_int8_dynamic_minilm_embeddings_close_on_real_text(real_texts):
    from dike.models import load_model
    lm = load_model("minilm-l6")
    qm, _ = int8_dynamic_model(lm.model)
    enc = lm.tokenizer(real_texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        a, b = lm.model(**enc).last_hidden_state, qm(**enc).last_hidden_state
    m = enc["attention_mask"].bool()
    cos = nn.functional.cosine_similarity(a[m], b[m], dim=-1)
    assert cos.mean() > 0.99, cos.mean()


def test_load_or_compress_caches_rtn_and_reapplies_int8(tmp_path, monkeypatch):
    # rtn is saved (safetensors) and reloaded from the cache with identical weights; int8-dynamic is a runtime step:
    # never saved, re-applied after loading
    from dike.compress.cache import load_or_compress
    monkeypatch.setenv("DIKE_CACHE_DIR", str(tmp_path))
    a, ra = load_or_compress("tiny-llama", "rtn:4:g32", progress=False)
    b, rb = load_or_compress("tiny-llama", "rtn:4:g32", progress=False)
    assert ra["cache"]["hit"] is False and rb["cache"]["hit"] is True
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c, rc = load_or_compress("tiny-llama", "rtn:4:g32+int8-dynamic", progress=False)
    assert rc["prefix_report"]["cache"]["hit"] is True
    assert isinstance(c.model.model.layers[0].mlp.up_proj, Int8DynamicLinear)
    assert len(list((tmp_path / "compressed").iterdir())) == 1   # only the rtn prefix was saved


def test_fair_gptq_tiny_llama(data_dir, monkeypatch):
    "Fair-GPTQ: alpha=0 is GPTQ bit for bit; alpha>0 pulls the pairs' outputs together; the pairs are training-half items."
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    import pandas as pd, torch
    import dike.data as D
    from dike.models import load_model
    from dike.compress.apply import compress
    from dike.evaluate import assert_disjoint
    lm = load_model("tiny-llama")
    g, _ = compress(lm, "gptq:4", n_calib=4, progress=False, report=False)
    f0, _ = compress(lm, "fair-gptq:4:alpha=0:pairs=16", n_calib=4, progress=False, report=False)
    assert all(torch.equal(a, b) for a, b in zip(g.model.state_dict().values(), f0.model.state_dict().values()))
    f, rep = compress(lm, "fair-gptq:4:alpha=5:pairs=16", n_calib=4, progress=False, report=False)
    st = rep["steps"][0]
    assert st["method"] == "fair-gptq" and st["n_pairs"] == 16 and 0 < st["mean_pair_term_ratio"] < 1
    assert all(v["rel_err_gptq"] > 0 for v in st["layers"].values())
    train = D.load("stereoset", split="train").set_index("item_id")
    assert set(st["fair_items"]) <= set(train.index)
    from dike.corpora import fit_select_split
    ss = D.load("stereoset")
    assert set(st["fair_items"]) <= set(ss.item_id[fit_select_split(ss) == "fit"])   # never a select item
    used = train.loc[st["fair_items"]]
    rows = pd.concat([pd.DataFrame({"dataset": "stereoset", "item_id": used.index, "text": used[c]})
                      for c in ("stereotype", "anti_stereotype")], ignore_index=True)
    assert_disjoint(rows, ["stereoset_heldout", "crows_pairs", "winobias"])


def test_fair_gptq_options_tiny_llama(data_dir, monkeypatch):
    "ignore= types get plain GPTQ bit for bit; hess=pairs, mode=first, qh=h, sym=1 each change the weights; the report says which."
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    lm = load_model("tiny-llama")
    kw = dict(n_calib=4, progress=False, report=False)
    g, _ = compress(lm, "gptq:4", **kw)
    f, rep = compress(lm, "fair-gptq:4:alpha=5:pairs=16:ignore=attn,gate,up", **kw)
    sg, sf = g.model.state_dict(), f.model.state_dict()
    # block 0's inputs are the same for both, so its ignored Linears are GPTQ's; down_proj has the term
    for t in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert torch.equal(sg[f"model.layers.0.self_attn.{t}.weight"], sf[f"model.layers.0.self_attn.{t}.weight"])
    assert not torch.equal(sg["model.layers.0.mlp.down_proj.weight"], sf["model.layers.0.mlp.down_proj.weight"])
    st = rep["steps"][0]
    assert st["ignore"] == ["gate", "k", "o", "q", "up", "v"] and st["mode"] == "exact" and st["qh"] == "sum"
    assert {n.rsplit(".", 1)[1] for n, v in st["layers"].items() if "pair_term_ratio" in v} == {"down_proj"}
    base, _ = compress(lm, "fair-gptq:4:alpha=5:pairs=16", **kw)
    for opt in ("hess=pairs", "mode=first", "qh=h", "sym=1"):
        o, r = compress(lm, f"fair-gptq:4:alpha=5:pairs=16:{opt}", **kw)
        w = o.model.model.layers[1].mlp.down_proj.weight
        assert not torch.equal(w, base.model.model.layers[1].mlp.down_proj.weight), opt
        k, v = opt.split("=")
        assert str(r["steps"][0][k]) in (v, "True"), (opt, r["steps"][0])


@pytest.mark.slow
def test_fair_gptq_alpha_to_zero_is_gptq_on_smollm2_layers(data_dir, monkeypatch):
    """Issue 29: on SmolLM2's first block, with the real calibration H and the real pairs' H_Δ, Fair-GPTQ at α = 1e-6
    moves the target by < 1e-4 of W and keeps GPTQ's layer error within 0.5 % in every Linear group; the earlier
    target W H (H + H_Δ + λI)^-1 moved it by > 10 %. (Equal levels are no criterion on a real layer: a 1e-7 relative
    change of H alone changes about half of GPTQ's levels there, its error feedback cascading each flipped rounding.)"""
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.anatomy import BlockRunner, PairRunner
    from dike.corpora import calib_batches, text_sample, fair_pairs
    from dike.compress.quant import FairOpts, fair_gptq_layer, fair_target, _layer_hessians, _err
    lm = load_model("smollm2-135m")
    texts, _ = text_sample("calib", 32, 0)
    pairs, _ = fair_pairs(lm, 64, 0)
    lins = {n: m for n, m in lm.model.model.layers[0].named_modules() if isinstance(m, nn.Linear)}
    Hs, HD = _layer_hessians(BlockRunner(lm, calib_batches(lm, texts, seq_len=256)), PairRunner(lm, pairs), 0, lins,
                             FairOpts(1e-6))
    for n in ("self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj"):
        W, H, Hd = lins[n].weight.detach().float(), Hs[n], HD[n]
        e0 = _err(W, gptq_quantize(W, H, 4, 128), H)
        assert (fair_target(W, H, Hd) - W).norm() < 1e-4 * W.norm(), n
        for mode in ("exact", "first"):
            assert abs(_err(W, fair_gptq_layer(W, H, Hd, 4, 128, FairOpts(1e-6, mode=mode)), H) / e0 - 1) < 0.005, (n, mode)
        lam = 0.01 * torch.diag(H + Hd).mean()
        old = torch.linalg.solve((H + Hd + lam * torch.eye(len(H))).double(), (H @ W.T).double()).T.float()
        assert abs(_err(W, gptq_quantize(old, H + Hd, 4, 128), H) / e0 - 1) > 0.1, n


def test_fair_gptq_layer_scope_reads_the_scoped_blocks_pairs(data_dir, monkeypatch):
    "layers=1: block 1 is quantized from its own calibration and pair inputs (block 0 untouched); before issue 29 the pairs stayed at block 0."
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.anatomy import BlockRunner, PairRunner
    from dike.corpora import calib_batches, text_sample, fair_pairs
    from dike.compress.quant import FairOpts, fair_gptq_layer, _layer_hessians
    lm = load_model("tiny-llama")
    texts, _ = text_sample("calib", 4, 0)
    out, _ = compress(lm, "fair-gptq:4:alpha=5:pairs=16:layers=1", calib=texts, progress=False, report=False)
    pairs, _ = fair_pairs(lm, 16, 0, split="fit")
    br, pr = BlockRunner(lm, calib_batches(lm, texts, seq_len=256)), PairRunner(lm, pairs)
    br.advance(0); pr.advance(0)
    lin = lm.model.model.layers[1].mlp.down_proj
    Hs, HD = _layer_hessians(br, pr, 1, {"mlp.down_proj": lin}, FairOpts(5.0))
    want = fair_gptq_layer(lin.weight.detach().float(), Hs["mlp.down_proj"], HD["mlp.down_proj"], 4, None, FairOpts(5.0))
    torch.testing.assert_close(out.model.model.layers[1].mlp.down_proj.weight, want, rtol=0, atol=1e-6)
