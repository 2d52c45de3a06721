"""Score a submission offline: log loss as the competition computed it, and much more.

    python -m inference.score --submission submission.csv --labels LABELS [--layout L] [--split test] [--out-dir DIR]

LABELS is a labels.csv (filename,label[,group], label 0/1 or REAL/FAKE), a DFDC metadata.json,
or a dataset's folder in any layout preprocessing reads (`python -m preprocess.datasets --help`;
detected, or --layout): DFDC parts (files named as the metadata names them; group = the part),
FaceForensics++, Celeb-DF v2, the DFDC preview, a CSV of path,label, train/valid/test folders,
real/ and fake/ folders, or a folder with a labels.csv. A folder's videos are named by their path
under it, as `inference.predict --test-dir FOLDER --recursive` names them
(`Celeb-synthesis/id0_id1_0000.mp4`); a submission made on a flat folder of the same videos
matches them by file name where no two share one. --split keeps one official split (Celeb-DF's
List_of_testing_videos.txt, FF++'s splits/*.json, the DFDC preview's sets, DFDC metadata's
`split` fields, the train/valid/test folders), to score a submission made on those videos alone.

Prints a table (ranking and calibration metrics, then the true-positive rate at 5%, 1% and 0.1%
false-positive rate, each at the finite-sample threshold picked from the row's own reals, with
how many reals are behind it) and writes score.json, roc.png, confusion_matrix.png and
reliability.png (default: next to the submission). Missing or extra rows are an error that lists
them.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from pathlib import Path, PurePosixPath

import numpy as np

from common import cli
from common.cli import InputError
from common.io_utils import atomic_path, write_json_atomic
from inference.scoring.dataset_labels import LabelledVideo, dataset_videos, folder_layout, in_split, split_name
from inference.scoring.metrics import FPR_TARGETS, fpr_key, reliability_bins, score
from inference.scoring.operating_points import reals_needed
from preprocess.datasets import LAYOUTS

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


def metadata_videos(metadata: Path, source: str | None = None) -> list[LabelledVideo]:
    """The videos a DFDC metadata.json lists, by their file names, with their `split` fields."""
    entries = json.loads(metadata.read_text())
    if not isinstance(entries, dict):
        raise ScoreError(f"{metadata}: expected an object mapping file names to entries")
    videos = []
    for name, entry in entries.items():
        fields = entry if isinstance(entry, dict) else {"label": entry}
        label = _label(fields.get("label"), f"{metadata}: {name}")
        videos.append(LabelledVideo(name, label, source, split=split_name(fields.get("split"))))
    return videos


def labels_file(path: Path) -> dict[str, tuple[int, str | None]]:
    """A labels.csv: filename,label[,group]."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"filename", "label"} <= set(rows[0]):
        raise ScoreError(f"{path}: expected columns filename,label")
    return {
        row["filename"]: (_label(row["label"], f"{path}: line {i}"), row.get("group") or None)
        for i, row in enumerate(rows, start=2)
    }


def _keyed(videos: list[LabelledVideo]) -> dict[str, tuple[int, str | None]]:
    return {video.filename: (video.label, video.source) for video in videos}


def read_labels(path: Path, layout: str | None = None, split: str | None = None) -> dict[str, tuple[int, str | None]]:
    """{filename: (label, group or None)} from a labels.csv, a DFDC metadata.json, or a dataset's
    folder in any layout preprocessing reads (detected where `layout` is None; a folder of no layout
    with a labels.csv in it reads that). A folder's videos are named by their paths under it, as
    `inference.predict --recursive` names them (a DFDC root's by their file names, as its metadata
    does), grouped by where they come from (the DFDC part, FF++ method, Celeb-DF folder, real/ or
    fake/). `split` keeps one official split (Celeb-DF's, FF++'s, the DFDC preview's, DFDC
    metadata's `split` fields)."""
    path = Path(path)
    if not path.is_dir():
        if path.suffix == ".json":
            return _keyed(in_split(metadata_videos(path), split, path, "dfdc"))
        if split is not None:
            raise ScoreError(f"{path}: a labels file has no splits: give the dataset's folder, or leave out --split")
        return labels_file(path)
    layout = folder_layout(path, layout)
    if layout is None:  # no layout, a labels.csv
        if split is not None:
            raise ScoreError(f"{path / 'labels.csv'}: a labels file has no splits: leave out --split")
        return labels_file(path / "labels.csv")
    if layout == "dfdc":
        videos = []
        for metadata in sorted(path.glob("dfdc_train_part_*/metadata.json")):
            videos += metadata_videos(metadata, metadata.parent.name)
        if not videos:
            raise ScoreError(f"{path}: no dfdc_train_part_*/metadata.json")
        return _keyed(in_split(videos, split, path, layout))
    return _keyed(dataset_videos(path, layout, split))


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
            probability = float(row["label"])
        except (TypeError, ValueError):
            probability = math.nan
        if not 0.0 <= probability <= 1.0:  # NaN too
            raise ScoreError(
                f"{path}: line {line}: {row['label']!r} for {row['filename']} is not a probability from 0 to 1"
            )
        scores[row["filename"]] = probability
    return scores


def _by_file_name(names) -> dict[str, str] | None:
    """{file name: name} of names that are paths; None where two of them share a file name."""
    names = list(names)
    by_file_name = {PurePosixPath(name).name: name for name in names}
    return by_file_name if len(by_file_name) == len(names) else None


def keyed_as_submission(submission: dict[str, float], labels: dict) -> dict:
    """The labels keyed as the submission names its rows: as they are where they match it, or by
    file name alone where more rows match that way and no two files of either side share a name (a
    submission predicted on a flat folder of a tree's videos, or on a DFDC root, whose metadata
    names files alone, with --recursive: dfdc_train_part_0/x.mp4)."""
    matched = len(submission.keys() & labels.keys())
    if matched == len(labels) == len(submission):
        return labels
    submission_names, label_names = _by_file_name(submission), _by_file_name(labels)
    if submission_names is None or label_names is None:
        return labels
    if len(submission_names.keys() & label_names.keys()) <= matched:
        return labels
    return {submission_names.get(base, name): labels[name] for base, name in label_names.items()}


def align(submission: dict[str, float], labels: dict[str, tuple[int, str | None]]):
    labels = keyed_as_submission(submission, labels)
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
        help="labels.csv, metadata.json, or a dataset's folder in any layout preprocessing reads",
    )
    parser.add_argument("--layout", choices=sorted(LAYOUTS), help="the folder's layout (default: detected)")
    parser.add_argument(
        "--split", help="score one official split of the dataset (test, train, valid), as its files name it"
    )
    parser.add_argument(
        "--out-dir", type=Path, help="where score.json and the plots go (default: the submission's folder)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        labels = read_labels(args.labels, args.layout, args.split)
        submission = read_submission(args.submission)
        result = evaluate(submission, labels)
    except (InputError, OSError, KeyError, json.JSONDecodeError) as error:
        return cli.fail(error)
    out_dir = args.out_dir or args.submission.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "score.json", result)
    _, y, p, _ = align(submission, labels)
    plot(result, y, p, out_dir)
    print(table(result), flush=True)
    logger.info("wrote %s and roc.png, confusion_matrix.png, reliability.png", out_dir / "score.json")
    return 0
