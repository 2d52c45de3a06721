"""Benchmark inference per video and print JSON: decode, detect, classify and total seconds, and
the video's score, for our way and for a baseline that works as the original did.

    python -m inference.bench --test-dir DIR --models CKPT [CKPT ...] [--videos 4] [--encoder NAME --size N]
    python -m inference.bench --test-dir DIR --ensemble original   # after: python -m inference.weights fetch original
    python -m inference.bench --test-dir DIR --random-models 7 --encoder tf_efficientnet_b7_ns --device cuda

The second times the original's ensemble (seven B7 at 380 px) with random weights, nothing to
download, and on CUDA reports the GPU memory peak of each mode.

Each stage runs alone (no overlap), so that each is timed alone. Three modes are timed on the
same videos, one after the other:
  baseline  the original's order of work: the sampled frames decoded, MTCNN at half size on each
            frame in turn (eager PyTorch, PIL bicubic), every face classified by eager PyTorch in
            fp32;
  exact     inference.predict as configured (`--runtime`, `--detector-scale`) without the recall
            boost, whose scores must equal the baseline's;
  fast      inference.predict --fast (recall boost on), whose scores must stay within 0.05 of
            exact mode's.
The report gives each mode's mean seconds per video, the speed-up over the baseline, the largest
difference between exact and baseline scores and between fast and exact scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inference.aggregate import confident
from inference.ensemble import Member, face_probabilities, load_member, prepare_for_inference, refuse_temporal
from inference.ensemble_file import ensemble_calibration, ensemble_members
from inference.faces import CPU_DETECTION_THREADS, NoFaceError, crop_faces, inference_detector, read_sampled_frames
from inference.predict import list_videos
from inference.runtime import RUNTIMES, native_bf16, resolve_runtime
from preprocess import cli
from preprocess.face_detector import (
    INFERENCE_THRESHOLDS,
    ORIGINAL_SCALE,
    FaceDetector,
    default_device,
    scale_argument,
)
from preprocess.mtcnn_opencv import GROUP_PIXELS
from preprocess.video_io import probe_video
from training.zoo import create_model, encoder_spec, normalization

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
    threads: int = CPU_DETECTION_THREADS  # frames through MTCNN at a time on a CPU

    def detector(self, scale, device) -> FaceDetector:
        if self.name == "baseline":
            return FaceDetector(INFERENCE_THRESHOLDS, ORIGINAL_SCALE, device=device, channels_last=False)
        return inference_detector(scale, device, self.fast)


def detection_setting(mode: Mode, device: torch.device) -> str:
    """How a mode runs MTCNN on `device`, for the report."""
    if device.type == "cuda":
        return "facenet-pytorch, all frames in one batch"
    if mode.fast:
        return f"opencv, frames in groups of {GROUP_PIXELS / 1e6:g} Mpx at detection size, two groups at a time"
    return f"facenet-pytorch, {mode.threads} frame(s) at a time"


def modes_to_time(runtime: str, device: torch.device, baseline: bool = True) -> list[Mode]:
    """baseline (the original's way), exact (predict's default without the recall boost) and fast
    (predict --fast), as they run on `device`."""
    cuda = device.type == "cuda"
    fast_precision = "bf16" if not cuda and native_bf16() else "f32"
    fast_amp = torch.float16 if cuda else torch.bfloat16 if fast_precision == "bf16" else None
    modes = [
        Mode("exact", runtime, "f32", torch.float16 if cuda else None, recall=False),
        Mode("fast", runtime, fast_precision, fast_amp, recall=True, fast=True),
    ]
    return [Mode("baseline", "torch", "f32", None, recall=False, threads=1), *modes] if baseline else modes


def bench_video(
    path: Path,
    detector: FaceDetector,
    members,
    device,
    frames: int,
    amp_dtype,
    recall: bool = False,
    threads: int = CPU_DETECTION_THREADS,
) -> dict:
    """One video through decode, detect and classify, each timed; its confident score (None without faces)."""
    info = probe_video(path)
    start = time.perf_counter()
    decoded = read_sampled_frames(path, frames)
    decode = time.perf_counter() - start
    start = time.perf_counter()
    try:
        crops = crop_faces(path, decoded, detector, recall=recall, threads=threads).crops
    except NoFaceError:
        crops = []
    detect = time.perf_counter() - start
    start = time.perf_counter()
    probabilities = [face_probabilities(member, crops, device, amp_dtype=amp_dtype) for member in members if crops]
    if device.type == "cuda":
        torch.cuda.synchronize()
    classify = time.perf_counter() - start
    score = None
    if crops:
        weights = [member.weight for member in members]
        score = float(np.average([confident(p) for p in probabilities], weights=weights))
    return {
        "video": path.name,
        "size": [info.width, info.height],
        "frames": len(decoded),
        "faces": len(crops),
        "decode_s": round(decode, 3),
        "detect_s": round(detect, 3),
        "classify_s": round(classify, 3),
        "total_s": round(decode + detect + classify, 3),
        "score": score,
    }


def random_member(encoder: str, size: int | None, device: torch.device, seed: int) -> Member:
    """A classifier of `encoder` with random weights (timing only: nothing is downloaded)."""
    torch.manual_seed(seed)
    model = prepare_for_inference(create_model(encoder), device)
    mean, std = normalization(encoder)
    return Member(f"random-{seed}", model, encoder, size or encoder_spec(encoder).input_size, mean, std)


def largest_score_difference(rows: list[dict], reference: list[dict]) -> float:
    """The largest difference between two modes' scores of the same videos (where both found faces)."""
    scores = {row["video"]: row["score"] for row in reference}
    pairs = [(row["score"], scores[row["video"]]) for row in rows]
    return max((abs(a - b) for a, b in pairs if a is not None and b is not None), default=0.0)


def summarise(modes: dict[str, list[dict]]) -> dict:
    """Mean seconds per video of each mode, speed-ups over the baseline, and the largest score
    differences: exact against the baseline, fast against exact."""
    mean = {name: round(float(np.mean([r["total_s"] for r in rows])), 3) for name, rows in modes.items() if rows}
    summary: dict = {"mean_total_s": mean}
    if "baseline" in mean:
        summary["speedup_over_baseline"] = {
            name: round(mean["baseline"] / mean[name], 2) for name in mean if name != "baseline"
        }
    references = {"exact": "baseline", "fast": "exact"}
    summary["max_score_difference"] = {
        f"{name}_vs_{reference}": largest_score_difference(modes[name], modes[reference])
        for name, reference in references.items()
        if modes.get(name) and modes.get(reference)
    }
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--test-dir", type=Path, required=True)
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument("--models", type=Path, nargs="+", help="checkpoints")
    models.add_argument("--ensemble", help="ensemble YAML, or the name of fetched released weights (original)")
    models.add_argument(
        "--random-models", type=int, metavar="N", help="N models of --encoder with random weights, run by PyTorch"
    )
    parser.add_argument("--encoder", help="encoder of bare checkpoints and of --random-models")
    parser.add_argument("--size", type=int, help="input size of bare checkpoints (default: the encoder's)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto", help="as inference.predict's (default auto)")
    parser.add_argument("--runtime-cache", type=Path, default=None, help="as inference.predict's")
    parser.add_argument("--videos", type=int, default=4, help="videos to time (default 4)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument(
        "--detector-scale",
        type=scale_argument,
        default=ORIGINAL_SCALE,
        help="MTCNN scale of the exact mode: a number (default 0.5, the original's) or 'rule'",
    )
    parser.add_argument("--no-baseline", action="store_true", help="time our way only")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.random_models and not args.encoder:
        parser.error("--random-models needs --encoder")
    device = torch.device(args.device) if args.device else default_device()
    runtime = "torch" if args.random_models else resolve_runtime(args.runtime, device)
    videos = list_videos(args.test_dir)[: args.videos]
    memory_peaks: dict[str, float] = {}

    def run(mode: Mode) -> list[dict]:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
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
                    cache_dir=args.runtime_cache,
                    precision=mode.precision,
                )
                for entry in entries
            ]
        refuse_temporal(members, "inference.bench")
        detector = mode.detector(args.detector_scale, device)
        rows = [
            bench_video(path, detector, members, device, args.frames, mode.amp_dtype, mode.recall, mode.threads)
            for path in videos
        ]
        if device.type == "cuda":
            memory_peaks[mode.name] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        return rows

    entries = [{"path": p, "encoder": args.encoder, "input_size": args.size, "weight": 1.0} for p in args.models or []]
    if args.ensemble:
        entries = ensemble_members(args.ensemble)
        calibration = ensemble_calibration(args.ensemble)
        if calibration is not None:  # said, not silently dropped: the modes are compared on raw scores
            logger.info("%s has a calibration; the scores compared here are the ensemble's raw ones", args.ensemble)
    timed = modes_to_time(runtime, device, baseline=not args.no_baseline)
    modes = {mode.name: run(mode) for mode in timed}
    report = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "models": [str(entry["path"]) for entry in entries] or [f"random {args.encoder}"] * args.random_models,
        "runtime": runtime,
        "settings": {
            mode.name: {
                "runtime": "torch" if args.random_models else mode.runtime,
                "precision": str(mode.amp_dtype or mode.precision).replace("torch.", ""),
                "recall_boost": mode.recall,
                "detection": detection_setting(mode, device),
            }
            for mode in timed
        },
        "modes": modes,
        **summarise(modes),
        "gpu_memory_peak_mb": memory_peaks or None,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
