"""Cost and first effect of the teaching adapter (issue 14) on a real model: training minutes, the concept probe's held-out
AUC before and after, and the held-out pair preference at s = 0, 0.5, 1, 1.5.

    DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_teach.py [--model smollm2-135m] [--steps 30] [--probe 300]

1. `dike.teach.concept_probe` on the base model (fit on `--probe` training-half items, AUC on `--probe` held-out items);
2. `compress(model, "teach:s=1:steps=N", n_calib=8)`: trains the adapter (cached in `cache_dir('teach')`), prints the
   training time per step and the parity / KL losses (mean of the first and last 10% of the steps);
3. s = 0, 0.5, 1.5 from the cached adapter (no training: the time of each is the merge);
4. on `--pairs` held-out intrasentence items: share with log p(stereotype) > log p(anti-stereotype) and the mean gap,
   per s (a preview, not the benchmark: the grid `experiments/grids/teach.yaml` measures with CIs);
5. the probe refit on the taught model (s = 1): does the model still know the concept?
6. the same for the `leace` baseline (erasure of that concept on the last block): probe AUC and pair preference.
"""
import argparse, time
import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--probe", type=int, default=300, help="items per half for the probes; 0 = no probes")
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--n-calib", type=int, default=8)
    a = ap.parse_args()
    from dike.core import set_threads
    from dike.models import load_model
    from dike.compress.apply import compress
    from dike.evaluate import evaluate
    from dike.scoring import encode_sentences, sequence_logprob, pad_id
    from dike.teach import concept_rows

    def concept_probe(m):                                   # the concept_probe benchmark: a.probe items per half
        items, r = evaluate(m, "concept_probe", limit=a.probe, n_boot=1000, progress=False)
        return {**r["metrics"], "n_eval_items": int(items.item_id.nunique())}
    print(f"threads {set_threads()}", flush=True)
    lm = load_model(a.model)
    t = time.perf_counter()
    if a.probe:
        pb = concept_probe(lm)
        print(f"probe base: AUC {pb['auc']['estimate']:.3f} [{pb['auc']['ci_low']:.3f}, {pb['auc']['ci_high']:.3f}] "
              f"pair acc {pb['pair_accuracy']['estimate']:.3f} (n={pb['n_eval_items']} held-out items, last block) "
              f"{time.perf_counter() - t:.0f} s", flush=True)
    from dike.corpora import calib_rows
    t = time.perf_counter()
    calib_rows(lm, "wikitext", a.n_calib, 0)             # the leak-filtered pool, drawn once per process: timed apart
    print(f"calibration sample (leak-filtered WikiText-2 valid pool): {time.perf_counter() - t:.0f} s", flush=True)
    held = concept_rows("heldout", a.pairs, seed=1)
    seqs = encode_sentences(lm.tokenizer, held.text.tolist())

    @torch.no_grad()
    def pref(m):
        ll = torch.cat([sequence_logprob(m.model, seqs[i:i + 32], pad_id(m.tokenizer)) for i in range(0, len(seqs), 32)]).numpy()
        gap = ll[0::2] - ll[1::2]                      # rows alternate stereotype, anti-stereotype per item
        return float((gap > 0).mean()), float(gap.mean())

    print(f"s=base: share stereo>anti {pref(lm)[0]:.3f}, mean gap {pref(lm)[1]:.3f}", flush=True)
    spec = f"teach:s=1:steps={a.steps}"
    t = time.perf_counter()
    m1, r1 = compress(lm, spec, n_calib=a.n_calib, progress=False, report=False)
    st = r1["steps"][0]
    tr = st["train"]
    print(f"{spec}: step {st['seconds']} s, adapter hit={st['adapter']['hit']}, training {tr.get('time_s', 0) / 60:.2f} min "
          f"({tr.get('s_per_step')} s/step, {tr.get('trainable_params')} LoRA params); parity {tr.get('parity_first'):.3f} -> "
          f"{tr.get('parity_last'):.3f}, kl {tr.get('kl_first', 0):.4f} -> {tr.get('kl_last', 0):.4f}", flush=True)
    for s in (0, 0.5, 1, 1.5):
        m, r = (m1, r1) if s == 1 else compress(lm, f"teach:s={s}:steps={a.steps}", n_calib=a.n_calib, progress=False, report=False)
        p = pref(m)
        print(f"s={s}: share stereo>anti {p[0]:.3f}, mean gap {p[1]:.3f} (step {r['steps'][0]['seconds']} s, "
              f"hit={r['steps'][0]['adapter']['hit']})", flush=True)
        if s != 1: del m
    t = time.perf_counter()
    if a.probe:
        pt = concept_probe(m1)
        print(f"probe taught s=1: AUC {pt['auc']['estimate']:.3f} [{pt['auc']['ci_low']:.3f}, {pt['auc']['ci_high']:.3f}] "
              f"pair acc {pt['pair_accuracy']['estimate']:.3f} {time.perf_counter() - t:.0f} s", flush=True)
    del m1
    t = time.perf_counter()
    me, re_ = compress(lm, "leace", progress=False, report=False)
    st = re_["steps"][0]
    p = pref(me)
    print(f"leace (layer {st['layer']}, {st['n_pairs']} pairs, class gap {st['class_gap_before']:.3g} -> {st['class_gap_after']:.2g}, "
          f"features moved {st['rel_change']:.3f}): share stereo>anti {p[0]:.3f}, mean gap {p[1]:.3f} "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    if a.probe:
        pe = concept_probe(me)
        print(f"leace probe AUC {pe['auc']['estimate']:.3f} [{pe['auc']['ci_low']:.3f}, {pe['auc']['ci_high']:.3f}]", flush=True)


if __name__ == "__main__":
    main()
