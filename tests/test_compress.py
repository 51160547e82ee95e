"""Compression specs, report, save/load, CLI and cache (dike.compress.core), on tiny random models."""
import json
import pytest
import torch
from dike.core import SpecError
from dike.compress import core as cc
from dike.compress.core import (parse_spec, normalize_spec, compress, compress_key, save_compressed, load_compressed,
                                load_or_compress, prunable_linears, text_sample, tiny_lm)

HELDOUT = ["the river was long and the city was old", "she works in the school by the river"]
CALIB = ["the doctor and the nurse were in the house", "the old man said that the water was high",
         "they found a small book in the town", "his family lives by the river in a big house"] * 4


@pytest.mark.parametrize("bad, reason", [
    ("magnitude:1.5", "sparsity=1.5 breaks the rule 0<=S<1"),
    ("magnitude:-0.1", "breaks the rule 0<=S<1"),
    ("nm:4:2", "nm needs N<M"),
    ("nm:2.5:4", "n must be an integer"),
    ("pruneit:0.5", "unknown method 'pruneit'"),
    ("wanda", "wanda needs a value for sparsity"),
    ("wanda:0.5:0.3", "unexpected value '0.3'"),
    ("wanda:0.5+", "empty step"),
    ("", "empty spec"),
])
def test_bad_specs_raise_one_spec_error_listing_valid_forms(bad, reason):
    with pytest.raises(SpecError) as e:
        parse_spec(bad)
    msg = str(e.value)
    assert reason in msg and "\n" not in msg
    for form in ("magnitude:S", "magnitude-global:S", "nm:N:M", "wanda:S", "heads:F", "ffn:F"):
        assert form in msg


def test_method_that_does_not_fit_the_model_kind():
    with pytest.raises(SpecError, match="heads does not fit a encoder model .*Valid forms: .*wanda:S"):
        parse_spec("wanda:0.5+heads:0.25", kind="encoder")
    with pytest.raises(SpecError, match="does not fit a encoder"):      # before anything runs
        compress(tiny_lm("encoder"), "heads:0.25", calib=CALIB, progress=False)
    assert [s.method for s in parse_spec("wanda:0.5+heads:0.25", kind="mlm")] == ["wanda", "heads"]


def test_spec_normalisation_and_composition():
    assert normalize_spec(" wanda:0.50 + magnitude:.3 ") == "wanda:0.5+magnitude:0.3"
    assert normalize_spec("nm:2:4:magnitude") == "nm:2:4"
    assert normalize_spec("nm:2:4:wanda") == "nm:2:4:wanda"
    st = parse_spec("magnitude:0.25+nm:2:4")
    assert st[0]["sparsity"] == 0.25 and (st[1]["n"], st[1]["m"]) == (2, 4)


def test_cache_key_is_normalised_and_seeded():
    k = compress_key("abc", "wanda:0.50", seed=0, n_calib=128)
    assert k == compress_key("abc", "wanda:0.5", seed=0, n_calib=128)
    assert k != compress_key("abc", "wanda:0.5", seed=1, n_calib=128)
    assert k != compress_key("abc", "wanda:0.5", seed=0, n_calib=64)
    assert k != compress_key("abd", "wanda:0.5", seed=0, n_calib=128)
    # magnitude uses no calibration text: n_calib does not split its cache
    assert compress_key("abc", "magnitude:0.5", n_calib=16) == compress_key("abc", "magnitude:0.5", n_calib=128)


def test_calibration_and_heldout_text_are_disjoint():
    calib, src = text_sample("calib", 64, 0)
    held, _ = text_sample("heldout", 64, 0)
    assert calib and held and not set(calib) & set(held)
    assert text_sample("calib", 64, 0) == (calib, src)


def test_composed_spec_and_report_counts():
    lm = tiny_lm("causal")
    new, rep = compress(lm, "magnitude:0.25+nm:2:4", heldout=HELDOUT, progress=False)
    lins = prunable_linears(new.model)
    for lin in lins.values():                                   # the N:M pattern holds after both steps
        assert int((lin.weight != 0).reshape(lin.out_features, -1, 4).sum(-1).max()) <= 2
    zeros = sum(int((l.weight == 0).sum()) for l in lins.values())
    numel = sum(l.weight.numel() for l in lins.values())
    assert rep["sparsity"] == pytest.approx(zeros / numel)
    assert rep["params_total"] == rep["base_params_total"]
    assert rep["base_params_nonzero"] - rep["params_nonzero"] == zeros - sum(
        int((l.weight == 0).sum()) for l in prunable_linears(lm.model).values())
    assert rep["size_on_disk_bytes"] == rep["base_size_on_disk_bytes"]        # dense zeros take the same space
    assert rep["bits"] == 32 and "wikitext2" in rep["quality"]
    assert rep["latency_ms_per_1k_tokens"] > 0 and rep["latency_ratio"] > 0
    assert [s["step"] for s in rep["steps"]] == ["magnitude:0.25", "nm:2:4"]
    assert set(rep["layers"]) == set(lins) and all("lm_head" not in k and "embed" not in k for k in rep["layers"])


def test_save_load_roundtrip(tmp_path):
    lm = tiny_lm("mlm")
    new, rep = compress(lm, "wanda:0.5+heads:0.25", calib=CALIB, heldout=HELDOUT, progress=False)
    out = save_compressed(new, "wanda:0.5+heads:0.25", rep, tmp_path / "m")
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "spec.json", "report.json"} <= names
    assert any(n.startswith("tokenizer") for n in names)
    back = load_compressed(out)
    a, b = new.model.state_dict(), back.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((out / "report.json").read_text())["spec"] == "wanda:0.5+heads:0.25"
    with pytest.raises(FileExistsError):
        save_compressed(new, "wanda:0.5+heads:0.25", rep, tmp_path / "m")


def test_cli_compress_writes_model_and_report(tmp_path, capsys):
    from dike.cli import main
    out = tmp_path / "tl"
    assert main(["compress", "tiny-llama", "magnitude:0.5", "--out", str(out), "--quiet"]) == 0
    rep = json.loads((out / "report.json").read_text())
    for k in ("sparsity", "bits", "params_total", "params_nonzero", "size_on_disk_bytes",
              "latency_ms_per_1k_tokens", "base_latency_ms_per_1k_tokens", "layers"):
        assert k in rep, k
    back = load_compressed(out)
    for name, lin in prunable_linears(back.model).items():      # exactly half of every layer, counted from the file
        assert int((lin.weight == 0).sum()) == lin.weight.numel() // 2, name
        assert rep["layers"][name]["sparsity"] == 0.5
    assert main(["compress", "tiny-llama", "magnitude:1.5", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "Valid forms" in capsys.readouterr().err


def test_load_or_compress_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("DIKE_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real = cc.compress
    monkeypatch.setattr(cc, "compress", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    lm1, r1 = load_or_compress("tiny-llama", "magnitude:0.50", seed=0, progress=False)
    lm2, r2 = load_or_compress("tiny-llama", "magnitude:0.5", seed=0, progress=False)
    assert calls == ["magnitude:0.5"]                             # compressed once
    assert (r1["cache"]["hit"], r2["cache"]["hit"]) == (False, True) and r1["cache"]["key"] == r2["cache"]["key"]
    s1, s2 = lm1.model.state_dict(), lm2.model.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert lm1.checksum == lm2.checksum and lm2.kind == "causal"
    assert len(list((tmp_path / "cache" / "compressed").iterdir())) == 1


def test_load_or_compress_rejects_bad_spec_before_loading(monkeypatch):
    import dike.models
    monkeypatch.setattr(dike.models, "load_model", lambda *a, **k: pytest.fail("model loaded for a bad spec"))
    with pytest.raises(SpecError, match="nm needs N<M"):
        load_or_compress("tiny-llama", "nm:4:2")


def _tiny_gpt2(tmp_path, n_positions=128):
    "A 2-layer GPT-2 (transformers' Conv1D projections) with the tiny-llama tokenizer, saved as a local model folder."
    from transformers import GPT2Config, GPT2LMHeadModel
    from dike.models import load_model
    tok = load_model("tiny-llama").tokenizer
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=32, n_layer=2, n_head=4,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    d = tmp_path / "gpt2-tiny"
    GPT2LMHeadModel(cfg).save_pretrained(d); tok.save_pretrained(d)
    return d


def test_cli_refuses_a_compression_that_changes_nothing(tmp_path, capsys):
    "GPT-2 keeps its projections in Conv1D: every weight method refuses by name instead of writing an unchanged model."
    from dike.cli import main
    d = _tiny_gpt2(tmp_path); capsys.readouterr()
    for spec in ("magnitude:0.5", "magnitude-global:0.5", "wanda:0.5", "nm:2:4", "rtn:4", "gptq:4"):
        out = tmp_path / f"out-{spec.replace(':', '_')}"
        assert main(["compress", str(d), spec, "--out", str(out), "--quiet", "--n-calib", "8"]) == 2, spec
        err = capsys.readouterr().err
        assert "8 Conv1D layers" in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()                                  # nothing written


def test_perplexity_respects_the_context_length(tmp_path):
    "The wikitext2 benchmark (held-out perplexity) on a GPT-2 with 16 positions: no index error, finite scores."
    from dike.models import load_model
    from dike.evaluate import evaluate
    lm = load_model(str(_tiny_gpt2(tmp_path, n_positions=16)))
    items, rec = evaluate(lm, "wikitext2", limit=2, n_boot=20, progress=False)
    assert rec["n_items"] == 2 and torch.isfinite(torch.tensor(rec["metrics"]["perplexity"]["estimate"]))


def test_every_step_reports_what_it_changed():
    new, rep = compress(tiny_lm("causal"), "magnitude:0.5+rtn:4:g16", progress=False, report=False)
    n_lin = len(prunable_linears(new.model))
    assert [s["tensors_changed"] for s in rep["steps"]] == [n_lin, n_lin]      # exactly the block Linears, each step
