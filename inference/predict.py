"""`python -m inference.predict` (`--help` says how to use it).

The command's options and work: inference/prediction/predict_folder.py."""

from common import cli
from inference.prediction.predict_folder import main

if __name__ == "__main__":
    cli.leave(cli.run(main))
