"""`python -m inference.weights` (`--help` says how to use it).

The command's options and work: inference/models/named_weights.py."""

import sys

from common import cli
from inference.models.named_weights import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
