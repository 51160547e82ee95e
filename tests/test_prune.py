"""Pruning (dike.compress.prune) on the registry's tiny models: exact sparsity, N:M patterns, Wanda vs magnitude and
vs a direct reference computation, head/neuron removal, determinism; one slow check on smollm2-135m."""
import pytest
import torch
from dike.models import load_model, tiny_model
from dike.compress.apply import compress
from dike.anatomy import prunable_linears
from dike.corpora import calib_batches
from dike.compress.prune import n_pruned, attention_units

CALIB = ["the doctor said that the nurse was kind and the teacher was smart", "my mother and father work in the city",
         "the young man asked the old woman about her job", "the children go to school every day with their friends",
         "a lawyer and an engineer live in the same house", "the police officer told the driver to stop"] * 3
HELDOUT = ["the girl and the boy were happy", "his brother is a doctor"]


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-bert"])
def lm(request):
    return load_model(request.param)


def _zeros(model):
    return {n: (l.weight == 0) for n, l in prunable_linears(model).items()}


@pytest.mark.parametrize("s", [0.1, 0.5, 0.73])
def test_magnitude_sparsity_exact_per_layer(lm, s):
    new, rep = compress(lm, f"magnitude:{s}", progress=False, report=False)
    for name, lin in prunable_linears(new.model).items():
        assert int((lin.weight == 0).sum()) == n_pruned(s, lin.weight.numel()), name
    assert all(torch.equal(a, b) for a, b in zip(lm.model.get_input_embeddings().parameters(),
                                                  new.model.get_input_embeddings().parameters()))


def test_magnitude_global_exact_total_and_threshold(lm):
    new, rep = compress(lm, "magnitude-global:0.6", progress=False, report=False)
    old = prunable_linears(lm.model)
    z = _zeros(new.model)
    total = sum(l.weight.numel() for l in old.values())
    assert sum(int(m.sum()) for m in z.values()) == n_pruned(0.6, total)
    pruned = torch.cat([old[n].weight.abs()[m] for n, m in z.items()])
    kept = torch.cat([old[n].weight.abs()[~m] for n, m in z.items()])
    assert pruned.max() <= kept.min()
    per_layer = [float(m.float().mean()) for m in z.values()]
    assert max(per_layer) - min(per_layer) > 0.01                  # global: layers end up with different sparsities


@pytest.mark.parametrize("spec,n,m", [("nm:2:4", 2, 4), ("nm:4:8", 4, 8), ("nm:1:4:wanda", 1, 4)])
def test_every_nm_group_holds_the_pattern(lm, spec, n, m):
    new, _ = compress(lm, spec, calib=CALIB, progress=False, report=False)
    for name, lin in prunable_linears(new.model).items():
        nz = (lin.weight != 0).reshape(lin.out_features, -1, m).sum(-1)
        assert int(nz.max()) <= n, name
        assert int(nz.min()) == n, name                            # random weights: no group was already sparse


def test_wanda_rows_exact_and_mask_differs_from_magnitude(lm):
    w, _ = compress(lm, "wanda:0.5", calib=CALIB, progress=False, report=False)
    mg, _ = compress(lm, "magnitude:0.5", progress=False, report=False)
    zw, zm = _zeros(w.model), _zeros(mg.model)
    for name, lin in prunable_linears(w.model).items():
        assert torch.equal(zw[name].sum(1), torch.full((lin.out_features,), n_pruned(0.5, lin.in_features)))
    differ = sum(int((zw[n] != zm[n]).sum()) for n in zw)
    assert differ > 0.05 * sum(m.numel() for m in zw.values())


def test_wanda_matches_direct_reference_on_one_block():
    # With a single block, all its layers see the unpruned model's activations: the reference is one forward pass with
    # hooks, scores |W| * ||X_j||, and the per-row smallest half removed.
    lm = tiny_model("causal", seed=1, num_hidden_layers=1)
    one = lm.model
    sq = {}
    hooks = [l.register_forward_pre_hook(lambda mod, a, n=n: sq.__setitem__(
        n, sq.get(n, 0) + a[0].reshape(-1, a[0].shape[-1]).double().pow(2).sum(0)))
        for n, l in prunable_linears(one).items()]
    with torch.no_grad():
        for b in calib_batches(lm, CALIB): one(input_ids=b)
    for h in hooks: h.remove()
    new, _ = compress(lm, "wanda:0.5", calib=CALIB, progress=False, report=False)
    for n, l in prunable_linears(one).items():
        score = l.weight.abs() * sq[n].sqrt().float()[None]
        thr = score.sort(1).values[:, l.in_features // 2 - 1: l.in_features // 2]
        ref = score <= thr
        assert torch.equal(prunable_linears(new.model)[n].weight == 0, ref), n


def test_same_spec_and_seed_give_identical_weights(lm):
    spec = "wanda:0.4+heads:0.25+ffn:0.25"
    a, _ = compress(lm, spec, seed=3, calib=None, n_calib=16, progress=False, report=False)
    b, _ = compress(lm, spec, seed=3, calib=None, n_calib=16, progress=False, report=False)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    c, _ = compress(lm, "wanda:0.4:seed=4", n_calib=16, progress=False, report=False)   # the calibration seed is in the spec
    d, _ = compress(lm, "wanda:0.4:seed=3", n_calib=16, progress=False, report=False)
    assert any(not torch.equal(x, y) for x, y in zip(_zeros(c.model).values(), _zeros(d.model).values()))


def test_head_pruning_removes_heads_and_model_runs(lm):
    new, rep = compress(lm, "heads:0.5", calib=CALIB, heldout=HELDOUT, progress=False)
    st = rep["steps"][0]
    before, after = attention_units(lm.model), attention_units(new.model)
    nq0, nq1 = sum(u["nq"] for u in before), sum(u["nq"] for u in after)
    assert nq0 - nq1 == st["heads_removed"] == nq0 // 2
    assert all(u["units"] >= 1 for u in after)
    # GQA: whole KV groups go (k/v rows shrink with the queries); BERT: single heads
    for u0, u1 in zip(before, after):
        assert u1["nq"] // u1["units"] == u0["nq"] // u0["units"]
        assert u1["o"].in_features == u1["nq"] * u1["d"]
    d = before[0]["d"]; h = lm.model.config.hidden_size
    n_units = st["units_removed"]
    if lm.kind == "causal":   # a KV group: 2 query heads (q rows, o columns) + one k and one v head (rows), no biases
        expected = n_units * (2 * (2 * h * d) + 2 * h * d)
    else:                     # a BERT head: q, k, v rows with their biases + output columns
        expected = n_units * (4 * h * d + 3 * d)
    assert rep["base_params_total"] - rep["params_total"] == expected
    ids = torch.tensor([[lm.tokenizer.cls_token_id or lm.tokenizer.bos_token_id or 1, 10, 20, 30, 40]])
    assert torch.isfinite(new.model(input_ids=ids)[0]).all()


@pytest.mark.slow
def test_smollm2_magnitude_and_heads(tmp_path, monkeypatch):
    monkeypatch.setenv("DIKE_CACHE_DIR", str(tmp_path))
    lm = load_model("smollm2-135m")
    mag, _ = compress(lm, "magnitude:0.5", progress=False, report=False)
    for name, lin in prunable_linears(mag.model).items():       # GGUF weights have many ties: still exact
        assert int((lin.weight == 0).sum()) == n_pruned(0.5, lin.weight.numel()), name
    new, rep = compress(mag, "heads:0.25", n_calib=16, progress=False, report=False)
    st = rep["steps"][0]
    assert (st["unit"], st["query_heads_per_unit"], st["units_total"]) == ("kv-group", 3, 90)
    assert st["units_removed"] == n_pruned(0.25, 90) == 23 and st["heads_removed"] == 69
    assert sum(u["nq"] for u in attention_units(new.model)) == 270 - 69
    ids = lm.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad(): logits = new.model(input_ids=ids).logits
    assert torch.isfinite(logits).all() and logits.shape[-1] == lm.model.config.vocab_size


def test_fair_wanda_tiny_llama(data_dir, monkeypatch):
    "wanda:S:fair=L: L=0 is Wanda; L>0 prunes another mask at the same sparsity; pairs from the training half."
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    import dike.data as D
    from dike.models import load_model
    from dike.compress.apply import compress, weight_digest
    lm = load_model("tiny-llama")
    a, ra = compress(lm, "wanda:0.5", n_calib=4, progress=False)
    b, _ = compress(lm, "wanda:0.5:fair=0", n_calib=4, progress=False, report=False)
    c, rc = compress(lm, "wanda:0.5:fair=2:pairs=16", n_calib=4, progress=False)
    assert weight_digest(a.model) == weight_digest(b.model) != weight_digest(c.model)
    assert abs(rc["sparsity"] - ra["sparsity"]) < 1e-9                       # same per-row budget
    st = rc["steps"][0]
    assert st["fair"] == 2.0 and st["n_pairs"] == 16 and set(st["fair_items"]) <= set(D.load("stereoset", split="train").item_id)


def test_fair_heads_tiny_llama(data_dir, monkeypatch):
    "FASP: the protected (most important) units stay, F of the units go, chosen to shrink the stereotype gap."
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    import dike.data as D
    from dike.models import load_model
    from dike.compress.apply import compress
    lm = load_model("tiny-llama")
    c, r = compress(lm, "fair-heads:0.25:gamma=0.25:pairs=16", n_calib=4, progress=False, report=False)
    st = r["steps"][0]
    assert (st["units_removed"], st["units_total"], st["units_protected"]) == (1, 4, 1)
    assert abs(st["gap_predicted_after"]) <= abs(st["gap_before"])
    assert sum(u.self_attn.k_proj.out_features for u in c.model.model.layers) == \
        sum(u.self_attn.k_proj.out_features for u in lm.model.model.layers) - lm.model.model.layers[0].self_attn.head_dim
    assert set(st["fair_items"]) <= set(D.load("stereoset", split="train").item_id)
    with pytest.raises(Exception, match="protected"):
        compress(lm, "fair-heads:0.5:gamma=0.75:pairs=8", n_calib=4, progress=False, report=False)


def test_fair_magnitude_tiny_llama(data_dir, monkeypatch):
    "magnitude:S:fair=L: L=0 is magnitude; L>0 another mask with the same per-layer counts; pairs from the training half."
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    import dike.data as D
    from dike.models import load_model
    from dike.compress.apply import compress, weight_digest
    from dike.anatomy import prunable_linears
    from dike.compress.prune import n_pruned
    lm = load_model("tiny-llama")
    a, _ = compress(lm, "magnitude:0.5", progress=False, report=False)
    b, _ = compress(lm, "magnitude:0.5:fair=0", progress=False, report=False)
    c, rc = compress(lm, "magnitude:0.5:fair=2:pairs=16", progress=False, report=False)
    assert weight_digest(a.model) == weight_digest(b.model) != weight_digest(c.model)
    for n, l in prunable_linears(c.model).items():
        assert int((l.weight == 0).sum()) == n_pruned(0.5, l.weight.numel()), n
    st = rc["steps"][0]
    assert st["fair"] == 2.0 and st["n_pairs"] == 16 and set(st["fair_items"]) <= set(D.load("stereoset", split="train").item_id)
    scoped, _ = compress(lm, "magnitude:0.5:fair=2:pairs=8:layers=1", progress=False, report=False)
    base = dict(lm.model.named_parameters())
    for n, p in scoped.model.named_parameters():
        assert torch.equal(p, base[n]) == (".layers.1." not in n or "norm" in n), n
