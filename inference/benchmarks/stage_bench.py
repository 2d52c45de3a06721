"""Benchmark inference per video and print JSON: decode, detect, classify and total seconds and
the score of every video, in each mode, with the start-up costs apart.

    python -m inference.bench --test-dir DIR --models CKPT [CKPT ...] [--encoder NAME --size N] [--videos 5]
    python -m inference.bench --test-dir DIR --ensemble original   # after: python -m inference.weights fetch original
    python -m inference.bench --test-dir DIR --random-models 7 --encoder tf_efficientnet_b7_ns --device cuda
    python -m inference.bench --test-dir DIR --models sharp.pth --encoder tf_efficientnet_b2_ns --size 380 \\
        --modes baseline exact fast fast-fp32 --json bench.json

The third times the original's ensemble (seven B7 at 380 px) with random weights, nothing to
download, and on CUDA reports the GPU memory peak of each mode. The fourth is docs/speed.md's speed
table, with a checkpoint made by `python -m inference.benchmarks.sharp_checkpoint` (logits over +-10, as a
trained model's: differences that soft models hide show there).

Each stage runs alone (no overlap), so that each is timed alone. The modes (`--modes`):
  baseline   the original solution's prediction code step by step (inference/benchmarks/original_baseline.py:
             its OpenCV frame reader, MTCNN call, crops, resizing and batching; eager PyTorch, fp32);
  exact      inference.predict as configured (`--runtime`, `--detector-scale`) without the recall
             boost, whose scores must equal the baseline's (to 1e-4);
  fast       inference.predict --fast (recall boost on), whose scores are held to exact mode's
             (within 0.05 with a sharp checkpoint);
  fast-fp32  fast with the classifiers kept in fp32 (--fast --fp32), where fast runs them in bf16
             (a CPU with native bf16): fast's scores are held to these too.
The report gives each video's stages and score per mode, each mode's mean seconds per video per
stage, the speed-up over the baseline, the largest score difference between modes and the video
it came from; and, apart, what a cold process pays first (`cold_start`: imports, each mode's model
loading, with the OpenVINO export when `--cold` empties its cache, its detector, and its first
video, which runs once untimed before the timed pass: the figures are a warm process's).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from common.cli import InputError, positive_int
from common.video_io import probe_video
from inference.benchmarks import original_baseline
from inference.benchmarks.bench_report import (
    MODE_NAMES,
    STAGES,
    emit_report,
    load_average,
    machine,
    readable_videos,
    seconds_since_process_start,
    summarise,
)
from inference.benchmarks.original_baseline import original_detector
from inference.detectors.options import PROJECT_DETECTOR, assemble, checked_detector, recipes_of
from inference.models.ensemble import load_member, random_member, refuse_temporal
from inference.models.ensemble_file import ensemble_calibration, ensemble_members, normalised_weights
from inference.models.model_options import classifier_precision, named_detector
from inference.models.runtime import RUNTIMES, resolve_runtime
from inference.pipeline.detector import PROJECT_FACES, Ensemble, Run, read_views
from inference.pipeline.faces import (
    CPU_DETECTION_THREADS,
    SEED_EVERY,
    NoFaceError,
    crop_faces,
    inference_detector,
    read_sampled_frames,
)
from inference.prediction.predict_folder import list_videos
from preprocess.faces.face_detector import ORIGINAL_SCALE, default_device, scale_argument

logger = logging.getLogger("inference.bench")


@dataclass(frozen=True)
class Mode:
    """How one mode detects and classifies."""

    name: str
    runtime: str  # of loaded checkpoints; random models always run on PyTorch
    precision: str  # "f32" or "bf16", for OpenVINO
    amp_dtype: torch.dtype | None  # PyTorch autocast
    recall: bool
    fast: bool = False

    def detector(self, scale, device):
        if self.name == "baseline":
            return original_detector(device)
        return inference_detector(scale, device, self.fast)


def detection_setting(mode: Mode, device: torch.device) -> str:
    """How a mode runs MTCNN on `device`, for the report."""
    if mode.name == "baseline":
        return "the original's: facenet-pytorch, one frame after another"
    if device.type == "cuda":
        return "facenet-pytorch, all frames in one batch"
    if mode.fast:
        return (
            f"seeded: facenet-pytorch on one frame in {SEED_EVERY} and the last, RNet and ONet on the "
            "boxes around the others"
        )
    return f"facenet-pytorch, {CPU_DETECTION_THREADS} frame(s) at a time"


def modes_to_time(names, runtime: str, device: torch.device) -> list[Mode]:
    """The modes named, as they run on `device`: the baseline (the original's code), exact
    (predict's default without the recall boost), fast (predict --fast) and fast-fp32 (predict
    --fast --fp32)."""
    cuda = device.type == "cuda"
    fast_precision = classifier_precision(device, fast=True, runtime=runtime)
    amp = {"f32": None, "bf16": torch.bfloat16}
    table = {
        "baseline": Mode("baseline", "torch", "f32", None, recall=False),
        "exact": Mode("exact", runtime, "f32", torch.float16 if cuda else None, recall=False),
        "fast": Mode("fast", runtime, fast_precision, torch.float16 if cuda else amp[fast_precision], True, True),
        "fast-fp32": Mode("fast-fp32", runtime, "f32", None, recall=True, fast=True),
    }
    return [table[name] for name in MODE_NAMES if name in names]


def timed_row(path: Path, info, frames: int, faces: int, seconds: dict[str, float], score: float | None) -> dict:
    """One video's line of the report."""
    return {
        "video": path.name,
        "size": [info.width, info.height],
        "frames": frames,
        "faces": faces,
        **{f"{stage}_s": round(seconds[stage], 3) for stage in STAGES},
        "total_s": round(sum(seconds[stage] for stage in STAGES), 3),
        "score": score,
    }


def bench_video(
    path: Path,
    detector,
    detectors: Ensemble,
    device,
    frames: int,
    amp_dtype,
    recall: bool = False,
    sparse: bool = False,
    args: argparse.Namespace | None = None,
) -> dict:
    """One video through inference.predict's decode (`sparse`: fast mode's), detect and classify
    (the `detectors`' scoring, inference/pipeline/detector.py), each timed; its score (None
    without faces). Another detector's own read counts its decoding in decode and the rest of it
    (its faces found and cropped its way) in detect."""
    info = probe_video(path)
    first, *others = detectors.sources
    seconds = {"decode": 0.0, "detect": 0.0, "classify": 0.0}
    sampled, start = 0, time.perf_counter()
    try:
        if first == PROJECT_FACES:
            decoded = read_sampled_frames(path, frames, sparse=sparse)
            seconds["decode"], sampled = time.perf_counter() - start, len(decoded)
            faces = crop_faces(path, decoded, detector, recall=recall)
        else:
            faces = first.read(path, detector, args)
            sampled = len(faces.frame_indices)
        read_views(faces, others, path, detector, args)
    except NoFaceError:
        faces = None
    for read in [faces, *faces.views.values()] if faces is not None else []:
        if first != PROJECT_FACES or read is not faces:
            seconds["decode"] += read.seconds.get("decode", 0.0)
    seconds["detect"] = time.perf_counter() - start - seconds["decode"]
    start = time.perf_counter()
    score = detectors.score([faces], Run(device, amp_dtype))[0].score if faces is not None else None
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds["classify"] = time.perf_counter() - start
    return timed_row(path, info, sampled, len(faces.crops) if faces is not None else 0, seconds, score)


def baseline_video(path: Path, detector, members, frames: int) -> dict:
    """One video through the original's code (inference/benchmarks/original_baseline.py), each stage timed."""
    result = original_baseline.predict_video(path, detector, members, frames)
    return timed_row(path, probe_video(path), result.frames, result.faces, result.seconds, result.score)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--test-dir", type=Path, required=True)
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument(
        "--models", type=Path, nargs="+", help="checkpoints; NAME:FILE for another paper's detector (its authors' file)"
    )
    models.add_argument("--ensemble", help="ensemble YAML, or the name of fetched released weights (original)")
    models.add_argument(
        "--random-models", type=int, metavar="N", help="N models of --encoder with random weights, run by PyTorch"
    )
    parser.add_argument("--encoder", help="encoder of bare checkpoints and of --random-models")
    parser.add_argument("--size", type=int, help="input size of bare checkpoints (default: the encoder's)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto", help="as inference.predict's (default auto)")
    parser.add_argument("--runtime-cache", type=Path, default=None, help="as inference.predict's")
    parser.add_argument(
        "--cold", action="store_true", help="an empty OpenVINO cache, so that cold_start includes the export"
    )
    parser.add_argument("--videos", type=positive_int, default=5, help="videos to time (default 5)")
    parser.add_argument("--frames", type=positive_int, default=32, help="frames sampled per video (default 32)")
    parser.add_argument(
        "--detector-scale",
        type=scale_argument,
        default=ORIGINAL_SCALE,
        help="MTCNN scale of the exact mode: a number (default 0.5, the original's) or 'rule'",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODE_NAMES,
        default=["baseline", "exact", "fast"],
        help="what to time (default: baseline exact fast)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="leave the baseline out of --modes")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="load every mode's models at once and time each video in every mode in turn (for a machine shared "
        "with other work: its load falls on every mode alike); by default one mode after another",
    )
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    parser.add_argument(
        "--no-warm-up",
        action="store_true",
        help="time each mode's first video too (by default it runs once untimed first: cold_start's first_video_s)",
    )
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    if args.random_models and not args.encoder:
        parser.error("--random-models needs --encoder")
    if args.no_baseline:
        args.modes = [mode for mode in args.modes if mode != "baseline"]
    if args.json and not args.json.resolve().parent.is_dir():
        parser.error(f"--json: {args.json.parent} is not a folder")
    return args


def bench_entries(args: argparse.Namespace) -> list[dict]:
    """The models to time (none with --random-models): --models (NAME:FILE for another paper's
    detector) or --ensemble, each with its checked detector (None: the project's) and its weight,
    the weights divided by their sum."""
    entries = []
    for item in args.models or []:
        detector, path = named_detector(item)
        entries.append(
            {"path": path, "encoder": args.encoder, "input_size": args.size, "weight": 1.0, "detector": detector}
        )
    if args.ensemble:
        entries = ensemble_members(args.ensemble)
        if ensemble_calibration(args.ensemble) is not None:  # said, not silently dropped: raw scores compared
            logger.info("%s has a calibration; the scores compared here are the ensemble's raw ones", args.ensemble)
    for entry in entries:
        entry["detector"] = checked_detector(entry.get("detector"), args.ensemble or f"--models {entry['path']}")
    weights = normalised_weights([entry["weight"] for entry in entries], args.ensemble or "--models") if entries else []
    return [{**entry, "weight": weight} for entry, weight in zip(entries, weights, strict=True)]


def main(argv=None) -> int:
    imports_s = seconds_since_process_start()
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    device = torch.device(args.device) if args.device else default_device()
    runtime = "torch" if args.random_models else resolve_runtime(args.runtime, device)
    videos = readable_videos(list_videos(args.test_dir))[: args.videos]
    memory_peaks: dict[str, float] = {}
    loading: dict[str, dict] = {}
    cache_dir = args.runtime_cache
    if args.cold:
        cache_dir = Path(tempfile.mkdtemp(prefix="bench-openvino-"))

    def prepare(mode: Mode):
        """The mode's models and detector, loaded, and the function that times one video with them."""
        started = time.perf_counter()
        if args.random_models:
            members = [random_member(args.encoder, args.size, device, seed) for seed in range(args.random_models)]
        else:
            members = [
                load_member(
                    entry["path"],
                    device,
                    entry["encoder"],
                    entry["input_size"],
                    entry["weight"],
                    runtime=mode.runtime,
                    cache_dir=cache_dir,
                    precision=mode.precision,
                )
                for entry in entries
                if entry["detector"] is None
            ]
        refuse_temporal(members, "inference.bench")
        # the winner's recipe (--strategy confident) and every other detector named
        detectors = (
            assemble(entries, names, weights, members, device, mode.precision) if entries else recipes_of(members)
        )
        loaded = time.perf_counter()
        detector = mode.detector(args.detector_scale, device)
        detected = time.perf_counter()

        def timed(path: Path) -> dict:
            if mode.name == "baseline":
                return baseline_video(path, detector, members, args.frames)
            return bench_video(
                path, detector, detectors, device, args.frames, mode.amp_dtype, mode.recall, sparse=mode.fast, args=args
            )

        # The first video once untimed: its first calls (memory, kernels chosen) are the start-up's.
        first = timed(videos[0])["total_s"] if videos and not args.no_warm_up else None
        loading[mode.name] = {
            "models_s": round(loaded - started, 2),
            "detector_s": round(detected - loaded, 2),
            "first_video_s": first,
        }
        return timed

    def run(mode: Mode) -> list[dict]:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timed = prepare(mode)
        rows = [timed(path) for path in videos]
        if device.type == "cuda":
            memory_peaks[mode.name] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        return rows

    def interleaved(modes: list[Mode]) -> dict[str, list[dict]]:
        """Every mode loaded at once, then each video timed in every mode in turn: a load that
        comes and goes on a shared machine falls on every mode alike."""
        timers = {mode.name: prepare(mode) for mode in modes}
        rows: dict[str, list[dict]] = {name: [] for name in timers}
        for path in videos:
            for name, timed in timers.items():
                rows[name].append(timed(path))
        return rows

    entries = bench_entries(args)
    names = [entry["detector"] for entry in entries]
    ours = bool(args.random_models) or any(name is None for name in names)  # the project's models, on --runtime
    weights = [entry["weight"] for entry in entries]
    if any(names) and "baseline" in args.modes:
        raise InputError(
            "the baseline is the original's code, which scores the project's checkpoints only: give --no-baseline "
            "to time other detectors"
        )
    timed = modes_to_time(args.modes, runtime, device)
    load_before = load_average()
    try:
        modes = interleaved(timed) if args.interleave else {mode.name: run(mode) for mode in timed}
    finally:
        if args.cold:
            shutil.rmtree(cache_dir, ignore_errors=True)
    report = {
        "device": str(device),
        "machine": {**machine(), "load_average_before": load_before},
        "interleaved": args.interleave,
        "threads": torch.get_num_threads(),
        "models": [str(entry["path"]) for entry in entries] or [f"random {args.encoder}"] * args.random_models,
        "detectors": [entry["detector"] or PROJECT_DETECTOR for entry in entries] or [PROJECT_DETECTOR],
        "runtime": runtime if ours else "torch",  # other papers' detectors run on PyTorch
        "settings": {
            mode.name: {
                "runtime": "torch" if args.random_models or not ours else mode.runtime,
                "precision": str(mode.amp_dtype or mode.precision).replace("torch.", ""),
                "recall_boost": mode.recall,
                "detection": detection_setting(mode, device),
            }
            for mode in timed
        },
        "cold_start": {
            "imports_s": imports_s,
            "openvino_cache": "empty" if args.cold else "as found",
            "loading": loading,
        },
        "modes": modes,
        **summarise(modes),
        "gpu_memory_peak_mb": memory_peaks or None,
    }
    emit_report(report, args.json)
    return 0
