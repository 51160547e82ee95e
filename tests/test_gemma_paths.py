"""Issue 28: every compression path on a tiny Gemma-3 built from a config (18-layer Gemma-3-270M's layout in small:
one KV head shared by 4 query heads, q/k norms, sliding windows with a global layer, tied head), and the batched pair
runner under sliding windows."""
import dataclasses
import pytest
import torch
from transformers import Gemma3TextConfig, Gemma3ForCausalLM
from dike.models import load_model
from dike.compress.apply import compress
from dike.corpora import text_sample


@pytest.fixture(scope="module")
def gemma(data_dir):
    base = load_model("tiny-llama")
    cfg = Gemma3TextConfig(vocab_size=base.model.config.vocab_size, hidden_size=64, intermediate_size=128,
                           num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                           sliding_window=4, max_position_embeddings=512,
                           layer_types=["sliding_attention"] * 5 + ["full_attention"], bos_token_id=1, eos_token_id=2,
                           pad_token_id=0, tie_word_embeddings=True, initializer_range=0.2)
    torch.manual_seed(0)
    return dataclasses.replace(base, model=Gemma3ForCausalLM(cfg).eval())


SPECS = ["magnitude:0.5", "wanda:0.5", "random:0.5", "rtn:4:g16", "gptq:4:g16", "gptq:4:g16:sym=1",
         "fair-gptq:4:g16:alpha=1:pairs=8", "fair-gptq:4:g16:alpha=1:pairs=8:mode=first:qh=h:hess=pairs:ignore=q,k,v",
         "magnitude:0.5:fair=0.3:pairs=8", "wanda:0.5:fair=0.3:pairs=8", "fasp:0.25:pairs=8:windows=1",
         "cast:bf16", "int8-dynamic", "gptq:4:g16:layers=5"]


@pytest.mark.parametrize("spec", SPECS)
def test_every_compression_path_on_tiny_gemma3(gemma, spec, data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir)); monkeypatch.setenv("DIKE_CACHE_DIR", str(tmp_path))
    texts, _ = text_sample("calib", 4, 0)
    ids = torch.tensor([[1, 5, 9, 12, 40, 41, 42, 43, 44, 45, 46, 47]])
    with torch.no_grad(): before = gemma.model(input_ids=ids).logits
    out, rep = compress(gemma, spec, calib=texts, progress=False, report=False)    # each method's verify runs inside
    with torch.no_grad(): after = out.model(input_ids=ids).logits
    assert torch.isfinite(after).all() and not torch.allclose(before, after), spec
    assert out.model.config.sliding_window == 4 and out.model.config.layer_types[-1] == "full_attention"
    if spec.startswith("fasp"):      # a query head of Gemma's single KV group: its o_proj slice is zero, the rest kept
        st = rep["steps"][0]
        assert st["heads_total"] == 24 and st["heads_removed"] == 6


def test_pair_runner_batched_equals_one_by_one_under_sliding_windows(gemma):
    from dike.anatomy import PairRunner
    pairs = [(list(range(1, 12)), [1, 2, 3, 30, 31, 6, 7, 8, 9, 10, 11]), ([1, 7, 8], [1, 7, 9, 10, 11, 12, 13])]
    lin = {"o": gemma.model.model.layers[2].self_attn.o_proj}
    a, b = PairRunner(gemma, pairs, batch_size=1), PairRunner(gemma, pairs, batch_size=4)
    for i in range(2): a.advance(i); b.advance(i)
    xa, xb = a.inputs(2, lin)["o"], b.inputs(2, lin)["o"]
    assert [len(x) for x in xb] == [11, 11, 3, 7]
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(xa, xb))


def test_kv_group_head_pruning_on_gemma3_says_why_it_cannot(gemma, data_dir, monkeypatch):
    "Gemma-3's single KV group is a layer's whole attention: heads:F (KV groups under GQA) can remove none, and says so."
    from dike.core import SpecError
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    texts, _ = text_sample("calib", 4, 0)
    with pytest.raises(SpecError, match="each of the 6 layers keeps one"):
        compress(gemma, "heads:0.25", calib=texts, progress=False, report=False)
