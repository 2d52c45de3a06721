"""`python -m inference.app` (`--help` says how to use it).

The command's options and work: inference/serving/page.py."""

import sys

from common import cli
from inference.serving.page import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
