"""The settings a video's score was made with, as a calibration records them, and how predict,
detect and the page hold a calibration to them.

A temperature fitted on scores made one way (faces found at half size, 32 frames, the confident
strategy, fp32) says nothing certain about scores made another way (`rule` scale, 8 frames, TTA,
bf16): the same video scores differently, and a calibration that helped the one can hurt the other.
So inference.predict records, in each details.jsonl row, `scoring`: the settings below; the
calibration block records those of the scores it was fitted on (`settings`: a mapping, or
"training-validation" for training's out-of-fold predictions, whose crops were cut by preprocessing
and averaged plainly), and of its held-out set (`fitted_on.held_out.settings`).

The settings a calibration is *for* (`reference`) are its fit's when they are predict's, else its
held-out set's (the scores it was checked on, as ./run_all.sh does), else none: a calibration
fitted on training's out-of-fold predictions alone, or on details written before settings were
recorded, cannot be compared (predict and detect say so). inference.predict refuses to apply a
calibration with another reference (one line naming each difference; --ignore-calibration-settings
applies it anyway, with a warning); inference.detect and the page take the reference's settings
where the user gave none, and warn, naming each difference, where the user (or the machine: no
CUDA for fp16) asked otherwise.
"""

from __future__ import annotations

import argparse
import logging
import numbers

logger = logging.getLogger("inference.scoring.scoring_settings")

TRAINING_VALIDATION = "training-validation"  # the settings of training's out-of-fold predictions
# What changes a video's score, in the order they are named
KEYS = (
    "detector_scale",
    "frames",
    "strategy",
    "per_person",
    "tta",
    "recall_boost",
    "fast",
    "precision",
    "faces_are_cropped",
)  # not --perturb: a distortion is the videos' (robustness tests apply a calibration to distorted videos)
PRECISIONS = ("fp32", "fp16", "bf16")
RULE = "rule"  # preprocess.faces.face_detector.RESOLUTION_RULE, not imported here: that module loads torch


def effective_precision(device_type: str, precision: str, fp32: bool = False) -> str:
    """The classifiers' arithmetic: fp16 autocast on CUDA unless --fp32; on a CPU bf16 where
    `precision` (model_options.cpu_precision) says so, else fp32."""
    if device_type == "cuda":
        return "fp32" if fp32 else "fp16"
    return "bf16" if precision == "bf16" else "fp32"


# What --fast does where it cannot do what it does on a CPU: said in the log and in details.jsonl.
FAST_ON_CUDA = (
    "--fast on CUDA makes the decoding lighter and nothing else: the frames that no sampled frame needs are "
    "skipped (the same frames are read, so the scores are the default's); seeded detection and the bf16 choice are "
    "CPU-only (CUDA runs MTCNN on all frames at once and the classifiers in fp16 already)"
)


def fast_mode(args: argparse.Namespace, device_type: str, precision: str) -> str | None:
    """What --fast does with these options on a device of `device_type` (None without --fast), for
    the log and details.jsonl: its scores differ from the default's on a CPU only."""
    if not getattr(args, "fast", False):
        return None
    if device_type != "cpu":
        return FAST_ON_CUDA
    arithmetic = effective_precision(device_type, precision, bool(getattr(args, "fp32", False)))
    return f"seeded detection, sparse decoding, classifiers in {arithmetic}"


def scoring_settings(args: argparse.Namespace, device_type: str, precision: str) -> dict:
    """The settings (KEYS) that the options `args` of predict, detect or the page score with, on a
    device of `device_type` at CPU precision `precision`. `fast` is whether fast mode changes the
    scores: on a CPU only (`fast_mode`)."""
    return {
        "detector_scale": args.detector_scale,
        "frames": int(args.frames),
        "strategy": args.strategy,
        "per_person": bool(args.per_person),
        "tta": bool(getattr(args, "tta", False)),
        "recall_boost": not args.no_recall_boost,
        "fast": bool(getattr(args, "fast", False)) and device_type == "cpu",
        "precision": effective_precision(device_type, precision, bool(getattr(args, "fp32", False))),
        "faces_are_cropped": bool(getattr(args, "faces_are_cropped", False)),
    }


def settings_problem(settings) -> str | None:
    """Why `settings` (a block's `settings`, a details row's `scoring`) is not a record of scoring
    settings, or None: "training-validation", or a mapping of KEYS to values of their kinds."""
    if settings == TRAINING_VALIDATION:
        return None
    if not isinstance(settings, dict):
        return f"{settings!r} is neither {TRAINING_VALIDATION!r} nor a mapping of scoring settings"
    missing = [key for key in KEYS if key not in settings]
    if missing:
        return f"no {', '.join(missing)}"
    scale = settings["detector_scale"]
    checks = {
        "detector_scale": scale == RULE
        or (isinstance(scale, numbers.Real) and not isinstance(scale, bool) and scale > 0),
        "frames": isinstance(settings["frames"], int) and not isinstance(settings["frames"], bool),
        "strategy": isinstance(settings["strategy"], str),
        "precision": settings["precision"] in PRECISIONS,
        **{key: isinstance(settings[key], bool) for key in ("per_person", "tta", "recall_boost", "fast")},
        "faces_are_cropped": isinstance(settings["faces_are_cropped"], bool),
    }
    wrong = [key for key in KEYS if not checks[key]]
    return "; ".join(f"{key} {settings[key]!r} is not of its kind" for key in wrong) or None


def _shown(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def differences(reference: dict, current: dict, sides: tuple[str, str] = ("calibration", "here")) -> list[str]:
    """`key REF (calibration) vs NOW (here)` for each setting of KEYS that differs (`sides` names
    the two)."""
    return [
        f"{key} {_shown(reference.get(key))} ({sides[0]}) vs {_shown(current.get(key))} ({sides[1]})"
        for key in KEYS
        if reference.get(key) != current.get(key)
    ]


def rows_settings(rows: list[dict], where: str) -> dict | None:
    """The `scoring` settings shared by predict's details rows (the scored videos of a set), None
    where no row records them (details written before they were); ValueError where rows disagree,
    or some record them and others do not (details of two runs)."""
    recorded = [row.get("scoring") for row in rows]
    if all(settings is None for settings in recorded):
        return None
    distinct = {repr(sorted(s.items())) if isinstance(s, dict) else repr(s) for s in recorded}
    if len(distinct) > 1:
        first, other = recorded[0], next(s for s in recorded if s != recorded[0])
        if first is None or other is None:
            raise ValueError(f"{where}: some rows record their scoring settings and others do not (two runs' rows?)")
        raise ValueError(
            f"{where}: the videos were scored with different settings "
            f"({'; '.join(differences(first, other, ('first row', 'another')))}): "
            "predict the whole set with one"
        )
    problem = settings_problem(recorded[0])
    if problem or recorded[0] == TRAINING_VALIDATION:
        raise ValueError(f"{where}: `scoring` is not predict's record of its settings ({problem})")
    return recorded[0]


def reference_settings(settings, held_out_settings) -> tuple[dict | None, str]:
    """(the settings a calibration holds scores to, what they are): its fit's where predict made
    them, else its held-out set's, else None."""
    if isinstance(settings, dict):
        return settings, "the settings of the scores it was fitted on"
    if isinstance(held_out_settings, dict):
        return held_out_settings, "the settings of the held-out set it was checked on"
    if settings == TRAINING_VALIDATION:
        return None, "training's out-of-fold predictions (no predict settings to compare)"
    return None, "no settings recorded (calibrated before they were)"


def warn_of_differences(calibration, current: dict) -> list[str]:
    """Warn (one line) of each setting `current` (detect's or the page's, resolved) differs in from
    `calibration`'s reference; the differences."""
    reference, what = reference_settings(calibration.settings, calibration.held_out_settings)
    if reference is None:
        logger.info("the calibration of %s records %s: scoring with %s", calibration.path, what, _listed(current))
        return []
    found = differences(reference, current)
    if found:
        logger.warning(
            "%s: scoring with other settings than its calibration was made for (%s): %s; its probabilities and "
            "operating points are for scores made the calibration's way",
            calibration.path,
            what,
            "; ".join(found),
        )
    return found


def _listed(settings: dict) -> str:
    return ", ".join(f"{key} {_shown(settings[key])}" for key in KEYS if key in settings)


def check_settings(calibration, current: dict, ignore: bool = False) -> None:
    """inference.predict: refuse (ValueError, one line naming each difference) to apply a
    calibration made for other settings than `current`, or, with `ignore`, warn of them."""
    reference, what = reference_settings(calibration.settings, calibration.held_out_settings)
    if reference is None:
        logger.warning(
            "%s: the calibration records %s: it cannot be checked against this run's (%s)",
            calibration.path,
            what,
            _listed(current),
        )
        return
    found = differences(reference, current)
    if not found:
        return
    if ignore:
        logger.warning(
            "--ignore-calibration-settings: applying the calibration of %s to scores made otherwise: %s",
            calibration.path,
            "; ".join(found),
        )
        return
    raise ValueError(
        f"{calibration.path}: its calibration was made for other scoring settings ({what}): {'; '.join(found)}; "
        "score with those, or pass --ignore-calibration-settings (or --uncalibrated)"
    )
