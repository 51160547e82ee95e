"""FLOP counts and the dense matmul rate behind the FLOP floors of `bench_scoring.py` (causal) and `bench_mlm.py` (masked LM).

A floor is the matmul FLOPs a scorer cannot avoid divided by the best rate of a dense 1024^3 fp32 matmul measured in the
same run: a lower bound on the wall time of that work on this machine (elementwise ops, softmax and memory traffic are
not counted, so no eager implementation reaches it)."""
from __future__ import annotations
import time

import numpy as np
import torch


def matmul_rate(n: int = 1024, reps: int = 5) -> float:
    "Best of `reps` timings of a dense n^3 fp32 matmul, in FLOP/s (the best: the floor is a lower bound)."
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def causal_flops(lm, reqs, batch_size: int, row_tokens: int) -> dict:
    """Matmul FLOPs of scoring `reqs`: `floor` (one global prefix trie: each distinct input node once through the linear
    layers of the decoder, attention to its depth + 1 ancestors, the head at each distinct scored node) and `engine`
    (dike.scoring's own rows and passes: padded to the pass's longest row, full T x T attention, head at its scored nodes)."""
    from dike.scoring import _build_requests, pack_tries
    from transformers.pytorch_utils import Conv1D
    rq = _build_requests(lm, reqs)
    model, c = lm.model, lm.model.config
    head = model.get_output_embeddings()
    lin = sum(m.weight.numel() for m in model.modules()
              if isinstance(m, (torch.nn.Linear, Conv1D)) and m is not head)
    L = c.num_hidden_layers
    d_att = c.num_attention_heads * getattr(c, "head_dim", c.hidden_size // c.num_attention_heads)
    per_head = 2 * head.weight.numel()

    def count(rows, where, order):
        scored = set()
        for k, i in enumerate(order):
            row, nodes = where[k]; n = len(rq[i].tgt)
            scored.update((row, nd) for nd in nodes[len(rq[i].inp) - n:])
        return scored

    order = sorted(range(len(rq)), key=lambda i: rq[i].inp)
    seqs = [rq[i].inp for i in order]
    rows, where = pack_tries(seqs, sum(map(len, seqs)))              # one trie: every shareable prefix shared
    depth = np.array(rows[0]["depth"])
    n_nodes, n_scored = len(depth), len(count(rows, where, order))
    floor = n_nodes * 2 * lin + L * 4 * d_att * float((depth + 1).sum()) + n_scored * per_head
    cap = max(row_tokens, max(len(r.inp) for r in rq))
    rows, where = pack_tries(seqs, cap)                                # the engine's rows
    e_scored = len(count(rows, where, order))
    lens = sorted((len(r["tokens"]) for r in rows), reverse=True)
    padded = attn = 0
    for b0 in range(0, len(lens), batch_size):
        T, B = lens[b0], len(lens[b0:b0 + batch_size])
        padded += B * T; attn += B * T * T
    engine = padded * 2 * lin + L * 4 * d_att * attn + e_scored * per_head
    return dict(distinct_nodes=n_nodes, scored_nodes=n_scored, engine_rows=len(lens), engine_padded_tokens=padded,
                engine_scored_nodes=e_scored, floor_flops=floor, engine_flops=float(engine))


def mlm_flops(lm, jobs) -> float:
    "Matmul FLOPs of the fast path: per distinct copy of T tokens, the encoder (dense layers + attention) on T tokens and the head on one."
    c = lm.model.config
    H, L, I, V = c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size
    uniq = {(tuple(m), p) for m, p, _ in jobs}
    f = 0.0
    for m, _ in uniq:
        T = len(m)
        f += L * (2 * T * (4 * H * H + 2 * H * I) + 4 * T * T * H)    # q,k,v,o + FFN; QK^T and AV
        f += 2 * T * H * H + 2 * H * V                                  # head transform on all tokens, decoder at the mask
    return f
