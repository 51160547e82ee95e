"""Devices and dtypes: every tensor dike creates names its device (a recording TorchFunctionMode on tiny models), the
device type and dtype enter the run id, provenance and the compression cache key; `--device`/`--dtype` on the CLI."""
import sys
import pytest
import torch
from torch.overrides import TorchFunctionMode
from dike.core import ModelError, ConfigError
from dike.models import load_model, resolve_device, resolve_dtype

# torch factories: without `device=` each would put its tensor on the CPU whatever the model's device
FACTORIES = {torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.eye,
             torch.rand, torch.randn, torch.randint, torch.randperm, torch.linspace}
CALIB = ["the doctor and the nurse were in the house", "the old man said that the water was high",
         "they found a small book in the town", "his family lives by the river in a big house"] * 4
HELDOUT = ["the river was long and the city was old", "she works in the school by the river"]


class DeviceAudit(TorchFunctionMode):
    """Records every torch factory call made directly from a `dike` module: (module, function, line, factory, device).
    On a CPU-only machine a missing `device=` is invisible (everything is on the CPU); this shim makes it visible."""
    def __init__(self):
        super().__init__(); self.calls = []
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES:
            f = sys._getframe(1)
            mod = f.f_globals.get("__name__", "")
            if mod.startswith("dike."):
                self.calls.append((mod, f.f_code.co_name, f.f_lineno, func.__name__, kwargs.get("device")))
        return func(*args, **kwargs)
    def without_device(self):
        return sorted({c[:4] for c in self.calls if c[4] is None})


def test_audit_catches_a_factory_without_device():
    "The shim itself: a factory call from a dike-named module without device= is reported, one with it is not."
    g = {"__name__": "dike.fake", "torch": torch}
    exec("def f():\n    return torch.zeros(2), torch.ones(2, device='cpu')\n", g)
    with DeviceAudit() as a: g["f"]()
    assert a.without_device() == [("dike.fake", "f", 2, "zeros")]
    assert len(a.calls) == 2


def _score_all(lm_c, lm_m, lm_e):
    from dike import scoring as S, perplexity as P
    S.loglik(lm_c, [("the man said", " yes"), ("", "the woman is a doctor")], batch_size=2)
    S.loglik(lm_c, [("the man said", " yes"), ("the man said", " no")], batch_size=2, share_prefix=False)
    S.bias_bench_causal_scores(lm_c, ["the man is a doctor", "she said no"], batch_size=2)
    P.causal_nll(lm_c, ["the river was long and the city was old"] * 3, window=8, stride=4, batch_size=2, progress=False)
    S.mlm_pair_scores(lm_m, ["the man is a doctor"], ["the woman is a doctor"], batch_size=4)
    S.mlm_candidate_scores(lm_m, "the BLANK is a doctor", ["man", "woman"], batch_size=4)
    P.mlm_nll(lm_m, ["the river was long and the city was old"], window=None, batch_size=2, progress=False)
    S.embed(lm_e, ["the man is a doctor", "she said no"], batch_size=2)


def test_scoring_paths_name_the_device_of_every_tensor_they_create():
    lms = load_model("tiny-llama"), load_model("tiny-bert"), load_model("tiny-bert", kind="encoder")
    with DeviceAudit() as a: _score_all(*lms)
    assert a.calls, "the scorers created no tensor: the audit saw nothing"
    assert a.without_device() == []


@pytest.mark.parametrize("alias, spec", [
    ("tiny-llama", "magnitude:0.5"), ("tiny-llama", "magnitude-global:0.5"), ("tiny-llama", "wanda:0.5"),
    ("tiny-llama", "nm:2:4"), ("tiny-llama", "rtn:4:g16"), ("tiny-llama", "gptq:4:g16"), ("tiny-llama", "int8-dynamic"),
    ("tiny-llama", "heads:0.5"), ("tiny-llama", "ffn:0.25"), ("tiny-bert", "heads:0.5"), ("tiny-bert", "wanda:0.5"),
    ("tiny-llama", "cast:bf16")])
def test_compression_paths_name_the_device_of_every_tensor_they_create(alias, spec):
    from dike.compress.apply import compress
    lm = load_model(alias)
    with DeviceAudit() as a:
        new, rep = compress(lm, spec, calib=CALIB, heldout=HELDOUT, progress=False, n_calib=2)
    assert rep["steps"][0]["tensors_changed"] > 0
    assert a.without_device() == []


def test_distillation_masks_and_order_follow_the_windows_device():
    from dike.compress.distill import mask_tokens
    ids = torch.randint(5, 12, (8, 16), generator=torch.Generator().manual_seed(0))
    with DeviceAudit() as a:
        x1, y1 = mask_tokens(ids, 3, 12, {0, 1, 2}, torch.Generator().manual_seed(0))
    x2, y2 = mask_tokens(ids, 3, 12, {0, 1, 2}, torch.Generator().manual_seed(0))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)          # the draws are the generator's: same masks anywhere
    assert a.calls and a.without_device() == []


def test_resolve_device_and_dtype():
    assert resolve_device("cpu") == "cpu"
    assert resolve_dtype("auto", "cpu") == "fp32" and resolve_dtype("auto", "cuda:0") == "bf16"
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="make install TORCH=cuda"): resolve_device("cuda")
        assert resolve_device("auto") in ("cpu", "mps")


def test_device_and_dtype_enter_the_run_id_but_cpu_keeps_the_old_key():
    from dike.runner import run_config, config_key
    fp = {"kind": "causal", "checksum": "abc"}
    base = dict(model="tiny-llama", compress="none", benchmark="crows_pairs", scorer=None, limit=5, seed=0, n_boot=10,
                batch_size=4, fingerprint=fp)
    cpu = run_config(dtype="fp32", device="cpu", **base)
    old = {k: v for k, v in cpu.items() if k not in ("device", "config_key")}       # a run recorded before devices
    assert config_key(old) == cpu["config_key"]
    gpu0, gpu1 = run_config(dtype="fp32", device="cuda:0", **base), run_config(dtype="fp32", device="cuda:1", **base)
    bf = run_config(dtype="bf16", device="cuda:0", **base)
    assert gpu0["run_id"] == gpu1["run_id"] != cpu["run_id"]    # the GPU index does not change a result; the type does
    assert len({cpu["run_id"], gpu0["run_id"], bf["run_id"]}) == 3


def test_grid_device_key_and_cli_override(tmp_path):
    from dike.runner import load_grid
    g = tmp_path / "g.yaml"
    g.write_text("name: g\nexperiments:\n  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    limit: 4\n"
                 "    device: cpu\n    dtype: auto\n")
    runs = load_grid(g).runs
    assert [(r["device"], r["dtype"]) for r in runs] == [("cpu", "fp32")]
    assert load_grid(g, dtype="bf16").runs[0]["dtype"] == "bf16"
    g.write_text("name: g\nexperiments:\n  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    device: cuda\n")
    gpu = load_grid(g, validate=False).runs[0]            # status/collect of a GPU grid on a CPU login node
    assert (gpu["device"], gpu["dtype"]) == ("cuda:0", "bf16") and gpu["run_id"] != runs[0]["run_id"]
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU"): load_grid(g)     # running it needs one
    g.write_text("name: g\nexperiments:\n  - models: [tiny-llama]\n    benchmarks: [crows_pairs]\n    device: tpu\n")
    with pytest.raises(ConfigError, match=r"experiments\[0\].*device 'tpu'"): load_grid(g)


def test_cli_eval_records_device_and_dtype(tmp_path, data_dir):
    import json
    from dike.cli import main
    out = tmp_path / "o"
    assert main(["eval", "tiny-llama", "crows_pairs", "--limit", "4", "--n-boot", "10", "--device", "cpu",
                 "--dtype", "auto", "--out", str(out), "--quiet"]) == 0
    rec = json.loads((out / "crows_pairs" / "metrics.json").read_text())
    assert rec["model"]["device"] == "cpu" and rec["model"]["dtype"] == "fp32"
    if not torch.cuda.is_available():
        assert main(["eval", "tiny-llama", "crows_pairs", "--device", "cuda", "--quiet"]) == 2   # one-line ModelError


def test_compressed_cache_key_keeps_cpu_keys_and_separates_devices():
    from dike.compress.apply import compress_key
    k = compress_key("abc", "magnitude:0.5")
    assert compress_key("abc", "magnitude:0.5", device="cpu") == k
    assert compress_key("abc", "magnitude:0.5", device="cuda:1") == compress_key("abc", "magnitude:0.5", device="cuda") != k


def _tiny_gpt2(tmp_path, n_layer=2):
    from transformers import GPT2Config, GPT2LMHeadModel
    tok = load_model("tiny-llama").tokenizer
    torch.manual_seed(0)
    d = tmp_path / f"gpt2-{n_layer}"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=n_layer, n_head=4,
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_structured_steps_paper_yaml_keeps_off_gpt2_fail_in_one_line(tmp_path):
    "Why paper.yaml gives heads/ffn to SmolLM2 only and distill:6 not to DistilGPT-2 (6 layers)."
    from dike.core import SpecError
    from dike.compress.apply import compress
    lm = load_model(str(_tiny_gpt2(tmp_path)))
    for spec, msg in (("heads:0.5", "no supported attention layout"), ("distill:2", "the student needs 1 to 1 layers")):
        with pytest.raises(SpecError, match=msg) as e:
            compress(lm, spec, calib=CALIB, heldout=HELDOUT, progress=False, n_calib=2)
        assert "\n" not in str(e.value)


def test_paper_grid_dry_run_offline_lists_each_missing_model(capsys):
    "`dike run paper.yaml --dry-run`: valid for every model it can see; a line per hub model that is not cached (exit 2)."
    from dike.cli import main
    from dike.core import DikeError, project_root
    from dike.models import model_fingerprint
    from dike.runner import read_yaml
    g = project_root() / "experiments/grids/paper.yaml"
    models = list(dict.fromkeys(m for e in read_yaml(g)["experiments"] for m in e["models"]))
    missing = []
    for m in models:
        try: model_fingerprint(m)
        except DikeError: missing.append(m)
    rc = main(["run", str(g), "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    if not missing:
        assert rc == 0
        return
    assert rc == 2 and len(err) == len(missing)
    assert [next(m for m in missing if f"model {m!r}" in line) for line in err] == missing


@pytest.mark.parametrize("spec", ["wanda:0.5:fair=2:pairs=8", "magnitude:0.5:fair=2:pairs=8", "fair-gptq:4:g16:pairs=8", "fair-heads:0.25:pairs=8",
                                  "distill:1:steps=2:texts=16:seq=16"])
def test_data_driven_compression_paths_name_their_devices(spec, data_dir):
    "The methods that read fairness pairs (StereoSet training half) or teaching text: same audit."
    from dike.compress.apply import compress
    lm = load_model("tiny-llama")
    with DeviceAudit() as a:
        compress(lm, spec, n_calib=2, progress=False, report=False)
    assert a.calls and a.without_device() == []


def test_head_attribution_and_shift_name_their_devices():
    import pandas as pd
    from dike.anatomy import head_attribution
    from dike.heads import head_shift
    lm = load_model("tiny-llama")
    pairs = pd.DataFrame({"stereotype": ["the man is a doctor", "he said no"], "anti_stereotype": ["the woman is a doctor", "she said no"]})
    with DeviceAudit() as a:
        head_attribution(lm, pairs, batch_size=2)
        head_shift(lm, lm, HELDOUT, batch_size=2)
    assert a.calls and a.without_device() == []



def _flops_module():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks"))
    import flops
    return flops


def test_causal_flop_floor_counts_shared_prefixes_once_by_hand():
    "benchmarks/flops.py on tiny-llama: token-id requests with shared inputs, counted by hand from the config."
    causal_flops = _flops_module().causal_flops
    lm = load_model("tiny-llama")
    c = lm.model.config
    H, I, L, V, hd = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size, c.head_dim
    lin = L * (2 * H * c.num_attention_heads * hd + 2 * H * c.num_key_value_heads * hd + 3 * H * I)   # q, o; k, v; MLP
    d = c.num_attention_heads * hd
    # inputs (context + continuation, last token dropped): [1, 5] and [1, 5]: 2 distinct nodes, both scored
    fl = causal_flops(lm, [([1], [5, 6]), ([1], [5, 7])], batch_size=16, row_tokens=128)
    assert fl["input_tokens"] == 4 and fl["distinct_nodes"] == 2 and fl["scored_nodes"] == 2
    assert fl["floor_flops"] == 2 * 2 * lin + L * 4 * d * (1 + 2) + 2 * 2 * H * V
    assert fl["engine_flops"] == 2 * 2 * lin + L * 4 * d * 2 * 2 + 2 * 2 * H * V       # one row of 2 nodes, 2 x 2 attention
    # sorted inputs [1, 5] (scores node 5 -> 7) and [1, 5, 6] (scores 1, 5, 6); rows of <= max(2, 3) = 3 nodes: one row
    fl = causal_flops(lm, [([1], [5, 6, 9]), ([1, 5], [7])], batch_size=1, row_tokens=2)
    assert fl["distinct_nodes"] == 3 and fl["scored_nodes"] == 3 and fl["engine_rows"] == 1
    assert fl["floor_flops"] == 3 * 2 * lin + L * 4 * d * (1 + 2 + 3) + 3 * 2 * H * V
    assert fl["engine_flops"] == 3 * 2 * lin + L * 4 * d * 9 + 3 * 2 * H * V


def test_mlm_flops_match_the_bert_closed_form():
    "benchmarks/flops.py on tiny-bert: a duplicated masked copy counts once; BERT's layers by hand from the config."
    mlm_flops = _flops_module().mlm_flops
    lm = load_model("tiny-bert")
    c = lm.model.config
    H, I, L, V = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    per_copy = lambda T: L * (2 * T * (4 * H * H + 2 * H * I) + 4 * T * T * H) + 2 * T * H * H + 2 * H * V
    jobs = [([2, 7, 4, 8, 3], 1, 9), ([2, 7, 4, 8, 3], 1, 9), ([2, 4, 8, 3], 2, 5)]
    assert mlm_flops(lm, jobs, trimmed=False) == per_copy(5) + per_copy(4)
    # trimmed (dike.scoring._last_layer_at_masks): the last layer's K and V on all T rows, its Q, O, MLP, the head's
    # transform and the vocabulary on the masked row, which attends to T keys
    trimmed = lambda T: ((L - 1) * (2 * T * (4 * H * H + 2 * H * I) + 4 * T * T * H) + 2 * T * 2 * H * H
                         + 2 * (2 * H * H + 2 * H * I) + 4 * T * H + 2 * H * H + 2 * H * V)
    assert mlm_flops(lm, jobs) == trimmed(5) + trimmed(4) < per_copy(5) + per_copy(4)
