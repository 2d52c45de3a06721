"""Fit a calibration and false-positive-rate operating points for an ensemble, and store them in its file.

    python -m inference.calibrate --ensemble configs/ensemble.yaml --oof
    python -m inference.calibrate --ensemble E.yaml --oof weights/logs/a weights/logs/b
    python -m inference.calibrate --runs weights/logs/a weights/logs/b --out E.yaml
    python -m inference.calibrate --ensemble E.yaml --submission sub.csv --labels LABELS
    python -m inference.calibrate --ensemble original --submission sub.csv --labels L --out my_original.yaml

Each video's label and the ensemble's raw score (the weighted mean of its members) come from one of:

  --oof [RUN ...]      training's out-of-fold predictions, RUN/oof_predictions.csv. Without RUN
                       folders, member W/NAME_best.pt is the run W/logs/NAME; with them, one per
                       member, in the members' order. A video's score is the weighted mean of the
                       runs that validated on it (runs of different folds score different videos).
                       These approximate predict's scores: training's validation averages a
                       video's crops plainly (predict weighs them by its `confident` strategy),
                       and a video of one fold is scored by that fold's runs only (a warning says
                       how many; fitted_on.scores records it). Operating points from them hold
                       for fresh reals only as far as the two agree.
  --submission S --labels L
                       a labelled set scored by inference.predict with this ensemble: raw scores
                       from the details.jsonl beside S ("ensemble_score", else "score"), videos
                       that failed left out; labels in any layout inference.score reads. The
                       scores predict gives, so the operating points' rates hold as stated: the
                       source to use for a guaranteed rate. Details that are not S's (a score
                       other than S's label, a video listed twice) are refused.
  --runs RUN ...       (instead of --ensemble) a new ensemble file of the runs' best checkpoints,
                       equal weights, calibrated on their out-of-fold predictions; needs --out.

A temperature (default) or Platt's scaling is fitted to the scores (against Platt's prior-corrected
targets, so that a handful of separable videos gives a moderate fit, not certainty), and for each
--fpr rate the threshold on the raw score that a fresh real video exceeds with at most that
probability (from the reals' scores, finite-sample; 19 reals for 5%, 99 for 1%). A rate the reals
cannot support is not stored: a warning says how many reals it needs, and the exit status is still
0 once the calibration is fitted. A table of the fit (log loss, ECE and Brier before and after, the
parameters, the operating points) is printed, and a last line saying what became of it.

A calibration that could make things worse is refused (one `error:` line, exit status 2, nothing
written; inference/fitting/calibration_guard.py):
  - fewer than --min-per-class videos of either class (default 30: in a simulation of four kinds of
    model, python -m inference.calibration.simulation, fits on 30 reals and 30 fakes made fresh
    videos' log loss more than 10% worse than raw in at most 4.1% of draws; on 10 of each, 38-44%;
    on 3 of each, 90-91%);
  - a fit at a search bound of its parameters (scores that say nothing or the wrong thing, or
    barely leave 0.5: it would flatten every probability, or stretch them 100-fold);
  - with --held-out S --held-out-labels L, a calibration whose log loss on that set is worse than
    the raw scores'.
--force stores one refused for the last two all the same: the block says so (fitted_on.forced,
forced_over), and so do the verdicts of detect and the page. --uncalibrated-if-refused writes the
ensemble file without a calibration instead (any block it had removed) and exits 0, saying why
(./run_all.sh uses it).

The block records the scoring settings of the scores it was fitted on (`settings`: predict's, from
its details.jsonl, or training-validation for out-of-fold predictions) and of the held-out set:
inference.predict refuses to apply it to scores made otherwise, and inference.detect and the page
score with them by default (inference/scoring/scoring_settings.py).

The ensemble file (--out, default the --ensemble file itself; required for `original`, whose
members are then written with absolute paths) gets a `calibration:` block
(inference/models/ensemble_calibration.py), replacing any it had: predict, detect and the page apply it,
and refuse it once a member's checkpoint file is retrained or replaced (its size and sha256 are
recorded).
The other keys of the file are kept; its comments are not. --held-out S --held-out-labels L
reports (and stores under fitted_on.held_out) what the calibration does on a second labelled set.
"""

from __future__ import annotations

import argparse
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from common import safe_yaml
from common.cli import InputError
from inference.calibration.methods import METHODS, apply_calibration
from inference.fitting.calibrate_output import refused_line, report_table, stored_line, write_calibrated
from inference.fitting.calibration_guard import (
    MIN_PER_CLASS,
    CalibrationRefusedError,
    checked_held_out,
    fit_metrics,
    fitted,
    min_per_class_argument,
)
from inference.fitting.calibration_sources import (
    OOF_WARNING,
    LabelledScores,
    check_runs_match_members,
    member_run_dirs,
    oof_scores,
    submission_scores,
)
from inference.fitting.ensemble_fit import run_checkpoint, run_members
from inference.models.ensemble_calibration import file_fingerprint, member_identity, operating_point_argument
from inference.models.ensemble_file import read_ensemble_file
from inference.scoring.metrics import competition_log_loss
from inference.scoring.operating_points import conformal_rank, reals_needed, threshold_at_fpr

logger = logging.getLogger("inference.calibrate")

DEFAULT_FPRS = (0.05, 0.01)


def operating_points(real_scores: np.ndarray, fprs, calibration: dict) -> tuple[list[dict], list[dict]]:
    """(points stored, rates refused): each rate's threshold on the raw score from the reals, or,
    where the reals are too few, how many it needs."""
    stored, refused = [], []
    for fpr in fprs:
        rank = conformal_rank(fpr, len(real_scores))
        if rank < 1:
            refused.append({"fpr": fpr, "reals": len(real_scores), "reals_needed": reals_needed(fpr)})
            continue
        score = threshold_at_fpr(real_scores, fpr)
        probability = float(apply_calibration(score, calibration))
        stored.append({"fpr": fpr, "score": score, "probability": probability, "reals": len(real_scores), "rank": rank})
    return stored, refused


def _rounded(metrics: dict) -> dict:
    return {key: round(value, 6) if isinstance(value, float) else value for key, value in metrics.items()}


def fingerprint(members: list[dict], entries: list[dict]) -> list[dict]:
    """The block's `members:`: each member as the file to write lists it, and its checkpoint file's
    size and sha256 (what tell a later load that it was retrained or replaced), the file required.
    `entries` are the same members as inference.models.ensemble reads them (their `path`)."""
    fingerprints = []
    for member, entry in zip(members, entries, strict=True):
        if not Path(entry["path"]).is_file():
            raise InputError(
                f"member {member['checkpoint']}: no checkpoint file at {entry['path']} (the calibration records "
                "each member's size and sha256)"
            )
        fingerprints.append({**member_identity(member), **file_fingerprint(entry["path"])})
    return fingerprints


def calibration_block(
    data: LabelledScores,
    members: list[dict],
    entries: list[dict],
    method: str,
    fprs,
    held_out: LabelledScores | None = None,
    min_per_class: int = MIN_PER_CLASS,
    force: bool = False,
) -> tuple[dict, dict]:
    """(the `calibration:` block for an ensemble file listing `members` (read as `entries`), a report
    for the table); CalibrationRefusedError where it could make things worse (module docstring)."""
    calibration, forced = fitted(data, method, min_per_class, force)
    held = None
    if held_out is not None:
        held, problem = checked_held_out(held_out, data, calibration, force)
        forced += [problem] if problem else []
    metrics = fit_metrics(data.labels, data.scores, apply_calibration(data.scores, calibration))
    reals = np.sort(data.scores[data.labels == 0])
    stored, refused = operating_points(reals, fprs, calibration)
    for point in refused:
        logger.warning(
            "no operating point at %g false-positive rate (not stored): it needs %d real videos, there are %d",
            point["fpr"],
            point["reals_needed"],
            point["reals"],
        )
    if stored and data.from_oof:
        logger.warning(OOF_WARNING)
    fitted_on = {"source": data.source, "scores": data.scored_with, **_rounded(metrics), "method": method}
    fitted_on["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report = {"source": data.source, "metrics": metrics, "stored": stored, "refused": refused}
    if held_out is not None:
        fitted_on["held_out"] = {
            "source": held_out.source,
            "scores": held_out.scored_with,
            "settings": held_out.settings,
            **_rounded(held),
        }
        report["held_out"] = {"source": held_out.source, "metrics": held}
    fitted_on["forced"] = bool(forced)
    if forced:
        fitted_on["forced_over"] = report["forced"] = "; ".join(forced)
    block = {
        **calibration,
        "settings": data.settings,
        "members": fingerprint(members, entries),
        "operating_points": stored,
        "real_scores": [float(score) for score in reals],
        "fitted_on": fitted_on,
    }
    report["parameters"] = calibration
    return block, report


def relocated_members(document: dict, source: Path, out: Path) -> None:
    """Rewrite the relative checkpoint paths of `document` (read from `source`) for a file at `out`."""
    if source.parent.resolve() == out.parent.resolve():
        return
    for member in document["members"]:
        checkpoint = Path(member["checkpoint"])
        if not checkpoint.is_absolute():
            member["checkpoint"] = os.path.relpath((source.parent / checkpoint).resolve(), out.parent.resolve())


def ensemble_document(args: argparse.Namespace, out: Path) -> tuple[dict, list[dict]]:
    """(the ensemble file to write, less its calibration; its members as inference.models.ensemble reads them)."""
    from inference.models.named_weights import ENSEMBLES, ensemble_entries

    if args.runs:
        weights = np.full(len(args.runs), 1.0 / len(args.runs))
        document = {"members": run_members(args.runs, weights, out)}
        members = zip(document["members"], args.runs, strict=True)
        return document, [{**member, "path": run_checkpoint(run)} for member, run in members]
    if args.ensemble in ENSEMBLES and not Path(args.ensemble).exists():
        entries = ensemble_entries(args.ensemble)
        document = {
            "members": [
                {
                    "checkpoint": str(Path(e["path"]).resolve()),
                    **{k: e[k] for k in ("encoder", "input_size", "weight")},
                    **({"detector": e["detector"]} if e.get("detector") else {}),
                }
                for e in entries
            ],
            # the scale the named ensemble's faces were found at: detect and the page score at it
            "detector_scale": ENSEMBLES[args.ensemble].detector_scale,
        }
        return document, entries
    path = Path(args.ensemble)
    entries = read_ensemble_file(path)
    document = safe_yaml.safe_load(path.read_text())
    document.pop("calibration", None)
    relocated_members(document, path, out)
    return document, entries


def labelled_scores(args: argparse.Namespace, entries: list[dict]) -> LabelledScores:
    if args.submission:
        return submission_scores(args.submission, args.labels, entries, args.labels_split)
    if args.runs:
        return oof_scores(args.runs, entries)
    if args.oof:
        check_runs_match_members(args.oof, entries)
        return oof_scores(args.oof, entries)
    return oof_scores(member_run_dirs(entries), entries)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from inference.models.named_weights import ENSEMBLES

    if bool(args.ensemble) == bool(args.runs):
        parser.error("give --ensemble (an ensemble file, or original) or --runs (to write a new one), not both")
    if args.runs and (args.submission or args.oof):
        parser.error("--runs calibrates on the runs' out-of-fold predictions: no --oof RUN or --submission with it")
    if args.ensemble and (args.oof is None) == (args.submission is None):
        parser.error("give one source of labelled scores: --oof [RUN ...] or --submission S --labels L")
    if bool(args.submission) != bool(args.labels):
        parser.error("--submission and --labels go together")
    if bool(args.held_out) != bool(args.held_out_labels):
        parser.error("--held-out and --held-out-labels go together")
    if not args.out and (args.runs or (args.ensemble in ENSEMBLES and not Path(args.ensemble).exists())):
        parser.error("--out is required with --runs or a named ensemble (where to write the ensemble file)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ensemble", metavar="FILE", help="ensemble YAML to calibrate, or `original` (the released seven B7)"
    )
    parser.add_argument(
        "--runs", type=Path, nargs="+", metavar="RUN", help="training run folders making a new ensemble (needs --out)"
    )
    parser.add_argument(
        "--oof",
        type=Path,
        nargs="*",
        metavar="RUN",
        help="fit on training's out-of-fold predictions: the members' run folders (default: found from the members)",
    )
    parser.add_argument(
        "--submission", type=Path, metavar="S", help="fit on this submission.csv of a labelled set (with --labels)"
    )
    parser.add_argument(
        "--labels", type=Path, metavar="L", help="labels of --submission, in any layout inference.score reads"
    )
    parser.add_argument(
        "--held-out", type=Path, metavar="S", help="a second predicted labelled set to report the calibration on"
    )
    parser.add_argument("--held-out-labels", type=Path, metavar="L", help="labels of --held-out")
    parser.add_argument(
        "--labels-split",
        metavar="SPLIT",
        help="where --labels is a dataset folder with official splits: the split --submission scored (e.g. valid)",
    )
    parser.add_argument("--held-out-split", metavar="SPLIT", help="likewise for --held-out-labels (e.g. test)")
    parser.add_argument("--method", choices=METHODS, default="temperature", help="temperature (default) or platt")
    parser.add_argument(
        "--fpr",
        type=operating_point_argument,
        nargs="+",
        metavar="RATE",
        default=list(DEFAULT_FPRS),
        help="false-positive rates to store operating points for (default 0.05 0.01); a rate the reals cannot "
        "support is left out with a warning (exit status 0)",
    )
    parser.add_argument(
        "--min-per-class",
        type=min_per_class_argument,
        default=MIN_PER_CLASS,
        metavar="N",
        help=f"refuse to fit on fewer than N real or N fake videos (default {MIN_PER_CLASS}: in python -m "
        "inference.calibration.simulation, 1,000 fits per case on four kinds of model, fits on 30 of each made "
        "fresh videos' log loss more than 10%% worse than raw in at most 4.1%% of draws, on 20 of each in 12%%, "
        "on 10 in 44%%, on 3 in 91%%)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="store a calibration refused for making the --held-out set's log loss worse, or for a fit at a search "
        "bound; the block says so (fitted_on.forced, forced_over) and so do detect's verdicts",
    )
    parser.add_argument(
        "--uncalibrated-if-refused",
        action="store_true",
        help="where the calibration is refused (too few videos of a class, a fit at a bound, a worse held-out log "
        "loss), write the ensemble file without a calibration (removing any it had), say why, and exit 0",
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="ensemble file to write (default: the --ensemble file)"
    )
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = args.out or Path(args.ensemble)
    document, entries = ensemble_document(args, out)
    data = labelled_scores(args, entries)
    held_out = (
        submission_scores(args.held_out, args.held_out_labels, entries, args.held_out_split) if args.held_out else None
    )
    fprs = list(dict.fromkeys(args.fpr))
    members = document["members"]
    try:
        block, report = calibration_block(
            data, members, entries, args.method, fprs, held_out, args.min_per_class, args.force
        )
    except CalibrationRefusedError as error:
        if not args.uncalibrated_if_refused:
            raise
        logger.warning("%s: the ensemble is written without a calibration (--uncalibrated-if-refused)", error)
        fingerprint(members, entries)  # the checkpoints must be there all the same
        write_calibrated(out, document, None)
        raw = None if held_out is None else competition_log_loss(held_out.labels, held_out.scores)
        print(refused_line(str(error), out, raw), flush=True)
        return 0
    write_calibrated(out, document, block)
    print(report_table(report), flush=True)
    print(stored_line(report, out), flush=True)
    logger.info("wrote the calibration to %s", out)
    return 0
