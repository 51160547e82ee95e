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


def model_dims(model) -> dict:
    """What the FLOP counts need: `linear` = weights of every linear (or GPT-2 `Conv1D`) layer but the output head, i.e.
    half the matmul FLOPs per token; `layers`; `d_att` = heads x head size (QK^T and AV cost 4 d_att FLOPs per attended
    position and layer); `head` = vocabulary x hidden (2 x head FLOPs per position projected onto the vocabulary)."""
    from transformers.pytorch_utils import Conv1D
    c, head = model.config, model.get_output_embeddings()
    head_size = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return dict(linear=sum(m.weight.numel() for m in model.modules()
                           if isinstance(m, (torch.nn.Linear, Conv1D)) and m is not head),
                layers=c.num_hidden_layers,
                d_att=c.num_attention_heads * head_size,
                head=head.weight.numel())


def causal_flops(lm, reqs, batch_size: int, row_tokens: int) -> dict:
    """Matmul FLOPs of scoring `reqs` (lm-eval (context, continuation) requests): `floor` (one global prefix trie: each
    distinct input node once through the linear layers, attention to its depth + 1 ancestors, the head at each distinct
    scored node) and `engine` (dike.scoring's own rows and passes: padded to the pass's longest row, full T x T
    attention, the head at its scored nodes); also `input_tokens` (lm-eval's count: context + continuation, truncated,
    last token dropped)."""
    from dike.scoring import _build_requests, pack_tries
    rq = _build_requests(lm, reqs)
    d = model_dims(lm.model)
    per_token, per_attended, per_head = 2 * d["linear"], 4 * d["d_att"] * d["layers"], 2 * d["head"]

    def scored(where, order):
        out = set()
        for k, i in enumerate(order):
            row, nodes = where[k]
            out.update((row, nd) for nd in nodes[len(rq[i].inp) - len(rq[i].tgt):])
        return len(out)

    order = sorted(range(len(rq)), key=lambda i: rq[i].inp)
    seqs = [rq[i].inp for i in order]
    rows, where = pack_tries(seqs, sum(map(len, seqs)))              # one trie: every shareable prefix shared
    depth = np.array(rows[0]["depth"])
    n_scored = scored(where, order)
    floor = len(depth) * per_token + per_attended * float((depth + 1).sum()) + n_scored * per_head
    rows, where = pack_tries(seqs, max(row_tokens, max(map(len, seqs))))   # the engine's rows
    e_scored = scored(where, order)
    lens = sorted((len(r["tokens"]) for r in rows), reverse=True)
    passes = [lens[b0:b0 + batch_size] for b0 in range(0, len(lens), batch_size)]
    padded = sum(len(p) * p[0] for p in passes)
    attended = sum(len(p) * p[0] ** 2 for p in passes)
    engine = padded * per_token + per_attended * attended + e_scored * per_head
    return dict(input_tokens=sum(map(len, seqs)), distinct_nodes=len(depth), scored_nodes=n_scored,
                engine_rows=len(lens), engine_padded_tokens=padded, engine_scored_nodes=e_scored,
                floor_flops=floor, engine_flops=float(engine))


def mlm_flops(lm, jobs, trimmed: bool = True) -> float:
    """Matmul FLOPs of dike's masked-LM fast path: each distinct masked copy of T tokens once through the linear layers,
    attention over T x T, the vocabulary projection at the masked position only. `trimmed` (BERT-family models, as
    `dike.scoring._last_layer_at_masks` runs them): in the last layer only the key and value projections see all T
    positions; its query, attention output, feed-forward and the head's transform see the masked row alone, which
    attends to T positions. Else every linear layer (the head's transform included) runs on all T positions."""
    d = model_dims(lm.model)
    lengths = np.array([len(m) for m, _ in {(tuple(m), p) for m, p, _ in jobs}], dtype=float)
    full = float(lengths.sum() * 2 * d["linear"] + 4 * d["d_att"] * d["layers"] * (lengths ** 2).sum()
                 + len(lengths) * 2 * d["head"])
    if not trimmed: return full
    lin = lambda m: sum(x.weight.numel() for x in m.modules() if isinstance(x, torch.nn.Linear))
    enc = lm.model.base_model.encoder
    last, sa = enc.layer[-1], enc.layer[-1].attention.self
    one_row = lin(last) - sa.key.weight.numel() - sa.value.weight.numel() + d["linear"] - lin(enc)   # + the head transform
    return full - float(((lengths - 1) * 2 * one_row).sum() + 4 * d["d_att"] * (lengths ** 2 - lengths).sum())
