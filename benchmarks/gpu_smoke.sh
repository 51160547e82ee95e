#!/usr/bin/env bash
# GPU smoke test, for a machine with an NVIDIA GPU and `make install TORCH=cuda` done:
#   1. the smoke grid (experiments/grids/smoke.yaml) on the GPU, into a throw-away results store;
#   2. CrowS-Pairs on SmolLM2-135M on the CPU (fp32) and on the GPU (fp32, bf16): tokens/s of each, the largest
#      per-sentence difference of the GPU's fp32 scores from the CPU's (must be <= 1e-3 nats), bf16's decision agreement.
# Usage: benchmarks/gpu_smoke.sh [DEVICE [MODEL [LIMIT]]]   (defaults: cuda smollm2-135m all pairs)
#        benchmarks/gpu_smoke.sh cpu tiny-llama 16          (a CPU-only check that the script runs)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${1:-cuda}; MODEL=${2:-smollm2-135m}; LIMIT=${3:-}
PY=${PY:-.venv/bin/python}
export DIKE_DATA_DIR=${DIKE_DATA_DIR:-$(cd .. && pwd)/shared/data}
"$PY" -c "import torch; print('torch', torch.__version__, '| CUDA:', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
t0=$(date +%s)
"$PY" -m dike.cli run experiments/grids/smoke.yaml --device "$DEVICE" --dtype fp32 --results "$store"
echo "smoke grid on $DEVICE: $(( $(date +%s) - t0 )) s"
"$PY" benchmarks/gpu_smoke.py --device "$DEVICE" --model "$MODEL" ${LIMIT:+--limit "$LIMIT"}
