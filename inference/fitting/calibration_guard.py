"""What inference.calibrate refuses to store, so that a calibration cannot make things worse.

- Too few labelled videos of a class (`per_class_problem`): under MIN_PER_CLASS reals or fakes
  the fit's spread is too wide. The default is the simulation's (inference/calibration/simulation.py,
  `python -m inference.calibration.simulation --trials 1000`): logits of four kinds of model
  (calibrated; over-confident, T* 2.5; under-confident, T* 0.6, as the demo's; barely trained,
  T* 0.1, scores 0.45 to 0.55), AUC 0.92 each, a temperature or Platt fitted on n reals and n fakes
  (prior-corrected targets), 1,000 fits per case, judged on 20,000 fresh videos. MIN_PER_CLASS_TABLE
  holds the share of fits that made the fresh log loss more than 10% worse than raw, the worst of the
  four scenarios for each method: 90-91% at 3 per class, 75-79% at 5, 38-44% at 10, 10-12% at 20,
  4.8-6.5% at 25, 2.9-4.1% at 30, 0.8-1.0% at 40. At 30 every scenario and both methods stay at or under 4.1%
  (the calibrated model's, where any fit can only add noise), and a miscalibrated model's fit was
  worse at all in at most 7% of draws (under-confident, Platt; 5% with a temperature).
- A fit at a search bound of its parameters (inference/calibration/methods.py): with the prior-corrected
  targets, only scores that say nothing or the wrong thing (a flattening map), or that barely
  leave 0.5 (a 100-fold stretch).
- A held-out set whose log loss the calibration makes worse than the raw scores' (`held_out_problem`).

--force stores a calibration refused for the last two, and the block says so (fitted_on.forced,
forced_over); --min-per-class lowers the first. Pure functions.
"""

from __future__ import annotations

import argparse
import logging
import math

import numpy as np

from common.cli import InputError
from inference.calibration.methods import FitAtBoundError, apply_calibration, calibration_report, fit_calibration
from inference.fitting.calibration_sources import LabelledScores
from inference.scoring.metrics import brier_score
from inference.scoring.scoring_settings import differences

logger = logging.getLogger("inference.calibrate")

MIN_PER_CLASS = 30
# the simulation's worst share of fits more than 10% worse than raw on fresh videos, per videos of
# each class: (temperature, Platt), over its four scenarios (1,000 fits each, seed 0)
MIN_PER_CLASS_TABLE = {
    3: (0.900, 0.908),
    5: (0.752, 0.790),
    8: (0.474, 0.531),
    10: (0.376, 0.436),
    15: (0.190, 0.225),
    20: (0.097, 0.119),
    25: (0.048, 0.065),
    30: (0.029, 0.041),
    40: (0.008, 0.010),
    50: (0.003, 0.006),
}


class CalibrationRefusedError(InputError):
    """A calibration refused for what its data say (too few videos of a class, a fit at a search
    bound, a held-out set it makes worse): inference.calibrate stores nothing, or, with
    --uncalibrated-if-refused, writes the ensemble without a calibration."""


def class_counts(labels) -> tuple[int, int]:
    """(reals, fakes) of 0/1 labels."""
    y = np.asarray(labels).ravel()
    fakes = int((y == 1).sum())
    return len(y) - fakes, fakes


def per_class_problem(labels, minimum: int = MIN_PER_CLASS) -> str | None:
    """Why `labels` are too few to fit on (fewer than `minimum` of a class), naming the counts, or None."""
    reals, fakes = class_counts(labels)
    if reals == 0 or fakes == 0:
        return f"calibration needs real and fake videos; got {reals} real, {fakes} fake"
    if min(reals, fakes) < minimum:
        return (
            f"{reals} real and {fakes} fake videos: a calibration needs at least {minimum} of each (--min-per-class; "
            f"fitted on fewer its spread makes fresh videos worse too often)"
        )
    return None


def held_out_problem(metrics: dict) -> str | None:
    """Why a calibration is refused on a held-out set (`fit_metrics` of it), naming both log
    losses, or None: the calibrated log loss is above the raw one."""
    before, after = metrics["log_loss_before"], metrics["log_loss_after"]
    if not (math.isfinite(before) and math.isfinite(after)):
        return f"the held-out videos' log loss is not a number ({before} raw, {after} calibrated)"
    if after > before:
        return f"the calibration makes the held-out videos' log loss worse: {before:.4f} raw, {after:.4f} calibrated"
    return None


def min_per_class_argument(text: str) -> int:
    """An argparse type for --min-per-class: a whole number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def fit_metrics(labels: np.ndarray, before: np.ndarray, after: np.ndarray) -> dict:
    """Videos per class, and log loss, ECE and Brier score before and after calibration."""
    report = calibration_report(labels, before, after)
    report["brier_before"], report["brier_after"] = brier_score(labels, before), brier_score(labels, after)
    return report


def fitted(data: LabelledScores, method: str, minimum: int, force: bool) -> tuple[dict, list[str]]:
    """(the calibration fitted on `data`, the refusals --force overrode); CalibrationRefusedError
    (naming the source) for too few videos of a class, or a fit at a search bound unless `force`."""
    problem = per_class_problem(data.labels, minimum)
    if problem:
        raise CalibrationRefusedError(f"{data.source}: {problem}")
    try:
        return fit_calibration(data.labels, data.scores, method), []
    except FitAtBoundError as error:
        if not force:
            hint = "fit on more (or other) labelled videos, or pass --force to store it all the same"
            raise CalibrationRefusedError(f"{data.source}: {error}; {hint}") from None
        return fit_calibration(data.labels, data.scores, method, allow_bound=True), [str(error)]  # warns


def checked_held_out(held_out: LabelledScores, data: LabelledScores, calibration: dict, force: bool):
    """(the calibration's metrics on `held_out`, the refusal --force overrode or None); refused
    where it makes the held-out log loss worse (unless `force`), or the set was scored otherwise
    than the fit's scores."""
    if isinstance(held_out.settings, dict) and isinstance(data.settings, dict):
        found = differences(data.settings, held_out.settings, ("fit", "held out"))
        if found:
            raise InputError(
                f"{held_out.source}: scored with other settings than the videos fitted on: {'; '.join(found)}"
            )
    metrics = fit_metrics(held_out.labels, held_out.scores, apply_calibration(held_out.scores, calibration))
    problem = held_out_problem(metrics)
    if problem and not force:
        raise CalibrationRefusedError(f"{held_out.source}: {problem}; not stored (--force stores it)")
    if problem:
        logger.warning("%s: %s (stored with --force)", held_out.source, problem)
    return metrics, problem
