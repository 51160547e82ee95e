#!/usr/bin/env python
"""Digest of a compressed model's weights and calibration sample under the installed libraries, against the archive.

Compresses MODEL with SPEC (no cache) and prints the versions of the libraries that decide numbers, the digest of the
calibration items the compression saw, the digest of the scored weights (`dike.runner.load_run_model`'s
`weights_digest`) and every digest the archive records for that model and spec. Used to tell whether a library version
changes compressed weights: install the other version into a throwaway folder and run it again, e.g.

    DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/weights_digest.py smollm2-135m wanda:0.5
    .venv/bin/pip install --no-deps --target /tmp/tf524 transformers==5.24.0
    PYTHONPATH=/tmp/tf524 DIKE_DATA_DIR=../shared/data .venv/bin/python benchmarks/weights_digest.py smollm2-135m wanda:0.5
"""
import json, sys, time
from importlib.metadata import version


def main(model: str = "smollm2-135m", spec: str = "wanda:0.5") -> int:
    import transformers, torch
    from dike.core import config_hash, set_threads
    from dike.models import load_model
    from dike.compress.apply import compress, weight_digest
    from dike.archive import Archive
    set_threads()
    lm = load_model(model)
    t = time.time()
    new, rep = compress(lm, spec, progress=False, report=False)
    digest = config_hash(weight_digest(new.model), n=32)
    archived = sorted({(j.get("model") or {}).get("weights_digest") for r in Archive().records.values()
                       if r["config"].get("model") == model and r["config"].get("compress") == rep["spec"]
                       for k, j in r["json"].items() if k.endswith("metrics.json")} - {None})
    print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__, "gguf": version("gguf"),
                      "numpy": version("numpy"), "model": model, "spec": rep["spec"], "seconds": round(time.time() - t),
                      "calib_items": config_hash(rep["calib_items"]), "weights_digest": digest,
                      "archived_weights_digests": archived, "matches_archive": digest in archived}))
    return 0 if not archived or digest in archived else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
