"""Fit ensemble weights on out-of-fold predictions and write an ensemble file.

    python -m inference.fit_ensemble weights/logs/b7_0_111 weights/logs/b7_0_555 ... --out configs/ensemble.yaml

Each run folder holds training's oof_predictions.csv (per-video validation predictions of its best
epoch) and config.yaml; its checkpoint is OUTPUT_DIR/{run}_best.pt beside the logs folder. The
weights are non-negative, add up to 1 and minimise the log loss of the weighted mean on the
videos every run validated on, so the runs must share a validation fold (as the recipe's seeds do).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import minimize

from common import safe_yaml
from common.cli import InputError
from common.io_utils import atomic_path
from inference.scoring.metrics import competition_log_loss

logger = logging.getLogger("inference.fit_ensemble")


def fit_weights(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 minimising the log loss of predictions @ weights.

    `predictions` is (videos, models).
    """
    models = predictions.shape[1]
    if models == 1:
        return np.ones(1)

    def loss(weights: np.ndarray) -> float:
        return competition_log_loss(labels, predictions @ weights)

    start = np.full(models, 1.0 / models)
    result = minimize(
        loss,
        start,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * models,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
    )
    weights = np.clip(result.x if result.success else start, 0.0, None)
    return weights / weights.sum()


def read_runs(run_dirs: list[Path]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(labels, predictions (videos x runs), videos) over the videos all runs share."""
    tables = []
    for run_dir in run_dirs:
        path = run_dir / "oof_predictions.csv"
        if not path.is_file():
            raise InputError(f"{path}: missing (run training to at least one epoch with validation)")
        tables.append(pd.read_csv(path, dtype={"video": str}).set_index("video"))
    shared = sorted(set.intersection(*(set(table.index) for table in tables)))
    if not shared:
        raise InputError("the runs share no validation video: fit weights on runs of the same fold")
    labels = tables[0].loc[shared, "label"].to_numpy()
    predictions = np.stack([table.loc[shared, "probability"].to_numpy() for table in tables], axis=1)
    return labels, predictions, shared


def run_checkpoint(run_dir: Path) -> Path:
    """The best checkpoint of training run folder OUTPUT_DIR/logs/{run}: OUTPUT_DIR/{run}_best.pt."""
    return run_dir.parent.parent / f"{run_dir.name}_best.pt"


def run_members(run_dirs: list[Path], weights, out: Path) -> list[dict]:
    """The `members:` entries of an ensemble file `out` for the runs' best checkpoints (paths
    relative to its folder; encoder and input size from each run's config.yaml)."""
    members = []
    for run_dir, weight in zip(run_dirs, weights, strict=True):
        path = run_dir / "config.yaml"
        if not path.is_file():
            raise InputError(
                f"{run_dir}: not a training run's log folder (no config.yaml): give OUTPUT_DIR/logs/RUN, "
                "the folder training.train writes beside RUN_best.pt"
            )
        try:
            config = safe_yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise InputError(f"{path}: cannot read the run's config ({error})") from None
        model = config.get("model") if isinstance(config, dict) else None
        if not isinstance(model, dict) or "encoder" not in model or "input_size" not in model:
            raise InputError(f"{path}: no model.encoder and model.input_size (not a training run's config)")
        members.append(
            {
                "checkpoint": os.path.relpath(run_checkpoint(run_dir).resolve(), out.parent.resolve()),
                "encoder": model["encoder"],
                "input_size": model["input_size"],
                "weight": round(float(weight), 6),
            }
        )
    return members


def write_ensemble(out: Path, run_dirs: list[Path], weights: np.ndarray) -> None:
    members = run_members(run_dirs, weights, out)
    with atomic_path(out) as temporary:
        temporary.write_text(
            "# Written by python -m inference.fit_ensemble\n"
            + safe_yaml.safe_dump({"members": members}, sort_keys=False)
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.fit_ensemble",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", type=Path, help="training log folders (weights/logs/<run>)")
    parser.add_argument("--out", type=Path, default=Path("configs/ensemble.yaml"), help="ensemble file to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    labels, predictions, videos = read_runs(args.runs)
    weights = fit_weights(labels, predictions)
    equal = competition_log_loss(labels, predictions.mean(axis=1))
    fitted = competition_log_loss(labels, predictions @ weights)
    logger.info(
        "%d shared videos: log loss %.4f with equal weights, %.4f with %s",
        len(videos),
        equal,
        fitted,
        ", ".join(f"{run.name} {w:.3f}" for run, w in zip(args.runs, weights, strict=True)),
    )
    write_ensemble(args.out, args.runs, weights)
    logger.info("wrote %s", args.out)
    return 0
