"""Speed of quantization and distillation on a real model (issue 4 targets, 2 cores: RTN < 30 s, GPTQ < 15 min).

Usage: DIKE_THREADS=2 python benchmarks/bench_quant.py [--model smollm2-135m] [--specs rtn:4:g128,gptq:4:g128]
       [--n-calib 128] [--distill-steps 20] [--json out.json]

For each spec it times `dike.compress.apply.compress` (the compression alone, no report) and prints, next to the
seconds, a baseline measured in the same process: one forward pass of the base model over 8 x 256 = 2048 tokens, so
that a slow (shared) machine can be told apart from a slow method; the CPU seconds of the process are printed too (on a
machine shared with other jobs, wall time overstates the method's cost). For `int8-dynamic` it also times the forward
pass of the quantized model over the same tokens (real int8 kernels). `--distill-steps N` runs `distill:L` (L = half
the blocks) for N steps and extrapolates the seconds of the default 200 steps from the measured seconds per step
(labelled as such).
"""
from __future__ import annotations
import argparse, json, os, time
import torch
from dike.core import set_threads
from dike.models import load_model
from dike.compress.apply import compress
from dike.corpora import calib_batches, text_sample
from dike.anatomy import transformer_blocks

TARGETS = {"rtn": 30.0, "gptq": 900.0}


def forward_ids(lm):
    texts, _ = text_sample("calib", 256, 1)
    return torch.cat([b for b in calib_batches(lm, texts, seq_len=256) if b.shape[1] == 256])[:8]


def timed_forward(model, ids, repeats: int = 3) -> float:
    "Median seconds of one forward pass over `ids`."
    ts = []
    with torch.inference_mode():
        for _ in range(repeats):
            t = time.perf_counter(); model(input_ids=ids); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--specs", default="rtn:4:g128,int8-dynamic,gptq:4:g128")
    ap.add_argument("--n-calib", type=int, default=128)
    ap.add_argument("--distill-steps", type=int, default=0, help="also time this many distillation steps (0: skip)")
    ap.add_argument("--json", default=None, help="write the results to this file")
    a = ap.parse_args(argv)
    threads = set_threads()
    t = time.perf_counter(); lm = load_model(a.model); load_s = time.perf_counter() - t
    ids = forward_ids(lm)
    c = time.process_time(); base = timed_forward(lm.model, ids); base_cpu = (time.process_time() - c) / 3
    head = {"model": a.model, "threads": threads, "load_s": round(load_s, 1), "forward_2048_s": round(base, 3),
            "forward_2048_cpu_s": round(base_cpu, 3), "loadavg": os.getloadavg()[0]}
    print(json.dumps(head), flush=True)
    rows = []
    for spec in [s for s in a.specs.split(",") if s]:
        t, c = time.perf_counter(), time.process_time()
        new, rep = compress(lm, spec, seed=0, n_calib=a.n_calib, progress=False, report=False)
        sec, cpu = time.perf_counter() - t, time.process_time() - c
        step = rep["steps"][0]
        target = TARGETS.get(spec.split(":")[0])
        row = {"spec": rep["spec"], "seconds": round(sec, 1), "cpu_seconds": round(cpu, 1),
               "x_forward_2048": round(sec / base, 1), "target_s": target,
               "within_target": None if target is None else sec < target, "loadavg": os.getloadavg()[0]}
        row["method_s"] = step.get("time_s")   # the quantization alone (compress also copies the model)
        for k in ("calib_tokens", "mean_err_ratio_gptq_over_rtn", "packed_bytes", "fp32_bytes"):
            if k in step: row[k] = step[k]
        if spec.startswith("int8-dynamic"):
            q = timed_forward(new.model, ids); f = timed_forward(lm.model, ids)
            row.update({"forward_2048_int8_s": round(q, 3), "forward_2048_fp32_s": round(f, 3), "int8_speedup": round(f / q, 2)})
        rows.append(row)
        print(json.dumps(row), flush=True)
        del new
    if a.distill_steps:
        L = len(transformer_blocks(lm.model)[1]) // 2
        spec = f"distill:{L}:steps={a.distill_steps}"
        t, c = time.perf_counter(), time.process_time()
        new, rep = compress(lm, spec, seed=0, progress=False, report=False)
        sec, cpu = time.perf_counter() - t, time.process_time() - c
        st = rep["steps"][0]
        row = {"spec": rep["spec"], "seconds": round(sec, 1), "cpu_seconds": round(cpu, 1),
               "train_s": st["time_s"], "s_per_step": st["s_per_step"],
               "extrapolated_200_steps_s": round(200 * st["s_per_step"], 0), "loss_first": round(st["loss_first"], 3),
               "loss_last": round(st["loss_last"], 3), "params_student": st["params_student"],
               "params_teacher": st["params_teacher"], "loadavg": os.getloadavg()[0]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json:
        with open(a.json, "w") as f: json.dump({**head, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
