"""`python -m inference.calibrate` (`--help` says how to use it).

The command's options and work: inference/fitting/calibrate_ensemble.py."""

import sys

from common import cli
from inference.fitting.calibrate_ensemble import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
