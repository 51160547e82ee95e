"""Not a speed test: dike's Self-Debias scorer against bias-bench's own code, per token, on real CrowS-Pairs sentences.

bias-bench (Meade, Poole-Dayan & Reddy 2022) implements Self-Debias in two pieces, both run here from its repository
(`fetch github:McGill-NLP/bias-bench`; the path is an argument): `SelfDebiasingLogitsProcessor`
(`bias_bench/debias/self_debias/generation.py`, the formula) and `GPT2Wrapper.compute_loss_self_debiasing`
(`bias_bench/debias/self_debias/modeling.py`, the two left-padded rows: plain and prefixed). Their sources are read
and executed unchanged except for two substitutions the CPU needs (`"cuda"` -> `"cpu"`) and the class they subclass
(`transformers.LogitsProcessor`, imported from the installed transformers). The token probabilities are then read as
bias-bench's `CrowSPairsRunner._joint_log_probability` reads them, with the prompt length measured by the model's
tokenizer (bias-bench hard-codes GPT-2's 13/15).

Printed: the largest |log p̃_ours − log p̃_bias-bench| over every token from the second on (must be float round-off),
and the first token's difference (by design: see `nbs/08_selfdebias.ipynb`), on SmolLM2-135M.

    DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/selfdebias_parity.py /work/.mirror/McGill-NLP+bias-bench/repo [N_PAIRS]
"""
import ast, subprocess, sys, types
import numpy as np
import torch


def _source(repo: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"HEAD:{path}"], check=True, capture_output=True, text=True).stdout


def _def(src: str, name: str, cls: str | None = None) -> str:
    "The source of class `name` (or method `name` of class `cls`), dedented."
    import textwrap
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if cls is None and isinstance(node, ast.ClassDef) and node.name == name:
            return ast.get_source_segment(src, node)
        if cls and isinstance(node, ast.ClassDef) and node.name == cls:
            for f in node.body:
                if isinstance(f, ast.FunctionDef) and f.name == name:
                    return textwrap.dedent(ast.get_source_segment(src, f))
    raise SystemExit(f"{name} not found in bias-bench's source")


def main():
    repo = sys.argv[1]
    n_pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    from transformers import LogitsProcessor
    from typing import List, Optional, Tuple, Union
    ns = {"torch": torch, "LogitsProcessor": LogitsProcessor, "List": List, "Optional": Optional,
          "PreTrainedTokenizer": object, "Tuple": Tuple, "Union": Union}
    exec(_def(_source(repo, "bias_bench/debias/self_debias/generation.py"), "SelfDebiasingLogitsProcessor"), ns)
    meth = _def(_source(repo, "bias_bench/debias/self_debias/modeling.py"), "compute_loss_self_debiasing", "GPT2Wrapper")
    exec(meth.replace('"cuda"', '"cpu"'), ns)
    their_rows = ns["compute_loss_self_debiasing"]

    from dike.models import load_model
    from dike.evaluate import get_benchmark
    from dike.selfdebias import self_debias_token_logprobs, SELF_DEBIAS_PREFIXES
    lm = load_model("smollm2-135m")
    tok = lm.tokenizer
    if tok.pad_token is None: tok.pad_token = tok.eos_token

    class Shim:                                    # bias-bench's `self._model`: forward + its logits processor
        def init_logits_processor(self, **kw): self.logits_processor = ns["SelfDebiasingLogitsProcessor"](**kw)
        def __call__(self, **kw): return {"logits": lm.model(**kw).logits.float()}
    class Tok:                                     # transformers 5 dropped `batch_encode_plus`; `__call__` is it
        def batch_encode_plus(self, texts, **kw): return tok(texts, **kw)
    wrapper = types.SimpleNamespace(_tokenizer=Tok(), _model=Shim())

    rows = get_benchmark("crows_pairs").load(limit=n_pairs, seed=0)
    sents = list(rows.sent_more) + list(rows.sent_less)
    prefixes = [SELF_DEBIAS_PREFIXES[t] for t in list(rows.bias_type) * 2]
    ours = self_debias_token_logprobs(lm, sents, prefixes)
    rest, first = [], []
    with torch.no_grad():
        for s, p, o in zip(sents, prefixes, ours):
            t = tok.encode(s)
            logits, _ = their_rows(wrapper, torch.tensor([t]), debiasing_prefixes=[p])
            P = len(tok.encode(p))                 # bias-bench: bias_type_to_position (GPT-2's prompt lengths)
            f = torch.softmax(logits[1, P - 1], -1)[t[0]].item()
            out = torch.softmax(logits[:, P:, :], -1)
            theirs = np.log([f] + [out[1, i - 1, t[i]].item() for i in range(1, len(t))])
            rest.append(np.max(np.abs(theirs[1:] - o[1:])) if len(t) > 1 else 0.0)
            first.append(abs(theirs[0] - o[0]))
    print(f"SmolLM2-135M, {len(sents)} CrowS-Pairs sentences ({n_pairs} pairs), prompt of each pair's bias type")
    print(f"  tokens 2..n: max |log p~ ours - bias-bench| = {max(rest):.2e}  (float32 round-off expected)")
    print(f"  token 1:     median |diff| = {np.median(first):.3f}, max = {max(first):.3f} nats "
          "(bias-bench reads the plain row at a padding position; ours conditions it on the start token)")


if __name__ == "__main__":
    main()
