"""Benchmark inference per video and print JSON: decode, detect, classify and total seconds, and
the video's score, for our way and for a baseline that works as the original did.

    python -m inference.bench --test-dir DIR --models CKPT [CKPT ...] [--videos 4] [--encoder NAME --size N]
    python -m inference.bench --test-dir DIR --random-models 7 --encoder tf_efficientnet_b7_ns --device cuda

The second times the original's ensemble (seven B7 at 380 px) with random weights, nothing to
download, and on CUDA reports the GPU memory peak of each mode.

Each stage runs alone (no overlap), so that each is timed alone. Two modes are timed on the same
videos, one after the other:
  baseline  the original's order of work: the sampled frames decoded, MTCNN at half size on each
            frame, every face classified by eager PyTorch in fp32;
  exact     inference.predict as configured (`--runtime`, `--detector-scale`), whose scores must
            equal the baseline's.
The report gives each mode's mean seconds per video, the speed-up over the baseline and the
largest difference between the two modes' video scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from inference.aggregate import confident
from inference.ensemble import Member, face_probabilities, load_member, prepare_for_inference
from inference.faces import NoFaceError, crop_faces, read_sampled_frames
from inference.predict import list_videos
from inference.runtime import RUNTIMES, resolve_runtime
from preprocess.face_detector import (
    INFERENCE_THRESHOLDS,
    ORIGINAL_SCALE,
    FaceDetector,
    default_device,
    scale_argument,
)
from preprocess.video_io import probe_video
from training.zoo import create_model, encoder_spec, normalization


def bench_video(path: Path, detector: FaceDetector, members, device, frames: int, amp_dtype) -> dict:
    """One video through decode, detect and classify, each timed; its confident score (None without faces)."""
    info = probe_video(path)
    start = time.perf_counter()
    decoded = read_sampled_frames(path, frames)
    decode = time.perf_counter() - start
    start = time.perf_counter()
    try:
        crops = crop_faces(path, decoded, detector).crops
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


def summarise(modes: dict[str, list[dict]]) -> dict:
    """Mean seconds per video of each mode, speed-ups over the baseline, largest score differences."""
    mean = {name: round(float(np.mean([r["total_s"] for r in rows])), 3) for name, rows in modes.items() if rows}
    summary: dict = {"mean_total_s": mean}
    if "baseline" in modes:
        baseline = {r["video"]: r for r in modes["baseline"]}
        others = [name for name in modes if name != "baseline" and modes[name]]
        summary["speedup_over_baseline"] = {name: round(mean["baseline"] / mean[name], 2) for name in others}
        summary["max_score_difference"] = {
            name: max(
                (
                    abs(r["score"] - baseline[r["video"]]["score"])
                    for r in modes[name]
                    if r["score"] is not None and baseline[r["video"]]["score"] is not None
                ),
                default=0.0,
            )
            for name in others
        }
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--test-dir", type=Path, required=True)
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument("--models", type=Path, nargs="+", help="checkpoints")
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
    if args.random_models and not args.encoder:
        parser.error("--random-models needs --encoder")
    device = torch.device(args.device) if args.device else default_device()
    amp_dtype = torch.float16 if device.type == "cuda" else None
    runtime = "torch" if args.random_models else resolve_runtime(args.runtime, device)
    videos = list_videos(args.test_dir)[: args.videos]
    memory_peaks: dict[str, float] = {}

    def run(mode: str, mode_runtime: str, scale, mode_amp) -> list[dict]:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if args.random_models:
            members = [random_member(args.encoder, args.size, device, seed) for seed in range(args.random_models)]
        else:
            members = [
                load_member(path, device, args.encoder, args.size, runtime=mode_runtime, cache_dir=args.runtime_cache)
                for path in args.models
            ]
        detector = FaceDetector(INFERENCE_THRESHOLDS, scale, device=device)
        rows = [bench_video(path, detector, members, device, args.frames, mode_amp) for path in videos]
        if device.type == "cuda":
            memory_peaks[mode] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        return rows

    modes = {"exact": run("exact", runtime, args.detector_scale, amp_dtype)}
    if not args.no_baseline:
        modes = {"baseline": run("baseline", "torch", ORIGINAL_SCALE, None), **modes}
    report = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "models": [str(path) for path in args.models or []] or [f"random {args.encoder}"] * args.random_models,
        "runtime": runtime,
        "modes": modes,
        **summarise(modes),
        "gpu_memory_peak_mb": memory_peaks or None,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
