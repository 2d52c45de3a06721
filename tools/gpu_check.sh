#!/usr/bin/env bash
# Check a GPU host (fp16 training, NCCL + SyncBN DDP, fp16 prediction, the B7 benchmark, the test
# suite with CUDA visible); see tools/gpu_check.py --help. The last line of standard output is one
# JSON summary; the exit status is non-zero when any step failed or was skipped (no GPU: nothing runs).
#   tools/gpu_check.sh [--steps ...] [--budget SECONDS] [--out FILE] [--dry-run] [--pytest-args "..."]
# GPU_CHECK_NO_INSTALL=1: use the Python as it is (a machine that cannot reach a package index).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${GPU_CHECK_NO_INSTALL:-0}" == 1 ]]; then
    PYTHON=${PYTHON:-python3}
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    source tools/ensure_env.sh
fi
export HF_HUB_OFFLINE=1
exec "$PYTHON" tools/gpu_check.py "$@"
