"""Where `python -m inference.calibrate` gets each video's label and the ensemble's raw score.

- Training's out-of-fold predictions (`oof_scores`): RUN_DIR/oof_predictions.csv
  (video,label,probability) of the runs behind the members. A run scored only the videos of its
  validation fold, the ones it did not train on, so each video's score is the weighted mean (the
  members' weights) of the runs that validated on it; a video no run validated on is left out.
  These are not quite predict's scores: training's validation takes the plain mean of a video's
  crops (predict's `confident` strategy weighs them otherwise), and with runs of different folds
  a video is scored by some of the members only. Both are said (fitted_on.scores, and a warning).
- A labelled set scored by inference.predict (`submission_scores`): the raw score of each video
  from the details.jsonl beside the submission ("ensemble_score", else "score"), failed videos
  left out (their default score is no model's). The details must be the submission's: each
  uncalibrated row's score is the submission's label for that video, and no video is listed twice.

Each source says how its scores were made (`settings`, inference/scoring/scoring_settings.py): the
scoring settings predict recorded in the rows (`scoring`: one set for all the videos, else refused;
None for details written before predict recorded them), or "training-validation".
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.cli import InputError, describe
from inference.fitting.ensemble_fit import run_checkpoint
from inference.models.ensemble_file import normalised_weights
from inference.scoring.scoring_settings import TRAINING_VALIDATION, rows_settings
from inference.scoring.submission_scoring import align, read_labels, read_submission

logger = logging.getLogger("inference.calibrate")

BEST_SUFFIX = "_best.pt"
SUBMISSION_SCORES = "inference.predict (as applied)"
OOF_WARNING = (
    "operating points from out-of-fold scores hold for fresh reals only as far as these scores resemble "
    "predict's; for a guaranteed rate fit them on a labelled set scored by inference.predict (--submission)"
)


@dataclass(frozen=True)
class LabelledScores:
    source: str  # what fitted_on.source says: "oof: RUN, RUN" or "submission: PATH"
    videos: list[str]
    labels: np.ndarray  # 1 = fake
    scores: np.ndarray  # the ensemble's raw scores
    scored_with: str = SUBMISSION_SCORES  # what fitted_on.scores says: how the scores were made
    from_oof: bool = False  # training's out-of-fold predictions, not predict's scores
    settings: dict | str | None = None  # predict's scoring settings, "training-validation", or unknown (None)


# ---------------------------------------------------------------- out-of-fold predictions


def member_run_dirs(entries: list[dict]) -> list[Path]:
    """The training run folder of each member: checkpoint W/NAME_best.pt was trained in W/logs/NAME."""
    run_dirs = []
    for entry in entries:
        path = Path(entry["path"])
        if not path.name.endswith(BEST_SUFFIX):
            raise InputError(
                f"member {path}: not a training run's best checkpoint (NAME{BEST_SUFFIX}), so its out-of-fold "
                "predictions cannot be found; pass its run folder with --oof RUN, or use --submission"
            )
        run_dirs.append(path.parent.resolve() / "logs" / path.name.removesuffix(BEST_SUFFIX))
    return run_dirs


def check_runs_match_members(run_dirs: list[Path], entries: list[dict]) -> None:
    """Run folders given for the members, in order: each must be the run of that member's checkpoint."""
    if len(run_dirs) != len(entries):
        raise InputError(f"--oof: {len(run_dirs)} run folders for {len(entries)} members; give one per member in order")
    for run_dir, entry in zip(run_dirs, entries, strict=True):
        if run_checkpoint(run_dir).resolve() != Path(entry["path"]).resolve():
            raise InputError(
                f"--oof: run {run_dir} trained {run_checkpoint(run_dir)}, but the member in its place is "
                f"{entry['path']} (give the run folders in the members' order)"
            )


def _oof_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV file, any problem reading it a one-line InputError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
        table = list(csv.reader(io.StringIO(text)))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot read it as CSV ({describe(error)})") from None
    if not table:
        raise InputError(f"{path}: empty (expected columns video,label,probability and a row per video)")
    return [column.strip() for column in table[0]], table[1:]


def read_oof(run_dir: Path, member: str | None = None) -> dict[str, tuple[int, float]]:
    """{video: (label, probability)} of a run's oof_predictions.csv, checked: a video name, a label
    0 or 1 as training writes it, a probability from 0 to 1, each video once, at least one video."""
    path = run_dir / "oof_predictions.csv"
    if not path.is_file():
        whose = f"member {member}: " if member else ""
        raise InputError(f"{whose}{path}: missing (its run must train to at least one epoch with validation)")
    header, table = _oof_table(path)
    if not {"video", "label", "probability"} <= set(header):
        raise InputError(f"{path}: expected columns video,label,probability, got {','.join(header)}")
    columns = [header.index(name) for name in ("video", "label", "probability")]
    rows = {}
    for line, row in enumerate(table, start=2):
        if not row:
            continue  # a blank line
        if len(row) != len(header):
            raise InputError(f"{path}: line {line}: {len(row)} fields, expected {len(header)}")
        video, label, probability = (row[column].strip() for column in columns)
        if not video:
            raise InputError(f"{path}: line {line}: no video name")
        if video in rows:
            raise InputError(f"{path}: line {line}: video {video} is listed twice")
        if label not in ("0", "1"):
            raise InputError(f"{path}: line {line}: label {label!r} of {video} is not 0 (real) or 1 (fake)")
        try:
            value = float(probability)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise InputError(f"{path}: line {line}: probability {probability!r} of {video} is not from 0 to 1")
        rows[video] = (int(label), value)
    if not rows:
        raise InputError(f"{path}: no videos, only a header (the run validated on nothing?)")
    return rows


def combine_runs(tables: list[dict[str, tuple[int, float]]], weights: list[float], names: list[str]):
    """(videos, labels, scores, runs per video): each video's score is the weighted mean of the runs
    that validated on it (`tables`, one per member, with the member's weight)."""
    videos, labels, scores, counts = [], [], [], []
    for video in sorted(set().union(*tables)):
        runs = zip(tables, weights, names, strict=True)
        present = [(table[video], weight, name) for table, weight, name in runs if video in table]
        if len({label for (label, _), _, _ in present}) > 1:
            runs = ", ".join(f"{name} says {label}" for (label, _), _, name in present)
            raise InputError(f"out-of-fold predictions disagree on the label of video {video}: {runs}")
        total = sum(weight for _, weight, _ in present)
        if total <= 0:
            continue  # only members of weight 0 scored it: the ensemble gives it no score
        videos.append(video)
        labels.append(present[0][0][0])
        scores.append(sum(probability * weight for (_, probability), weight, _ in present) / total)
        counts.append(len(present))
    return videos, np.array(labels, np.int64), np.array(scores, np.float64), counts


def oof_scores(run_dirs: list[Path], entries: list[dict]) -> LabelledScores:
    """The labelled raw ensemble scores of the videos the members' runs validated on."""
    names = [Path(entry["path"]).name for entry in entries]
    tables = [read_oof(run_dir, name) for run_dir, name in zip(run_dirs, names, strict=True)]
    weights = normalised_weights([float(e["weight"]) for e in entries], "the ensemble")  # as predict weighs them
    videos, labels, scores, counts = combine_runs(tables, weights, names)
    if not videos:
        raise InputError(f"no video in the out-of-fold predictions of {', '.join(map(str, run_dirs))}")
    by_runs = sorted(Counter(counts).items())
    scored_by = [f"{n} by {runs} run{'s' * (runs > 1)}" for runs, n in by_runs]
    logger.info("%d videos in the runs' out-of-fold predictions, scored %s", len(videos), ", ".join(scored_by))
    fewer = sum(n for runs, n in by_runs if runs < len(entries))
    if fewer:
        logger.warning(
            "%d of %d videos were scored by fewer runs than the ensemble's %d members (runs of different folds "
            "validate different videos): their scores are not the ensemble's, as predict would score them",
            fewer,
            len(videos),
            len(entries),
        )
    scored_with = (
        "training's out-of-fold predictions (mean of each video's crops); each video scored by "
        f"{' or '.join(str(runs) for runs, _ in by_runs)} of {len(entries)} members"
    )
    source = "oof: " + ", ".join(map(str, run_dirs))
    return LabelledScores(source, videos, labels, scores, scored_with, from_oof=True, settings=TRAINING_VALIDATION)


# ---------------------------------------------------------------- a predicted, labelled set


def raw_score(row: dict, where: str) -> float:
    """A details.jsonl row's uncalibrated ensemble score."""
    if "ensemble_score" in row:
        value = row["ensemble_score"]
    elif row.get("calibrated"):
        raise InputError(f"{where}: a calibrated score without its `ensemble_score` (the raw one is needed to fit)")
    else:
        value = row.get("score")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InputError(f"{where}: the score {value!r} is not a probability from 0 to 1")
    return float(value)


def read_details(path: Path) -> dict[str, dict]:
    """{filename: row} of predict's details.jsonl; a video listed twice is refused."""
    rows = {}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: line {line_number}: not JSON ({error})") from None
        if not isinstance(row, dict) or not isinstance(row.get("filename"), str):
            raise InputError(f"{path}: line {line_number}: not a details row with a filename")
        if row["filename"] in rows:
            raise InputError(f"{path}: line {line_number}: {row['filename']} is listed twice")
        rows[row["filename"]] = row
    return rows


def check_scored_by(rows: dict[str, dict], entries: list[dict], details: Path) -> None:
    """Refuse details whose per-model scores name other models, or average to another score, than
    the ensemble's (predict's score is the weighted mean of its models' scores)."""
    names = [Path(entry["path"]).name for entry in entries]
    keys = [name if names.count(name) == 1 else f"{index}:{name}" for index, name in enumerate(names)]
    weights = normalised_weights([float(entry["weight"]) for entry in entries], "the ensemble")  # as predict's
    for name, row in rows.items():
        model_scores = row.get("model_scores")
        if row.get("error") or not isinstance(model_scores, dict):
            continue
        if sorted(model_scores) != sorted(keys):
            raise InputError(
                f"{details}: {name} was scored by {', '.join(sorted(model_scores))}, not by the ensemble's members "
                f"{', '.join(keys)}: predict the set with this ensemble"
            )
        average = float(np.average([model_scores[key] for key in keys], weights=weights))
        if not math.isclose(average, raw_score(row, f"{details}: {name}"), abs_tol=1e-6):
            raise InputError(
                f"{details}: {name}'s score is not the weighted mean of its models' scores with the ensemble's weights "
                "(scored with other weights?): predict the set with this ensemble"
            )


def check_details_match(rows: dict[str, dict], names: list[str], submitted: np.ndarray, details: Path) -> None:
    """Refuse details that are not the submission's: every row's `score` is what predict submitted
    for the video (to the 6 decimals written), calibrated or not; and where rows were calibrated,
    their raw `ensemble_score`s must rank the videos as the submitted probabilities do (a
    calibration is monotone), so raw scores from another run cannot pass for this one's."""
    for name, label in zip(names, submitted, strict=True):
        score = rows[name].get("score")
        number = isinstance(score, (int, float)) and not isinstance(score, bool)
        if not number or not math.isclose(score, label, abs_tol=1e-6):
            raise InputError(
                f"{details}: {name} has score {score!r} there but {float(label):.6f} in the submission: not the "
                "details of this submission (predict it again, or pass the right one)"
            )
    calibrated = [
        (rows[name]["ensemble_score"], float(label), name)
        for name, label in zip(names, submitted, strict=True)
        if rows[name].get("calibrated") and isinstance(rows[name].get("ensemble_score"), (int, float))
    ]
    calibrated.sort()
    for (raw, label, name), (next_raw, next_label, next_name) in zip(calibrated, calibrated[1:], strict=False):
        if next_raw > raw and next_label < label - 1e-6:
            raise InputError(
                f"{details}: {name} and {next_name} are ranked one way by their ensemble_score ({raw:.6g} < "
                f"{next_raw:.6g}) and the other by the submission ({label:.6f} > {next_label:.6f}): these raw "
                "scores are not the ones this submission was calibrated from"
            )


def submission_scores(
    submission: Path, labels_path: Path, entries: list[dict] | None = None, split: str | None = None
) -> LabelledScores:
    """The labelled raw scores of a set inference.predict scored (see the module's docstring), the
    labels those of `split` where `labels_path` is a dataset with official splits. Missing or extra
    rows against the labels are errors, as in inference.score."""
    names, labels, scores, _ = align(read_submission(submission), read_labels(labels_path, split=split))
    details_path = submission.parent / "details.jsonl"
    settings = None
    if details_path.is_file():
        rows = read_details(details_path)
        unknown = sorted(set(names) - set(rows))
        if unknown:
            raise InputError(f"{details_path}: no row for {unknown[0]} of {submission} (not its details?)")
        check_details_match(rows, names, scores, details_path)
        if entries is not None:
            check_scored_by({name: rows[name] for name in names}, entries, details_path)
        failed = [name for name in names if rows[name].get("error")]
        scores = [-1.0 if name in failed else raw_score(rows[name], f"{details_path}: {name}") for name in names]
        try:
            settings = rows_settings([rows[name] for name in names if name not in failed], str(details_path))
        except ValueError as error:
            raise InputError(str(error)) from None
    else:
        errors_path = submission.parent / "errors.csv"
        failed = sorted(set(read_submission_errors(errors_path)) & set(names)) if errors_path.is_file() else []
        logger.warning(
            "%s: no details.jsonl beside it; its labels are taken as the ensemble's raw scores: they must come from "
            "predict without calibration (an ensemble file without `calibration:`, or --uncalibrated)",
            submission,
        )
    if failed:
        logger.warning(
            "%s: %d videos that failed in predict left out (their default score is no model's): %s%s",
            submission,
            len(failed),
            ", ".join(failed[:5]),
            ", ..." if len(failed) > 5 else "",
        )
    left_out = set(failed)
    keep = np.array([name not in left_out for name in names], bool)
    kept = [name for name, chosen in zip(names, keep, strict=True) if chosen]
    scores = np.asarray(scores, np.float64)[keep]
    if settings is None:
        logger.warning(
            "%s: its details record no scoring settings (written before predict recorded them, or none beside it): "
            "the calibration cannot be held to the settings it is applied with; predict the set again to record them",
            submission,
        )
    return LabelledScores(f"submission: {submission}", kept, labels[keep], scores, SUBMISSION_SCORES, settings=settings)


def read_submission_errors(path: Path) -> list[str]:
    """The filenames listed in predict's errors.csv (filename,stage,reason)."""
    table = pd.read_csv(path, dtype={"filename": str})
    if "filename" not in table.columns:
        raise InputError(f"{path}: expected columns filename,stage,reason")
    return list(table["filename"])
