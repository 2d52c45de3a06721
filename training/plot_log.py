"""Plot a run's training loss and validation log loss per epoch, to pick checkpoints.

    python -m training.plot_log weights/logs/b7_0_111 [more run folders ...] [--out curves.png]

Reads each folder's metrics.csv; marks each run's best epoch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from common import cli

logger = logging.getLogger("training.plot_log")


def plot_runs(run_dirs: list[Path], out: Path) -> dict[str, int]:
    """Draw the curves of every run into `out`; returns {run: best epoch} as marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common.io_utils import atomic_path

    figure, (train_axis, val_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    best: dict[str, int] = {}
    for run_dir in run_dirs:
        metrics_path = Path(run_dir) / "metrics.csv"
        if not metrics_path.is_file():
            raise FileNotFoundError(f"{metrics_path}: no metrics (is {run_dir} a training log folder?)")
        metrics = pd.read_csv(metrics_path)
        name = Path(run_dir).name
        train_axis.plot(metrics["epoch"], metrics["train_loss"], marker=".", label=name)
        line = val_axis.plot(metrics["epoch"], metrics["score"], marker=".", label=name)[0]
        best_row = metrics.loc[metrics["score"].idxmin()]
        best[name] = int(best_row["epoch"])
        val_axis.scatter(
            [best_row["epoch"]], [best_row["score"]], s=120, facecolors="none", edgecolors=line.get_color()
        )
    val_axis.axhline(0.6931, color="grey", linestyle="--", linewidth=1, label="chance (ln 2)")
    train_axis.set(title="training loss", xlabel="epoch", ylabel="BCE (fakes + reals) / 2")
    val_axis.set(title="validation: video log loss (fake + real) / 2", xlabel="epoch", ylabel="log loss")
    for axis in (train_axis, val_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(out) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.plot_log", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="training log folders (weights/logs/<run>)")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: <first run>/curves.png)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = args.out or args.runs[0] / "curves.png"
    for run, epoch in plot_runs(args.runs, out).items():
        logger.info("%s: best epoch %d", run, epoch)
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
