#!/usr/bin/env bash
# Run the test suite: installs requirements when missing, then pytest on the CPU.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k demo -x
set -euo pipefail
cd "$(dirname "$0")"
source tools/ensure_env.sh
# Tests run on the CPU with the weights that ship with packages; never wait on a model hub.
export HF_HUB_OFFLINE=1
exec "$PYTHON" -m pytest "$@"
