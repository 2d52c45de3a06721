# Sourced by run_all.sh and run_tests.sh: make sure the active Python has requirements.txt.
#
# Packages go into the Python that `python3` (or $PYTHON) runs: activate a virtual environment
# first if you want them isolated. When everything is already installed this takes well under
# a second; otherwise pip installs what is missing (torch, the largest, takes a minute or more).

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: $PYTHON not found; install Python 3.10+ or set PYTHON=/path/to/python" >&2
    exit 1
fi
if ! missing=$("$PYTHON" tools/check_requirements.py requirements.txt 2>&1); then
    echo "Installing requirements into $("$PYTHON" -c 'import sys; print(sys.prefix)'):"
    echo "$missing" | sed 's/^/  /'
    "$PYTHON" -m pip install --disable-pip-version-check -r requirements.txt
    if ! "$PYTHON" tools/check_requirements.py requirements.txt; then
        echo "error: requirements.txt is still not satisfied after pip install (see above)" >&2
        exit 1
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
