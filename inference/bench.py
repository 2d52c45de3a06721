"""`python -m inference.bench` (`--help` says how to use it).

The command's options and work: inference/benchmarks/stage_bench.py."""

import sys

from common import cli
from inference.benchmarks.stage_bench import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
