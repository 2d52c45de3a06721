"""`python -m inference.score` (`--help` says how to use it).

The command's options and work: inference/scoring/submission_scoring.py."""

import sys

from common import cli
from inference.scoring.submission_scoring import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
