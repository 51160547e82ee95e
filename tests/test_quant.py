"""dike.compress.quant: RTN grid, GPTQ vs RTN reconstruction error, int8 dynamic, determinism, spec errors."""
import math
import pytest
import torch
import transformers
from torch import nn

from dike.compress.quant import (quant_grid, rtn_quantize, gptq_quantize, layer_error, block_linears, rtn_model,
                                 gptq_model, int8_dynamic_model, packed_bytes, calib_batches)


def tiny_llama(seed=0, layers=2):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=120, hidden_size=48, intermediate_size=96, num_hidden_layers=layers,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return transformers.LlamaForCausalLM(cfg).eval()


def tiny_bert(seed=0, layers=2):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=120, hidden_size=48, intermediate_size=96, num_hidden_layers=layers,
                                  num_attention_heads=4, max_position_embeddings=128)
    return transformers.BertForMaskedLM(cfg).eval()


def rand_batches(seed, n=3, b=4, T=32, vocab=120):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        mask = torch.ones(b, T, dtype=torch.long)
        mask[1, T // 2:] = 0   # one padded row
        out.append({"input_ids": torch.randint(5, vocab, (b, T), generator=g), "attention_mask": mask})
    return out


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


@pytest.mark.parametrize("mk", [tiny_llama, tiny_bert])
def test_gptq_model_every_layer_beats_rtn_and_is_deterministic(mk):
    m1, m2 = mk(), mk()
    head = m1.get_output_embeddings().weight.clone()
    r1 = gptq_model(m1, rand_batches(0), 3, 16)
    gptq_model(m2, rand_batches(0), 3, 16)
    assert all(v["rel_err_gptq"] < v["rel_err_rtn"] for v in r1["layers"].values())
    assert r1["calib_tokens"] == 3 * (4 * 32 - 16)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(m1.get_output_embeddings().weight, head)


def test_gptq_model_changes_only_block_linears():
    m, ref = tiny_llama(), tiny_llama()
    gptq_model(m, rand_batches(1), 4)
    lin = {f"{n}.weight" for n in block_linears(m)}
    for (n, a), b in zip(m.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b) == (n not in lin), n


def test_rtn_model_report_and_untouched_head():
    m = tiny_llama()
    emb = m.model.embed_tokens.weight.clone()
    rep = rtn_model(m, 4, 32)
    n = sum(l.weight.numel() for l in block_linears(m).values())
    assert rep["quantized_params"] == n and rep["fp32_bytes"] == 4 * n
    assert rep["packed_bytes"] == sum(packed_bytes(tuple(l.weight.shape), 4, 32) for l in block_linears(m).values())
    # q_proj (48, 48), group 32 -> 2 groups per row: 48*48/2 bytes + 48*2*(2 + 0.5) = 1152 + 240
    assert packed_bytes((48, 48), 4, 32) == 1392
    assert torch.equal(m.model.embed_tokens.weight, emb)


def test_int8_dynamic_close_to_fp32():
    m = tiny_llama()
    qm, rep = int8_dynamic_model(m)
    x = torch.randint(5, 120, (3, 40), generator=torch.Generator().manual_seed(0))
    a, b = m(x).logits, qm(x).logits
    cos = nn.functional.cosine_similarity(a, b, dim=-1)
    assert cos.min() > 0.99 and not torch.equal(a, b)
    assert rep["bits"] == 8 and rep["reapply_on_load"] is True
    assert type(qm.lm_head) is nn.Linear


def test_calib_batches_pads_right_and_masks():
    class Tok:
        pad_token_id = None
        def __call__(self, t, truncation=True, max_length=512):
            return {"input_ids": [ord(c) for c in t][:max_length]}
    bs = calib_batches(Tok(), ["abc", "a", "", "abcdefgh"], seq_len=5, batch_size=2)
    assert len(bs) == 2   # the empty text is dropped
    assert bs[0]["input_ids"].tolist() == [[97, 98, 99], [97, 0, 0]]
    assert bs[0]["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert bs[1]["input_ids"].tolist() == [[97, 98, 99, 100, 101]]
