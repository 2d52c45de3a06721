#!/usr/bin/env bash
# Check a GPU host (fp16 training, NCCL + SyncBN DDP, fp16 prediction, the B7 benchmark, the test
# suite with CUDA visible); see tools/gpu_check.py --help. The last line of standard output is one
# JSON summary; the exit status is non-zero when any step failed or was skipped (no GPU: nothing runs).
#   tools/gpu_check.sh [--steps ...] [--budget SECONDS] [--out FILE] [--dry-run] [--pytest-args "..."]
# What the chosen steps need and lack is pip-installed first (the GPU steps: no gradio, no OpenVINO;
# the suite: all of requirements.txt). GPU_CHECK_NO_INSTALL=1: install nothing, for a host that
# cannot reach a package index (install tools/build_wheelhouse.py's wheelhouse there first).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: $PYTHON not found; install Python 3.10+ or set PYTHON=/path/to/python" >&2
    exit 1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1
exec "$PYTHON" tools/gpu_check.py "$@"
