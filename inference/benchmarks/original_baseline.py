"""The original solution's prediction code, step by step, as `inference.bench`'s baseline.

selimsef/dfdc_deepfake_challenge scores a video with kernel_utils.py's `predict_on_video`, called
from predict_folder.py (32 frames a video, 380 px faces, the confident strategy):
  decode    `VideoReader.read_frames`: the frame count from OpenCV, 32 indices from
            `np.linspace(0, count - 1, 32)` truncated to int, then one OpenCV capture grabbing
            every frame from the first index to the last and retrieving the sampled ones (a
            repeated index is matched once and stops the matching: the original's behaviour),
            converted BGR to RGB;
  detect    `FaceExtractor.process_videos`: facenet-pytorch's MTCNN(margin=0, thresholds 0.7,
            0.8, 0.8, its defaults otherwise) on each frame in turn, the frame halved by PIL's
            default resize filter, `detect(img, landmarks=False)`, each box's corners doubled and
            truncated to int, the face cut with a third of its height and width added on each
            side;
  classify  every face isotropically resized (area down, cubic up) and centred on a black
            square, into a uint8 buffer of 4 x 32 faces (one face fewer fits, as the original's
            `n + 1 < batch_size` allows), one float tensor normalised face by face, each model on
            all faces at once in eager PyTorch, sigmoid, the confident strategy per model and the
            mean over models.

What differs from running the original itself: the classifiers run in fp32 (the original cast
them and their input to fp16 on CUDA; a CPU runs fp16 convolutions far slower), with the checkpoint's
own normalisation (ImageNet's for the recipe's encoders, as the original's); the models' scores
weighted as an ensemble file weights them (the original's were equal); one video at a time, each
stage timed alone (predict_folder.py's six threads over videos make the stages overlap and were
slower on 2 cores: docs/speed.md, "Measuring it"); an error is raised and a faceless video has no score,
where the original printed the error and scored the video 0.5; a video with a single face is
scored (the original's `squeeze()` made its one score a 0-d tensor that it could not slice: an
error, so 0.5).

As a command, the original's predict_folder.py on a folder, the way inference.benchmarks.command_bench times
it against inference.predict: one process that imports its libraries, loads the models
(eager PyTorch, fp32) and MTCNN, scores each video in turn and writes `filename,label` (0.5 for a
video without a face, as the original):

    python -m inference.benchmarks.original_baseline --test-dir DIR --models CKPT --encoder E [--size N] --output FILE
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image

from inference.models.ensemble import Member, put_to_center
from inference.pipeline.aggregate import confident
from training.data.face_input import isotropically_resize_image

ORIGINAL_FRAMES = 32
ORIGINAL_THRESHOLDS = [0.7, 0.8, 0.8]


def original_detector(device: torch.device) -> MTCNN:
    """The original's FaceExtractor detector."""
    return MTCNN(margin=0, thresholds=ORIGINAL_THRESHOLDS, device=device)


def sampled_frames(path: str | os.PathLike, frames: int = ORIGINAL_FRAMES) -> tuple[list[np.ndarray], list[int]]:
    """RGB frames at `frames` evenly spaced indices and the indices read, as `VideoReader.read_frames`."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:
            return [], []
        wanted = np.linspace(0, count - 1, frames, endpoint=True).astype(int)
        read, indices = [], []
        for index in range(wanted[0], wanted[-1] + 1):
            if not capture.grab():
                break
            if len(indices) < len(wanted) and index == wanted[len(indices)]:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    break
                read.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                indices.append(index)
        return read, indices
    finally:
        capture.release()


def original_crop(frame: np.ndarray, box) -> np.ndarray:
    """A face as `FaceExtractor` cut it from the full frame: box at half size doubled, a third added."""
    xmin, ymin, xmax, ymax = (int(value * 2) for value in box)
    pad_h, pad_w = (ymax - ymin) // 3, (xmax - xmin) // 3
    return frame[max(ymin - pad_h, 0) : ymax + pad_h, max(xmin - pad_w, 0) : xmax + pad_w]


def detect_faces(detector: MTCNN, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Every face of every frame, in frame order, as `FaceExtractor.process_videos` finds them."""
    faces = []
    for frame in frames:
        image = Image.fromarray(frame.astype(np.uint8))
        image = image.resize(size=[side // 2 for side in image.size])
        boxes, _ = detector.detect(image, landmarks=False)
        if boxes is None:
            continue
        faces.extend(original_crop(frame, box) for box in boxes if box is not None)
    return faces


def classify_faces(members: list[Member], faces: list[np.ndarray], frames: int = ORIGINAL_FRAMES) -> float | None:
    """The video's score as `predict_on_video` makes it from its faces; None without a face."""
    if not faces:
        return None
    capacity = frames * 4
    size = members[0].input_size
    batch = np.zeros((capacity, size, size, 3), np.uint8)
    count = 0
    for face in faces:
        if count + 1 < capacity:
            batch[count] = put_to_center(isotropically_resize_image(face, size), size)
            count += 1
    scores = []
    with torch.no_grad():
        for member in members:
            if member.input_size != size:
                raise ValueError("the original's baseline runs models of one input size")
            images = torch.tensor(batch, device=member.model.fc.weight.device).float().permute(0, 3, 1, 2)
            mean = torch.tensor(member.mean, device=images.device).view(3, 1, 1)
            std = torch.tensor(member.std, device=images.device).view(3, 1, 1)
            for k in range(len(images)):
                images[k] = (images[k] / 255.0 - mean) / std
            probabilities = torch.sigmoid(member.model(images[:count]).squeeze()).view(-1)
            scores.append(confident(probabilities[:count].cpu().numpy()))
    return float(np.average(scores, weights=[member.weight for member in members]))


@dataclass
class BaselineVideo:
    """One video through the original's steps: seconds per stage, faces and score."""

    frames: int = 0
    faces: int = 0
    score: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def predict_video(path, detector: MTCNN, members: list[Member], frames: int = ORIGINAL_FRAMES) -> BaselineVideo:
    """`path` scored the original's way, each stage timed alone."""
    result = BaselineVideo()
    started = time.perf_counter()
    decoded, _ = sampled_frames(path, frames)
    decoded_at = time.perf_counter()
    faces = detect_faces(detector, decoded)
    detected_at = time.perf_counter()
    result.score = classify_faces(members, faces, frames)
    finished = time.perf_counter()
    result.frames, result.faces = len(decoded), len(faces)
    result.seconds = {
        "decode": decoded_at - started,
        "detect": detected_at - decoded_at,
        "classify": finished - detected_at,
    }
    return result


def main(argv=None) -> int:
    """Score every video of --test-dir the original's way and write --output (filename,label)."""
    from common import cli
    from common.io_utils import atomic_path
    from inference.models.ensemble import load_member
    from inference.prediction.predict_folder import list_videos

    parser = argparse.ArgumentParser(prog="python -m inference.benchmarks.original_baseline", description=__doc__)
    parser.add_argument("--test-dir", type=Path, required=True)
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--encoder", help="encoder of bare checkpoints (the original's files name none)")
    parser.add_argument("--size", type=int, help="input size of bare checkpoints")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    members = [load_member(path, device, args.encoder, args.size) for path in args.models]
    detector = original_detector(device)
    rows = []
    for path in list_videos(args.test_dir):
        try:
            score = predict_video(path, detector, members).score
        except Exception as error:  # the original printed it and scored the video 0.5
            if cli.debugging():
                raise
            print(f"{path}: {error}", file=sys.stderr)
            score = None
        rows.append((path.relative_to(args.test_dir).as_posix(), 0.5 if score is None else score))
    with atomic_path(args.output) as partial, open(partial, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "label"])
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    from common import cli

    sys.exit(cli.run(main))
