"""MTCNN (facenet-pytorch) face detection with the recipe's thresholds and scaling rules.

Boxes and landmarks are always returned in the coordinates of the frame that was passed in,
whatever scale the detector ran at.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

# Detection scale: the original code ran MTCNN on every frame at half size, in preprocessing and at
# inference, and its checkpoints were trained and scored on faces found that way, so 0.5 is the
# default. "rule" scales by resolution instead (`resolution_scale`), as the original's README
# advised but its code never did: it finds the faces of low-resolution video that half size loses.
ORIGINAL_SCALE = 0.5
RESOLUTION_RULE = "rule"

TRAIN_THRESHOLDS = (0.85, 0.95, 0.95)
INFERENCE_THRESHOLDS = (0.7, 0.8, 0.8)
LANDMARK_THRESHOLDS = (0.65, 0.75, 0.75)


def resolution_scale(width: int, height: int) -> float:
    """Detection scale by the original README's rule: small frames up, large frames down."""
    longer = max(width, height)
    if longer < 300:
        return 2.0
    if longer <= 1000:
        return 1.0
    if longer <= 1900:
        return 0.5
    return 0.33


def parse_scale(value) -> float | str:
    """A detection scale as configs and flags give it: a positive number, or "rule" (null too)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == RESOLUTION_RULE):
        return RESOLUTION_RULE
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = float("nan")
    if not scale > 0 or isinstance(value, bool):
        raise ValueError(f"detection scale must be a positive number or '{RESOLUTION_RULE}', got {value!r}")
    return scale


def scale_argument(text: str) -> float | str:
    """argparse type for --scale / --detector-scale."""
    try:
        return parse_scale(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class FaceDetections:
    """Faces of one frame: boxes (N, 4) as x1, y1, x2, y2; probs (N,); landmarks (N, 5, 2).

    Landmarks are left eye, right eye, nose, left mouth corner, right mouth corner (image left
    and right), as MTCNN orders them.
    """

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> FaceDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def largest(self) -> int:
        """Index of the face with the largest box: the one MTCNN's `select_largest` (the
        original's landmarks step took `landmarks[0]` of that order) puts first."""
        widths, heights = self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1]
        return int(np.argmax(widths * heights))


class FaceDetector:
    """MTCNN over frames, each downscaled (or upscaled) before detection.

    `scale` is a number used for every frame (0.5, the original code's, by default) or "rule" to
    scale each frame by its resolution. Frames are resized with PIL bicubic, as the original did.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = INFERENCE_THRESHOLDS,
        scale: float | str | None = ORIGINAL_SCALE,
        min_face_size: int = 20,
        device: str | torch.device | None = None,
    ):
        from facenet_pytorch import MTCNN

        self.scale = parse_scale(scale)
        self.min_face_size = min_face_size
        self.device = torch.device(device) if device is not None else default_device()
        self._mtcnn = MTCNN(
            keep_all=True,
            thresholds=list(thresholds),
            min_face_size=min_face_size,
            post_process=False,
            device=self.device,
        )

    def frame_scale(self, width: int, height: int) -> float:
        return resolution_scale(width, height) if self.scale == RESOLUTION_RULE else self.scale

    def detect(self, frame_rgb: np.ndarray, scale: float | None = None) -> FaceDetections:
        return self.detect_batch([frame_rgb], scale)[0]

    def detect_batch(self, frames_rgb: Sequence[np.ndarray], scale: float | None = None) -> list[FaceDetections]:
        """Detect faces in frames of one size (a batch goes through MTCNN at once), at the detector's
        scale or at `scale`."""
        if not frames_rgb:
            return []
        height, width = frames_rgb[0].shape[:2]
        scale = scale or self.frame_scale(width, height)
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        if min(size) < self.min_face_size:  # no face fits; MTCNN's image pyramid would be empty
            return [FaceDetections.empty() for _ in frames_rgb]
        images = [
            Image.fromarray(frame).resize(size, Image.BICUBIC) if scale != 1 else Image.fromarray(frame)
            for frame in frames_rgb
        ]
        with torch.inference_mode():
            batch_boxes, batch_probs, batch_landmarks = self._mtcnn.detect(images, landmarks=True)
        results = []
        for boxes, probs, landmarks in zip(batch_boxes, batch_probs, batch_landmarks, strict=True):
            if boxes is None:
                results.append(FaceDetections.empty())
                continue
            results.append(
                FaceDetections(
                    (np.asarray(boxes, np.float32) / scale),
                    np.asarray(probs, np.float32),
                    (np.asarray(landmarks, np.float32) / scale),
                )
            )
        return results
