"""The one place where the options become the detectors of a run (inference/pipeline/detector.py).

--models and --ensemble list models in their given order. The project's checkpoints (a plain
FILE, or an ensemble member without `detector:`) are loaded as ensemble members
(inference/models/model_options.py): the frame models into the winner's recipe, the temporal ones
into the temporal recipe, both aggregating by --strategy. Another paper's model (`--models
NAME:FILE`, or an ensemble member with `detector: NAME`) is a file in its authors' own format, read
by the detector module DETECTORS names (each module's `load_detector(paths, weights, device,
precision)` gives one Detector of its files). The ensemble keeps every model in the order given,
with its weight: the video score is their weighted mean (the winner's arithmetic).
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Sequence

import torch

from common import cli
from common.cli import InputError
from inference.detectors.recipes import TemporalRecipe, WinnerRecipe
from inference.models.ensemble import Member
from inference.models.ensemble_file import normalised_weights
from inference.models.model_options import load_members, model_entries
from inference.pipeline.detector import Detector, Ensemble

logger = logging.getLogger(__name__)

PROJECT_DETECTOR = "dfdc-winner"  # the project's checkpoints: the winner's recipe (and the temporal one)
# Other papers' detectors: name -> the module whose load_detector reads its authors' files.
DETECTORS: dict[str, str] = {
    "deepfakebench": "inference.detectors.deepfakebench",  # DeepfakeBench v1.0.1: Xception, EfficientNet-B4
    "gend": "inference.detectors.gend",  # GenD (WACV 2026): CLIP ViT-L/14, aligned faces
    "sbi": "inference.detectors.sbi",  # Self-Blended Images (CVPR 2022): EfficientNet-B4, FF++ raw / c23
}


def recipes_of(members: Sequence[Member], strategy: str = "confident") -> Ensemble:
    """The ensemble of loaded `members`: the winner's recipe for the frame models, the temporal
    recipe for the others (each where there are some)."""
    frame = [member for member in members if not member.clip]
    temporal = [member for member in members if member.clip]
    detectors = ([WinnerRecipe(frame, strategy)] if frame else []) + (
        [TemporalRecipe(temporal, strategy)] if temporal else []
    )
    return Ensemble(detectors, members)


def as_ensemble(detectors, args: argparse.Namespace) -> Ensemble:
    """An `Ensemble` as it is, or the ensemble of a list of loaded members (--strategy's)."""
    if isinstance(detectors, Ensemble):
        return detectors
    return recipes_of(list(detectors), getattr(args, "strategy", None) or "confident")


def detector_names() -> list[str]:
    return [PROJECT_DETECTOR, *DETECTORS]


def checked_detector(name: str | None, source) -> str | None:
    """`name` (a --models NAME: prefix or an ensemble member's `detector:`) when it names a
    detector; None for the project's checkpoints; an InputError naming `source` otherwise."""
    if name in (None, PROJECT_DETECTOR):
        return None
    if name not in DETECTORS:
        raise InputError(f"{source}: no detector is named {name!r}; the detectors are {', '.join(detector_names())}")
    return name


def warn_of_project_only_options(args: argparse.Namespace, others: list[str]) -> None:
    """Say where --tta or --frames will not change other papers' detectors (they read 32 frames and
    score without flips, as their authors' code does)."""
    frames = getattr(args, "frames", 32)
    given = [flag for flag, on in (("--tta", getattr(args, "tta", False)), (f"--frames {frames}", frames != 32)) if on]
    if others and given:
        logger.warning(
            "%s: for the project's models only; %s read 32 frames and score without flips, as their authors' code does",
            " and ".join(given),
            ", ".join(others),
        )


def load_detectors(args: argparse.Namespace, device: torch.device, precision: str = "f32") -> Ensemble:
    """The detectors the options ask for, their models loaded on `device` in `precision`, in the
    order the models were given."""
    entries = model_entries(args)
    names = [checked_detector(entry.get("detector"), entry["origin"]) for entry in entries]
    weights = normalised_weights([entry["weight"] for entry in entries], args.ensemble or "--models")
    ours = [index for index, name in enumerate(names) if name is None]
    members = load_members(args, device, precision, [entries[i] for i in ours], [weights[i] for i in ours])
    warn_of_project_only_options(args, sorted({name for name in names if name is not None}))
    return assemble(entries, names, weights, members, device, precision, getattr(args, "strategy", None))


def load_other(name: str, paths: list, weights: list[float], device: torch.device, precision: str) -> Detector:
    """Detector `name` of `paths` (its authors' files) by its module's load_detector, which must
    give one model per file; what else it raises is one line naming the detector and the files."""
    files = ", ".join(map(str, paths))
    try:
        detector = importlib.import_module(DETECTORS[name]).load_detector(paths, weights, device, precision)
    except InputError:
        raise
    except Exception as error:
        if cli.debugging():
            raise
        raise InputError(f"{files}: the {name} detector could not load it ({cli.describe(error)})") from error
    if len(detector.models) != len(paths):
        raise InputError(f"{files}: the {name} detector gave {len(detector.models)} models for {len(paths)} files")
    return detector


def assemble(entries, names, weights, members, device, precision: str = "f32", strategy: str | None = None) -> Ensemble:
    """The ensemble of `entries` (their checked detector `names`, None for the project's, and
    normalised `weights`), the project's ones already loaded as `members` (in their order): those in
    the winner's and temporal recipes, every other detector's files read by its module, every model
    in its entry's place."""
    detectors: list[Detector] = recipes_of(members, strategy or "confident").detectors if members else []
    model_at = dict(zip([index for index, name in enumerate(names) if name is None], members, strict=True))
    for name in dict.fromkeys(name for name in names if name is not None):
        mine = [index for index, other in enumerate(names) if other == name]
        paths = [entries[index]["path"] for index in mine]
        detector = load_other(name, paths, [weights[index] for index in mine], device, precision)
        detectors.append(detector)
        model_at.update(zip(mine, detector.models, strict=True))
    return Ensemble(detectors, [model_at[index] for index in range(len(entries))])
