"""The models of an evaluation protocol (inference/evaluation/protocols.py) and their cached predictions.

A protocol's model is one of three kinds:

    - name: b4                                        # checkpoints, averaged with equal weights
      checkpoints: [weights/b4_0_111_best.pt]
    - name: sbi                                       # a training run, made when its best checkpoint is missing
      train: {config: configs/sbi_b4.yaml, data_dir: data/ffpp, fold: 0, seed: 111}
    - name: calibrated                                # an ensemble file (or a named ensemble: original),
      ensemble: configs/ensemble.yaml                 # predicted with --ensemble: its calibration applies
    - name: sbi-c23                                   # another paper's detector (inference/detectors/):
      checkpoints: [weights/FFc23.tar]                # its authors' files, read by the detector named
      detector: sbi

A set's predictions are made again only when what they were made from changed (`prediction_source`):
the checkpoint files (where, how big, when written), or for an ensemble its members (their files,
encoders, sizes and weights) and the calibration it applies (method and parameters: a calibration
fitted again to the same values, with another date or held-out report, predicts nothing again);
the videos, labels and predict options.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from common.cli import InputError
from common.io_utils import write_json_atomic
from inference.pipeline.file_identity import file_identity as stat_identity

logger = logging.getLogger("inference.evaluate")

VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
MODEL_KINDS = ("checkpoints", "train", "ensemble")


class ProtocolError(InputError, ValueError):
    pass


def expand(text: str) -> str:
    def value(match: re.Match) -> str:
        found = os.environ.get(match[1], match[2])
        if found is None:
            raise ProtocolError(f"${{{match[1]}}} is not set (give it a default: ${{{match[1]}:-value}})")
        return found

    return VARIABLE.sub(value, str(text))


def check_model_entry(model: dict, path: Path) -> None:
    """One protocol model: exactly one kind, and a `train:` with what training needs."""
    kinds = [kind for kind in MODEL_KINDS if kind in model]
    if len(kinds) != 1:
        raise ProtocolError(f"{path}: model {model['name']}: give one of `checkpoints:`, `train:` or `ensemble:`")
    missing = {"config", "data_dir"} - set(model.get("train") or {}) if "train" in model else set()
    if missing:
        raise ProtocolError(f"{path}: model {model['name']}: `train:` needs {', '.join(sorted(missing))}")
    if "ensemble" in model and not isinstance(model["ensemble"], str):
        raise ProtocolError(f"{path}: model {model['name']}: `ensemble:` must be one file (or a named ensemble)")
    if "detector" in model and not (
        "checkpoints" in model and isinstance(model["detector"], str) and model["detector"]
    ):
        raise ProtocolError(
            f"{path}: model {model['name']}: `detector:` names the detector of its `checkpoints:` (an ensemble "
            "file says its members' own)"
        )


def file_identity(path: Path) -> dict:
    return {"path": str(Path(path).resolve()), **stat_identity(path)}


@dataclass(frozen=True)
class ModelSource:
    """What a protocol model predicts with: checkpoints (`--models`) or an ensemble (`--ensemble`)."""

    checkpoints: tuple[Path, ...] = ()
    ensemble: str | None = None
    detector: str | None = None  # another paper's detector, whose authors' files the checkpoints are

    def predict_arguments(self) -> list[str]:
        if self.ensemble:
            return ["--ensemble", self.ensemble]
        return ["--models", *(f"{self.detector}:{path}" if self.detector else str(path) for path in self.checkpoints)]

    def identity(self) -> dict:
        """What the predictions depend on; for checkpoints the same key as before ensembles existed."""
        if not self.ensemble:
            checkpoints = {"checkpoints": [file_identity(p) for p in self.checkpoints]}
            return {**checkpoints, "detector": self.detector} if self.detector else checkpoints
        from inference.models.ensemble_file import ensemble_calibration, ensemble_members

        spec = Path(self.ensemble)
        members = [
            {
                **file_identity(Path(entry["path"])),
                **{key: entry[key] for key in ("encoder", "input_size", "weight")},
                **({"detector": entry["detector"]} if entry.get("detector") else {}),
            }
            for entry in ensemble_members(self.ensemble)
        ]
        if not spec.is_file():
            return {"ensemble": {"name": self.ensemble, "members": members}}
        # what the scores depend on: the members and the calibration applied, not when or on what it was fitted
        calibration = ensemble_calibration(spec)
        applied = None if calibration is None else calibration.method_parameters()
        return {"ensemble": {"file": str(spec.resolve()), "members": members, "calibration": applied}}


def ensemble_source(model: dict) -> ModelSource:
    from inference.models.ensemble_file import ensemble_members
    from inference.models.named_weights import ENSEMBLES

    spec = expand(model["ensemble"])
    if not Path(spec).is_file() and spec not in ENSEMBLES:
        raise ProtocolError(f"model {model['name']}: ensemble file not found: {spec}")
    try:
        entries = ensemble_members(spec)
    except ValueError as error:
        raise ProtocolError(f"model {model['name']}: {error}") from error
    missing = [str(e["path"]) for e in entries if not Path(e["path"]).is_file()]
    if missing:
        raise ProtocolError(f"model {model['name']}: checkpoints of {spec} not found: {', '.join(missing)}")
    return ModelSource(ensemble=spec)


def model_source(model: dict, out: Path) -> ModelSource:
    """The model's checkpoints or ensemble; a `train:` run is trained first unless its best checkpoint exists."""
    if "ensemble" in model:
        return ensemble_source(model)
    if "checkpoints" in model:
        paths = [Path(expand(p)) for p in model["checkpoints"]]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ProtocolError(f"model {model['name']}: checkpoints not found: {', '.join(missing)}")
        return ModelSource(tuple(paths), detector=model.get("detector"))
    train = model["train"]
    fold, seed = int(train.get("fold", 0)), int(train.get("seed", 111))
    weights = out / "weights"
    best = weights / f"{model['name']}_{fold}_{seed}_best.pt"
    if not best.is_file():
        from training import train as training

        logger.info("model %s: training %s on fold %d, seed %d -> %s", model["name"], train["config"], fold, seed, best)
        arguments = [
            *("--config", expand(train["config"]), "--data-dir", expand(train["data_dir"])),
            *("--fold", str(fold), "--seed", str(seed), "--name", model["name"], "--output-dir", str(weights)),
            *("--resume", "auto"),
        ]
        for assignment in train.get("set", []):
            arguments += ["--set", str(assignment)]
        training.train(training.parse_args(arguments))
    return ModelSource((best,))


def predictions_dir(out: Path, model: str, test_set: str) -> Path:
    """DIR/predictions/MODEL/SET/: the clean predictions (robustness's go in its perturbed/ folder)."""
    return out / "predictions" / model / test_set


def prediction_source(source: ModelSource, folder: Path, labels_path: Path, options: dict | None) -> dict:
    """What a set's predictions were made from: when any of it changes, they are made again. The
    predict options hold robustness's perturbation and seed; a distortion changed since the first
    version adds its revision (the others keep the key, and the predictions, they had)."""
    # each video's file with its size and time: a video replaced in place is predicted again
    videos = sorted((file_identity(link.resolve()) for link in folder.rglob("*") if link.is_symlink()), key=str)
    made_from = {**source.identity(), "labels": labels_path.read_text(), "videos": videos, "predict": options or {}}
    if (options or {}).get("perturb") is not None:
        from inference.distortions.frame_perturbation import revision

        if revision(options["perturb"]) > 1:
            made_from["perturbation_revision"] = revision(options["perturb"])
    return made_from


def option_arguments(options: dict | None) -> list[str]:
    """predict's flags from a protocol's `predict:` mapping: True a bare flag, False or None left out."""
    arguments = []
    for key, value in (options or {}).items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            arguments.append(flag)
        elif value is not False and value is not None:  # 0 is a value (--workers 0, --perturb-seed 0)
            arguments += [flag, str(value)]
    return arguments


def predict_set(source: ModelSource, folder: Path, labels_path: Path, output: Path, options: dict | None) -> bool:
    """Predict the set's videos into `output` unless it is there from the same source; True when predicted."""
    source_path = output.with_name("source.json")
    made_from = prediction_source(source, folder, labels_path, options)
    if output.is_file() and source_path.is_file() and json.loads(source_path.read_text()) == made_from:
        logger.info("%s is there, made from the same models, videos and options: not predicted again", output)
        return False
    from inference.prediction import predict_folder as predict

    arguments = ["--test-dir", str(folder), "--recursive", "--output", str(output), "--resume"]
    arguments += source.predict_arguments()  # --resume: a killed run goes on where it stopped
    status = predict.main(arguments + option_arguments(options))
    if status != 0:  # predict has said why, in its one error line: exit with its status, no second line
        raise SystemExit(status)
    write_json_atomic(source_path, made_from)
    return True
