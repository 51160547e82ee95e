#!/usr/bin/env python
"""Speed of dike.scoring.loglik (prefix-trie engine) against a plain batched baseline measured in the same run.

For CrowS-Pairs (original, all 1,508 pairs by default), StereoSet and BBQ (seeded samples), on smollm2-135m:
wall time and input tokens/s of (a) the plain lm-eval algorithm (length-sorted right-padded batches, full logits) and
(b) the shared-prefix engine, the speed-up, and the largest difference between their scores (both are exact: the
difference is fp32 round-off). Then bf16 (opt-in in dike): its speed-up over fp32 and the change in scores.
FLOP floor (issue 15 §3): the matmul FLOPs the scoring cannot avoid (each distinct prefix-trie node of all the requests
once through every linear layer, attention to its ancestors only, the vocabulary head once per distinct scored node)
divided by a dense fp32 matmul rate measured in the same run (best of 5 timings of a 1024^3 matmul, before and after);
also the FLOPs the engine actually computes (its rows of <= row_tokens nodes, padded to the longest row of a pass,
full row x row attention), so the gap splits into extra work and speed per FLOP.
Threads: as many as usable cores (never more). Peak RSS is printed at the end.

    DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_scoring.py            # everything (~10 min)
    .venv/bin/python benchmarks/bench_scoring.py --only crows --no-baseline                # the ≤ 70 s target alone
"""
from __future__ import annotations
import argparse, copy, json, os, resource, time

import numpy as np
import torch

from flops import causal_flops, matmul_rate


def crows_requests(limit):
    from dike.data import load
    df = load("crows_pairs", variant="original")
    if limit: df = df.iloc[:limit]
    return [("", s) for p in zip(df.sent_more, df.sent_less) for s in p], f"{len(df)} pairs"


def stereoset_requests(limit, seed):
    "As dike.bench.stereoset's causal scorer: intrasentence = the sentence alone; intersentence = (context, ' ' + sentence)."
    from dike.data import load
    df = load("stereoset")
    if limit and limit < len(df): df = df.sample(n=limit, random_state=seed)
    reqs = []
    for r in df.itertuples(index=False):
        for c in ("stereotype", "anti_stereotype", "unrelated"):
            s = getattr(r, c)
            reqs.append(("", s) if r.task == "intrasentence" else (r.context, " " + s.lstrip()))
    return reqs, f"{len(df)} items"


def bbq_requests(limit, seed):
    "As dike.bench.bbq: the lm-eval prompt, three answers."
    from dike.data import load
    from dike.bench.bbq import bbq_requests as reqs_of
    df = load("bbq")
    if limit and limit < len(df): df = df.sample(n=limit, random_state=seed)
    return reqs_of(df), f"{len(df)} items"


def timed(fn):
    t = time.perf_counter(); out = fn(); return out, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--only", default="crows,stereoset,bbq", help="comma-separated subset of crows,stereoset,bbq")
    ap.add_argument("--crows-limit", type=int, default=0, help="pairs (0 = all 1,508)")
    ap.add_argument("--stereoset-limit", type=int, default=600, help="items sampled (0 = all)")
    ap.add_argument("--bbq-limit", type=int, default=600, help="items sampled (0 = all)")
    ap.add_argument("--batch-size", type=int, default=16, help="rows per pass (engine) / requests per pass (baseline)")
    ap.add_argument("--row-tokens", type=int, default=128)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)

    t_start = time.perf_counter()
    from dike.core import set_threads, usable_cores
    from dike.models import load_model
    from dike.scoring import loglik
    n_threads = set_threads()
    assert n_threads <= usable_cores(), "more threads than cores"
    lm, t_load = timed(lambda: load_model(a.model))
    print(f"model {a.model} fp32 loaded in {t_load:.1f} s; torch threads {torch.get_num_threads()} "
          f"(usable cores {usable_cores()}); load average {os.getloadavg()[0]:.2f}", flush=True)

    sets = {"crows": lambda: crows_requests(a.crows_limit),
            "stereoset": lambda: stereoset_requests(a.stereoset_limit, a.seed),
            "bbq": lambda: bbq_requests(a.bbq_limit, a.seed)}
    results = {}
    for name in a.only.split(","):
        reqs, what = sets[name]()
        fl = causal_flops(lm, reqs, a.batch_size, a.row_tokens)
        ntok = fl["input_tokens"]
        row = {"set": name, "items": what, "requests": len(reqs), **fl}
        rate0 = matmul_rate()
        fast, t_fast = timed(lambda: loglik(lm, reqs, batch_size=a.batch_size, row_tokens=a.row_tokens))
        rate = max(rate0, matmul_rate())
        row.update(engine_s=round(t_fast, 2), engine_tok_s=round(ntok / t_fast, 1),
                   matmul_gflop_s=round(rate / 1e9, 1), floor_s=round(fl["floor_flops"] / rate, 2),
                   engine_vs_floor=round(t_fast / (fl["floor_flops"] / rate), 3),
                   engine_flops_vs_floor=round(fl["engine_flops"] / fl["floor_flops"], 3))
        if not a.no_baseline:
            base, t_base = timed(lambda: loglik(lm, reqs, batch_size=a.batch_size, share_prefix=False))
            row.update(baseline_s=round(t_base, 2), baseline_tok_s=round(ntok / t_base, 1),
                       speedup=round(t_base / t_fast, 2), max_abs_diff_vs_baseline=float(np.abs(fast - base).max()))
        if name == "crows" and not a.no_bf16:
            lm16 = copy.copy(lm); lm16.model = copy.deepcopy(lm.model).to(torch.bfloat16); lm16.dtype = "bf16"
            b16, t16 = timed(lambda: loglik(lm16, reqs, batch_size=a.batch_size, row_tokens=a.row_tokens))
            d = b16 - fast
            agree = float(((b16[0::2] > b16[1::2]) == (fast[0::2] > fast[1::2])).mean())
            row.update(bf16_s=round(t16, 2), bf16_vs_fp32_floor=round(t16 / row["floor_s"], 3), bf16_speedup_vs_fp32=round(t_fast / t16, 2),
                       bf16_max_abs_diff=float(np.abs(d).max()), bf16_mean_abs_diff=float(np.abs(d).mean()),
                       bf16_pair_decisions_agree=agree)
            del lm16
        results[name] = row
        print(json.dumps(row), flush=True)

    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    total = time.perf_counter() - t_start
    print(f"\npeak RSS {rss_gib:.2f} GiB; total wall {total:.1f} s; load average now {os.getloadavg()[0]:.2f}")
    print(f"{'set':<10} {'requests':>8} {'tokens':>7} {'baseline s':>10} {'engine s':>9} {'tok/s base':>10} "
          f"{'tok/s eng':>9} {'speed-up':>8} {'max|diff|':>9}")
    for r in results.values():
        print(f"{r['set']:<10} {r['requests']:>8} {r['input_tokens']:>7} {r.get('baseline_s', float('nan')):>10.1f} "
              f"{r['engine_s']:>9.1f} {r.get('baseline_tok_s', float('nan')):>10.0f} {r['engine_tok_s']:>9.0f} "
              f"{r.get('speedup', float('nan')):>8.2f} {r.get('max_abs_diff_vs_baseline', float('nan')):>9.1e}")
    for r in results.values():
        print(f"{r['set']}: FLOP floor {r['floor_flops'] / 1e12:.2f} TFLOP ({r['distinct_nodes']} distinct trie nodes, "
              f"{r['scored_nodes']} scored) at {r['matmul_gflop_s']:.0f} GFLOP/s (best 1024^3 fp32 matmul) = "
              f"{r['floor_s']:.1f} s; engine {r['engine_s']:.1f} s = {r['engine_vs_floor']:.2f}x the floor "
              f"(it computes {r['engine_flops_vs_floor']:.2f}x the floor's FLOPs: {r['engine_rows']} rows, "
              f"{r['engine_padded_tokens']} padded tokens)")
        if "bf16_s" in r:
            print(f"{r['set']}: bf16 {r['bf16_s']:.1f} s ({r['bf16_vs_fp32_floor']:.2f}x the fp32 floor), pair decisions "
                  f"equal to fp32: {100 * r['bf16_pair_decisions_agree']:.1f} %, max |bf16 - fp32| "
                  f"{r['bf16_max_abs_diff']:.2f} nats")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "peak_rss_gib": rss_gib, "threads": n_threads, "total_s": total}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
