"""MTCNN (facenet-pytorch) face detection with the recipe's thresholds and scaling rules.

Boxes and landmarks are always returned in the coordinates of the frame that was passed in,
whatever scale the detector ran at.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

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

    `scale=None` applies the resolution rule per frame; a number (0.5 in the original code)
    is used for every frame. Frames are resized with PIL bicubic, as the original did.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = INFERENCE_THRESHOLDS,
        scale: float | None = None,
        min_face_size: int = 20,
        device: str | torch.device | None = None,
    ):
        from facenet_pytorch import MTCNN

        self.scale = scale
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
        return self.scale if self.scale is not None else resolution_scale(width, height)

    def detect(self, frame_rgb: np.ndarray) -> FaceDetections:
        return self.detect_batch([frame_rgb])[0]

    def detect_batch(self, frames_rgb: Sequence[np.ndarray]) -> list[FaceDetections]:
        """Detect faces in frames of one size (a batch goes through MTCNN at once)."""
        if not frames_rgb:
            return []
        height, width = frames_rgb[0].shape[:2]
        scale = self.frame_scale(width, height)
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
