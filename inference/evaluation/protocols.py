"""A cross-dataset evaluation: models trained on one set of fakes, scored on other datasets.

    python -m inference.evaluate --protocol configs/protocols/ffpp_to_cdf_dfdc.yaml --out DIR
    python -m inference.evaluate --dataset DIR [--layout L] [--split test] --models CKPT [...] --out OUT
    python -m inference.evaluate --dataset DIR [--layout L] [--split test] --ensemble NAME|YAML --out OUT

The second form needs no protocol file (as DeepfakeBench's `test.py --weights_path`): it scores
the checkpoints (averaged, as `inference.predict --models` averages them) or the ensemble on the
dataset's videos, in any layout preprocessing reads (detected, or --layout; or a folder with a
labels.csv), of its official split where --split names one (Celeb-DF's List_of_testing_videos.txt,
FF++'s splits/*.json, the DFDC preview's sets, the train/valid/test folders), and writes the same
table as a protocol of that one model and test set (inference/evaluation/evaluate_dataset.py);
`--predict KEY=VALUE` passes predict's options (`--predict frames=8`).

A protocol (YAML) names models and test sets:

    models:
      - name: b4_ffpp                                 # checkpoints already trained...
        checkpoints: [weights/b4_0_111_best.pt]
      - name: sbi                                     # ...or a training run, made when missing
        train: {config: configs/sbi_b4.yaml, data_dir: data/ffpp, fold: 0, seed: 111, set: [data.fakes=blends]}
      - name: ensemble                                # ...or an ensemble file, predicted with --ensemble
        ensemble: configs/ensemble.yaml               # (its `calibration:` applied; see evaluate_models.py)
    test_sets:
      - name: celebdf
        root: ${DATA}/Celeb-DF-v2                     # ${VAR} and ${VAR:-default} are expanded
        layout: celebdf                               # any layout of preprocess.datasets...
        split: test                                   # ...and its split (default: every video)
      - name: demo_test
        root: work/demo_data/test_videos
        labels: labels.csv                            # ...or a folder of media with filename,label[,group]
        perturbations: {distortions: [GB, JPEG], levels: [1, 3, 5], seed: 0}   # robustness (below)
    predict: {frames: 32, detector_scale: rule}       # options of inference.predict (default: its own)

Each test set's videos are linked under DIR/sets/NAME/ (by their paths under the set's root) and
its labels written beside them to DIR/sets/NAME.labels.csv (filename,label,group; group = the
manipulation method, `real` for the reals); each model predicts each set into
DIR/predictions/MODEL/SET/ (skipped when that submission is there, made from the same checkpoint
files, videos and predict options, so a second run only adds what is new; an ensemble's
predictions are made again when its file, its calibration included, or its members' files
change). A training run is made once: its best checkpoint in DIR/weights/ is reused (delete
DIR/weights/NAME_* to train it again). The table has,
per model and test set and per method, video-level AUC, log loss, EER and AP and frame-level AUC
(each face scored alone, labelled by its video), as DeepfakeBench reports them, and the
calibration and operating points of the video scores: ECE, Brier score, TPR at 5% and 1% FPR (and
at 0.1% FPR where a row has the 999 real videos it needs) with the number of reals behind them
('-' where too few: 19 for 5%, 99 for 1%). DIR/table.md, table.csv, results.json (with each
rate's threshold and reals), and DIR/roc_SET.png with a curve per model.

A test set with `perturbations:` is also predicted by every model (an ensemble too) under each of
DeeperForensics-1.0's distortions at each level (predict --perturb): DIR/robustness.md, .csv,
.json and robustness_SET.png, AUC, log loss and TPR at 5% FPR against the level, with the drop from
the clean set, and the TPR and FPR at the clean set's own 5% FPR threshold held fixed (the false
alarms a distortion adds; inference/evaluation/robustness.py).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import yaml

from common import cli, safe_yaml
from common.cli import InputError
from common.io_utils import atomic_path, write_csv_atomic, write_json_atomic
from inference.evaluation.evaluate_dataset import dataset_protocol
from inference.evaluation.evaluate_models import (
    ModelSource,
    ProtocolError,
    check_model_entry,
    expand,
    model_source,
    predict_set,
    predictions_dir,
)
from inference.evaluation.robustness import read_perturbations, run_robustness
from inference.scoring.dataset_labels import dataset_videos
from inference.scoring.metrics import FPR_TARGETS, fpr_key, score
from inference.scoring.submission_scoring import ScoreError, align, evaluate, read_labels, read_submission
from preprocess.datasets import LAYOUTS

logger = logging.getLogger("inference.evaluate")

__all__ = ["ModelSource", "ProtocolError", "check_protocol", "expand", "main", "read_protocol", "run_protocol"]


def tpr_column(target_fpr: float) -> str:
    return f"tpr_at_{target_fpr * 100:g}pct_fpr"


TPR_COLUMNS = {fpr_key(target): tpr_column(target) for target in FPR_TARGETS}  # "0.05": "tpr_at_5pct_fpr"
METRICS = ["video_auc", "frame_auc", "log_loss", "eer", "ap", "ece", "brier", *TPR_COLUMNS.values(), "reals", "videos"]
HEADERS = {
    "video_auc": "video AUC",
    "frame_auc": "frame AUC",
    "log_loss": "log loss",
    "eer": "EER",
    "ap": "AP",
    "ece": "ECE",
    "brier": "Brier",
    **{column: f"TPR@{float(key) * 100:g}%FPR" for key, column in TPR_COLUMNS.items()},
    "reals": "reals",
    "videos": "videos",
}


def read_protocol(path: Path) -> dict:
    try:
        protocol = safe_yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ProtocolError(f"{path}: cannot read the protocol ({error})") from error
    return check_protocol(protocol, path)


def check_protocol(protocol: dict, path: Path | str) -> dict:
    """The protocol, checked: its errors name `path` (its file, or the flags that made it)."""
    for key in ("models", "test_sets"):
        if not protocol.get(key):
            raise ProtocolError(f"{path}: needs a non-empty `{key}:` list")
    for kind in ("models", "test_sets"):
        names = [entry.get("name") for entry in protocol[kind]]
        if None in names or len(set(names)) != len(names):
            raise ProtocolError(f"{path}: every entry of `{kind}` needs a name of its own (got {names})")
    for model in protocol["models"]:
        check_model_entry(model, path)
    for test_set in protocol["test_sets"]:
        if "root" not in test_set:
            raise ProtocolError(f"{path}: test set {test_set['name']} needs a `root:` folder")
        try:
            if "perturbations" in test_set:
                read_perturbations(test_set["perturbations"])
        except ValueError as error:
            raise ProtocolError(f"{path}: test set {test_set['name']}: {error}") from error
    if {"perturb", "perturb_seed"} & set(protocol.get("predict") or {}):
        raise ProtocolError(f"{path}: `predict:` cannot perturb every set: give a test set `perturbations:`")
    return protocol


def link_test_set(test_set: dict, out: Path) -> tuple[Path, Path]:
    """DIR/sets/NAME/: links to the set's media under their paths; DIR/sets/NAME.labels.csv: its labels."""
    root = Path(expand(test_set["root"]))
    folder = out / "sets" / test_set["name"]
    if "labels" in test_set:
        labels = read_labels(root / test_set["labels"])
        rows = [{"filename": n, "label": y, "group": g or ("fake" if y else "real")} for n, (y, g) in labels.items()]
    else:
        try:
            videos = dataset_videos(root, test_set.get("layout"), test_set.get("split"))
        except InputError as error:
            raise ProtocolError(f"test set {test_set['name']}: {error}") from error
        rows = [
            {"filename": v.filename, "label": v.label, "group": (v.method or v.source) if v.label else "real"}
            for v in videos
        ]
    for row in rows:
        link, target = folder / row["filename"], (root / row["filename"]).resolve()
        if link.is_symlink() and link.resolve() != target:
            link.unlink()  # the set's root moved: its predictions are made again
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
    listed = {row["filename"] for row in rows}
    for link in [p for p in folder.rglob("*") if p.is_symlink()]:
        if link.relative_to(folder).as_posix() not in listed:
            link.unlink()  # no longer in the set
    labels_path = folder.with_name(f"{test_set['name']}.labels.csv")
    write_csv_atomic(labels_path, sorted(rows, key=lambda r: r["filename"]), ["filename", "label", "group"])
    return folder, labels_path


def face_scores(details: Path, labels: dict) -> tuple[np.ndarray, np.ndarray, list]:
    """Every face's score with its video's label and group, from predict's details.jsonl."""
    y, p, groups = [], [], []
    for line in details.read_text().splitlines():
        row = json.loads(line)
        label, group = labels[row["filename"]]
        values = row.get("face_scores") or []
        y += [label] * len(values)
        p += values
        groups += [group] * len(values)
    return np.array(y), np.array(p), groups


def summarise(video: dict, frame_y: np.ndarray, frame_p: np.ndarray) -> dict:
    """A table row's metrics from `score`'s dict of the videos (and the faces' AUC); the full
    `tpr_at_fpr` entries (thresholds, reals needed) stay for results.json."""
    frame = score(frame_y, frame_p) if len(frame_y) else {"roc_auc": None}
    return {
        "video_auc": video["roc_auc"],
        "frame_auc": frame["roc_auc"],
        "log_loss": video["log_loss"],
        "eer": video["eer"],
        "ap": video["average_precision"],
        "ece": video["ece"],
        "brier": video["brier"],
        **{column: video["tpr_at_fpr"][key]["tpr"] for key, column in TPR_COLUMNS.items()},
        "reals": video["real"],
        "videos": video["videos"],
        "tpr_at_fpr": video["tpr_at_fpr"],
    }


def table_metrics(rows: list[dict]) -> list[str]:
    """The table's columns: TPR at a rate only where some row has the reals it needs (0.1%: 999)."""
    shown = {
        column
        for key, column in TPR_COLUMNS.items()
        if any(r["tpr_at_fpr"][key]["reals"] >= r["tpr_at_fpr"][key]["reals_needed"] for r in rows)
    }
    always = {tpr_column(0.05), tpr_column(0.01)}
    return [m for m in METRICS if m not in TPR_COLUMNS.values() or m in always | shown]


def score_model_on_set(predictions: dict[str, float], labels: dict, details: Path) -> dict:
    """{"all": metrics, method: metrics, ...}; each method is scored with the set's real videos."""
    frame_y, frame_p, frame_groups = face_scores(details, labels)
    results = {"all": summarise(evaluate(predictions, labels)["overall"], frame_y, frame_p)}
    frame_groups = np.array(frame_groups, dtype=object)
    for method in sorted({g for y, g in labels.values() if y == 1}):
        chosen = {n: v for n, v in labels.items() if v[0] == 0 or v[1] == method}
        keep = (frame_y == 0) | (frame_groups == method)
        video = evaluate({n: predictions[n] for n in chosen}, chosen)["overall"]
        results[method] = summarise(video, frame_y[keep], frame_p[keep])
    return results


def write_table(results: dict, out: Path) -> list[dict]:
    rows = [
        {"model": model, "test_set": test_set, "method": method, **metrics}
        for model, sets in results.items()
        for test_set, methods in sets.items()
        for method, metrics in methods.items()
    ]
    columns = table_metrics(rows)
    table_rows = [{key: row[key] for key in ["model", "test_set", "method", *columns]} for row in rows]
    write_csv_atomic(out / "table.csv", table_rows, ["model", "test_set", "method", *columns])
    write_json_atomic(out / "results.json", results)

    def cell(value) -> str:
        return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [
        "| model | test set | method | " + " | ".join(HEADERS[m] for m in columns) + " |",
        "|---|---|---|" + "---:|" * len(columns),
    ]
    lines += [
        f"| {r['model']} | {r['test_set']} | {r['method']} | " + " | ".join(cell(r[m]) for m in columns) + " |"
        for r in table_rows
    ]
    with atomic_path(out / "table.md") as temporary:
        temporary.write_text("\n".join(lines) + "\n")
    return table_rows


def plot_roc(name: str, curves: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, axis = plt.subplots(figsize=(5, 5))
    for model, (y, p) in curves.items():
        if len(np.unique(y)) == 2:
            fpr, tpr, _ = roc_curve(y, p)
            axis.plot(fpr, tpr, label=f"{model} (AUC {roc_auc_score(y, p):.3f})")
    axis.plot([0, 1], [0, 1], "--", color="grey")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{name}: video-level ROC")
    axis.legend(loc="lower right", fontsize=8)
    with atomic_path(out / f"roc_{name}.png") as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)


def run_protocol(protocol: dict, out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    sets = {test_set["name"]: link_test_set(test_set, out) for test_set in protocol["test_sets"]}
    results: dict[str, dict] = {}
    curves: dict[str, dict] = {name: {} for name in sets}
    sources: dict[str, ModelSource] = {}
    for model in protocol["models"]:
        sources[model["name"]] = source = model_source(model, out)
        results[model["name"]] = {}
        for name, (folder, labels_path) in sets.items():
            submission = predictions_dir(out, model["name"], name) / "submission.csv"
            predict_set(source, folder, labels_path, submission, protocol.get("predict"))
            labels, predictions = read_labels(labels_path), read_submission(submission)
            results[model["name"]][name] = score_model_on_set(predictions, labels, submission.parent / "details.jsonl")
            _, y, p, _ = align(predictions, labels)
            curves[name][model["name"]] = (y, p)
    for name, by_model in curves.items():
        plot_roc(name, by_model, out)
    rows = write_table(results, out)
    run_robustness(protocol, sources, sets, out)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--protocol", type=Path, help="protocol YAML (configs/protocols/)")
    what.add_argument("--dataset", type=Path, metavar="DIR", help="a dataset's folder to score, without a protocol")
    parser.add_argument("--out", type=Path, required=True, help="output folder (reused: predictions already made stay)")
    dataset = parser.add_argument_group("with --dataset")
    dataset.add_argument("--layout", choices=sorted(LAYOUTS), help="the dataset's layout (default: detected)")
    dataset.add_argument("--split", help="only the videos of this official split (test, train, valid)")
    model = dataset.add_mutually_exclusive_group()
    model.add_argument("--models", type=Path, nargs="+", metavar="CKPT", help="checkpoints, averaged as one model")
    model.add_argument("--ensemble", metavar="NAME|YAML", help="an ensemble file or a named ensemble (original)")
    dataset.add_argument(
        "--predict", action="append", metavar="KEY=VALUE", help="an option of inference.predict (frames=8); repeatable"
    )
    args = parser.parse_args(argv)
    flags = [f"--{k}" for k in ("layout", "split", "models", "ensemble", "predict") if getattr(args, k) is not None]
    if args.protocol and flags:
        parser.error(f"{', '.join(flags)} go with --dataset; a protocol names its own models and sets")
    if args.dataset and not (args.models or args.ensemble):
        parser.error("--dataset needs the model to score: --models CKPT [...] or --ensemble NAME|YAML")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.protocol:
            protocol = read_protocol(args.protocol)
        else:
            made = dataset_protocol(args.dataset, args.models, args.ensemble, args.layout, args.split, args.predict)
            protocol = check_protocol(made, "--dataset")
        rows = run_protocol(protocol, args.out)
    except ScoreError as error:
        return cli.fail(error)
    print((args.out / "table.md").read_text(), flush=True)
    logger.info("wrote %d rows to %s (and table.csv, results.json, roc_*.png)", len(rows), args.out / "table.md")
    if (args.out / "robustness.md").is_file() and any("perturbations" in t for t in protocol["test_sets"]):
        print((args.out / "robustness.md").read_text(), flush=True)
    return 0
