"""dike.scoring: the shared-prefix engine against a naive one-request-at-a-time reference (tiny model and SmolLM2 on real
CrowS-Pairs items), the lm-eval tokenisation rule, masked-LM scorers on real pairs against a naive loop, NaN handling.
Parity with lm-evaluation-harness itself runs when `lm_eval` is importable (see nbs/03_scoring.ipynb for the numbers)."""
import copy
import random
from types import SimpleNamespace

import numpy as np
from dike.core import f32_tol, forward_terms
import pandas as pd
import pytest
import torch

from dike.core import ScoringError
from dike.scoring import (encode_request, loglik, mlm_candidate_scores_many, mlm_pair_scores,
                          pair_positions, embed)


@pytest.fixture(scope="module")
def tiny_llama():
    from dike.models import load_model
    return load_model("tiny-llama")


@pytest.fixture(scope="module")
def tiny_bert():
    from dike.models import load_model
    return load_model("tiny-bert")


@pytest.fixture(scope="module")
def smollm2():
    from dike.models import load_model
    return load_model("smollm2-135m")


def crows_pairs(data_dir, n):
    "The first n CrowS-Pairs pairs (sent_more, sent_less), through dike.data when available."
    try:
        from dike.data import load
        df = load("crows_pairs", data_dir=data_dir)
    except (ImportError, KeyError):
        df = pd.read_csv(data_dir / "crows_pairs" / "crows_pairs_anonymized.csv")
    return list(zip(df.sent_more.iloc[:n], df.sent_less.iloc[:n]))


def naive_loglik(lm, requests):
    "One request at a time: the full sequence through model(...), log-softmax, sum over the continuation tokens."
    out = []
    with torch.inference_mode():
        for ctx, cont in requests:
            c, y = encode_request(lm.tokenizer, ctx, cont)
            full = c + y
            logp = torch.log_softmax(lm.model(torch.tensor([full[:-1]])).logits[0].float(), -1)   # fp32, as lm-eval
            out.append(sum(logp[len(c) - 1 + j, t].item() for j, t in enumerate(y)))
    return np.array(out)


def random_requests(seed=0, n=60):
    "Requests over a small vocabulary with many shared prefixes: pairs, candidate triples, duplicates, prefixes of others."
    rng = random.Random(seed)
    words = "the man woman doctor nurse is was a said he she not very good bad old young people".split()
    sent = lambda k: " ".join(rng.choice(words) for _ in range(k))
    reqs = []
    while len(reqs) < n:
        base = sent(rng.randint(1, 8))
        kind = rng.randrange(4)
        if kind == 0:   # minimal pair, empty context
            a, b = base.split(), base.split()
            b[rng.randrange(len(b))] = rng.choice(words)
            reqs += [("", " ".join(a)), ("", " ".join(b))]
        elif kind == 1:  # one context, three answers
            reqs += [(base, " " + sent(rng.randint(1, 3))) for _ in range(3)]
        elif kind == 2:  # a sentence and one of its prefixes, trailing space in the context
            reqs += [("", base), (base + " ", sent(1))]
        else:            # exact duplicate
            reqs += [(base, " " + sent(2))] * 2
    return reqs


def test_shared_engine_equals_naive_tiny(tiny_llama):
    reqs = random_requests()
    ref = naive_loglik(tiny_llama, reqs)
    for bs, rt in [(1, 1), (3, 16), (16, 128)]:
        got = loglik(tiny_llama, reqs, batch_size=bs, row_tokens=rt)
        assert np.abs(got - ref).max() < 1e-4, (bs, rt, np.abs(got - ref).max())
    plain = loglik(tiny_llama, reqs, batch_size=7, share_prefix=False)
    assert np.abs(plain - ref).max() < 1e-4
    # the order of the requests does not matter
    perm = np.random.default_rng(0).permutation(len(reqs))
    assert np.abs(loglik(tiny_llama, [reqs[i] for i in perm]) - ref[perm]).max() < 1e-4


def test_trie_actually_shares(tiny_llama):
    "Two inputs sharing a k-token prefix are packed into one row of len(a) + len(b) - k nodes; identical ones into one path."
    from dike.scoring import pack_tries, _build_requests
    r = _build_requests(tiny_llama, [("", "the man is a good doctor"), ("", "the man is a good nurse")])
    rows, where = pack_tries([x.inp for x in r], 64)
    if r[0].inp == r[1].inp:   # the last token is only a target, never an input
        assert len(rows) == 1 and len(rows[0]["tokens"]) == len(r[0].inp)
    r = _build_requests(tiny_llama, [("", "the man is a good doctor ."), ("", "the man is a good nurse .")])
    a, b = r[0].inp, r[1].inp
    k = next(i for i in range(min(len(a), len(b))) if a[i] != b[i])
    assert k >= 6                                         # BOS + "the man is a good"
    rows, where = pack_tries([a, b], 64)
    assert len(rows) == 1 and len(rows[0]["tokens"]) == len(a) + len(b) - k
    assert where[0][1][:k] == where[1][1][:k] and where[0][1][k] != where[1][1][k]


def test_empty_context_uses_bos(tiny_llama):
    tok = tiny_llama.tokenizer
    ctx, cont = encode_request(tok, "", "the man")
    assert ctx == [tok.bos_token_id] and cont == tok.encode("the man", add_special_tokens=False)


def test_nan_raises_naming_the_item(tiny_llama):
    bad = SimpleNamespace(name="bad", kind="causal", model=copy.deepcopy(tiny_llama.model), tokenizer=tiny_llama.tokenizer)
    with torch.no_grad():
        bad.model.model.layers[0].mlp.down_proj.weight[0, 0] = float("inf")
    with pytest.raises(ScoringError, match="request 0"):
        loglik(bad, [("the man", " said")])


def test_kind_checks(tiny_llama, tiny_bert):
    with pytest.raises(ScoringError, match="causal"):
        loglik(tiny_bert, [("a", " b")])
    with pytest.raises(ScoringError, match="mlm"):
        mlm_pair_scores(tiny_llama, ["a"], ["b"])


@pytest.mark.slow
def test_smollm2_crows_shared_equals_naive(smollm2, data_dir):
    "The exactness proof on the real model: 20 real CrowS-Pairs pairs (40 sentences), shared engine vs naive, 1e-4."
    pairs = crows_pairs(data_dir, 20)
    reqs = [("", s) for p in pairs for s in p]
    ref = naive_loglik(smollm2, reqs)
    got = loglik(smollm2, reqs, batch_size=16)
    assert np.abs(got - ref).max() < 1e-4, np.abs(got - ref).max()
    # the pairs do share prefixes: fewer trie nodes than input tokens
    from dike.scoring import pack_tries, _build_requests
    r = _build_requests(smollm2, reqs)
    rows, _ = pack_tries(sorted(x.inp for x in r), 128)
    assert sum(len(x["tokens"]) for x in rows) < 0.95 * sum(len(x.inp) for x in r)


def test_smollm2_context_answers_shared_equals_naive(smollm2):
    "BBQ-like: one long context, three answers; StereoSet-like intersentence requests."
    ctx = "A man and a woman were waiting at the station.\n\nQ: Who was late?\nA:"
    reqs = [(ctx, " The man"), (ctx, " The woman"), (ctx, " Can't be determined"),
            ("My neighbour is a nurse.", " She is kind."), ("My neighbour is a nurse.", " He is kind.")]
    ref = naive_loglik(smollm2, reqs)
    assert np.abs(loglik(smollm2, reqs, batch_size=2) - ref).max() < 1e-4


def test_lmeval_parity_crows(smollm2, data_dir):
    "lm-evaluation-harness's own HFLM.loglikelihood on 10 real pairs (runs only where lm_eval is importable)."
    pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.api.instance import Instance
    reqs = [("", s) for p in crows_pairs(data_dir, 10) for s in p]
    h = HFLM(pretrained=smollm2.model, tokenizer=smollm2.tokenizer, batch_size=8)
    inst = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(reqs)]
    ref = np.array([x[0] for x in h.loglikelihood(inst, disable_tqdm=True)])
    got = loglik(smollm2, reqs)
    assert np.abs(got - ref).max() < 1e-3          # fp32 sums of ~-100 nats; see the notebook for the numbers
    assert ((got[0::2] > got[1::2]) == (ref[0::2] > ref[1::2])).all()


def naive_pll(lm, a, b, variant):
    "Nangia et al.'s loop: one masked copy and one model call per scored token."
    tok = lm.tokenizer
    ia, ib = tok.encode(a), tok.encode(b)
    t1, t2 = pair_positions(ia, ib, variant)
    if variant == "bias-bench" and (not t1 or not t2):
        return np.nan, np.nan
    res = []
    for ids, t in ((ia, t1), (ib, t2)):
        lps = []
        for p in t:
            m = torch.tensor([ids]); m[0, p] = tok.mask_token_id
            with torch.no_grad():
                lps.append(torch.log_softmax(lm.model(m).logits[0, p], 0)[ids[p]].item())
        res.append(sum(lps) if variant == "nangia" else np.mean(lps))
    return res


@pytest.mark.parametrize("variant", ["nangia", "bias-bench"])
def test_mlm_pairs_real_crows_vs_naive(tiny_bert, data_dir, variant):
    pairs = crows_pairs(data_dir, 6)
    s1, s2 = mlm_pair_scores(tiny_bert, [a for a, _ in pairs], [b for _, b in pairs], variant=variant, batch_size=16)
    ref = np.array([naive_pll(tiny_bert, a, b, variant) for a, b in pairs])
    tol = f32_tol(ref, forward_terms(tiny_bert.model.config))      # batched vs one copy at a time: round-off (00_core)
    np.testing.assert_allclose(s1, ref[:, 0], atol=tol)
    np.testing.assert_allclose(s2, ref[:, 1], atol=tol)
    assert np.isfinite(s1).any()


def test_pair_positions_insertion():
    # [CLS] the old man [SEP] vs [CLS] the man [SEP]: Nangia masks 'the' and 'man' on both sides
    assert pair_positions([2, 5, 9, 6, 3], [2, 5, 6, 3], "nangia") == ([1, 3], [1, 2])
    assert pair_positions([2, 5, 9, 6, 3], [2, 5, 6, 3], "bias-bench") == ([2], [])


def test_candidates_two_subtokens(tiny_bert):
    "A fill of two wordpieces: two masked inputs, the score is the mean of two probabilities (checked by hand)."
    tok = tiny_bert.tokenizer
    ctx = "the BLANK said yes"
    vocab = [w for w in tok.get_vocab() if w.startswith("##")]
    assert vocab, "tiny-bert vocabulary has no continuation pieces"
    piece = vocab[0][2:]
    head = next(w for w in tok.get_vocab() if w.isalpha() and len(tok.encode(w + piece, add_special_tokens=False)) == 2)
    fill = head + piece
    ids = tok.encode(fill, add_special_tokens=False)
    ps = []
    for j in range(2):
        enc = tok(ctx.replace("BLANK", tok.decode(ids[:j]) + tok.mask_token), return_tensors="pt")
        with torch.no_grad():
            pr = tiny_bert.model(**enc).logits[0].double().softmax(-1)
        ps.append(pr[(enc.input_ids[0] == tok.mask_token_id).nonzero()[0, 0], ids[j]].item())
    got = mlm_candidate_scores_many(tiny_bert, [(ctx, [fill, head])])[0]
    assert abs(got[0] - (ps[0] + ps[1]) / 2) < 1e-6


def test_embed_minilm_vs_naive():
    from dike.models import load_model
    lm = load_model("minilm-l6")
    texts = ["This is a man.", "Women are nurses and men are doctors.", "Hi"]
    E = embed(lm, texts, batch_size=2)
    for i, t in enumerate(texts):
        with torch.no_grad():
            h = lm.model(**lm.tokenizer(t, return_tensors="pt")).last_hidden_state[0].double()
        v = h.mean(0)
        np.testing.assert_allclose(E[i], (v / v.norm()).numpy(), atol=f32_tol(1.0, forward_terms(lm.model.config)))
