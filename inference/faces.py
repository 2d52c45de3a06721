"""Faces of a test video: evenly spaced frames, MTCNN boxes, crops with a third of margin.

With the recall boost, a frame where MTCNN finds no face at the chosen scale is tried again at
twice that scale (up to 2x: faces too small for the first try) and, if it is dark, once more on a
brightened copy (gamma set so that its mean comes to mid-grey: faces lost in shadow). Where
MTCNN found a face the first time, nothing changes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from preprocess.crops import crop_face
from preprocess.face_detector import FaceDetector
from preprocess.video_io import VideoReadError, iter_frames, probe_video


class DetectionError(RuntimeError):
    """Face detection failed on a video whose frames decoded."""


class NoFaceError(DetectionError):
    pass


@dataclass
class VideoFaces:
    """Every face found in the sampled frames, in frame order."""

    path: Path
    frame_indices: list[int]
    crops: list[np.ndarray] = field(default_factory=list)
    face_frames: list[int] = field(default_factory=list)  # frame index of each crop
    boxes: list[list[float]] = field(default_factory=list)
    found: list[str] = field(default_factory=list)  # how each box was found: detected or retried
    seconds: dict[str, float] = field(default_factory=dict)  # decode and detect

    def details(self) -> dict:
        """What was found, for details.jsonl: frames sampled and with a face, faces per frame."""
        per_frame = [len(boxes) for boxes in self.boxes_by_frame()]
        return {
            "frames_sampled": len(self.frame_indices),
            "frames_with_face": sum(count > 0 for count in per_frame),
            "faces_per_frame": per_frame,
            "boxes_found": {way: self.found.count(way) for way in ("detected", "retried")},
        }

    def boxes_by_frame(self) -> list[list[list[float]]]:
        grouped: dict[int, list[list[float]]] = {index: [] for index in self.frame_indices}
        for frame, box in zip(self.face_frames, self.boxes, strict=True):
            grouped[frame].append(box)
        return [grouped[index] for index in self.frame_indices]


def sample_indices(frame_count: int, frames: int) -> list[int]:
    """`frames` indices evenly spaced over the video, truncated to int (as the original did)."""
    if frame_count <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, frame_count - 1, frames, endpoint=True)})


def read_sampled_frames(path: Path, frames: int = 32, backend: str = "opencv") -> dict[int, np.ndarray]:
    """{frame index: RGB frame} of `frames` evenly spaced frames; raise when none can be had."""
    indices = sample_indices(probe_video(path, backend).frame_count, frames)
    if not indices:
        raise VideoReadError(path, "the container reports no frames")
    decoded = dict(iter_frames(path, indices, backend))
    if not decoded:
        raise VideoReadError(path, "none of the sampled frames could be decoded")
    return decoded


DARK_MEAN = 60  # a frame whose mean grey level is below this is brightened for the last retry


def brightened(frame: np.ndarray) -> np.ndarray:
    """The frame with a gamma that brings its mean grey level to mid-grey (0.45)."""
    normalised = frame.astype(np.float32) / 255.0
    gamma = np.log(0.45) / np.log(min(max(float(normalised.mean()), 1e-3), 0.99))
    return (np.clip(normalised**gamma, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def detect_with_recall(detector: FaceDetector, frame: np.ndarray, recall: bool) -> tuple[np.ndarray, str]:
    """Boxes of `frame` and how they were found: at the detector's scale ("detected"), or, with
    `recall`, at twice that scale or on a brightened copy of a dark frame ("retried")."""
    boxes = detector.detect(frame).boxes
    if len(boxes) or not recall:
        return boxes, "detected"
    height, width = frame.shape[:2]
    larger = min(2.0, 2 * detector.frame_scale(width, height))
    boxes = detector.detect(frame, larger).boxes
    if not len(boxes) and frame.mean() < DARK_MEAN:
        boxes = detector.detect(brightened(frame), larger).boxes
    return boxes, "retried"


def crop_faces(
    path: Path, decoded: dict[int, np.ndarray], detector: FaceDetector, margin_divisor: int = 3, recall: bool = False
) -> VideoFaces:
    """Every face MTCNN finds in the decoded frames (with the recall boost if `recall`), cropped;
    raise when there is none."""
    faces = VideoFaces(Path(path), sorted(decoded))
    for index in faces.frame_indices:
        frame = decoded[index]
        try:
            boxes, how = detect_with_recall(detector, frame, recall)
        except Exception as error:
            raise DetectionError(f"{path}: face detection failed on frame {index} ({error})") from error
        for box in boxes:
            crop = crop_face(frame, box, margin_divisor)
            if crop.size:
                faces.crops.append(crop)
                faces.face_frames.append(index)
                faces.boxes.append([float(v) for v in box])
                faces.found.append(how)
    if not faces.crops:
        raise NoFaceError(f"{path}: no face found in {len(decoded)} sampled frames")
    return faces


def extract_faces(
    path: Path,
    detector: FaceDetector,
    frames: int = 32,
    backend: str = "opencv",
    margin_divisor: int = 3,
    recall: bool = False,
) -> VideoFaces:
    """Read the sampled frames of `path` and crop every detected face; raise on no frame or face."""
    started = time.perf_counter()
    decoded = read_sampled_frames(path, frames, backend)
    decoded_at = time.perf_counter()
    faces = crop_faces(path, decoded, detector, margin_divisor, recall)
    faces.seconds = {"decode": decoded_at - started, "detect": time.perf_counter() - decoded_at}
    return faces
