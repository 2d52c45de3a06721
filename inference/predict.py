"""`python -m inference.predict` (`--help` says how to use it).

The command's options and work: inference/pipeline/prediction.py."""

from common import cli
from inference.pipeline.prediction import main

if __name__ == "__main__":
    cli.leave(cli.run(main))
