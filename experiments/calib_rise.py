"""The calibration-NLL rise a compression causes on SmolLM2-135M, measured as the `noise:NATS` null measures its own
(WikiText-2 validation sample of seed 0, 32 windows, 128-token batches): the target of the default grid's noise nulls.
Run: `python experiments/calib_rise.py magnitude:0.5 random:0.5` (prints JSON)."""
import json, sys
from dike.models import load_model
from dike.compress.cache import load_or_compress
from dike.corpora import calib_rows, calib_batches
from dike.compress.null import calib_nll

def main(specs, model="smollm2-135m"):
    base = load_model(model)
    texts = calib_rows(base, "wikitext", 32, 0).text.tolist()
    nb = calib_nll(base, calib_batches(base, texts, seq_len=128))
    rise = {}
    for spec in specs:
        lm, _ = load_or_compress(model, spec, progress=False)
        rise[spec] = calib_nll(lm, calib_batches(lm, texts, seq_len=128)) - nb
    return {"model": model, "base_nll": nb, "rise": rise}

if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:] or ["magnitude:0.5"])))
