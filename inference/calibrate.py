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

A temperature (default) or Platt's scaling is fitted to the scores, and for each --fpr rate the
threshold on the raw score that a fresh real video exceeds with at most that probability (from the
reals' scores, finite-sample; 19 reals for 5%, 99 for 1%). A rate the reals cannot support is not
stored: a warning says how many reals it needs, and the exit status is still 0 once the
calibration is fitted. A fit at a search bound of its parameters (the scores separate real from
fake perfectly, or tell them apart not at all) is refused: it would claim certainty, or flatten
every probability; --allow-bound stores it all the same. A table of the fit (log loss, ECE and
Brier before and after, the parameters, the operating points) is printed.

The ensemble file (--out, default the --ensemble file itself; required for `original`, whose
members are then written with absolute paths) gets a `calibration:` block
(inference/ensemble_calibration.py), replacing any it had: predict, detect and the page apply it,
and refuse it once a member's checkpoint file is retrained or replaced (its size and sha256 are
recorded).
The other keys of the file are kept; its comments are not. --held-out S --held-out-labels L
reports (and stores under fitted_on.held_out) what the calibration does on a second labelled set.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from inference.calibration import METHODS, FitAtBoundError, apply_calibration, calibration_report, fit_calibration
from inference.calibration_sources import (
    OOF_WARNING,
    LabelledScores,
    check_runs_match_members,
    member_run_dirs,
    oof_scores,
    submission_scores,
)
from inference.ensemble_calibration import file_fingerprint, member_identity, operating_point_argument
from inference.ensemble_file import read_ensemble_file
from inference.fit_ensemble import run_checkpoint, run_members
from inference.metrics import brier_score
from inference.operating_points import conformal_rank, reals_needed, threshold_at_fpr
from preprocess import cli
from preprocess.cli import InputError
from preprocess.io_utils import atomic_path

logger = logging.getLogger("inference.calibrate")

HEADER = "# calibration: written by python -m inference.calibrate\n"
DEFAULT_FPRS = (0.05, 0.01)


def fit_metrics(labels: np.ndarray, before: np.ndarray, after: np.ndarray) -> dict:
    """Videos per class, and log loss, ECE and Brier score before and after calibration."""
    report = calibration_report(labels, before, after)
    report["brier_before"], report["brier_after"] = brier_score(labels, before), brier_score(labels, after)
    return report


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
    `entries` are the same members as inference.ensemble reads them (their `path`)."""
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
    allow_bound: bool = False,
) -> tuple[dict, dict]:
    """(the `calibration:` block for an ensemble file listing `members` (read as `entries`), a report
    for the table)."""
    if len(set(data.labels.tolist())) < 2:
        real = int((data.labels == 0).sum())
        raise InputError(
            f"{data.source}: calibration needs real and fake videos; got {real} real, {len(data.labels) - real} fake"
        )
    try:
        calibration = fit_calibration(data.labels, data.scores, method, allow_bound)
    except FitAtBoundError as error:
        hint = "fit on more (or other) labelled videos, or pass --allow-bound"
        raise InputError(f"{data.source}: {error}; {hint}") from None
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
        held = fit_metrics(held_out.labels, held_out.scores, apply_calibration(held_out.scores, calibration))
        fitted_on["held_out"] = {"source": held_out.source, "scores": held_out.scored_with, **_rounded(held)}
        report["held_out"] = {"source": held_out.source, "metrics": held}
    block = {
        **calibration,
        "members": fingerprint(members, entries),
        "operating_points": stored,
        "real_scores": [float(score) for score in reals],
        "fitted_on": fitted_on,
    }
    report["parameters"] = calibration
    return block, report


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def report_table(report: dict) -> str:
    """The fit, as printed on stdout."""
    metrics, held = report["metrics"], report.get("held_out", {}).get("metrics")
    parameters = ", ".join(f"{k} {_number(v)}" for k, v in report["parameters"].items() if k != "method")
    lines = [
        f"{report['parameters']['method']} calibration ({parameters}) fitted on {report['source']}",
        f"videos {metrics['videos']}, reals {metrics['real']}, fakes {metrics['fake']}"
        + (f"; held out: videos {held['videos']}, reals {held['real']}, fakes {held['fake']}" if held else ""),
        "".ljust(10) + "".join(c.rjust(10) for c in ["before", "after"] + (["held:bef", "held:aft"] if held else [])),
    ]
    for name in ("log_loss", "ece", "brier"):
        values = [metrics[f"{name}_before"], metrics[f"{name}_after"]]
        values += [held[f"{name}_before"], held[f"{name}_after"]] if held else []
        lines.append(name.ljust(10) + "".join(_number(v).rjust(10) for v in values))
    lines.append("operating points (FAKE when the ensemble's raw score is above `score`):")
    lines.append("".join(c.rjust(12) for c in ("fpr", "score", "probability", "reals", "rank")))
    for point in report["stored"]:
        values = [f"{point['fpr']:g}"] + [_number(point[c]) for c in ("score", "probability", "reals", "rank")]
        lines.append("".join(value.rjust(12) for value in values))
    for point in report["refused"]:
        lines.append(
            f"{point['fpr']:>12g}  not stored: needs {point['reals_needed']} real videos, {point['reals']} given"
        )
    return "\n".join(lines)


def relocated_members(document: dict, source: Path, out: Path) -> None:
    """Rewrite the relative checkpoint paths of `document` (read from `source`) for a file at `out`."""
    if source.parent.resolve() == out.parent.resolve():
        return
    for member in document["members"]:
        checkpoint = Path(member["checkpoint"])
        if not checkpoint.is_absolute():
            member["checkpoint"] = os.path.relpath((source.parent / checkpoint).resolve(), out.parent.resolve())


def ensemble_document(args: argparse.Namespace, out: Path) -> tuple[dict, list[dict]]:
    """(the ensemble file to write, less its calibration; its members as inference.ensemble reads them)."""
    from inference.weights import ENSEMBLES, ensemble_entries

    if args.runs:
        weights = np.full(len(args.runs), 1.0 / len(args.runs))
        document = {"members": run_members(args.runs, weights, out)}
        members = zip(document["members"], args.runs, strict=True)
        return document, [{**member, "path": run_checkpoint(run)} for member, run in members]
    if args.ensemble in ENSEMBLES and not Path(args.ensemble).exists():
        entries = ensemble_entries(args.ensemble)
        document = {
            "members": [
                {"checkpoint": str(Path(e["path"]).resolve()), **{k: e[k] for k in ("encoder", "input_size", "weight")}}
                for e in entries
            ]
        }
        return document, entries
    path = Path(args.ensemble)
    entries = read_ensemble_file(path)
    document = yaml.safe_load(path.read_text())
    document.pop("calibration", None)
    relocated_members(document, path, out)
    return document, entries


class _Dumper(yaml.SafeDumper):
    """One line for a list of numbers (real_scores) and for each mapping of plain values in a list
    (a member, an operating point), as the documentation of the block shows them."""


def _plain(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _represent_list(dumper: _Dumper, items: list) -> yaml.Node:
    if all(_plain(item) for item in items):
        return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=True)
    nodes = [
        dumper.represent_mapping("tag:yaml.org,2002:map", item, flow_style=True)
        if isinstance(item, dict) and all(_plain(value) for value in item.values())
        else dumper.represent_data(item)
        for item in items
    ]
    return yaml.SequenceNode("tag:yaml.org,2002:seq", nodes, flow_style=False)


_Dumper.add_representer(list, _represent_list)


def write_calibrated(out: Path, document: dict, block: dict) -> None:
    text = yaml.dump({**document, "calibration": block}, Dumper=_Dumper, sort_keys=False, width=100)
    with atomic_path(out) as temporary:
        temporary.write_text(HEADER + text)


def labelled_scores(args: argparse.Namespace, entries: list[dict]) -> LabelledScores:
    if args.submission:
        return submission_scores(args.submission, args.labels, entries)
    if args.runs:
        return oof_scores(args.runs, entries)
    if args.oof:
        check_runs_match_members(args.oof, entries)
        return oof_scores(args.oof, entries)
    return oof_scores(member_run_dirs(entries), entries)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from inference.weights import ENSEMBLES

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
        "--allow-bound",
        action="store_true",
        help="store a fit at a search bound of its parameters (refused by default: separable or uninformative "
        "scores, a calibration claiming certainty or flattening all)",
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
    held_out = submission_scores(args.held_out, args.held_out_labels, entries) if args.held_out else None
    fprs = list(dict.fromkeys(args.fpr))
    block, report = calibration_block(data, document["members"], entries, args.method, fprs, held_out, args.allow_bound)
    write_calibrated(out, document, block)
    print(report_table(report), flush=True)
    logger.info("wrote the calibration to %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
