"""Score a submission offline: log loss as the competition computed it, and much more.

    python -m inference.score --submission submission.csv --labels LABELS [--out-dir DIR]

LABELS is a labels.csv (filename,label[,group], label 0/1 or REAL/FAKE), a DFDC metadata.json,
a folder of dfdc_train_part_K/metadata.json (group = the part), or a folder with real/ and fake/
subfolders of videos or photos (filenames = paths under it, as `inference.predict --recursive`
writes them; group = real or fake). Prints a table (ranking and calibration metrics, then the
true-positive rate at 5%, 1% and 0.1% false-positive rate, each at the finite-sample threshold
picked from the row's own reals, with how many reals are behind it) and writes
score.json, roc.png, confusion_matrix.png and reliability.png (default: next to the submission).
Missing or extra rows are an error that lists them.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np

from inference.metrics import FPR_TARGETS, fpr_key, reliability_bins, score
from inference.operating_points import reals_needed
from preprocess import cli
from preprocess.cli import InputError
from preprocess.datasets import media_files
from preprocess.io_utils import atomic_path, write_json_atomic

logger = logging.getLogger("inference.score")


class ScoreError(InputError, ValueError):
    pass


def _label(value, where: str) -> int:
    text = str(value).strip().upper()
    if text in {"1", "FAKE", "1.0"}:
        return 1
    if text in {"0", "REAL", "0.0"}:
        return 0
    raise ScoreError(f"{where}: label must be 0/1 or REAL/FAKE, got '{value}'")


def folder_labels(path: Path) -> dict[str, tuple[int, str | None]]:
    """Labels of the videos and photos under path/real/ (0) and path/fake/ (1), by their path under
    `path` (as `inference.predict --recursive` names them), grouped by those two folders."""
    labels = {}
    for name, label in (("real", 0), ("fake", 1)):
        if (path / name).is_dir():
            for file in media_files(path / name):
                labels[file.relative_to(path).as_posix()] = (label, name)
    if not labels:
        raise ScoreError(f"{path}: no videos or photos under real/ or fake/")
    return labels


def read_labels(path: Path) -> dict[str, tuple[int, str | None]]:
    """{filename: (label, group or None)}."""
    path = Path(path)
    if path.is_dir() and ((path / "real").is_dir() or (path / "fake").is_dir()):
        return folder_labels(path)
    if path.is_dir():
        labels = {}
        for metadata in sorted(path.glob("dfdc_train_part_*/metadata.json")):
            labels.update({name: (label, metadata.parent.name) for name, (label, _) in read_labels(metadata).items()})
        if not labels:
            raise ScoreError(f"{path}: no dfdc_train_part_*/metadata.json")
        return labels
    if path.suffix == ".json":
        entries = json.loads(path.read_text())
        return {name: (_label(entry["label"], f"{path}: {name}"), None) for name, entry in entries.items()}
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"filename", "label"} <= set(rows[0]):
        raise ScoreError(f"{path}: expected columns filename,label")
    return {
        row["filename"]: (_label(row["label"], f"{path}: line {i}"), row.get("group") or None)
        for i, row in enumerate(rows, start=2)
    }


def read_submission(path: Path) -> dict[str, float]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"filename", "label"} <= set(rows[0]):
        raise ScoreError(f"{path}: expected columns filename,label")
    scores = {}
    for line, row in enumerate(rows, start=2):
        if row["filename"] in scores:
            raise ScoreError(f"{path}: line {line}: {row['filename']} is listed twice")
        try:
            scores[row["filename"]] = float(row["label"])
        except ValueError as error:
            raise ScoreError(f"{path}: line {line}: '{row['label']}' is not a probability") from error
    return scores


def align(submission: dict[str, float], labels: dict[str, tuple[int, str | None]]):
    missing = sorted(set(labels) - set(submission))
    extra = sorted(set(submission) - set(labels))
    if missing or extra:
        raise ScoreError(
            "the submission does not match the labels: "
            + (f"{len(missing)} missing: {', '.join(missing)}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"{len(extra)} extra: {', '.join(extra)}" if extra else "")
        )
    names = sorted(labels)
    return (
        names,
        np.array([labels[n][0] for n in names]),
        np.array([submission[n] for n in names]),
        [labels[n][1] for n in names],
    )


def evaluate(submission: dict[str, float], labels: dict[str, tuple[int, str | None]]) -> dict:
    names, y, p, groups = align(submission, labels)
    result = {"overall": score(y, p), "reliability": reliability_bins(y, p)}
    known = sorted({g for g in groups if g})
    if known:
        chosen = np.array(groups, dtype=object)
        result["by_group"] = {g: score(y[chosen == g], p[chosen == g]) for g in known}
    return result


def _format(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _aligned(keys: list[str], rows: list[tuple[str, list]]) -> list[str]:
    """A header and one line per (name, values) row, each value right-aligned under its key."""
    width = max(len(name) for name, _ in rows) + 2
    columns = [max(10, len(key) + 2) for key in keys]
    lines = ["".ljust(width) + "".join(k.rjust(c) for k, c in zip(keys, columns, strict=True))]
    lines += [
        name.ljust(width) + "".join(_format(v).rjust(c) for v, c in zip(values, columns, strict=True))
        for name, values in rows
    ]
    return lines


def _percent(target_fpr: float) -> str:
    return f"{target_fpr * 100:g}%"


def operating_point_table(result: dict) -> str:
    """TPR at each target FPR per row, with the reals and fakes behind it; "-" where the row's
    reals cannot support the rate (or it has no fakes), and a note saying how many it needs."""
    keys = ["reals", "fakes"] + [f"tpr@{_percent(t)}fpr" for t in FPR_TARGETS]
    rows = [("overall", result["overall"])] + list(result.get("by_group", {}).items())
    lines = _aligned(
        keys,
        [
            (name, [metrics["real"], metrics["fake"]] + [metrics["tpr_at_fpr"][fpr_key(t)]["tpr"] for t in FPR_TARGETS])
            for name, metrics in rows
        ],
    )
    needs = ", ".join(f"{_percent(t)} needs {reals_needed(t)}" for t in FPR_TARGETS)
    lines.append("tpr@X%fpr: share of fakes above the finite-sample threshold picked from the row's own reals;")
    lines.append(f"  - where the reals are too few ({needs}) or there are no fakes")
    return "\n".join(lines)


def table(result: dict) -> str:
    keys = [
        "videos", "log_loss", "roc_auc", "average_precision", "eer", "accuracy", "precision", "recall", "f1", "ece",
        "brier",
    ]  # fmt: skip
    rows = [("overall", result["overall"])] + list(result.get("by_group", {}).items())
    lines = _aligned(keys, [(name, [metrics[k] for k in keys]) for name, metrics in rows])
    matrix = result["overall"]["confusion_matrix"]
    lines.append(
        f"confusion at 0.5 (rows true real/fake, columns predicted real/fake): "
        f"[[{matrix['tn']}, {matrix['fp']}], [{matrix['fn']}, {matrix['tp']}]]"
    )
    return "\n".join(lines) + "\n\n" + operating_point_table(result)


def plot(result: dict, y: np.ndarray, p: np.ndarray, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    def save(figure, name: str) -> None:
        with atomic_path(out_dir / name) as temporary:
            figure.savefig(temporary, format="png", dpi=110)
        plt.close(figure)

    overall = result["overall"]
    if overall["roc_auc"] is not None:
        figure, axis = plt.subplots(figsize=(5, 5))
        fpr, tpr, _ = roc_curve(y, p)
        axis.plot(fpr, tpr, label=f"AUC {overall['roc_auc']:.3f}, EER {overall['eer']:.3f}")
        axis.plot([0, 1], [0, 1], "--", color="grey")
        axis.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate", title="ROC")
        axis.legend(loc="lower right")
        save(figure, "roc.png")
    matrix = overall["confusion_matrix"]
    figure, axis = plt.subplots(figsize=(4.5, 4))
    cells = np.array([[matrix["tn"], matrix["fp"]], [matrix["fn"], matrix["tp"]]])
    axis.imshow(cells, cmap="Blues")
    for (row, column), count in np.ndenumerate(cells):
        axis.text(column, row, str(count), ha="center", va="center", fontsize=14)
    axis.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["real", "fake"],
        yticklabels=["real", "fake"],
        xlabel="predicted (> 0.5)",
        ylabel="true",
        title="confusion matrix",
    )
    save(figure, "confusion_matrix.png")
    figure, axis = plt.subplots(figsize=(5, 5))
    bins = [b for b in result["reliability"] if b["count"]]
    axis.plot([b["mean_probability"] for b in bins], [b["fraction_fake"] for b in bins], "o-", label="submission")
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    axis.set(
        xlabel="mean predicted probability of fake",
        ylabel="fraction fake",
        title=f"reliability (ECE {overall['ece']:.3f})",
    )
    axis.legend(loc="upper left")
    save(figure, "reliability.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submission", type=Path, required=True, help="filename,label CSV")
    parser.add_argument(
        "--labels",
        type=Path,
        required=True,
        help="labels.csv, metadata.json, a DFDC root, or a folder with real/ and fake/",
    )
    parser.add_argument(
        "--out-dir", type=Path, help="where score.json and the plots go (default: the submission's folder)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        labels, submission = read_labels(args.labels), read_submission(args.submission)
        result = evaluate(submission, labels)
    except (ScoreError, OSError, KeyError, json.JSONDecodeError) as error:
        return cli.fail(error)
    out_dir = args.out_dir or args.submission.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "score.json", result)
    _, y, p, _ = align(submission, labels)
    plot(result, y, p, out_dir)
    print(table(result), flush=True)
    logger.info("wrote %s and roc.png, confusion_matrix.png, reliability.png", out_dir / "score.json")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
