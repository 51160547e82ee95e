#!/usr/bin/env python
"""dike.scoring.loglik vs lm-evaluation-harness's own HFLM.loglikelihood on the first N CrowS-Pairs pairs (smollm2-135m).

lm_eval is not a dike dependency; install it into a throwaway directory without touching the venv, then run:

    .venv/bin/pip install --no-deps --target /tmp/lmeval lm_eval==0.4.13
    PYTHONPATH=/tmp/lmeval DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/lmeval_parity.py 50

The requests are those of lm-eval's `crows_pairs_english` task: ("", sent_more), ("", sent_less) (doc_to_text "",
target_delimiter ""). Prints max/mean |dike - lm-eval| and how many pairs get the same decision.
"""
import json, sys, time

import numpy as np

from dike.data import load
from dike.models import load_model
from dike.scoring import loglik


def main(n: int = 50):
    import lm_eval
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    lm = load_model("smollm2-135m")
    df = load("crows_pairs").iloc[:n]
    reqs = [("", s) for p in zip(df.sent_more, df.sent_less) for s in p]
    h = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=16)
    inst = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(reqs)]
    t = time.perf_counter(); ref = np.array([x[0] for x in h.loglikelihood(inst, disable_tqdm=True)]); t_ref = time.perf_counter() - t
    t = time.perf_counter(); ours = loglik(lm, reqs, batch_size=16); t_ours = time.perf_counter() - t
    d = np.abs(ours - ref)
    print(json.dumps({"lm_eval": getattr(lm_eval, "__version__", "?"), "pairs": n, "sentences": len(reqs),
                      "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
                      "same_decision": int(((ref[0::2] > ref[1::2]) == (ours[0::2] > ours[1::2])).sum()),
                      "lm_eval_first_pair": ref[:2].round(4).tolist(), "dike_first_pair": ours[:2].round(4).tolist(),
                      "lm_eval_s": round(t_ref, 1), "dike_s": round(t_ours, 1)}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
