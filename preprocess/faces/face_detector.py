"""MTCNN (facenet-pytorch) face detection with the recipe's thresholds and scaling rules.

Boxes and landmarks are always returned in the coordinates of the frame that was passed in,
whatever scale the detector ran at.
"""

from __future__ import annotations

import argparse
import functools
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from preprocess.faces.lazy_resize import LazilyResized

logger = logging.getLogger(__name__)

# Detection scale: the original code ran MTCNN on every frame at half size, in preprocessing and at
# inference, and its checkpoints were trained and scored on faces found that way, so 0.5 is the
# default. "rule" scales by resolution instead (`resolution_scale`), as the original's README
# advised but its code never did: it finds the faces of low-resolution video that half size loses.
ORIGINAL_SCALE = 0.5
RESOLUTION_RULE = "rule"
# The largest scale a flag or config may ask for: frames are resized by it before MTCNN, so 1000
# would make a 1080p frame a 1920000 x 1080000 image. The rule goes up to 2 (and the recall boost to 2x).
MAX_SCALE = 4.0

TRAIN_THRESHOLDS = (0.85, 0.95, 0.95)
INFERENCE_THRESHOLDS = (0.7, 0.8, 0.8)
LANDMARK_THRESHOLDS = (0.65, 0.75, 0.75)
PYRAMID_FACTOR = 0.709  # MTCNN's image pyramid: each level 0.709 times the size of the one before


# The long side of DFDC's videos (1920x1080 and 1080x1920): the largest size the rule keeps at the
# original's half size. The original's README put 0.33x "above 1900 px", which would take DFDC's own
# video, which its code and its checkpoints' crops found faces in at 0.5x, to 0.33x.
DFDC_LONG_SIDE = 1920


def resolution_scale(width: int, height: int) -> float:
    """Detection scale by the original README's rule: small frames up, large frames down; half
    size, the original code's, for every size up to DFDC's own (1920 on the long side)."""
    longer = max(width, height)
    if longer < 300:
        return 2.0
    if longer <= 1000:
        return 1.0
    if longer <= DFDC_LONG_SIDE:
        return 0.5
    return 0.33


def parse_scale(value) -> float | str:
    """A detection scale as configs and flags give it: a number above 0 and at most MAX_SCALE (not
    NaN, not infinity), or "rule" (null too)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == RESOLUTION_RULE):
        return RESOLUTION_RULE
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = float("nan")
    if not 0 < scale <= MAX_SCALE or isinstance(value, bool):
        raise ValueError(
            f"detection scale must be a positive number up to {MAX_SCALE:g} or '{RESOLUTION_RULE}', got {value!r}"
        )
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
    scale each frame by its resolution. Frames are resized with PIL bicubic, as the original did,
    then go through facenet-pytorch's MTCNN. With `seed_every`, fast mode's seeded detection
    (`detect_seeded`, preprocess/faces/mtcnn_seeded.py) finds the faces of the frames between key
    frames from the boxes around them.

    The three networks run channels-last (unless `channels_last=False`): the same results (to
    about 1e-4 px on the boxes) in a third of the time on CPUs.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = INFERENCE_THRESHOLDS,
        scale: float | str | None = ORIGINAL_SCALE,
        min_face_size: int = 20,
        device: str | torch.device | None = None,
        channels_last: bool = True,
        seed_every: int = 0,
    ):
        from facenet_pytorch import MTCNN

        from preprocess.faces import mtcnn_seeded  # imports facenet-pytorch too: kept out of module start-up

        self._seeded = mtcnn_seeded
        self.scale = parse_scale(scale)
        self.min_face_size = min_face_size
        # key frame interval of seeded detection (inference/pipeline/face_tracks.py); 0: none
        self.seed_every = seed_every
        self.device = torch.device(device) if device is not None else default_device()
        self.mtcnn = MTCNN(
            keep_all=True,
            thresholds=list(thresholds),
            min_face_size=self.min_face_size,
            factor=PYRAMID_FACTOR,
            post_process=False,
            device=self.device,
        )
        if channels_last:
            for network in (self.mtcnn.pnet, self.mtcnn.rnet, self.mtcnn.onet):
                network.to(memory_format=torch.channels_last)

    def frame_scale(self, width: int, height: int) -> float:
        return resolution_scale(width, height) if self.scale == RESOLUTION_RULE else self.scale

    def detect(self, frame_rgb: np.ndarray, scale: float | None = None) -> FaceDetections:
        return self.detect_batch([frame_rgb], scale)[0]

    def detect_batch(self, frames_rgb: Sequence[np.ndarray], scale: float | None = None) -> list[FaceDetections]:
        """Detect faces in frames of one size (a batch goes through MTCNN at once), at the
        detector's scale or at `scale`."""
        if not frames_rgb:
            return []
        height, width = frames_rgb[0].shape[:2]
        scale = scale or self.frame_scale(width, height)
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        if min(size) < self.min_face_size:  # no face fits; MTCNN's image pyramid would be empty
            return [FaceDetections.empty() for _ in frames_rgb]
        resize = functools.partial(self._resized, size=size)
        # PIL lets go of the GIL while it resizes: a batch's frames are resized two at a time
        images = (
            list(shared_pool(2, "resize").map(resize, frames_rgb)) if len(frames_rgb) > 1 else [resize(frames_rgb[0])]
        )
        with torch.inference_mode():
            found = zip(*self.mtcnn.detect(planar(images), landmarks=True), strict=True)
        results = []
        for boxes, probs, landmarks in found:
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

    def detect_each(self, frames_rgb: Sequence[np.ndarray]) -> list[FaceDetections]:
        """Each frame detected alone (`detect`, as exact mode does), two frames at a time."""
        return list(shared_pool(2, "mtcnn").map(self.detect, frames_rgb))

    def detect_seeded(self, frames_rgb: Sequence[np.ndarray], seeds: Sequence[np.ndarray]) -> list[FaceDetections]:
        """Faces of each frame found from its seed boxes (N, 4, in the frame's pixels) by MTCNN's
        second and third networks alone (mtcnn_seeded.detect_seeded), on the frame at detection
        size (PIL's bicubic, as exact mode, computed only around the candidates: LazilyResized)
        with the candidates cut as facenet-pytorch cuts them; boxes in the frame's pixels, largest
        first."""
        if not sum(len(np.asarray(boxes).reshape(-1, 4)) for boxes in seeds):  # nothing to look at
            return [FaceDetections.empty() for _ in frames_rgb]
        height, width = frames_rgb[0].shape[:2]
        scale = self.frame_scale(width, height)
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        images = [LazilyResized(frame, size) for frame in frames_rgb]
        scaled = [np.asarray(boxes, np.float32).reshape(-1, 4) * scale for boxes in seeds]

        def detect(part: slice) -> list[tuple]:
            with torch.inference_mode():
                return self._seeded.detect_seeded(images[part], scaled[part], self.mtcnn, self.mtcnn.thresholds)

        # two halves at a time: the candidates' cutting is Python's, one core's, and each frame's
        # faces are its own (the networks' NMS goes frame by frame)
        half = (len(images) + 1) // 2
        parts = [slice(0, half), slice(half, len(images))] if len(images) >= 4 else [slice(0, len(images))]
        found = [faces for part in shared_pool(2, "seeded").map(detect, parts) for faces in part]
        results = []
        for boxes, probs, landmarks in found:
            order = np.argsort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[::-1]
            results.append(FaceDetections(boxes[order] / scale, probs[order], landmarks[order] / scale))
        return results

    @staticmethod
    def _resized(frame: np.ndarray, size: tuple[int, int]) -> Image.Image:
        """The frame at the detection size, by PIL's bicubic filter as the original did (OpenCV's
        area filter, tried for fast mode, moved a trained model's scores by up to 0.065)."""
        image = Image.fromarray(frame)
        if size != (frame.shape[1], frame.shape[0]):
            image = image.resize(size, Image.BICUBIC)
        return image


def planar(images: Sequence[Image.Image]) -> torch.Tensor:
    """Images of one size as facenet-pytorch's MTCNN takes them (N, H, W, 3), but held plane by
    plane in memory (N, 3, H, W contiguous): MTCNN turns its input into planes by a view, and its
    image pyramid's area resampling of contiguous planes took 15 ms of a 960x540 frame instead of
    27 (one core), with the same numbers (tested: the boxes are equal)."""
    pixels = torch.from_numpy(np.stack([np.asarray(image) for image in images]))
    return pixels.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)


_pools: dict[tuple[str, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def shared_pool(threads: int, purpose: str) -> ThreadPoolExecutor:
    """A pool of `threads` for `purpose`, kept for the process: new threads would each start
    PyTorch's thread team and caches afresh, which cost more than the overlap saves. One pool per
    purpose, so that work in one pool never waits on a full pool of its own kind."""
    with _pools_lock:
        if (purpose, threads) not in _pools:
            _pools[purpose, threads] = ThreadPoolExecutor(threads, thread_name_prefix=purpose)
        return _pools[purpose, threads]
