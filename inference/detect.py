"""`python -m inference.detect` (`--help` says how to use it).

The command's options and work: inference/serving/detection.py."""

from common import cli
from inference.serving.detection import main

if __name__ == "__main__":
    cli.leave(cli.run(main))
