#!/usr/bin/env python
"""Speed of dike's masked-LM pseudo-log-likelihood (CrowS-Pairs, Nangia scorer) against baselines measured in the same run.

On the same masked copies of CrowS-Pairs (original; the first --limit pairs, default 300; 0 = all 1,508):
  (a) the one-masked-copy-per-forward loop of Nangia et al.'s metric.py (our own implementation: batch of 1, full
      logits, log-softmax at the masked position);
  (b) dike's plain batched path (`_masked_logprobs(..., fast=False)`: length-sorted padded batches, full logits);
  (c) dike's scorer (`fast=True`: each distinct masked input once, one length per batch, vocabulary projection at the
      masked positions only, and in the last layer of a BERT-family model only the keys and values of every position:
      its query, attention output and feed-forward at the masked position alone);
  (c0) the same with the last layer run whole (dike's scorer before issue 27).
Prints wall time, masked copies/s, the speed-ups (a)/(c) and (b)/(c), the forward FLOPs of (c) divided by a dense fp32
matmul rate measured in the same run (the FLOP floor) and the largest per-sentence difference of (c) from (a), which
must be within float32 round-off (`dike.core.f32_tol` of one forward, scaled by the largest |sentence score|; exit 1
otherwise: GEMMs of other shapes sum in another order, so "equal" means equal to round-off). Threads: DIKE_THREADS or the usable cores.

    DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_mlm.py                  # tiny-bert (2 layers)
    .venv/bin/python benchmarks/bench_mlm.py --model bert-base-random --limit 50 --no-loop  # BertConfig() defaults
"""
from __future__ import annotations
import argparse, dataclasses, sys, time
import numpy as np
import torch

from flops import matmul_rate, mlm_flops


def model_of(name: str):
    from dike.models import load_model
    if name != "bert-base-random": return load_model(name)
    from transformers import BertConfig, BertForMaskedLM
    base = load_model("tiny-bert")                     # its tokenizer; ids stay inside BERT's vocabulary
    torch.manual_seed(0)
    return dataclasses.replace(base, name=name, model=BertForMaskedLM(BertConfig()).eval())


def crows_jobs(lm, limit):
    from dike.data import load
    from dike.scoring import pair_positions
    df = load("crows_pairs", variant="original")
    if limit: df = df.iloc[:limit]
    tok, mid = lm.tokenizer, lm.tokenizer.mask_token_id
    jobs, owner = [], []
    for k, (a, b) in enumerate(zip(df.sent_more, df.sent_less)):
        ia, ib = tok.encode(a), tok.encode(b)
        for side, (ids, ps) in enumerate(zip((ia, ib), pair_positions(ia, ib, "nangia"))):
            for p in ps:
                m = list(ids); m[p] = mid
                jobs.append((m, p, ids[p])); owner.append(2 * k + side)
    return jobs, np.array(owner), len(df)


@torch.inference_mode()
def loop(lm, jobs):
    out = np.empty(len(jobs))
    for i, (m, p, t) in enumerate(jobs):
        logits = lm.model(input_ids=torch.tensor([m], device=lm.device)).logits[0, p]
        out[i] = float(torch.log_softmax(logits.float(), -1)[t])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-bert", help="alias, or bert-base-random (BertConfig() defaults, random)")
    ap.add_argument("--limit", type=int, default=300, help="CrowS-Pairs pairs (0: all 1,508)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--no-loop", action="store_true", help="skip the (slow) one-copy-per-forward loop")
    a = ap.parse_args(argv)
    from dike.core import set_threads
    from dike.scoring import _masked_logprobs
    set_threads()
    lm = model_of(a.model)
    jobs, owner, n_pairs = crows_jobs(lm, a.limit)
    n_sent = 2 * n_pairs
    per_sentence = lambda lp: np.bincount(owner, weights=lp, minlength=n_sent)
    res = {}
    rate0 = matmul_rate()
    _masked_logprobs(lm, jobs[:64], a.batch_size, False, "warm-up")
    def whole_last():                      # the fast path with its last layer run whole (before issue 27)
        from contextlib import nullcontext
        from unittest.mock import patch
        with patch("dike.scoring._last_layer_at_masks", lambda m, at: nullcontext(False)):
            return _masked_logprobs(lm, jobs, a.batch_size, False, "fast, whole last layer", fast=True)
    for name, fn in (("dike", lambda: _masked_logprobs(lm, jobs, a.batch_size, False, "fast", fast=True)),
                     ("wholelast", whole_last),
                     ("batched", lambda: _masked_logprobs(lm, jobs, a.batch_size, False, "plain", fast=False)),
                     *((("loop", lambda: loop(lm, jobs)),) if not a.no_loop else ())):
        t = time.perf_counter(); lp = fn(); res[name] = (time.perf_counter() - t, per_sentence(lp))
    from dike.scoring import _bert_like
    trimmed = _bert_like(lm.model.base_model.encoder.layer[-1]) if hasattr(lm.model.base_model, "encoder") else False
    rate, flops = max(rate0, matmul_rate()), mlm_flops(lm, jobs, trimmed=trimmed)
    n_uniq = len({(tuple(m), p) for m, p, _ in jobs})
    print(f"{a.model}, {torch.get_num_threads()} threads: CrowS-Pairs {n_pairs} pairs, {len(jobs)} masked copies "
          f"({n_uniq} distinct)")
    for name, (sec, _) in res.items():
        print(f"  {name:>8}: {sec:8.2f} s  {len(jobs) / sec:9.0f} copies/s")
    t_fast = res["dike"][0]
    from dike.core import f32_tol, forward_terms       # float32 round-off of one computation in another summation order
    tol = f32_tol(res["batched"][1], forward_terms(lm.model.config))    # scaled by the largest |sentence score|
    print(f"  speed-up of dike over the batched path: {res['batched'][0] / t_fast:.2f}x; over its own fast path with the "
          f"last layer run whole: {res['wholelast'][0] / t_fast:.2f}x (max per-sentence difference "
          f"{float(np.max(np.abs(res['dike'][1] - res['wholelast'][1]))):.2e} nats)")
    ok = True
    if "loop" in res:
        diff = float(np.max(np.abs(res["dike"][1] - res["loop"][1])))
        ok = diff <= tol
        print(f"  speed-up of dike over the one-copy-per-forward loop: {res['loop'][0] / t_fast:.1f}x; "
              f"max per-sentence |dike - loop| = {diff:.2e} nats ({'ok' if ok else 'ABOVE'} the float32 tolerance {tol:.1e})")
    diff_b = float(np.max(np.abs(res["dike"][1] - res["batched"][1])))
    print(f"  max per-sentence |dike - batched| = {diff_b:.2e} nats")
    print(f"  FLOP floor: {flops / 1e9:.2f} GFLOP at {rate / 1e9:.1f} GFLOP/s (best dense 1024^3 fp32 matmul, before and after) = "
          f"{flops / rate:.2f} s; dike takes {t_fast / (flops / rate):.1f}x the floor")
    return 0 if ok and diff_b <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
