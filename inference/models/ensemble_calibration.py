"""The calibration an ensemble file carries (`calibration:`), read, checked and applied.

`python -m inference.calibrate` writes it; predict, detect, the page, timeliness and evaluate
apply it through `EnsembleCalibration`:

    calibration:
      method: temperature                 # or platt (a, b): inference/calibration/methods.py
      temperature: 1.84
      members:                            # what it was fitted for: the ensemble's checkpoints
        - {checkpoint: ../weights/demo_0_111_best.pt, encoder: null, input_size: null, weight: 0.5,
           bytes: 45032117, sha256: 3f1c..., mtime_ns: 1764693392000000000}
        - ...
      operating_points:                   # FAKE when the ensemble's score is above `score`
        - {fpr: 0.05, score: 0.8123, probability: 0.7011, reals: 40, rank: 2}
      real_scores: [0.01, 0.02, ...]      # the fit's reals' scores, sorted (real-video quantiles)
      settings: {detector_scale: 0.5, frames: 32, strategy: confident, ...}   # or training-validation
      fitted_on: {source: ..., videos: 120, real: 40, fake: 80, log_loss_before: ..., ...,
                  held_out: {source: ..., settings: {...}, log_loss_before: ..., ...}, forced: false}

Scores here are the ensemble's own (the weighted mean of its members, before calibration);
`probability` is the calibrated value a person reads. Thresholds and quantiles are taken on the
score, so a calibration never moves a verdict that a threshold decides. The block is fitted for
one set of members and weights: an ensemble file whose members no longer match it (checkpoint,
encoder, input size, weight as the file lists them; a checkpoint file of another size, or, when its
modification time changed, another sha256: retrained or replaced), or a command that adds --models
to it, is refused (the calibration would describe another ensemble). A checkpoint file that is not
there is left to the loading's own error. `settings` are those of the scores it was fitted on
(inference/scoring/scoring_settings.py: predict holds a calibration to them, detect takes them), and
`fitted_on.forced` says that inference.calibrate --force stored it over a refusal (`forced_over`
says which; the verdicts repeat it).
"""

from __future__ import annotations

import argparse
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.bounded_numbers import number_within, shown
from inference.calibration.methods import apply_calibration, validate_calibration
from inference.calibration.record import checked_fitted_on
from inference.scoring.operating_points import conformal_rank, real_quantile
from inference.scoring.scoring_settings import TRAINING_VALIDATION, settings_problem

# fitted_on.source: "oof: RUN, ..." (training's out-of-fold predictions) or "submission: PATH" (a labelled set)
OOF_SOURCE, SUBMISSION_SOURCE = "oof: ", "submission: "


class CalibrationFileError(ValueError):
    """An ensemble file's `calibration:` block that cannot be used, naming the file."""


@dataclass(frozen=True)
class OperatingPoint:
    fpr: float  # the target false-positive rate on fresh real videos
    score: float  # FAKE when the ensemble's score is above this
    probability: float  # the same threshold, calibrated
    reals: int  # the real videos it was picked from (the fit's)
    rank: int  # it is the rank-th largest of their scores

    def describe(self) -> str:
        return f"the {self.fpr * 100:g}% false-positive threshold"


@dataclass(frozen=True)
class EnsembleCalibration:
    path: Path
    method: dict  # what `inference.calibration.methods.apply_calibration` takes
    operating_points: tuple[OperatingPoint, ...]
    real_scores: np.ndarray  # sorted
    fitted_on: dict
    settings: dict | str | None = None  # the fit's scores': a mapping, "training-validation", or not recorded
    held_out_settings: dict | str | None = None  # the held-out set's scores' (fitted_on.held_out.settings)

    @property
    def forced(self) -> str | None:
        """What inference.calibrate --force stored it over (fitted_on.forced_over), or None."""
        if not self.fitted_on.get("forced"):
            return None
        return str(self.fitted_on.get("forced_over") or "a refusal")

    def reals_origin(self) -> str | None:
        """Where the reference reals (real_scores) come from, in words, or None where not recorded."""
        source = self.fitted_on.get("source")
        if self.settings == TRAINING_VALIDATION or (isinstance(source, str) and source.startswith(OOF_SOURCE)):
            return "training's out-of-fold videos"
        if isinstance(source, str) and source.startswith(SUBMISSION_SOURCE):
            return "a labelled held-out set"
        return None

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
            f"with --fpr {fpr:g} (it needs enough labelled real videos)"
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
        """Fraction of the reference real videos (the fit's) that scored at least `score` (None without any)."""
        return real_quantile(self.real_scores, score) if len(self.real_scores) else None

    def summary(self) -> dict:
        """What a JSON document says of the calibration applied."""
        return {
            "file": str(self.path),
            **self.method_parameters(),
            "settings": self.settings,
            "forced": self.forced is not None,
            "fitted_on": self.fitted_on,
        }

    def method_parameters(self) -> dict:
        keys = ("method", "temperature") if self.method["method"] == "temperature" else ("method", "a", "b")
        return {key: self.method[key] for key in keys}


HASH_CHUNK = 1 << 20
_hashes: dict[tuple[str, int, int], str] = {}  # (file, size, mtime_ns) -> sha256: a file is hashed once


def member_identity(entry: dict) -> dict:
    """A member as the ensemble file lists it: its checkpoint, encoder and input size (None where
    the file gives none), its weight and, where it names one, its detector."""
    identity = {
        "checkpoint": str(entry["checkpoint"]),
        "encoder": entry.get("encoder"),
        "input_size": entry.get("input_size"),
        "weight": float(entry.get("weight", 1.0)),
    }
    if entry.get("detector"):  # another paper's detector reads this file (only then, as older blocks lack it)
        identity["detector"] = str(entry["detector"])
    return identity


def checkpoint_path(entry: dict, folder: Path) -> Path:
    checkpoint = Path(entry["checkpoint"])
    return checkpoint if checkpoint.is_absolute() else Path(folder) / checkpoint


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read 1 MiB at a time (remembered for its size and modification time)."""
    status = path.stat()
    key = (str(path.resolve()), status.st_size, status.st_mtime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
                digest.update(chunk)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


def file_fingerprint(path: Path) -> dict:
    """A checkpoint file's size, sha256 and modification time (None each for a file not there)."""
    path = Path(path)
    if not path.is_file():
        return {"bytes": None, "sha256": None, "mtime_ns": None}
    status = path.stat()
    return {"bytes": status.st_size, "sha256": file_sha256(path), "mtime_ns": status.st_mtime_ns}


def member_fingerprint(members: list[dict], folder: Path) -> list[dict]:
    """The `members:` of a calibration block fitted for the ensemble-file entries `members` (as the
    YAML lists them: checkpoint, encoder, input_size, weight) of a file in `folder`: each one's
    identity and its checkpoint file's `file_fingerprint`."""
    return [{**member_identity(entry), **file_fingerprint(checkpoint_path(entry, folder))} for entry in members]


def _number(value, what: str, path: Path, low: float = -math.inf, high: float = math.inf) -> float:
    number = number_within(value, low, high)  # 10**400 too: no float holds it
    if number is None:
        raise CalibrationFileError(
            f"{path}: calibration {what} must be a number from {low:g} to {high:g}, got {shown(value)}"
        )
    return number


def _whole(value, what: str, path: Path, low: int = 1) -> int:
    number = _number(value, what, path, low)
    if not float(number).is_integer():
        raise CalibrationFileError(f"{path}: calibration {what} must be a whole number, got {value!r}")
    return int(number)


def _fitted_members(fitted_for) -> list[dict] | None:
    """The identities of the block's `members:`, or None where they are malformed."""
    if not isinstance(fitted_for, list) or not all(isinstance(entry, dict) for entry in fitted_for):
        return None
    try:
        return [member_identity(entry) for entry in fitted_for]
    except (TypeError, ValueError, KeyError):  # a missing checkpoint, a weight that is not a number
        return None


def check_member_files(fitted_for: list[dict], members: list[dict], path: Path) -> None:
    """Refuse a calibration whose members' checkpoint files changed since it was fitted: another
    size, or (where the modification time changed too) another sha256. A file that is not there is
    left to the loading's own error."""
    for fitted, entry in zip(fitted_for, members, strict=True):
        checkpoint = checkpoint_path(entry, path.parent)
        if not checkpoint.is_file():
            continue
        size, sha256, mtime_ns = fitted.get("bytes"), fitted.get("sha256"), fitted.get("mtime_ns")
        name = entry["checkpoint"]
        if isinstance(size, bool) or not isinstance(size, int) or not isinstance(sha256, str):
            raise CalibrationFileError(
                f"{path}: the calibration does not record the size and sha256 of member {name}; run python -m "
                "inference.calibrate on it again (or delete its `calibration:` block)"
            )
        status = checkpoint.stat()
        replaced = f"{path}: member {name} was retrained or replaced since it was calibrated"
        again = "; run python -m inference.calibrate on it again (or delete its `calibration:` block)"
        if status.st_size != size:
            raise CalibrationFileError(f"{replaced} ({status.st_size} bytes, not {size}){again}")
        if status.st_mtime_ns != mtime_ns and file_sha256(checkpoint) != sha256.lower():
            raise CalibrationFileError(f"{replaced} (another sha256){again}")


def _operating_points(block: dict, method: dict, reals: np.ndarray, path: Path) -> list[OperatingPoint]:
    """The block's operating points, checked (and, where the block holds all their reals, checked
    against them: the rank-th largest real score at the finite-sample rank of the rate)."""
    entries = block.get("operating_points")
    entries = [] if entries is None else entries
    if not isinstance(entries, list):
        raise CalibrationFileError(f"{path}: calibration `operating_points` must be a list, got {entries!r}")
    points, descending = [], reals[::-1]
    for entry in entries:
        if not isinstance(entry, dict):
            raise CalibrationFileError(f"{path}: each operating point must be a mapping, got {entry!r}")
        fpr = _number(entry.get("fpr"), "operating point fpr", path, 1e-9, 1 - 1e-9)
        score = _number(entry.get("score"), "operating point score", path, 0.0, 1.0)
        count = _whole(entry.get("reals"), "operating point reals", path)
        rank = _whole(entry.get("rank"), "operating point rank", path)
        where = f"{path}: the operating point at fpr={fpr:g}"
        if rank > count:
            raise CalibrationFileError(f"{where} has rank {rank} among only {count} reals")
        if any(math.isclose(point.fpr, fpr, rel_tol=1e-9) for point in points):
            raise CalibrationFileError(f"{where} is listed twice")
        if count == len(reals):
            if rank != conformal_rank(fpr, count):
                raise CalibrationFileError(
                    f"{where} has rank {rank}, but {count} reals put it at rank {conformal_rank(fpr, count)}"
                )
            if not math.isclose(score, descending[rank - 1], rel_tol=0, abs_tol=1e-9):
                raise CalibrationFileError(
                    f"{where} has score {score!r}, not {float(descending[rank - 1])!r}, the real score of rank {rank}"
                )
        points.append(OperatingPoint(fpr, score, float(apply_calibration(score, method)), count, rank))
    return points


def read_calibration(block, path: Path, members: list[dict]) -> EnsembleCalibration:
    """The `calibration:` block of ensemble file `path`, checked against its `members:` entries and
    their checkpoint files (`check_member_files`)."""
    path = Path(path)
    if not isinstance(block, dict):
        raise CalibrationFileError(
            f"{path}: `calibration:` must be a mapping (written by python -m inference.calibrate)"
        )
    try:
        validate_calibration({key: block.get(key) for key in ("method", "temperature", "a", "b") if key in block})
    except ValueError as error:
        raise CalibrationFileError(f"{path}: {error}") from error
    if _fitted_members(block.get("members")) != [member_identity(entry) for entry in members]:
        raise CalibrationFileError(
            f"{path}: the calibration was fitted for other members or weights than the file lists now (checkpoint, "
            "encoder, input size, weight, detector); run python -m inference.calibrate on it again (or delete its "
            "`calibration:` block)"
        )
    check_member_files(block["members"], members, path)
    real_scores = block.get("real_scores")
    real_scores = [] if real_scores is None else real_scores
    if not isinstance(real_scores, list):
        raise CalibrationFileError(f"{path}: calibration `real_scores` must be a list of scores, got {real_scores!r}")
    reals = np.sort(np.array([_number(v, "real score", path, 0.0, 1.0) for v in real_scores], np.float64))
    method = {key: block[key] for key in ("method", "temperature", "a", "b") if key in block}
    points = _operating_points(block, method, reals, path)
    try:
        fitted_on = checked_fitted_on(block.get("fitted_on"))
    except ValueError as error:
        raise CalibrationFileError(f"{path}: calibration {error}") from None
    held_out = fitted_on.get("held_out")
    held_out_settings = held_out.get("settings") if isinstance(held_out, dict) else None
    for what, settings in (("settings", block.get("settings")), ("fitted_on.held_out.settings", held_out_settings)):
        problem = None if settings is None else settings_problem(settings)
        if problem:
            raise CalibrationFileError(
                f"{path}: calibration `{what}` is not a record of scoring settings ({problem}); run python -m "
                "inference.calibrate on it again"
            )
    return EnsembleCalibration(path, method, tuple(points), reals, fitted_on, block.get("settings"), held_out_settings)


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
