"""The options that choose the models a command scores with, and loading them, and the caps on
the media they judge: shared by inference.predict, inference.detect, inference.evaluation.timeliness and the
page (inference.app)."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import torch

from common.cli import (
    InputError,
    positive_int,  # noqa: F401  (imported from here by the page and the bench)
)
from common.video_io import MediaLimits
from inference.models.bf16_speed import REQUIRED_GAIN
from inference.models.bf16_speed import measured_speed as measured_bf16_speed
from inference.models.ensemble import Member, load_member
from inference.models.ensemble_file import ensemble_calibration, ensemble_members, normalised_weights
from inference.models.runtime import RUNTIMES, default_cache_dir, native_bf16, resolve_runtime

logger = logging.getLogger("inference.models.model_options")

MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 2048  # a classifier's input side in pixels (B7 was trained at 380)
MIN_FRAMES, MAX_FRAMES_SAMPLED = 1, 1000  # --frames: frames sampled per video


def int_in_range(low: int, high: int):
    """An argparse type: a whole number from `low` to `high` (argparse names the option)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


frames_argument = int_in_range(MIN_FRAMES, MAX_FRAMES_SAMPLED)  # --frames: frames sampled per video


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the models and what runs them (what `load_members` reads)."""
    group = parser.add_argument_group("models")
    group.add_argument(
        "--models",
        type=Path,
        nargs="*",
        default=[],
        help="checkpoints (equal weights); NAME:FILE for another paper's detector whose authors' file FILE is "
        "(python -m inference.weights list names them)",
    )
    group.add_argument(
        "--ensemble",
        help="YAML listing checkpoints, encoders, sizes and weights, or the name of released weights fetched by "
        "inference.weights (original: the winning seven B7)",
    )
    group.add_argument("--encoder", help="encoder of bare --models checkpoints (e.g. tf_efficientnet_b7_ns)")
    group.add_argument(
        "--size",
        type=int_in_range(MIN_INPUT_SIZE, MAX_INPUT_SIZE),
        help=f"input size of bare --models checkpoints, {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} px (default: the "
        "encoder's)",
    )
    group.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="what runs the classifiers: openvino (CPU, fp32, several times faster than PyTorch there, same "
        "scores), torch, or auto (openvino on a CPU where installed; default)",
    )
    group.add_argument(
        "--runtime-cache", type=Path, default=None, help=f"exported models for openvino (default {default_cache_dir()})"
    )
    group.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")


def add_media_arguments(parser: argparse.ArgumentParser) -> None:
    """The caps on the photos and videos judged (what `media_limits` reads): a file over one is that
    file's error, found from its headers before a frame is decoded."""
    limits = MediaLimits()
    group = parser.add_argument_group("media limits")
    group.add_argument(
        "--max-pixels",
        type=positive_int,
        default=limits.max_pixels,
        help=f"most pixels (width x height) a video frame may have ({limits.max_pixels}: DCI 4K, 4096x2160; "
        "32 sampled frames at the cap hold ~850 MB)",
    )
    group.add_argument(
        "--max-photo-pixels",
        type=positive_int,
        default=limits.max_photo_pixels,
        help=f"most pixels (width x height) a photo may have ({limits.max_photo_pixels}: a 24 MP camera's "
        "photo passes, a 6000x6000 does not)",
    )
    group.add_argument(
        "--max-frames",
        type=positive_int,
        default=limits.max_frames,
        help=f"most frames a video's container may state ({limits.max_frames}: 10 minutes at 60 fps)",
    )


def media_limits(args: argparse.Namespace) -> MediaLimits:
    """The caps `add_media_arguments` read (the defaults where a command has no such options)."""
    defaults = MediaLimits()
    return MediaLimits(
        getattr(args, "max_pixels", defaults.max_pixels),
        getattr(args, "max_photo_pixels", defaults.max_photo_pixels),
        getattr(args, "max_frames", defaults.max_frames),
    )


def autocast_dtype(device: torch.device, precision: str, fp32: bool = False) -> torch.dtype | None:
    """PyTorch's autocast type: fp16 on CUDA (unless `fp32`), bf16 where `precision` says so, else
    none. A member on OpenVINO was compiled in `precision` and ignores it."""
    if device.type == "cuda":
        return None if fp32 else torch.float16
    return torch.bfloat16 if precision == "bf16" else None


def classifier_precision(
    device: torch.device, cpu_bf16: bool = False, fast: bool = False, fp32: bool = False, runtime: str = "openvino"
) -> str:
    """The classifiers' precision on a CPU: "bf16" where the CPU computes it natively and --cpu-bf16
    asks for it, or where fast mode is on (--fast) and bf16 was measured faster than fp32 on this
    CPU by OpenVINO, the classifiers' runtime (inference/models/bf16_speed.py: once, cached); --fp32 keeps
    fp32; else "f32". With a sharp checkpoint (logits over +-10) bf16 stayed within 0.010 of fp32
    on the sample clips (docs/speed.md); --fp32 is there for whoever needs fp32's scores exactly."""
    if fp32 or not (cpu_bf16 or fast) or device.type != "cpu":
        return "f32"
    if not native_bf16():
        if cpu_bf16:
            logger.warning(
                "--cpu-bf16: this CPU has no native bf16 (AVX-512 BF16 or AMX) and would emulate it, slower than "
                "fp32: running fp32"
            )
        return "f32"  # --fast alone: emulated bf16 would be slower than fp32 here
    if cpu_bf16:
        return "bf16"
    if runtime != "openvino":  # eager PyTorch's bf16 is not what was measured
        return "f32"
    speed = measured_bf16_speed(torch.get_num_threads())
    chosen = "bf16" if speed["bf16_pays"] else "f32"
    logger.info(
        "--fast: classifiers in %s (bf16 took %.2f of fp32's time on this CPU, measured once; bf16 runs at %.2f "
        "or less)",
        chosen.replace("f32", "fp32"),
        speed["bf16_ms"] / speed["f32_ms"],
        REQUIRED_GAIN,
    )
    return chosen


def cpu_precision(args: argparse.Namespace, device: torch.device) -> str:
    """The classifiers' precision on a CPU as the command's options ask for it (`classifier_precision`)."""
    runtime = resolve_runtime(getattr(args, "runtime", "auto"), device) if device.type == "cpu" else "torch"
    return classifier_precision(
        device, args.cpu_bf16, getattr(args, "fast", False), getattr(args, "fp32", False), runtime
    )


def load_calibration(args: argparse.Namespace):
    """The calibration stored in --ensemble's file (inference/models/ensemble_calibration.py), or None.
    Refused, rather than ignored, when --models adds checkpoints it was not fitted for."""
    calibration = ensemble_calibration(args.ensemble) if args.ensemble else None
    if calibration is None:
        return None
    if args.models:
        raise InputError(
            f"{args.ensemble}: its calibration was fitted for its own members; --models would make another ensemble "
            "(list them in an ensemble file and calibrate that, or delete its `calibration:` block)"
        )
    if calibration.forced:
        logger.warning("%s: its calibration was stored with --force over: %s", args.ensemble, calibration.forced)
    points = ", ".join(f"{p.fpr:g} FPR above {p.score:.4g}" for p in calibration.operating_points) or "none"
    logger.info(
        "calibration from %s: %s; operating points: %s",
        args.ensemble,
        ", ".join(
            f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
            for key, value in calibration.method_parameters().items()
        ),
        points,
    )
    return calibration


def named_detector(path: Path) -> tuple[str | None, Path]:
    """A --models item's detector and file: `NAME:FILE` names the detector whose authors' format FILE
    is in (inference/detectors/options.py knows the names), where no file is named `NAME:FILE`
    itself; a plain FILE is the project's checkpoint (None)."""
    match = re.fullmatch(r"([A-Za-z][\w-]*):(.+)", str(path))  # any case: a wrong one is named, not a missing file
    if match and not path.exists():
        return match[1], Path(match[2])
    return None, path


def model_entries(args: argparse.Namespace) -> list[dict]:
    """The models of --models and --ensemble as entries (path, encoder, input_size, weight as given,
    detector: None for the project's checkpoints, origin: the option or file that named it), in
    their given order."""
    entries = []
    for item in args.models:
        detector, path = named_detector(Path(item))
        entry = {"path": path, "encoder": args.encoder, "input_size": args.size, "weight": 1.0, "detector": detector}
        entries.append({**entry, "origin": f"--models {item}"})
    if args.ensemble:
        entries += [{**entry, "origin": str(args.ensemble)} for entry in ensemble_members(args.ensemble)]
    if not entries:
        raise InputError("no models: give --models CKPT [CKPT ...] or --ensemble FILE")
    return entries


def load_members(
    args: argparse.Namespace,
    device: torch.device,
    precision: str = "f32",
    entries: list[dict] | None = None,
    weights: list[float] | None = None,
) -> list[Member]:
    """The project's models of --models and --ensemble (or of `entries`, with their `weights`),
    loaded, their weights divided by their sum (refused, before a model is loaded, when it is not a
    finite number above 0)."""
    if entries is None:
        entries = model_entries(args)
    if weights is None:
        weights = normalised_weights([e["weight"] for e in entries], args.ensemble or "--models")
    runtime = resolve_runtime(args.runtime, device)
    members = [
        load_member(e["path"], device, e["encoder"], e["input_size"], weight, runtime, args.runtime_cache, precision)
        for e, weight in zip(entries, weights, strict=True)
    ]
    for member in members:
        logger.info(
            "model %s: %s at %d px, weight %g, on %s in %s",
            member.name,
            member.encoder,
            member.input_size,
            member.weight,
            member.runtime,
            "fp16" if device.type == "cuda" and not args.fp32 else precision.replace("f32", "fp32"),
        )
    return members
