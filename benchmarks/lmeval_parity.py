#!/usr/bin/env python
"""dike.scoring.loglik against lm-evaluation-harness's own HFLM.loglikelihood on CrowS-Pairs (smollm2-135m, fp32):
both times, their ratio, per-sentence agreement and the engine's distance to its FLOP floor, in one invocation.

lm_eval is not a dike dependency; install it into a throwaway directory without touching the venv, then run:

    .venv/bin/pip install --no-deps --target /tmp/lmeval lm_eval==0.4.13
    PYTHONPATH=/tmp/lmeval DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/lmeval_parity.py            # 1,508 pairs, 3 repeats
    PYTHONPATH=/tmp/lmeval DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/lmeval_parity.py --pairs 50 --repeats 1

The requests are those of lm-eval's `crows_pairs_english` task: ("", sent_more), ("", sent_less) (doc_to_text "",
target_delimiter ""), here on dike's original CrowS-Pairs file. Both run in this process on the same loaded model, batch
size 16, one after the other (their order alternates between repeats); the times are medians over the repeats. The
FLOP floor is `benchmarks/flops.py`'s (one global prefix trie, best dense 1024^3 fp32 matmul rate of this run). Prints
one JSON line; exits 1 if a sentence differs by more than 1e-3 nats or a pair's decision differs.
"""
import argparse, json, sys, time

import numpy as np
import torch

from flops import causal_flops, matmul_rate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=0, help="first N pairs (0: all 1,508)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="smollm2-135m")
    a = ap.parse_args(argv)
    import lm_eval
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from dike.core import set_threads
    from dike.data import load
    from dike.models import load_model
    from dike.scoring import loglik
    set_threads()
    lm = load_model(a.model)
    df = load("crows_pairs")
    df = df.iloc[:a.pairs] if a.pairs else df
    reqs = [("", s) for p in zip(df.sent_more, df.sent_less) for s in p]
    h = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=16)
    inst = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(reqs)]
    run = {"lm_eval": lambda: np.array([x[0] for x in h.loglikelihood(inst, disable_tqdm=True)]),
           "dike": lambda: loglik(lm, reqs, batch_size=16)}
    rate, times, out = matmul_rate(), {k: [] for k in run}, {}
    for r in range(a.repeats):
        for k in (("lm_eval", "dike") if r % 2 == 0 else ("dike", "lm_eval")):
            t = time.perf_counter(); out[k] = run[k](); times[k].append(time.perf_counter() - t)
    rate = max(rate, matmul_rate())
    fl = causal_flops(lm, reqs, batch_size=16, row_tokens=128)
    ref, ours = out["lm_eval"], out["dike"]
    d = np.abs(ours - ref)
    same = int(((ref[0::2] > ref[1::2]) == (ours[0::2] > ours[1::2])).sum())
    med = {k: float(np.median(v)) for k, v in times.items()}
    floor_s = fl["floor_flops"] / rate
    print(json.dumps({"lm_eval": getattr(lm_eval, "__version__", "?"), "torch_threads": torch.get_num_threads(),
                      "pairs": len(df), "sentences": len(reqs), "input_tokens": fl["input_tokens"], "repeats": a.repeats,
                      "lm_eval_s": [round(x, 1) for x in times["lm_eval"]], "dike_s": [round(x, 1) for x in times["dike"]],
                      "lm_eval_median_s": round(med["lm_eval"], 1), "dike_median_s": round(med["dike"], 1),
                      "speedup": round(med["lm_eval"] / med["dike"], 2),
                      "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()), "same_decision": same,
                      "floor_gflop": round(fl["floor_flops"] / 1e9, 1), "matmul_gflops": round(rate / 1e9, 1),
                      "floor_s": round(floor_s, 1), "dike_over_floor": round(med["dike"] / floor_s, 2),
                      "engine_flops_over_floor": round(fl["engine_flops"] / fl["floor_flops"], 3)}))
    return 0 if d.max() <= 1e-3 and same == len(df) else 1


if __name__ == "__main__":
    sys.exit(main())
