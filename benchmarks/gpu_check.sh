#!/usr/bin/env bash
# GPU check (issue 19), one prepared script for a GPU machine, under 8 minutes:
#   1. the `cuda` tests (tests/test_cuda.py and every other test marked cuda);
#   2. benchmarks/bench_gpu.py: training steps/s of `hybrid` and of the `lm` decoder path in fp32 vs bf16,
#      and scoring + top-50 of a ReDial-size batch on the GPU vs the CPU, as ratios, with randomly
#      initialised models of real size (nothing is downloaded or read from the hub).
# Usage (repository root): benchmarks/gpu_check.sh   [PYTHON=/path/to/python] [STEPS=30]
# Exit status: non-zero when CUDA is missing, a cuda test fails or a measurement fails; the figures
# measured before a failure are still printed.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}"
STEPS="${STEPS:-30}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD=1

started=$(date +%s)
echo "== gpu_check: $("$PYTHON" --version 2>&1), $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
"$PYTHON" -c 'import sys, torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available()); sys.exit(0 if torch.cuda.is_available() else 3)' \
  || { echo "gpu_check: CUDA is not available to torch: nothing to check" >&2; exit 3; }

echo "== cuda tests"
# -p no:cacheprovider: the copy of the tree may be read-only; the marker selects only the device tests
timeout 240 "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider tests/

echo "== measurements (steps=$STEPS)"
timeout 300 "$PYTHON" benchmarks/bench_gpu.py --steps "$STEPS"

echo "== gpu_check done in $(( $(date +%s) - started )) s"
