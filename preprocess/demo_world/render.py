"""Rendering one demo clip: the real video and, frame by frame, each fake made from it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.video_io import VideoWriter
from preprocess.demo_world.camera import (
    MIN_FACE_HEIGHT_PX,
    SensorNoise,
    make_scene,
    sample_camera_path,
    sample_lighting,
)
from preprocess.demo_world.fakes import (
    canonical_face,
    jitter_landmarks,
    sample_swap_style,
    self_blend,
    swap_face,
)
from preprocess.demo_world.identities import Identity
from preprocess.demo_world.plan import FACE_SWAP, ClipSpec
from preprocess.faces.face_detector import LANDMARK_THRESHOLDS, FaceDetector

logger = logging.getLogger(__name__)

LONG_SIDES = (320, 426, 480, 640, 854, 960, 1280)
FRAME_RATES = (15.0, 24.0, 25.0, 30000 / 1001, 30.0)


@dataclass(frozen=True)
class ClipFormat:
    width: int
    height: int
    fps: float
    frame_count: int
    crf: int


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def sample_clip_format(rng: np.random.Generator) -> ClipFormat:
    """2-5 s, 15-30 fps, 320-1280 px on the long side, landscape or portrait, CRF 18-30."""
    long_side = int(rng.choice(LONG_SIDES))
    short_side = _even(long_side * (9 / 16 if rng.random() < 0.7 else 3 / 4))
    portrait = rng.random() < 0.3
    width, height = (short_side, long_side) if portrait else (long_side, short_side)
    fps = float(rng.choice(FRAME_RATES))
    frame_count = max(1, int(round(rng.uniform(2.0, 5.0) * fps)))
    return ClipFormat(width, height, fps, frame_count, int(rng.integers(18, 31)))


class RealClip:
    """The frames of a still photo filmed by a moving, slightly noisy camera."""

    def __init__(self, identity: Identity, rng: np.random.Generator):
        self.format = fmt = sample_clip_format(rng)
        short_side = min(fmt.width, fmt.height)
        low = max(0.2, MIN_FACE_HEIGHT_PX / short_side)
        face_height = rng.uniform(low, max(low, 0.45)) * short_side
        scale = face_height / identity.face_height
        scene, offset = make_scene(identity.image)
        center = identity.face_center + offset
        reach = int(np.hypot(fmt.width, fmt.height) / 0.85 / scale) + 8
        left, top = int(max(0, center[0] - reach)), int(max(0, center[1] - reach))
        scene = scene[top : int(center[1] + reach), left : int(center[0] + reach)]
        shift = offset - np.array([left, top], np.float32)
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        self.scene = cv2.resize(scene, None, fx=scale, fy=scale, interpolation=interpolation)
        self.scene_landmarks = (identity.landmarks + shift) * scale
        self.scene_box = (identity.box + np.tile(shift, 2)) * scale
        box_size = (self.scene_box[2] - self.scene_box[0], self.scene_box[3] - self.scene_box[1])
        scene_center = (identity.face_center + shift) * scale
        self.camera = sample_camera_path(rng, (fmt.width, fmt.height), scene_center, box_size)
        self.lighting = sample_lighting(rng)
        self._ramp = self.lighting.ramp((fmt.width, fmt.height))
        self.noise = SensorNoise(rng, (fmt.width, fmt.height), sigma=float(rng.uniform(1.5, 5.0)))

    def time(self, index: int) -> float:
        return index / max(1, self.format.frame_count - 1)

    def frame(self, index: int) -> np.ndarray:
        t = self.time(index)
        warped = cv2.warpAffine(
            self.scene,
            self.camera.matrix(t),
            (self.format.width, self.format.height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        lit = self.lighting.apply(warped.astype(np.float32), t, self._ramp) + self.noise.sample()
        return np.clip(lit, 0, 255).astype(np.uint8)

    def expected_face(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Where the camera put the photo's face box and landmarks in frame `index`."""
        matrix = self.camera.matrix(self.time(index))
        corners = self.scene_box.reshape(2, 2)
        box = corners @ matrix[:, :2].T + matrix[:, 2]
        return box.reshape(4), self.scene_landmarks @ matrix[:, :2].T + matrix[:, 2]


class LandmarkTracker:
    """MTCNN landmarks per frame, searched near where the face is expected (fast on a CPU)."""

    FACE_PX = 96

    def __init__(self, device: str | None = None):
        self.detector = FaceDetector(LANDMARK_THRESHOLDS, scale=1.0, min_face_size=40, device=device)

    def locate(self, frame: np.ndarray, box: np.ndarray, fallback: np.ndarray) -> tuple[np.ndarray, bool]:
        size = max(box[2] - box[0], box[3] - box[1])
        height, width = frame.shape[:2]
        x1, y1 = int(max(0, box[0] - 0.75 * size)), int(max(0, box[1] - 0.75 * size))
        x2, y2 = int(min(width, box[2] + 0.75 * size)), int(min(height, box[3] + 0.75 * size))
        zoom = self.FACE_PX / size
        crop = cv2.resize(frame[y1:y2, x1:x2], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA)
        faces = self.detector.detect(crop)
        if not len(faces):
            return fallback, False
        centers = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2 / zoom + np.array([x1, y1])
        expected = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        nearest = int(np.argmin(np.linalg.norm(centers - expected, axis=1)))
        if np.linalg.norm(centers[nearest] - expected) > 0.5 * size:
            return fallback, False
        return faces.landmarks[nearest] / zoom + np.array([x1, y1]), True


def render_clip(
    spec: ClipSpec,
    identities: dict[str, Identity],
    paths: dict[str, Path],
    tracker: LandmarkTracker | None,
) -> dict:
    """Write the real clip and its fakes to `paths` (by video name); returns what was made."""
    rng = np.random.default_rng(spec.seed)
    clip = RealClip(identities[spec.identity], rng)
    fmt = clip.format
    fake_rngs = [np.random.default_rng(fake.seed) for fake in spec.fakes]
    styles = [sample_swap_style(fake_rng) for fake_rng in fake_rngs]
    sources = [
        canonical_face(
            identities[fake.source_identity].image, identities[fake.source_identity].landmarks, style.canonical_size
        )
        if fake.method == FACE_SWAP
        else None
        for fake, style in zip(spec.fakes, styles, strict=True)
    ]
    writers = [VideoWriter(paths[name], fmt.fps, fmt.width, fmt.height, crf=fmt.crf) for name in spec.names]
    tracked = 0
    try:
        for index in range(fmt.frame_count):
            frame = clip.frame(index)
            writers[0].write(frame)
            if not spec.fakes:
                continue
            box, expected = clip.expected_face(index)
            landmarks, found = tracker.locate(frame, box, expected)
            tracked += found
            for writer, fake, style, source, fake_rng in zip(
                writers[1:], spec.fakes, styles, sources, fake_rngs, strict=True
            ):
                jittered = jitter_landmarks(landmarks, style, fake_rng)
                if fake.method == FACE_SWAP:
                    writer.write(swap_face(frame, jittered, source, style))
                else:
                    writer.write(self_blend(frame, jittered, style))
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    for writer in writers:
        writer.close()
    if spec.fakes and tracked < fmt.frame_count:
        logger.info(
            "%s: MTCNN missed the face in %d of %d frames; used the camera's geometry there",
            spec.name,
            fmt.frame_count - tracked,
            fmt.frame_count,
        )
    return {
        "name": spec.name,
        "identity": spec.identity,
        "width": fmt.width,
        "height": fmt.height,
        "fps": round(fmt.fps, 3),
        "frames": fmt.frame_count,
        "crf": fmt.crf,
        "landmarks_tracked": tracked if spec.fakes else None,
        "fakes": [{"name": f.name, "method": f.method, "source_identity": f.source_identity} for f in spec.fakes],
    }
