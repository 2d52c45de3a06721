"""Benchmark inference per video and print JSON: decode, detect, classify and total seconds.

    python -m inference.bench --test-dir DIR --models CKPT [CKPT ...] [--videos 4] [--encoder NAME]

Runs the steps of inference.predict one after another (no overlap) so that each is timed alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from inference.ensemble import face_probabilities, load_member
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


def bench_video(path: Path, detector: FaceDetector, members, device, frames: int, amp_dtype) -> dict:
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
    for member in members:
        if crops:
            face_probabilities(member, crops, device, amp_dtype=amp_dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    classify = time.perf_counter() - start
    return {
        "video": path.name,
        "size": [info.width, info.height],
        "frames": len(decoded),
        "faces": len(crops),
        "decode_s": round(decode, 3),
        "detect_s": round(detect, 3),
        "classify_s": round(classify, 3),
        "total_s": round(decode + detect + classify, 3),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--test-dir", type=Path, required=True)
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--encoder", help="encoder of bare checkpoints")
    parser.add_argument("--size", type=int, help="input size of bare checkpoints (default: the encoder's)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto", help="as inference.predict's (default auto)")
    parser.add_argument("--runtime-cache", type=Path, default=None, help="as inference.predict's")
    parser.add_argument("--videos", type=int, default=4, help="videos to time (default 4)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument(
        "--detector-scale",
        type=scale_argument,
        default=ORIGINAL_SCALE,
        help="MTCNN scale: a number (default 0.5, the original's) or 'rule'",
    )
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    amp_dtype = torch.float16 if device.type == "cuda" else None
    runtime = resolve_runtime(args.runtime, device)
    members = [
        load_member(path, device, args.encoder, args.size, runtime=runtime, cache_dir=args.runtime_cache)
        for path in args.models
    ]
    detector = FaceDetector(INFERENCE_THRESHOLDS, args.detector_scale, device=device)
    results = [
        bench_video(path, detector, members, device, args.frames, amp_dtype)
        for path in list_videos(args.test_dir)[: args.videos]
    ]
    print(
        json.dumps(
            {
                "device": str(device),
                "threads": torch.get_num_threads(),
                "models": [m.encoder for m in members],
                "runtime": runtime,
                "videos": results,
                "mean_total_s": round(sum(r["total_s"] for r in results) / max(1, len(results)), 3),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
