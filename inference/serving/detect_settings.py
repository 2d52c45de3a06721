"""inference.detect's and the page's scoring options, taken from the calibration they apply.

Each option that changes a score (--detector-scale, --frames, --strategy, --per-person, --tta,
--recall-boost, --fast, and the precision: --fp32, --cpu-bf16) is left unset by the parser; once
the ensemble's calibration is known, `resolve_scoring` sets each one the user did not give to the
calibration's reference settings (inference/scoring/scoring_settings.py: the settings its scores were made
with), else, for the detector scale, to the one the models were made for (`models_detector_scale`:
0.5 for the original's released checkpoints), else to detect's own default, and warns, naming
each difference, where the result still differs from the calibration's (an option the user gave,
fp16 asked of a machine without CUDA).
"""

from __future__ import annotations

import argparse
import logging

import torch

from inference.models.ensemble_file import ensemble_detector_scale
from inference.models.model_options import cpu_precision, frames_argument
from inference.pipeline.aggregate import STRATEGIES
from inference.scoring.scoring_settings import reference_settings, scoring_settings, warn_of_differences
from preprocess.faces.face_detector import RESOLUTION_RULE, parse_scale, scale_argument

logger = logging.getLogger("inference.serving.detect_settings")

# inference.detect's own defaults, where neither the user nor a calibration sets an option
DETECT_DEFAULTS = {
    "detector_scale": RESOLUTION_RULE,
    "frames": 32,
    "strategy": "confident",
    "per_person": False,
    "tta": False,
    "recall_boost": True,
    "fast": False,
}


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """detect's scoring options, each None unless given (`resolve_scoring` fills them in)."""
    group = parser.add_argument_group(
        "scoring (default: the settings the ensemble's calibration was made with, else the value shown; one that "
        "differs from the calibration's is warned of)"
    )
    group.add_argument("--strategy", choices=sorted(STRATEGIES), default=None, help="frame aggregation (confident)")
    group.add_argument(
        "--per-person",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score each model by its most fake person, as predict --per-person does (off)",
    )
    group.add_argument(
        "--tta", action=argparse.BooleanOptionalAction, default=None, help="average each face with its mirror (off)"
    )
    group.add_argument("--frames", type=frames_argument, default=None, help="frames sampled per video (32)")
    group.add_argument(
        "--detector-scale",
        type=scale_argument,
        default=None,
        help="MTCNN scale: a number or 'rule' (the models': 0.5 for the original's, an ensemble file's "
        "`detector_scale:`, else rule: by the frame's long side, 2x below 300 px, 1x up to 1000 px, "
        "0.5x up to 1920 px (DFDC's), 0.33x above)",
    )
    group.add_argument(
        "--recall-boost",
        dest="no_recall_boost",
        action="store_false",
        default=None,
        help="a second try on frames without a face (on)",
    )
    group.add_argument(
        "--no-recall-boost", dest="no_recall_boost", action="store_true", default=None, help="no second try"
    )
    group.add_argument(
        "--fast", action=argparse.BooleanOptionalAction, default=None, help="inference.predict's fast mode (off)"
    )
    group.add_argument(
        "--cpu-bf16", action="store_true", default=None, help="bf16 classifiers where the CPU has it natively"
    )
    group.add_argument(
        "--fp32", action="store_true", default=None, help="the classifiers in fp32: no fp16 autocast on CUDA, no bf16"
    )


def _given(args: argparse.Namespace) -> dict:
    """What the user gave of the scoring options (None where not given), as settings."""
    recall = getattr(args, "no_recall_boost", None)
    given = {key: getattr(args, key, None) for key in DETECT_DEFAULTS}
    given["recall_boost"] = None if recall is None else not recall
    return given


def models_detector_scale(args: argparse.Namespace) -> float | str | None:
    """The MTCNN scale the models were made for, where they say: --ensemble's (the named `original`:
    0.5, the original code's; an ensemble file's `detector_scale:`), unless --models adds checkpoints
    to it; else None. ValueError naming the file where its `detector_scale:` is no scale."""
    ensemble = getattr(args, "ensemble", None)
    if not ensemble or getattr(args, "models", None):
        return None
    value = ensemble_detector_scale(ensemble)
    if value is None:
        return None
    try:
        return parse_scale(value)
    except ValueError as error:
        raise ValueError(f"{ensemble}: `detector_scale:` {error}") from None


def detector_scale_source(given, reference: dict | None, models_scale) -> str:
    """Where `adopt_settings` takes the detector scale from: 'given' (--detector-scale),
    'calibration' (its reference settings), 'models' (`models_detector_scale`) or 'rule' (detect's
    default)."""
    if given is not None:
        return "given"
    if reference and reference.get("detector_scale") is not None:
        return "calibration"
    return "models" if models_scale is not None else "rule"


def adopt_settings(args: argparse.Namespace, reference: dict | None, models_scale=None) -> None:
    """Set the scoring options left unset (None): to `reference` (a calibration's settings) where
    there is one, else, for the detector scale, to `models_scale` (`models_detector_scale`) where
    the models say, else to detect's defaults; `args.detector_scale_source` says which
    (`detector_scale_source`). The precision too: fp32 or bf16 as the calibration's, unless --fp32
    or --cpu-bf16 was given (fp16 is CUDA's default: nothing to set)."""
    given = _given(args)
    args.detector_scale_source = detector_scale_source(given["detector_scale"], reference, models_scale)
    defaults = {**DETECT_DEFAULTS, **({"detector_scale": models_scale} if models_scale is not None else {})}
    chosen = {
        key: given[key] if given[key] is not None else (reference or {}).get(key, default)
        for key, default in defaults.items()
    }
    for key in ("detector_scale", "frames", "strategy", "per_person", "tta", "fast"):
        setattr(args, key, chosen[key])
    args.no_recall_boost = not chosen["recall_boost"]
    fp32, bf16 = getattr(args, "fp32", None), getattr(args, "cpu_bf16", None)
    wanted = (reference or {}).get("precision") if fp32 is None and bf16 is None else None
    args.fp32 = bool(fp32) or wanted == "fp32"
    args.cpu_bf16 = bool(bf16) or wanted == "bf16"


def resolve_scoring(args: argparse.Namespace, calibration, device: torch.device) -> str:
    """Fill in the scoring options from `calibration` (an EnsembleCalibration, or None) and warn of
    each difference left, logging the detector scale chosen and where from; the classifiers' CPU
    precision (model_options.cpu_precision)."""
    reference = None
    if calibration is not None:
        reference, _ = reference_settings(calibration.settings, calibration.held_out_settings)
    adopt_settings(args, reference, models_detector_scale(args))
    logger.info("MTCNN detector scale: %s (from %s)", args.detector_scale, args.detector_scale_source)
    precision = cpu_precision(args, device)
    if calibration is not None:
        warn_of_differences(calibration, scoring_settings(args, device.type, precision))
    return precision
