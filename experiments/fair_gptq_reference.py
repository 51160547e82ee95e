"""Fair-GPTQ: dike's `fair_gptq_layer` against the authors' own code on one real layer (issue 29; outside CI).

The authors' code (github.com/upunaprosk/fair-gptq: `gptq.py` and `config.py`, a patch over GPTQModel 2.2.0) is read
from a checkout or a bare snapshot and overlaid, in a temporary folder, on the GPTQModel 2.2.0 source; nothing of it
is copied into this repository. Their `GPTQ` class accumulates H and H_Δ from pairs fed two sentences at a time
(`add_batch`, position-aligned) and quantizes (`quantize`); dike's `fair_gptq_layer` is then given those same two
matrices with the matching options (`qh=h`, `sym=1`, their mode), so what is compared is the target and the
quantization, not the accumulation. Only pairs whose two sentences have the same number of tokens are fed (no pads:
position alignment is then well defined, and dike's `pair_deltas` sees the same positions). Printed: the share of
equal levels, the relative difference of the targets, and each layer's output error on held-out calibration inputs.
A control line shows how much GPTQ itself moves when its input weight is perturbed by float32 round-off: GPTQ's error
feedback cascades a single flipped rounding along a row, so on a real layer level agreement is only meaningful next to
that control.

Setup (once):
    pip download gptqmodel==2.2.0 --no-deps --no-build-isolation -d /tmp/gqm && tar xzf /tmp/gqm/gptqmodel-2.2.0.tar.gz -C /tmp/gqm
    pip install --target /tmp/gqm/deps logbar            # GPTQModel's logger; not a dike dependency
Run:
    DIKE_DATA_DIR=../shared/data python experiments/fair_gptq_reference.py --fair-gptq /work/.mirror/upunaprosk+fair-gptq/repo \
        --gptqmodel /tmp/gqm/gptqmodel-2.2.0 --deps /tmp/gqm/deps [--layer 3] [--module mlp.down_proj] [--alpha 0.1]
"""
from __future__ import annotations
import argparse, importlib, shutil, subprocess, sys, tempfile, types
from pathlib import Path
import torch
from torch import nn


def _read(repo: Path, name: str) -> str:
    "A file of the fair-gptq checkout, or of a bare snapshot (git show HEAD:name)."
    if (repo / name).is_file(): return (repo / name).read_text()
    return subprocess.run(["git", "--git-dir", str(repo), "show", f"HEAD:{name}"], check=True, capture_output=True, text=True).stdout


def authors_gptq(fair_repo: Path, gptqmodel_src: Path, deps: Path | None):
    "Their GPTQ class and QuantizeConfig: GPTQModel 2.2.0's package in a temp folder, their two files over it."
    tmp = Path(tempfile.mkdtemp(prefix="fairgptq-ref-"))
    shutil.copytree(gptqmodel_src / "gptqmodel", tmp / "gptqmodel")
    for f in ("gptq.py", "config.py"): (tmp / "gptqmodel" / "quantization" / f).write_text(_read(fair_repo, f))
    if deps: sys.path.insert(0, str(deps))
    pkg = types.ModuleType("gptqmodel"); pkg.__path__ = [str(tmp / "gptqmodel")]   # skip the package's heavy __init__
    sys.modules["gptqmodel"] = pkg
    g = importlib.import_module("gptqmodel.quantization.gptq")
    return g.GPTQ, importlib.import_module("gptqmodel.quantization.config").QuantizeConfig, \
        importlib.import_module("gptqmodel.looper.named_module").NamedModule


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fair-gptq", type=Path, required=True, help="checkout or bare snapshot of upunaprosk/fair-gptq")
    ap.add_argument("--gptqmodel", type=Path, required=True, help="the unpacked GPTQModel 2.2.0 sdist")
    ap.add_argument("--deps", type=Path, default=None, help="a folder with logbar (pip --target)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--module", default="mlp.down_proj")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--pairs", type=int, default=400, help="training-half pairs drawn (those of equal token length are fed)")
    a = ap.parse_args(argv)
    GPTQ, QuantizeConfig, NamedModule = authors_gptq(a.fair_gptq, a.gptqmodel, a.deps)
    from dike.models import load_model
    from dike.anatomy import BlockRunner, PairRunner, pair_deltas
    from dike.corpora import fair_pairs, calib_batches, text_sample
    from dike.compress.quant import FairOpts, fair_gptq_layer, fair_target, gptq_quantize, layer_error
    torch.manual_seed(0)
    lm = load_model(a.model)
    pairs, _ = fair_pairs(lm, a.pairs, 0)
    pairs = [p for p in pairs if len(p[0]) == len(p[1])]
    lin = dict(lm.model.model.layers[a.layer].named_modules())[a.module]
    pr = PairRunner(lm, pairs)
    for i in range(a.layer): pr.advance(i)
    xs = pr.inputs(a.layer, {a.module: lin})[a.module]
    W = lin.weight.detach().float()
    texts, _ = text_sample("calib", 16, 1)                   # held-out inputs of the layer, for its output error
    br, seen = BlockRunner(lm, calib_batches(lm, texts, seq_len=256)), []
    h = lin.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().reshape(-1, args[0].shape[-1])))
    for i in range(a.layer): br.advance(i)
    br.run(a.layer); h.remove()
    X = torch.cat(seen).float()
    for sum_h in (1, 0):
        cfg = QuantizeConfig(bits=4, group_size=128, alpha=a.alpha, desc_act=False, sym=True, sum_hessians=sum_h)
        ref = GPTQ(NamedModule(nn.Linear(W.shape[1], W.shape[0], bias=False), a.module, f"model.layers.{a.layer}.{a.module}", a.layer), cfg)
        ref.module.weight.data = W.clone(); ref.module_copy = W.clone()
        ref.quantizer.configure(perchannel=True)
        for k in range(len(pairs)): ref.add_batch(torch.stack([xs[2 * k], xs[2 * k + 1]]).float(), None)
        H, HD = ref.H.clone(), ref.H_x01.clone()
        Qa = ref.quantize(blocksize=128)[0].float()
        opts = FairOpts(a.alpha, mode="exact" if sum_h else "first", qh="h")
        Qd = fair_gptq_layer(W, H, HD, 4, 128, opts, sym=True)
        lev = lambda Q: torch.round(Q / W.abs().max() * 2 ** 20)
        same = float((lev(Qa) == lev(Qd)).float().mean())
        # the same target computed in float32, as their code computes it, then through the same GPTQ: the control
        base = H + HD if sum_h else H
        A = base + 0.01 * torch.diag(base).mean() * torch.eye(len(H))
        t32 = W - (torch.cholesky_inverse(torch.linalg.cholesky(A)) @ (HD @ W.T)).T
        t64 = fair_target(W, H, HD, 0.01, opts.mode)
        same_ctrl = float((lev(gptq_quantize(t64, H, 4, 128, sym=True)) == lev(gptq_quantize(t32, H, 4, 128, sym=True))).float().mean())
        rows = {"authors": layer_error(W, Qa, X), "dike": layer_error(W, Qd, X),
                "plain gptq (their H)": layer_error(W, gptq_quantize(W, H, 4, 128, sym=True), X)}
        print(f"mode={'exact (sum_hessians=1)' if sum_h else 'first (sum_hessians=0)'} alpha={a.alpha} layer={a.layer} "
              f"{a.module} {tuple(W.shape)}, {len(pairs)} equal-length pairs")
        print(f"  equal levels, authors vs dike: {same:.4f}")
        print(f"  control: dike's target in float64 vs the same target in float32, both through GPTQ: {same_ctrl:.4f} equal levels")
        print(f"  target: |dike - float32| / |target - W| = {float((t64 - t32).norm() / (t64 - W).norm()):.2e}")
        print("  held-out output error ||(W - Q) X||^2 / n: " + ", ".join(f"{k} {v:.4g}" for k, v in rows.items()))
    # dike's own H_Δ on the same equal-length pairs (suffix-aligned, the differing middle averaged) vs theirs, per trace of H
    r = torch.cat([pair_deltas(xs[2 * k].double(), xs[2 * k + 1].double(), *pairs[k]) for k in range(len(pairs))])
    x = torch.cat(xs).double()
    mine = (4 * a.alpha * r.T @ r / pr.n_tokens) / torch.trace(2 * x.T @ x / pr.n_tokens)
    theirs = HD.double() / torch.trace(H.double())
    print(f"dike's H_Δ/tr H vs theirs: relative difference {float((mine - theirs).norm() / theirs.norm()):.3f}, "
          f"traces {float(torch.trace(mine)):.4g} vs {float(torch.trace(theirs)):.4g}")


if __name__ == "__main__":
    main()
