"""The calibration an ensemble file carries (`calibration:`), read, checked and applied.

`python -m inference.calibrate` writes it; predict, detect, the page, timeliness and evaluate
apply it through `EnsembleCalibration`:

    calibration:
      method: temperature                 # or platt (a, b): inference/calibration.py
      temperature: 1.84
      members:                            # what it was fitted for: the ensemble's checkpoints
        - {checkpoint: ../weights/demo_0_111_best.pt, weight: 0.5}
        - {checkpoint: ../weights/demo_1_555_best.pt, weight: 0.5}
      operating_points:                   # FAKE when the ensemble's score is above `score`
        - {fpr: 0.05, score: 0.8123, probability: 0.7011, reals: 40, rank: 2}
      real_scores: [0.01, 0.02, ...]      # the held-out reals' scores, sorted (real-video quantiles)
      fitted_on: {source: ..., videos: 120, real: 40, fake: 80, log_loss_before: ..., ...}

Scores here are the ensemble's own (the weighted mean of its members, before calibration);
`probability` is the calibrated value a person reads. Thresholds and quantiles are taken on the
score, so a calibration never moves a verdict that a threshold decides. The block is fitted for
one set of members and weights: an ensemble file whose members no longer match it, or a command
that adds --models to it, is refused (the calibration would describe another ensemble).
"""

from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.calibration import apply_calibration, validate_calibration
from inference.operating_points import real_quantile


class CalibrationFileError(ValueError):
    """An ensemble file's `calibration:` block that cannot be used, naming the file."""


@dataclass(frozen=True)
class OperatingPoint:
    fpr: float  # the target false-positive rate on fresh real videos
    score: float  # FAKE when the ensemble's score is above this
    probability: float  # the same threshold, calibrated
    reals: int  # the held-out real videos it was picked from
    rank: int  # it is the rank-th largest of their scores

    def describe(self) -> str:
        return f"the {self.fpr * 100:g}% false-positive threshold"


@dataclass(frozen=True)
class EnsembleCalibration:
    path: Path
    method: dict  # what `inference.calibration.apply_calibration` takes
    operating_points: tuple[OperatingPoint, ...]
    real_scores: np.ndarray  # sorted
    fitted_on: dict

    def probability(self, scores):
        """Calibrated probabilities of ensemble scores (a float for a scalar)."""
        calibrated = apply_calibration(scores, self.method)
        return float(calibrated) if calibrated.ndim == 0 else calibrated

    def operating_point(self, fpr: float) -> OperatingPoint:
        for point in self.operating_points:
            if math.isclose(point.fpr, fpr, rel_tol=1e-9):
                return point
        stored = ", ".join(f"fpr={p.fpr:g}" for p in self.operating_points) or "none"
        raise CalibrationFileError(
            f"{self.path}: no operating point at fpr={fpr:g} (stored: {stored}); run python -m inference.calibrate "
            f"with --fpr {fpr:g} (it needs enough held-out real videos)"
        )

    def default_operating_point(self) -> OperatingPoint | None:
        """The point a verdict uses when none is asked for: 1% if stored, else the lowest rate stored."""
        if not self.operating_points:
            return None
        for point in self.operating_points:
            if math.isclose(point.fpr, 0.01):
                return point
        return min(self.operating_points, key=lambda point: point.fpr)

    def real_quantile(self, score: float) -> float | None:
        """Fraction of the held-out real videos that scored at least `score` (None without any)."""
        return real_quantile(self.real_scores, score) if len(self.real_scores) else None

    def summary(self) -> dict:
        """What a JSON document says of the calibration applied."""
        return {"file": str(self.path), **self.method_parameters(), "fitted_on": self.fitted_on}

    def method_parameters(self) -> dict:
        keys = ("method", "temperature") if self.method["method"] == "temperature" else ("method", "a", "b")
        return {key: self.method[key] for key in keys}


def member_fingerprint(entries: list[dict]) -> list[dict]:
    """The members a calibration is fitted for: each checkpoint as the file names it, and its weight."""
    return [{"checkpoint": str(entry["checkpoint"]), "weight": float(entry.get("weight", 1.0))} for entry in entries]


def _number(value, what: str, path: Path, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
        raise CalibrationFileError(
            f"{path}: calibration {what} must be a number from {low:g} to {high:g}, got {value!r}"
        )
    return float(value)


def _fitted_members(fitted_for) -> list[dict] | None:
    """The block's `members:` as `member_fingerprint` makes them, or None where they are malformed."""
    if not isinstance(fitted_for, list) or not all(isinstance(entry, dict) for entry in fitted_for):
        return None
    try:
        return member_fingerprint(fitted_for)
    except (TypeError, ValueError, KeyError):  # a missing checkpoint, a weight that is not a number
        return None


def read_calibration(block, path: Path, members: list[dict]) -> EnsembleCalibration:
    """The `calibration:` block of ensemble file `path`, checked against its `members:` entries."""
    path = Path(path)
    if not isinstance(block, dict):
        raise CalibrationFileError(
            f"{path}: `calibration:` must be a mapping (written by python -m inference.calibrate)"
        )
    try:
        validate_calibration({key: block.get(key) for key in ("method", "temperature", "a", "b") if key in block})
    except ValueError as error:
        raise CalibrationFileError(f"{path}: {error}") from error
    if _fitted_members(block.get("members")) != member_fingerprint(members):
        raise CalibrationFileError(
            f"{path}: the calibration was fitted for other members or weights than the file lists now; run "
            "python -m inference.calibrate on it again (or delete its `calibration:` block)"
        )
    real_scores = block.get("real_scores") or []
    if not isinstance(real_scores, list):
        raise CalibrationFileError(f"{path}: calibration `real_scores` must be a list of scores")
    reals = np.sort(np.array([_number(v, "real score", path, 0.0, 1.0) for v in real_scores], np.float64))
    method = {key: block[key] for key in ("method", "temperature", "a", "b") if key in block}
    points = []
    for entry in block.get("operating_points") or []:
        if not isinstance(entry, dict):
            raise CalibrationFileError(f"{path}: each operating point must be a mapping, got {entry!r}")
        score = _number(entry.get("score"), "operating point score", path, 0.0, 1.0)
        points.append(
            OperatingPoint(
                fpr=_number(entry.get("fpr"), "operating point fpr", path, 1e-9, 1 - 1e-9),
                score=score,
                probability=float(apply_calibration(score, method)),
                reals=int(_number(entry.get("reals"), "operating point reals", path, 1)),
                rank=int(_number(entry.get("rank"), "operating point rank", path, 1)),
            )
        )
    fitted_on = block.get("fitted_on") or {}
    return EnsembleCalibration(path, method, tuple(points), reals, fitted_on if isinstance(fitted_on, dict) else {})


def operating_point_argument(text: str) -> float:
    """An argparse type for --operating-point: `fpr=0.01` (or just 0.01), a rate between 0 and 1."""
    value = text.strip().removeprefix("fpr=")
    try:
        fpr = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not fpr=RATE (e.g. fpr=0.01)") from None
    if not 0 < fpr < 1:
        raise argparse.ArgumentTypeError(f"a false-positive rate is between 0 and 1, got {text}")
    return fpr
