"""The README's recipe is true: a new compression method is one notebook with one `register_method` line, nothing else.

A copy of the project gets a toy method `shrink:F` (every scoped linear weight multiplied by 1-F): one notebook
`nbs/29_shrink.ipynb`. After `nbdev-export`, the spec parses and normalises, `compress` applies it to tiny-llama and
changes exactly the weights it promises, `dike compress` saves it, and no other source file of the copy changed (only
the generated dike/ files). A method outside dike is found through its `dike.methods` entry point (a plugin
distribution on the path, as `pip install` would leave it), without any import or list naming it.
"""
import hashlib, json, os, shutil, subprocess, sys
from pathlib import Path

import pytest
from recipe import ROOT, NBDEV_EXPORT, notebook, tree, project_copy


CELLS = [
    ("code", "#| default_exp compress.shrink"),
    ("markdown", "# shrink\n\n> A toy compression method: every scoped linear weight multiplied by 1-F."),
    ("code", """#| export
import torch
from dike.compress.spec import Param, register_method
from dike.compress.scopes import scoped_linears

@torch.no_grad()
def shrink(lm, step, calib):
    "Multiply the weight of every scoped linear by 1-F."
    for lin in scoped_linears(lm.model, step).values(): lin.weight.mul_(1 - step["fraction"])
    return lm, {"method": "shrink"}

register_method("shrink", shrink, ("causal", "mlm"), "shrink:F (0<=F<1)",
                params=(Param("fraction", float, lambda f: 0 <= f < 1, "0<=F<1"),), scope=("layers", "modules"),
                changes_weights=lambda st: st["fraction"] > 0)"""),
]

PLUGIN = '''import torch
from dike.compress.spec import Param, register_method

@torch.no_grad()
def negate(lm, step, calib):
    "Negate the LM head (a toy method defined outside dike)."
    lm.model.lm_head.weight.neg_()
    return lm, {"method": "negate"}

register_method("negate", negate, ("causal",), "negate")
'''

CHECK = '''
import json, sys
from dike.models import load_model
from dike.compress.spec import parse_spec, normalize_spec, list_methods
from dike.compress.apply import compress, weight_digest
out = {"norm": normalize_spec("shrink:0.50:modules=attn"), "prefixes": [m.prefix for m in list_methods("causal")]}
lm = load_model("tiny-llama")
new, rep = compress(lm, "shrink:0.5:layers=1", progress=False, report=False)
a, b = weight_digest(lm.model), weight_digest(new.model)
out["changed"] = sorted(k for k in a if a[k] != b[k])
out["step"] = rep["steps"][0]["step"]
new, rep = compress(lm, "negate", progress=False, report=False)
out["plugin_changed"] = sorted(k for k, v in weight_digest(new.model).items() if v != a[k])
print(json.dumps(out))
'''


def _plugin(where: Path) -> None:
    "A distribution `toyplugin` on the path with a `dike.methods` entry point, as `pip install` would leave it."
    where.mkdir(parents=True)
    (where / "toyplugin.py").write_text(PLUGIN)
    info = where / "toyplugin-0.1.dist-info"; info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dike.methods]\nnegate = toyplugin\n")


@pytest.mark.skipif(not NBDEV_EXPORT.exists(), reason="nbdev-export is not installed next to this python")
def test_one_notebook_adds_a_compression_method(tmp_path):
    copy = tmp_path / "proj"
    project_copy(copy, ("nbs", "dike", "data", "tests", "experiments"))
    before = tree(copy)
    (copy / "nbs" / "29_shrink.ipynb").write_text(json.dumps(notebook(CELLS), indent=1))
    _plugin(tmp_path / "plugin")

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), str(tmp_path / "plugin")]), "DIKE_ROOT": str(copy),
           "DIKE_CACHE_DIR": str(tmp_path / "cache"), "DIKE_RESULTS_DIR": str(tmp_path / "results")}
    r = subprocess.run([str(NBDEV_EXPORT)], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (copy / "dike" / "compress" / "shrink.py").exists()
    changed = {k for k in set(before) | set(tree(copy)) if before.get(k) != tree(copy).get(k)}
    assert changed == {"nbs/29_shrink.ipynb"}, changed

    r = subprocess.run([sys.executable, "-c", CHECK], cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["norm"] == "shrink:0.5:modules=attn"
    assert {"shrink", "negate", "magnitude"} <= set(out["prefixes"])
    assert out["step"] == "shrink:0.5:layers=1"
    assert out["changed"] and all(k.startswith("model.layers.1.") and k.endswith("_proj.weight") for k in out["changed"])
    assert len(out["changed"]) == 7                                       # q, k, v, o, gate, up, down of block 1
    assert "lm_head.weight" in out["plugin_changed"]                       # (tied to the embeddings in tiny-llama)
    assert set(out["plugin_changed"]) <= {"lm_head.weight", "model.embed_tokens.weight"}

    dest = tmp_path / "shrunk"
    r = subprocess.run([sys.executable, "-m", "dike.cli", "compress", "tiny-llama", "shrink:0.25", "--out", str(dest)],
                       cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads((dest / "spec.json").read_text())["spec"] == "shrink:0.25"
