"""`python -m inference.fit_ensemble` (`--help` says how to use it).

The command's options and work: inference/fitting/ensemble_fit.py."""

import sys

from common import cli
from inference.fitting.ensemble_fit import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
