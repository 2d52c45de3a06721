#!/usr/bin/env bash
# Run the test suite: installs requirements when missing, then pytest on the CPU.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k demo -x
#
# The tests run in TEST_WORKERS processes (pytest-xdist; default 2, the cores the suite is budgeted
# for; 0 runs them in this one process, as plain pytest does), each handed whole files (a file's
# fixtures are made once). Giving -n, --pdb, --trace or -p no:xdist yourself leaves that to you.
set -euo pipefail
cd "$(dirname "$0")"
source tools/ensure_env.sh
# Tests run on the CPU with the weights that ship with packages; never wait on a model hub.
export HF_HUB_OFFLINE=1
workers=${TEST_WORKERS:-2}
parallel=(-n "$workers" --dist loadfile --no-loadscope-reorder)
previous=
for argument in "$@"; do
    case "$argument" in
        -n | -n* | --numprocesses | --numprocesses=* | --pdb | --trace | -pno:xdist) parallel=() ;;
        no:xdist) [ "$previous" = -p ] && parallel=() ;;
    esac
    previous=$argument
done
if [ "$workers" = 0 ]; then
    parallel=()
fi
exec "$PYTHON" -m pytest ${parallel[@]+"${parallel[@]}"} "$@"
