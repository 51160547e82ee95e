"""Scoring helpers written once (issue 23, item 5): the duplicates are gone and every caller uses the one definition in
the scoring layer (`dike.scoring`, `dike.selfdebias`)."""
import dis
import importlib
import inspect

import pytest

GONE = {"dike.teach": ["sentence_logliks", "encode_sentences", "_pad_id", "concept_probe", "gender_probe"],
        "dike.heads": ["_pair_ll", "_used_rows"],
        "dike.debias": ["self_debias_scores", "self_debias_dist", "self_debias_token_logprobs", "SELF_DEBIAS_PREFIXES",
                        "STEREOSET_PREFIX_TYPE", "_next_token_logprobs"],
        "dike.scoring": ["_special_affixes"]}


@pytest.mark.parametrize("mod,name", [(m, n) for m, ns in GONE.items() for n in ns])
def test_old_names_are_gone(mod, name):
    assert not hasattr(importlib.import_module(mod), name), f"{mod}.{name} is a second copy"


def _names(fn) -> set:
    "Global and imported names a function's code (nested code included) refers to."
    out, todo = set(), [inspect.unwrap(fn).__code__]
    while todo:
        c = todo.pop()
        out |= {i.argval for i in dis.get_instructions(c) if i.opname in ("LOAD_GLOBAL", "IMPORT_NAME", "IMPORT_FROM", "LOAD_NAME")}
        todo += [k for k in c.co_consts if inspect.iscode(k)]
    return out


def _callers():
    from dike import scoring, selfdebias, teach, heads, debias, perplexity, corpora
    from dike.bench import gap, crows_pairs, stereoset
    return scoring, selfdebias, teach, heads, debias, gap, crows_pairs, stereoset, perplexity, corpora


def test_each_caller_uses_the_one_definition():
    scoring, selfdebias, teach, heads, debias, gap, crows_pairs, stereoset, perplexity, corpora = _callers()
    uses = {  # the one definition -> the functions that call it
        "sequence_logprob": [teach.teach_loss, debias.cda_loss, heads.bias_gap],
        "encode_sentences": [teach.hidden_features, heads.bias_gap, heads.head_shift, perplexity.causal_nll, corpora.fair_pairs],
        "pad_id": [teach.hidden_features, teach._teach_adapter, debias.cda_method, heads.head_shift, heads.bias_gap,
                   gap.span_embeddings, scoring.embed, perplexity.causal_nll, scoring._masked_logprobs,
                   selfdebias._next_token_logprobs],
        "masked_mean": [scoring.embed, teach.hidden_features, gap.span_embeddings],
        "used_rows": [heads.run_heads],
        "self_debias_scores": [crows_pairs._causal_scores, stereoset._causal_scores],
    }
    for name, fns in uses.items():
        for fn in fns:
            assert name in _names(fn), f"{fn.__module__}.{fn.__qualname__} does not call {name}"
    # and the names resolve to the one function object
    assert teach.used_rows.__module__ == "dike.teach"
    for name in ("sequence_logprob", "encode_sentences", "pad_id", "masked_mean", "special_affixes"):
        assert getattr(scoring, name).__module__ == "dike.scoring"
    assert debias.sequence_logprob is scoring.sequence_logprob and debias.pad_id is scoring.pad_id
    assert selfdebias.pad_id is scoring.pad_id and selfdebias.pad_batch is scoring.pad_batch


def test_the_benchmarks_import_self_debias_from_the_scoring_layer():
    import dike.bench.crows_pairs as C, dike.bench.stereoset as S
    for m in (C, S):
        src = inspect.getsource(m)
        assert "from dike.selfdebias import" in src and "from dike.debias" not in src, m.__name__
    import dike.selfdebias as SD
    tree = inspect.getsource(SD)
    imported = {l.split()[1].split(".")[1] for l in tree.splitlines() if l.startswith(("from dike.", "from .")) and "import" in l}
    assert imported <= {"core", "stats", "data", "models", "scoring"}, imported
