"""Benchmark preprocessing per video and print JSON.

For each original video: seconds to decode the frames that get cropped, to detect faces on them
(MTCNN at the configured scale), and to crop them; and the same detection done the original
way, on every frame at 0.5x, for comparison. Where both ran at the same scale, the boxes of the
cropped frames are compared.

    python -m preprocess.bench --root-dir R [--videos 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import cli
from common.video_io import iter_frames, probe_video
from preprocess.datasets import load_dataset
from preprocess.faces.crops import crop_face
from preprocess.faces.face_detector import ORIGINAL_SCALE, FaceDetector, default_device
from preprocess.steps import load_config


def _timed_pass(path: Path, backend: str, detector: FaceDetector, every: int, crop: bool) -> dict:
    """Decode every `every`-th frame, detect (and crop) faces, timing each part separately."""
    seconds = {"decode": 0.0, "detect": 0.0, "crop": 0.0}
    boxes: dict[int, np.ndarray] = {}
    crops = 0
    frames = iter_frames(path, backend=backend, every=every)
    while True:
        start = time.perf_counter()
        item = next(frames, None)
        seconds["decode"] += time.perf_counter() - start
        if item is None:
            break
        index, frame = item
        start = time.perf_counter()
        boxes[index] = detector.detect(frame).boxes
        seconds["detect"] += time.perf_counter() - start
        if crop:
            start = time.perf_counter()
            crops += sum(1 for box in boxes[index] if crop_face(frame, box).size)
            seconds["crop"] += time.perf_counter() - start
    return {"boxes": boxes, "seconds": seconds, "crops": crops}


def _box_difference(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max()) if a.size else 0.0


def bench_video(path: Path, settings: dict, backend: str, device: str | None) -> dict:
    info = probe_video(path, backend)
    ours = FaceDetector(settings["thresholds"], settings["scale"], settings["min_face_size"], device)
    scale = ours.frame_scale(info.width, info.height)
    original = FaceDetector(settings["thresholds"], ORIGINAL_SCALE, settings["min_face_size"], device)
    needed = _timed_pass(path, backend, ours, settings["every"], crop=True)
    every_frame = _timed_pass(path, backend, original, 1, crop=False)
    ours_s, original_s = needed["seconds"], every_frame["seconds"]
    same_scale = bool(np.isclose(scale, ORIGINAL_SCALE))
    difference = max((_box_difference(b, every_frame["boxes"][i]) for i, b in needed["boxes"].items()), default=0.0)
    return {
        "video": path.name,
        "frames": len(every_frame["boxes"]),
        "size": [info.width, info.height],
        "frames_detected": len(needed["boxes"]),
        "detection_scale": scale,
        "decode_s": round(ours_s["decode"], 3),
        "detect_s": round(ours_s["detect"], 3),
        "crop_s": round(ours_s["crop"], 4),
        "crops": needed["crops"],
        "original_way": {
            "frames_detected": len(every_frame["boxes"]),
            "scale": ORIGINAL_SCALE,
            "decode_s": round(original_s["decode"], 3),
            "detect_s": round(original_s["detect"], 3),
        },
        "detect_speedup": round(original_s["detect"] / max(ours_s["detect"], 1e-9), 2),
        "decode_and_detect_speedup": round(
            (original_s["decode"] + original_s["detect"]) / max(ours_s["decode"] + ours_s["detect"], 1e-9), 2
        ),
        "same_scale": same_scale,
        "identical_boxes_on_cropped_frames": same_scale and difference == 0.0,
        "max_box_difference_px": difference,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root-dir", type=Path, required=True, help="dataset root")
    parser.add_argument("--layout", default=None, help="dataset layout (default: detected)")
    parser.add_argument("--config", type=Path, default=None, help="preprocessing settings")
    parser.add_argument("--videos", type=int, default=2, help="originals to time (default 2)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    records = [r for r in load_dataset(args.root_dir, args.layout) if not r.is_fake][: args.videos]
    results = [bench_video(r.path, config["detection"], config["video_backend"], args.device) for r in records]
    device = str(args.device or default_device())
    print(json.dumps({"device": device, "threads": torch.get_num_threads(), "videos": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
