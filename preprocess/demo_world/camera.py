"""Animating a still photo into camera footage: framing, motion, lighting drift, sensor noise.

Everything here is a pure function of its parameters, so a clip renders the same frames for
the same seed. Time `t` runs from 0 (first frame) to 1 (last frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_FACE_HEIGHT_PX = 64


def ease(t: float) -> float:
    """Smooth start and stop, as a camera operator would move."""
    return 0.5 - 0.5 * np.cos(np.pi * float(np.clip(t, 0.0, 1.0)))


def make_scene(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo on a larger canvas whose surroundings are its own edges, smeared and blurred.

    Returns the canvas and the photo's top-left offset in it. The surroundings have no structure
    (no mirrored second face), and the photo fades into them without a hard edge.
    """
    height, width = image.shape[:2]
    pad = max(height, width)
    canvas = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    blurred = cv2.GaussianBlur(canvas, (0, 0), 0.04 * pad + 2)
    inside = np.zeros(canvas.shape[:2], np.uint8)
    inside[pad : pad + height, pad : pad + width] = 255
    distance = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    alpha = np.clip(distance / (0.06 * min(height, width) + 1), 0, 1)[..., None]
    scene = (alpha * canvas + (1 - alpha) * blurred).astype(np.uint8)
    return scene, np.array([pad, pad], np.float32)


@dataclass(frozen=True)
class CameraPath:
    """Where the face sits in the frame over time: pan, zoom, roll and a little hand shake.

    The path maps scene coordinates to frame coordinates; `scene_face_center` is the point of
    the scene that the camera follows.
    """

    scene_face_center: tuple[float, float]
    start: tuple[float, float]
    end: tuple[float, float]
    zoom_end: float
    roll_degrees: float
    roll_cycles: float
    roll_phase: float
    shake_px: float
    shake_frequencies: tuple[float, float]
    shake_phases: tuple[float, float]

    def matrix(self, t: float) -> np.ndarray:
        progress = ease(t)
        zoom = 1.0 + (self.zoom_end - 1.0) * progress
        angle = np.deg2rad(self.roll_degrees * np.sin(2 * np.pi * self.roll_cycles * t + self.roll_phase))
        shake = self.shake_px * np.array(
            [
                np.sin(2 * np.pi * self.shake_frequencies[0] * t + self.shake_phases[0]),
                np.sin(2 * np.pi * self.shake_frequencies[1] * t + self.shake_phases[1]),
            ]
        )
        center = np.array(self.start) + (np.array(self.end) - np.array(self.start)) * progress + shake
        rotation = zoom * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        translation = center - rotation @ np.array(self.scene_face_center)
        return np.hstack([rotation, translation[:, None]]).astype(np.float64)


def sample_camera_path(
    rng: np.random.Generator,
    frame_size: tuple[int, int],
    scene_face_center: np.ndarray,
    face_size: tuple[float, float],
) -> CameraPath:
    """A path that keeps the whole face (with some margin) inside the frame at every zoom."""
    width, height = frame_size
    zoom_end = float(rng.uniform(0.88, 1.15))
    reach = 0.5 * max(1.0, zoom_end) * 1.3 * np.array(face_size) + 4
    low = reach
    high = np.array([width, height]) - reach
    middle = (low + high) / 2  # a face too large for the margin stays centred
    high = np.maximum(high, middle)
    low = np.minimum(low, middle)

    start = rng.uniform(low, high)
    pan = rng.normal(0, 0.12, 2) * np.array([width, height])
    end = np.clip(start + pan, low, high)
    return CameraPath(
        scene_face_center=(float(scene_face_center[0]), float(scene_face_center[1])),
        start=(float(start[0]), float(start[1])),
        end=(float(end[0]), float(end[1])),
        zoom_end=zoom_end,
        roll_degrees=float(rng.uniform(0, 4)),
        roll_cycles=float(rng.uniform(0.2, 1.0)),
        roll_phase=float(rng.uniform(0, 2 * np.pi)),
        shake_px=float(rng.uniform(0, 0.004) * max(width, height)),
        shake_frequencies=(float(rng.uniform(1, 4)), float(rng.uniform(1, 4))),
        shake_phases=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
    )


@dataclass(frozen=True)
class Lighting:
    """Exposure and white-balance drift plus a light falling off across the frame."""

    gain_start: float
    gain_end: float
    tint_start: tuple[float, float, float]
    tint_end: tuple[float, float, float]
    gradient_angle: float
    gradient_start: float
    gradient_end: float

    def ramp(self, frame_size: tuple[int, int]) -> np.ndarray:
        width, height = frame_size
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        direction = (np.cos(self.gradient_angle), np.sin(self.gradient_angle))
        return ((xs / width - 0.5) * direction[0] + (ys / height - 0.5) * direction[1]).astype(np.float32)

    def apply(self, frame: np.ndarray, t: float, ramp: np.ndarray) -> np.ndarray:
        """`frame` float32 RGB; returns the lit frame (not clipped)."""
        progress = ease(t)
        gain = self.gain_start + (self.gain_end - self.gain_start) * progress
        tint = np.array(self.tint_start) + (np.array(self.tint_end) - np.array(self.tint_start)) * progress
        strength = self.gradient_start + (self.gradient_end - self.gradient_start) * progress
        light = 1.0 + np.float32(strength) * ramp
        return frame * light[..., None] * (gain * tint).astype(np.float32)


def sample_lighting(rng: np.random.Generator) -> Lighting:
    return Lighting(
        gain_start=float(rng.uniform(0.8, 1.15)),
        gain_end=float(rng.uniform(0.8, 1.15)),
        tint_start=tuple(float(v) for v in rng.uniform(0.94, 1.06, 3)),
        tint_end=tuple(float(v) for v in rng.uniform(0.94, 1.06, 3)),
        gradient_angle=float(rng.uniform(0, 2 * np.pi)),
        gradient_start=float(rng.uniform(0, 0.35)),
        gradient_end=float(rng.uniform(0, 0.35)),
    )


class SensorNoise:
    """Gaussian sensor noise: a few pre-drawn noise fields, each frame a random window of one."""

    BANKS = 3
    MARGIN = 32

    def __init__(self, rng: np.random.Generator, frame_size: tuple[int, int], sigma: float):
        width, height = frame_size
        self.sigma = np.float32(sigma)
        self.frame_size = frame_size
        shape = (self.BANKS, height + self.MARGIN, width + self.MARGIN, 3)
        self._fields = rng.standard_normal(shape, dtype=np.float32)
        self._rng = rng

    def sample(self) -> np.ndarray:
        width, height = self.frame_size
        bank = self._rng.integers(self.BANKS)
        dy, dx = self._rng.integers(self.MARGIN, size=2)
        return self._fields[bank, dy : dy + height, dx : dx + width] * self.sigma
