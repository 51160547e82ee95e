"""Compression specs, report, save/load, CLI and cache (dike.compress.spec/apply/cache), on tiny random models."""
import json
import pytest
import torch
from dike.core import SpecError
from dike.compress import cache as cc
from dike.compress.scopes import scoped_linears
from dike.models import load_model
from dike.compress.spec import parse_spec, normalize_spec
from dike.compress.apply import compress, compress_key
from dike.compress.cache import save_compressed, load_compressed, load_or_compress
from dike.anatomy import prunable_linears
from dike.corpora import text_sample

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
    assert reason in msg and "\n" not in msg and len(msg) < 600          # one short line (issue 26: it was ~4,900 characters)
    known = bad.split(":")[0] in ("magnitude", "nm", "wanda") and "empty" not in reason   # the failing step's method
    if known:                                                              # the forms of the step's own method
        assert f"Valid forms: {bad.split(':')[0]}:" in msg
    else:                                                                  # else every method by name, and where the forms are
        assert all(f" {m}," in msg or f" {m} " in msg for m in ("magnitude", "magnitude-global", "nm", "wanda", "heads", "ffn"))
        assert "dike list methods" in msg


def test_method_that_does_not_fit_the_model_kind():
    with pytest.raises(SpecError, match="heads does not fit a encoder model .*Valid forms: .*wanda"):
        parse_spec("wanda:0.5+heads:0.25", kind="encoder")
    with pytest.raises(SpecError, match="does not fit a encoder"):      # before anything runs
        compress(load_model("tiny-bert", kind="encoder"), "heads:0.25", calib=CALIB, progress=False)
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
    lm = load_model("tiny-llama")
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
    lm = load_model("tiny-bert")
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


@pytest.mark.parametrize("spec", ["magnitude:0.5", "magnitude-global:0.5", "wanda:0.5", "nm:2:4", "rtn:4:g16", "gptq:4:g16",
                                  "int8-dynamic", "wanda:0.5:layers=1"])
def test_gpt2_conv1d_every_weight_method(tmp_path, spec):
    "GPT-2 keeps its projections in Conv1D (W stored as (in, out)): every weight method compresses them in nn.Linear terms."
    from transformers.pytorch_utils import Conv1D
    lm = load_model(str(_tiny_gpt2(tmp_path)))
    new, rep = compress(lm, spec, calib=CALIB, heldout=HELDOUT, progress=False, n_calib=2)
    blocks = new.model.transformer.h
    convs = [m for m in blocks.modules() if isinstance(m, Conv1D)]
    changed = rep["steps"][0]["tensors_changed"]
    if spec == "int8-dynamic":
        assert not convs and changed > 0                         # each became an int8 module
    else:
        assert len(convs) == 8                                   # the checkpoint layout is kept (saved as GPT-2)
        assert changed == (4 if "layers=1" in spec else 8)        # the 4 (or 8) Conv1D weights, nothing else
    if spec == "nm:2:4":                                         # groups of 4 consecutive *inputs* of each output row
        for c in convs:
            g = c.weight.detach().t().reshape(c.nf, -1, 4)
            assert ((g == 0).sum(-1) >= 2).all()
    if spec == "magnitude:0.5":
        assert all(abs(float((c.weight == 0).float().mean()) - 0.5) < 0.02 for c in convs)
        out = tmp_path / "saved"
        save_compressed(new, spec, rep, out)
        back = load_compressed(out)
        ids = torch.tensor([[3, 10, 11, 12, 13]])
        with torch.no_grad(): assert torch.equal(back.model(ids).logits, new.model(ids).logits)


def test_cli_compresses_gpt2(tmp_path, capsys):
    "`dike compress` on a GPT-2 folder writes the model (Conv1D layout) and its report."
    from dike.cli import main
    d = _tiny_gpt2(tmp_path, n_positions=1024); capsys.readouterr()   # the report embeds whole held-out texts
    out = tmp_path / "out"
    assert main(["compress", str(d), "magnitude:0.5", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert (out / "model.safetensors").is_file() and json.loads((out / "report.json").read_text())["sparsity"] > 0.45


def test_perplexity_respects_the_context_length(tmp_path):
    "The wikitext2 benchmark (held-out perplexity) on a GPT-2 with 16 positions: no index error, finite scores."
    from dike.models import load_model
    from dike.evaluate import evaluate
    lm = load_model(str(_tiny_gpt2(tmp_path, n_positions=16)))
    items, rec = evaluate(lm, "wikitext2", limit=2, n_boot=20, progress=False)
    assert rec["n_items"] == 2 and torch.isfinite(torch.tensor(rec["metrics"]["perplexity"]["estimate"]))


def test_every_step_reports_what_it_changed():
    new, rep = compress(load_model("tiny-llama"), "magnitude:0.5+rtn:4:g16", progress=False, report=False)
    n_lin = len(prunable_linears(new.model))
    assert [s["tensors_changed"] for s in rep["steps"]] == [n_lin, n_lin]      # exactly the block Linears, each step


# --- scoped compression (layers= / modules=) ----------------------------------------------------------------------

SCOPE_CALIB = ["the doctor said that the nurse was kind and the teacher was smart", "my mother and father work in the city",
               "the young man asked the old woman about her job", "the children go to school every day with their friends",
               "a lawyer and an engineer live in the same house", "the police officer told the driver to stop"] * 2


def _only_scope_changed(base, new, spec):
    "Every tensor of the base state dict outside the scoped Linears is bit-identical in `new`; returns the changed scoped ones."
    st = parse_spec(spec)[0]
    mods = set(scoped_linears(base.model, st))
    sb, sn = base.model.state_dict(), new.model.state_dict()
    for k, v in sb.items():
        if k.rpartition(".")[0] in mods: continue
        assert k in sn and torch.equal(v, sn[k]), (spec, k)
    return [m for m in mods if f"{m}.weight" not in sn or not torch.equal(sb[f"{m}.weight"], sn[f"{m}.weight"])]


@pytest.mark.parametrize("alias, spec", [
    ("tiny-llama", "magnitude:0.5:layers=1"),
    ("tiny-llama", "magnitude-global:0.5:modules=mlp"),
    ("tiny-llama", "wanda:0.5:layers=0:modules=q,v"),
    ("tiny-llama", "nm:2:4:layers=1:modules=attn"),
    ("tiny-llama", "nm:2:4:wanda:modules=down"),
    ("tiny-llama", "rtn:4:g16:layers=1:modules=attn"),
    ("tiny-llama", "gptq:4:g16:layers=0:modules=mlp"),
    ("tiny-llama", "int8-dynamic:layers=1:modules=o"),
    ("tiny-llama", "heads:0.5:layers=1"),
    ("tiny-llama", "ffn:0.25:layers=0"),
    ("tiny-bert", "magnitude:0.5:modules=o"),
    ("tiny-bert", "wanda:0.5:layers=1:modules=mlp"),
    ("tiny-bert", "rtn:3:modules=up,down:layers=0"),
    ("tiny-bert", "gptq:4:layers=1:modules=q,k"),
    ("tiny-bert", "heads:0.5:layers=0"),
])
def test_scoped_step_changes_only_scoped_weights(alias, spec):
    base = load_model(alias)
    new, rep = compress(base, spec, calib=SCOPE_CALIB, progress=False, report=False)
    changed = _only_scope_changed(base, new, spec)
    assert changed, spec                                                   # and at least one scoped weight moved
    sc = rep["steps"][0]["scope"]
    lins = scoped_linears(base.model, parse_spec(spec)[0])
    assert sc["linears"] == len(lins) and sc["weights"] == sum(l.weight.numel() for l in lins.values())
    total = sum(l.weight.numel() for l in prunable_linears(base.model).values())
    assert sc["share"] == pytest.approx(sc["weights"] / total) and 0 < sc["share"] < 1
    assert rep["scope"] == [{"step": rep["spec"], **sc}]


def test_scoped_statistics_cover_the_scope():
    base = load_model("tiny-llama")
    new, rep = compress(base, "magnitude:0.5:layers=1", heldout=HELDOUT, progress=False)
    sc = rep["steps"][0]["scope"]
    assert sc["sparsity"] == 0.5                                           # every layer of block 1 loses exactly half
    assert rep["sparsity"] == pytest.approx(0.5 * sc["share"])            # the top-level sparsity is whole-model
    assert all((v["sparsity"] == 0.5) == (".layers.1." in k) for k, v in rep["layers"].items())
    _, rq = compress(base, "rtn:4:g16:modules=mlp", progress=False, report=False)
    assert rq["steps"][0]["quantized_params"] == rq["steps"][0]["scope"]["weights"] == 2 * 3 * 128 * 256
    assert rq["steps"][0]["n_layers"] == 6


def test_scope_covering_everything_gives_the_unscoped_weights():
    "Scoping is a restriction, not another algorithm: a scope holding every layer/module reproduces the unscoped step."
    base = load_model("tiny-llama")
    for spec in ("wanda:0.5", "gptq:4:g16", "magnitude-global:0.3"):
        a, _ = compress(base, spec, calib=SCOPE_CALIB, progress=False, report=False)
        b, _ = compress(base, f"{spec}:layers=0-1:modules=attn,mlp", calib=SCOPE_CALIB, progress=False, report=False)
        sa, sb = a.model.state_dict(), b.model.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), spec


def test_calibrated_scope_stops_after_the_last_scoped_block():
    base = load_model("tiny-llama")
    calls = {0: 0, 1: 0}
    import copy, dataclasses
    lm = dataclasses.replace(base, model=copy.deepcopy(base.model))
    for i, blk in enumerate(lm.model.model.layers):
        blk.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls[i] + 1))
    from dike.compress.prune import prune_wanda
    from dike.compress.quant import quant_gptq
    for fn, spec in ((prune_wanda, "wanda:0.5:layers=0"), (quant_gptq, "gptq:4:layers=0:modules=q")):
        calls.update({0: 0, 1: 0})
        fn(lm, parse_spec(spec)[0], SCOPE_CALIB)
        assert calls[0] > 0 and calls[1] == 0, (spec, calls)             # block 1 never ran


@pytest.mark.parametrize("spec, msg", [
    ("magnitude:0.5:layers=0-5", "layers 2-5 are not in this model; LlamaForCausalLM has layers 0-1 and module types q,k,v,o,gate,up,down"),
    ("rtn:4:layers=2", "layers 2 are not in this model"),
    ("wanda:0.5:modules=gate", "module type 'gate' is not in this model; BertForMaskedLM has layers 0-1 and module types q,k,v,o,up,down"),
])
def test_scope_outside_the_model_is_a_spec_error(spec, msg):
    lm = load_model("tiny-bert" if "gate" in spec else "tiny-llama")
    with pytest.raises(SpecError, match=msg.replace("(", r"\(")) as e:
        compress(lm, spec, calib=SCOPE_CALIB, progress=False, report=False)
    assert "\n" not in str(e.value) and "Valid forms" not in str(e.value)      # the model's layers/types, not every form


@pytest.mark.parametrize("bad, reason", [
    ("distill:1:layers=0", "distill takes no scope layers="),
    ("cast:bf16:modules=attn", "cast takes no scope modules="),
    ("heads:0.25:modules=attn", "heads takes no scope modules= (it takes layers=)"),
    ("magnitude:0.5:modules=ffn", "unknown module type 'ffn'"),
    ("magnitude:0.5:layers=5-2", "runs backwards"),
    ("magnitude:0.5:layers=x", "write a layer index"),
])
def test_bad_scopes_are_one_line_spec_errors(bad, reason):
    with pytest.raises(SpecError) as e:
        parse_spec(bad)
    assert reason in str(e.value) and "\n" not in str(e.value) and "Valid forms" in str(e.value)


def test_scope_is_normalised_into_the_cache_key_and_the_run_id(tmp_path, monkeypatch):
    monkeypatch.setenv("DIKE_CACHE_DIR", str(tmp_path))
    from dike.runner import checked_spec, run_config
    from dike.models import model_fingerprint
    a, b = "magnitude:0.5:layers=0-5", "magnitude:0.50:layers=5,0,1,2,3,4"
    assert normalize_spec(a) == normalize_spec(b) == "magnitude:0.5:layers=0-5"
    assert normalize_spec("gptq:4:modules=v,q,k,o:layers=11") == normalize_spec("gptq:4:layers=11:modules=attn")
    assert compress_key("abc", a) == compress_key("abc", b)
    assert len({compress_key("abc", s) for s in (a, "magnitude:0.5:layers=0-4", "magnitude:0.5",
                                                 "magnitude:0.5:layers=0-5:modules=mlp")}) == 4
    fp = model_fingerprint("tiny-llama")
    def run_id(spec):
        norm, code = checked_spec(spec, "causal")
        return run_config("tiny-llama", norm, "crows_pairs", "pll", 10, 0, 100, 8, "fp32", fp, compress_code=code)["run_id"]
    assert run_id(a) == run_id(b)
    assert run_id(a) != run_id("magnitude:0.5:layers=0-4") and run_id(a) != run_id("magnitude:0.5")
    # a spec given as typed (dike eval --compress) is normalised by run_config itself
    raw = lambda spec: run_config("tiny-llama", spec, "crows_pairs", "pll", 10, 0, 100, 8, "fp32", fp)
    assert raw(b)["run_id"] == raw(a)["run_id"] == run_id(a) and raw(b)["compress"] == "magnitude:0.5:layers=0-5"


@pytest.mark.parametrize("src", ["balanced", "wikitext-cda"])
def test_imbalance_aware_calibration_sources(src, data_dir, monkeypatch):
    "wanda with calib=balanced / wikitext-cda: a different calibration sample, recorded by item id (and group shares)."
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    from dike.models import load_model
    from dike.compress.apply import compress, weight_digest
    lm = load_model("tiny-llama")
    a, ra = compress(lm, "wanda:0.5", n_calib=8, progress=False, report=False)
    b, rb = compress(lm, f"wanda:0.5:calib={src}", n_calib=8, progress=False, report=False)
    assert rb["spec"] == f"wanda:0.5:calib={src}" and rb["calib_source"] == src
    ids = rb["calib_items"][f"{src}:seed=0"]
    assert ids and ids != ra["calib_items"]["wikitext:seed=0"]
    if src == "balanced":
        shares = rb["calib_groups"][f"{src}:seed=0"]
        assert len(shares) > 40 and max(shares.values()) < 0.1          # no group dominates (bold as it comes: 42 % profession)
    else:
        assert sum(i.endswith("/cda") for i in ids) == len(ids) // 2
    assert weight_digest(a.model) != weight_digest(b.model)


def test_compress_core_is_split_and_methods_are_discovered(monkeypatch):
    "No compress.core, one special-token probe (scoring), no name tuples; the spec cache key follows the discovered modules."
    import importlib.util
    import dike.anatomy, dike.corpora, dike.compress.spec as S
    from dike.runner import _spec_cache_key
    assert importlib.util.find_spec("dike.compress.core") is None
    assert not any(hasattr(m, "special_wrap") for m in (dike.anatomy, dike.corpora, S))
    assert not hasattr(S, "BUILTIN_FAMILIES") and not hasattr(S, "STEP_MODULES")
    mods = S.method_modules()
    assert {"dike.compress.prune", "dike.compress.quant", "dike.compress.distill", "dike.teach", "dike.debias"} <= set(mods)
    assert {"teach", "cda", "leace"} <= {m.prefix for m in S.list_methods()}          # steps outside dike.compress
    key = _spec_cache_key("magnitude:0.5", "causal", [])
    real = S.method_modules
    monkeypatch.setattr(S, "method_modules", lambda: real() + ["json"])             # one more discovered module file
    assert _spec_cache_key("magnitude:0.5", "causal", []) != key


def test_a_benchmark_that_evaluates_calibration_text_changes_the_calibration_identity(data_dir, monkeypatch):
    """Issue 33: the calibration pool drops paragraphs any registered benchmark evaluates, so registering one (a plugin,
    or dike's own wikitext2_valid before it was declared text-free) changes calibrated weights: the method code, hence
    the run ids and the compressed-model cache keys, must change with it."""
    import pandas as pd
    from dike.evaluate import Benchmark, register_benchmark, BENCHMARKS
    from dike.corpora import calib_pool
    from dike.compress.apply import method_code
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    code = lambda: method_code(parse_spec("wanda:0.5", "causal"))["calib"]["pool"]
    before, pool = code(), calib_pool("wikitext")
    para = pool.text.iat[3]
    register_benchmark(Benchmark(name="leaky_probe", data="wikitext2", scorers={"loglik": ("causal",)}, default_scorer={"causal": "loglik"},
                                 load=lambda limit=None, seed=0: pd.DataFrame({"item_id": ["x"], "text": [para]}),
                                 score=lambda *a, **k: None, metrics=lambda *a, **k: {}))
    try:
        after = calib_pool("wikitext")
        assert len(after) == len(pool) - 1 and para not in set(after.text)
        assert code() != before
    finally:
        BENCHMARKS.pop("leaky_probe"); BENCHMARKS.owners.pop("leaky_probe")
    assert code() == before
