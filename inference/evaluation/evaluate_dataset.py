"""The protocol of `inference.evaluate --dataset DIR ...`: one model on one dataset, no protocol file.

    python -m inference.evaluate --dataset DIR [--layout L] [--split test] --models CKPT [...] --out OUT
    python -m inference.evaluate --dataset DIR --split test --ensemble NAME|YAML --out OUT

as DeepfakeBench's `test.py --weights_path`: the flags make the protocol (inference/evaluation/protocols.py)
that names one model (the checkpoints averaged with equal weights, as `inference.predict --models`
averages them, or the ensemble) and one test set (the dataset's videos, of its official split where
--split names one), and that protocol runs as a protocol file would. The model's name in the table
is its checkpoint's file name (`b4_0_111_best`; several joined by '+') or its ensemble's; the test
set's is the dataset folder's, with its split (`Celeb-DF-v2_test`). `--predict KEY=VALUE` passes
predict's options (`--predict frames=8 --predict detector_scale=rule`), as a protocol's `predict:`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from common import safe_yaml
from inference.evaluation.evaluate_models import ProtocolError
from inference.scoring.dataset_labels import folder_layout, split_name

MAX_MODEL_NAME = 80


def predict_options(assignments: list[str] | None) -> dict:
    """{key: value} from `KEY=VALUE` strings, each value read as YAML reads it (8, true, rule)."""
    options = {}
    for assignment in assignments or []:
        key, equals, value = assignment.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not equals or not key:
            raise ProtocolError(f"--predict {assignment}: expected KEY=VALUE, such as frames=8")
        try:
            options[key] = safe_yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as error:
            raise ProtocolError(f"--predict {assignment}: cannot read its value as YAML ({error})") from None
    return options


def model_name(checkpoints: list[Path], ensemble: str | None) -> str:
    """The table's name of the model: its ensemble's file name (or named ensemble) or its checkpoints'."""
    if ensemble:
        return Path(ensemble).stem
    name = "+".join(Path(checkpoint).stem for checkpoint in checkpoints)
    if len(name) > MAX_MODEL_NAME:
        name = f"{Path(checkpoints[0]).stem}+{len(checkpoints) - 1}_more"
    return name


def dataset_test_set(dataset: Path, layout: str | None, split: str | None) -> dict:
    """The protocol's test set of the dataset's videos (its `split` where given). The layout is found
    here, so that a folder of no layout stops before anything is made (a split it lacks stops when
    the set is linked, before any model is loaded)."""
    layout = folder_layout(dataset, layout)
    name = dataset.resolve().name + (f"_{split_name(split)}" if split else "")
    if layout is None:  # a folder with a labels.csv
        if split:
            raise ProtocolError(f"{dataset / 'labels.csv'}: a labels file has no splits: leave out --split")
        return {"name": name, "root": str(dataset), "labels": "labels.csv"}
    test_set = {"name": name, "root": str(dataset), "layout": layout}
    return {**test_set, "split": split_name(split)} if split else test_set


def dataset_protocol(
    dataset: Path,
    checkpoints: list[Path] | None,
    ensemble: str | None,
    layout: str | None = None,
    split: str | None = None,
    predict: list[str] | None = None,
) -> dict:
    """The protocol the command's flags describe."""
    if bool(checkpoints) == bool(ensemble):
        raise ProtocolError("--dataset needs the model to score: --models CKPT [...] or --ensemble NAME|YAML")
    if not Path(dataset).is_dir():
        raise ProtocolError(f"{dataset}: not a folder")
    model = {"name": model_name(checkpoints or [], ensemble)}
    model.update({"ensemble": str(ensemble)} if ensemble else {"checkpoints": [str(c) for c in checkpoints]})
    protocol = {"models": [model], "test_sets": [dataset_test_set(Path(dataset), layout, split)]}
    options = predict_options(predict)
    return {**protocol, "predict": options} if options else protocol
