"""Faces of a test video: evenly spaced frames, MTCNN boxes, crops with a third of margin."""

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
    seconds: dict[str, float] = field(default_factory=dict)  # decode and detect

    def details(self) -> dict:
        """What was found, for details.jsonl: frames sampled and with a face, faces per frame."""
        per_frame = [len(boxes) for boxes in self.boxes_by_frame()]
        return {
            "frames_sampled": len(self.frame_indices),
            "frames_with_face": sum(count > 0 for count in per_frame),
            "faces_per_frame": per_frame,
            "boxes_found": {"detected": len(self.boxes)},
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


def crop_faces(
    path: Path, decoded: dict[int, np.ndarray], detector: FaceDetector, margin_divisor: int = 3
) -> VideoFaces:
    """Every face MTCNN finds in the decoded frames, cropped; raise when there is none."""
    faces = VideoFaces(Path(path), sorted(decoded))
    for index in faces.frame_indices:
        frame = decoded[index]
        try:
            boxes = detector.detect(frame).boxes
        except Exception as error:
            raise DetectionError(f"{path}: face detection failed on frame {index} ({error})") from error
        for box in boxes:
            crop = crop_face(frame, box, margin_divisor)
            if crop.size:
                faces.crops.append(crop)
                faces.face_frames.append(index)
                faces.boxes.append([float(v) for v in box])
    if not faces.crops:
        raise NoFaceError(f"{path}: no face found in {len(decoded)} sampled frames")
    return faces


def extract_faces(
    path: Path, detector: FaceDetector, frames: int = 32, backend: str = "opencv", margin_divisor: int = 3
) -> VideoFaces:
    """Read the sampled frames of `path` and crop every detected face; raise on no frame or face."""
    started = time.perf_counter()
    decoded = read_sampled_frames(path, frames, backend)
    decoded_at = time.perf_counter()
    faces = crop_faces(path, decoded, detector, margin_divisor)
    faces.seconds = {"decode": decoded_at - started, "detect": time.perf_counter() - decoded_at}
    return faces
