"""The options that decide a verdict, shared by inference.detect and the page (inference.app):
--threshold, --operating-point and --uncalibrated, and the rule they make with the calibration an
ensemble file carries (inference/models/ensemble_calibration.py).

Without a calibration a file is FAKE when its probability (the ensemble's score) is above
--threshold (0.5). With one, the probability is calibrated, and the verdict is taken at an
operating point the calibration stores: --operating-point fpr=RATE, or without it the 1% point
(else the lowest rate stored); FAKE when the ensemble's raw score is above that point's threshold.
--threshold given with a calibration decides on the calibrated probability instead.
--uncalibrated ignores the file's calibration (the log says so).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

from common.cli import InputError
from inference.models.ensemble_calibration import (
    CalibrationFileError,
    EnsembleCalibration,
    OperatingPoint,
    operating_point_argument,
)
from inference.models.ensemble_file import ensemble_calibration
from inference.models.model_options import load_calibration
from inference.scoring.operating_points import reals_needed

logger = logging.getLogger("inference.serving.verdict_options")

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class VerdictRule:
    calibration: EnsembleCalibration | None
    operating_point: OperatingPoint | None  # decides on the raw score when set
    threshold: float  # on the (calibrated) probability when no operating point decides


def probability_threshold(text: str) -> float:
    """An argparse type: a probability from 0 to 1 (NaN is none)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 <= value <= 1.0:  # False for NaN too
        raise argparse.ArgumentTypeError(f"a threshold is a probability from 0 to 1, got {text}")
    return value


def add_verdict_arguments(parser: argparse.ArgumentParser) -> None:
    """--threshold or --operating-point (not both), and --uncalibrated (what `verdict_rule` reads)."""
    group = parser.add_argument_group("verdict")
    exclusive = group.add_mutually_exclusive_group()
    exclusive.add_argument(
        "--threshold",
        type=probability_threshold,
        default=None,
        help=f"FAKE above this probability ({DEFAULT_THRESHOLD:g}), as inference.score counts; with a calibrated "
        "--ensemble, the calibrated probability (instead of its operating point)",
    )
    exclusive.add_argument(
        "--operating-point",
        type=operating_point_argument,
        metavar="fpr=RATE",
        help="FAKE above the threshold the --ensemble file's calibration stores for this false-positive rate on "
        "real videos (e.g. fpr=0.01; default with a calibration: its 1%% point, else its lowest)",
    )
    group.add_argument(
        "--uncalibrated",
        action="store_true",
        help="ignore the --ensemble file's calibration: probabilities are the ensemble's raw scores, FAKE above "
        "--threshold",
    )


def _no_operating_point(args: argparse.Namespace, fpr: float, why: str) -> InputError:
    ensemble = args.ensemble or "ENSEMBLE.yaml"
    return InputError(
        f"{why}; add one with python -m inference.calibrate --ensemble {ensemble} (--oof | --submission S "
        f"--labels L) --fpr {fpr:g} (it needs at least {reals_needed(fpr)} held-out real videos), or give --threshold"
    )


# What a malformed `calibration:` block (`operating_points: 5`) may raise while it is read, besides
# the CalibrationFileError (a ValueError) that names what is wrong with it
UNREADABLE_BLOCK = (AttributeError, KeyError, TypeError)


def _stored_calibration(args: argparse.Namespace) -> EnsembleCalibration | None:
    """`load_calibration`, with a block that breaks the reader a CalibrationFileError naming the file."""
    try:
        return load_calibration(args)
    except UNREADABLE_BLOCK as error:
        raise CalibrationFileError(
            f"{args.ensemble}: its `calibration:` block cannot be read ({type(error).__name__}: {error}); run "
            "python -m inference.calibrate on it again, delete the block, or give --uncalibrated"
        ) from error


def verdict_rule(args: argparse.Namespace) -> VerdictRule:
    """The calibration (None without one, or with --uncalibrated) and what decides the verdict;
    InputError (one line, naming the file) for an operating point there is none of."""
    fpr = getattr(args, "operating_point", None)
    if args.uncalibrated:
        if fpr is not None:
            raise InputError("--operating-point is taken from the calibration that --uncalibrated ignores: give one")
        try:
            present = bool(args.ensemble) and ensemble_calibration(args.ensemble) is not None
        except (*UNREADABLE_BLOCK, ValueError) as error:  # ignored all the same (bad `members:` fail when loaded)
            logger.info("--uncalibrated: ignoring %s's calibration, which cannot be read (%s)", args.ensemble, error)
            present = False
        if present:
            logger.info("--uncalibrated: ignoring the calibration in %s (probabilities are raw scores)", args.ensemble)
        calibration = None
    else:
        calibration = _stored_calibration(args)
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if fpr is not None:
        if calibration is None:
            source = f"{args.ensemble}: no `calibration:` block" if args.ensemble else "--models: no calibration"
            raise _no_operating_point(args, fpr, f"{source} to take --operating-point fpr={fpr:g} from")
        try:
            point = calibration.operating_point(fpr)
        except CalibrationFileError:
            stored = ", ".join(f"fpr={p.fpr:g}" for p in calibration.operating_points) or "none"
            raise _no_operating_point(
                args, fpr, f"{calibration.path}: no operating point at fpr={fpr:g} (stored: {stored})"
            ) from None
    elif args.threshold is None and calibration is not None:
        point = calibration.default_operating_point()
    else:
        point = None
    if point is not None:
        logger.info(
            "verdicts at %s: FAKE when the ensemble's score is above %.4g (calibrated %.4g; from %d real videos)",
            point.describe(),
            point.score,
            point.probability,
            point.reals,
        )
    elif calibration is not None:
        logger.info("verdicts: FAKE when the calibrated probability is above %g", threshold)
    return VerdictRule(calibration, point, threshold)
