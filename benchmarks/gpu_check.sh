#!/usr/bin/env bash
# The prepared check for a machine with CUDA GPUs (under 8 minutes): both backbones a few
# hundred steps with the automatic precision and channels-last (images/s, data-wait, peak
# GPU memory), DDP scaling efficiency with two or more GPUs, and the predictor's GPU outputs
# against CPU fp32. See benchmarks/gpu_check.py. Run from the repository root:
#     bash benchmarks/gpu_check.sh            # or: PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
# It has not been run yet: the machines of the session that wrote it had no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
exec timeout 480 "$PYTHON" benchmarks/gpu_check.py "$@"
