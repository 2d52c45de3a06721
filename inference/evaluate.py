"""`python -m inference.evaluate` (`--help` says how to use it).

The command's options and work: inference/evaluation/protocols.py."""

import sys

from common import cli
from inference.evaluation.protocols import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
