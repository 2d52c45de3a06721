"""Faces of a test video: evenly spaced frames, MTCNN boxes, crops with a third of margin.

With the recall boost, a frame where MTCNN finds no face at the chosen scale is tried again at
twice that scale (up to 2x: faces too small for the first try; at the frame's own size where the
first try was at 2x) and, if it is dark, once more on a brightened copy (gamma set so that its
mean comes to mid-grey: faces lost in shadow); a frame still without a face, between frames that
see the same person, gets that person's box interpolated (each box before the gap paired with
one after it at most). Where MTCNN found a face the first time, nothing changes. Past six
faceless frames, only every fourth of them (and the last) is retried, so that a dark video's
retries take a bounded time and the interpolation can still bridge the others.

In fast mode on a CPU, detection is seeded (inference/pipeline/face_tracks.py): every fourth sampled frame
(`SEED_EVERY`) gets MTCNN as exact mode runs it, the frames between only its last two networks on
the boxes of the frames around them; a video of fewer than `MIN_SEEDED_FRAMES` sampled frames gets
the full pyramid on every frame. In fast mode the sampled frames are decoded by
preprocess/sparse_decode.py (the same pixels, the frames no other needs skipped).

Media over the caps of `MediaLimits` (common/video_io.py) is refused from its headers before
a frame is decoded. A judgement on fewer frames than were sampled (a video cut short: its
container states more frames than it holds), or on a JPEG whose end is missing (decoded with its
missing part grey), is flagged as partial: a warning naming the file, and `partial_reason` in
`VideoFaces.details()`.

With predict's --perturb (inference/distortions/frame_perturbation.py), the sampled frames are distorted
before detection, and `VideoFaces.details()` says how (`perturbation`).

On CUDA the sampled frames of a video go through MTCNN in one batch; on a CPU it takes them one by
one, two at a time (batching was no faster there: its resampling, not its calls, is what costs)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from common.video_io import (
    MediaLimits,
    MediaTooLargeError,
    VideoReadError,
    check_header,
    check_media,
    is_image,
    iter_frames,
    jpeg_is_cut,
    probe_video,
)
from inference.distortions.frame_perturbation import FramePerturbation, VideoSource
from inference.pipeline.face_tracks import detect_seeded_frames, interpolated_boxes
from preprocess.faces.crops import crop_face
from preprocess.faces.face_detector import INFERENCE_THRESHOLDS, FaceDetector, shared_pool
from preprocess.sparse_decode import decode_sampled

logger = logging.getLogger(__name__)

DEFAULT_LIMITS = MediaLimits()


class DetectionError(RuntimeError):
    """Face detection failed on a video whose frames decoded."""


class NoFaceError(DetectionError):
    pass


# "seeded": fast mode's frames searched from the boxes around them; "whole frame": faces_are_cropped
FOUND_WAYS = ("detected", "seeded", "retried", "interpolated", "whole frame")
ONLY_WHEN_FOUND = ("seeded", "whole frame")  # in details only where some box was found that way


@dataclass
class VideoFaces:
    """Every face found in the sampled frames, in frame order."""

    path: Path
    frame_indices: list[int]
    crops: list[np.ndarray] = field(default_factory=list)
    face_frames: list[int] = field(default_factory=list)  # frame index of each crop
    boxes: list[list[float]] = field(default_factory=list)
    found: list[str] = field(default_factory=list)  # how each box was found: detected, retried, interpolated
    seconds: dict[str, float] = field(default_factory=dict)  # decode and detect
    # for temporal members: {(clip length, frame step): [Clip, ...]} (inference/pipeline/clips.py)
    clips: dict[tuple[int, int], list] = field(default_factory=dict)
    frames_requested: list[int] | None = None  # the sampled indices asked for (None: those decoded)
    partial_reason: str | None = None  # why the judgement rests on part of the file, where it does
    perturbation: dict | None = None  # the --perturb distortion applied to the frames (frame_perturbation.py)
    identity: dict | None = None  # the file's size, time and first MiB's hash before it was read (file_identity.py)
    # other detectors' reads of the same video, by their face source (inference/pipeline/detector.py)
    views: dict = field(default_factory=dict)

    def details(self) -> dict:
        """What was found, for details.jsonl: frames sampled (requested and decoded) and with a face,
        faces per frame, and whether the file was read only in part."""
        per_frame = [len(boxes) for boxes in self.boxes_by_frame()]
        requested = self.frame_indices if self.frames_requested is None else self.frames_requested
        return {
            "frames_sampled": len(self.frame_indices),
            "frames_requested": len(requested),
            "frames_decoded": len(self.frame_indices),
            "partial": self.partial_reason is not None,
            "partial_reason": self.partial_reason,
            "frames_with_face": sum(count > 0 for count in per_frame),
            "faces_per_frame": per_frame,
            **({"clips": {f"{t}x{step}": len(c) for (t, step), c in self.clips.items()}} if self.clips else {}),
            "boxes_found": {
                way: self.found.count(way) for way in FOUND_WAYS if way not in ONLY_WHEN_FOUND or way in self.found
            },
            **({"perturbation": self.perturbation} if self.perturbation else {}),
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


@dataclass(frozen=True)
class SampledFrames:
    decoded: dict[int, np.ndarray]  # {frame index: RGB frame}
    requested: list[int]  # the indices asked for
    partial_reason: str | None = None
    fps: float = 0.0  # as the container states it (0: none)
    frame_count: int = 0  # as the container states it


def partial_reason(path: Path, requested: list[int], decoded: dict) -> str | None:
    """Why frames decoded from `path` are only part of what it should hold, or None."""
    if len(decoded) < len(requested):
        return f"decoded {len(decoded)} of {len(requested)} sampled frames: the file may be cut"
    if is_image(path) and jpeg_is_cut(path):
        return "the JPEG ends before its end-of-image marker: the file may be cut (its missing part decodes as grey)"
    return None


def sample_frames(
    path: Path,
    frames: int = 32,
    backend: str = "opencv",
    limits: MediaLimits | None = DEFAULT_LIMITS,
    sparse: bool = False,
) -> SampledFrames:
    """`frames` evenly spaced frames of `path`, checked against `limits` (None: unchecked) before
    decoding; raise when none can be had, warn when fewer than requested could. `sparse` (fast
    mode): decoded by preprocess/sparse_decode.py where it can (the same pixels, less decoding),
    else as without it."""
    if sparse and not is_image(path):
        sampled = sparse_sample(Path(path), frames, limits)
        if sampled is not None:
            return sampled
    info = probe_video(path, backend) if limits is None else check_media(path, limits, backend)
    indices = sample_indices(info.frame_count, frames)
    if not indices:
        raise VideoReadError(path, "the container reports no frames")
    decoded = dict(iter_frames(path, indices, backend, limits=limits))
    if not decoded:
        raise VideoReadError(path, "none of the sampled frames could be decoded")
    reason = partial_reason(Path(path), indices, decoded)
    if reason:
        logger.warning("%s: %s", path, reason)
    return SampledFrames(decoded, indices, reason, float(info.fps or 0.0), int(info.frame_count))


def sparse_sample(path: Path, frames: int, limits: MediaLimits | None) -> SampledFrames | None:
    """`sample_frames` by preprocess/sparse_decode.py, or None where it cannot read them all (the
    ordinary reader then reads the video, and says what is wrong with it)."""
    header = check_header(path, limits) if limits is not None else None
    try:
        stated = header.frame_count if header else 0
        read = decode_sampled(path, lambda count: sample_indices(count, frames), limits, stated)
    except MediaTooLargeError:
        raise
    except VideoReadError:
        return None
    if read is None or not read.requested or len(read.frames) < len(read.requested):
        return None
    return SampledFrames(read.frames, read.requested, None, float(header.fps if header else 0.0))


def read_sampled_frames(
    path: Path,
    frames: int = 32,
    backend: str = "opencv",
    limits: MediaLimits | None = DEFAULT_LIMITS,
    sparse: bool = False,
) -> dict[int, np.ndarray]:
    """{frame index: RGB frame} of `frames` evenly spaced frames (`sample_frames`)."""
    return sample_frames(path, frames, backend, limits, sparse).decoded


DARK_MEAN = 60  # a frame whose mean grey level is below this is brightened for the last retry


def brightened(frame: np.ndarray) -> np.ndarray:
    """The frame with a gamma that brings its mean grey level to mid-grey (0.45): through a
    256-entry table, so that a large frame costs one uint8 copy (the mean is reduced in place)."""
    mean = float(frame.mean()) / 255.0
    gamma = np.log(0.45) / np.log(min(max(mean, 1e-3), 0.99))
    table = (np.clip((np.arange(256, dtype=np.float32) / 255.0) ** gamma, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(frame), table)


# Fast mode's key frame interval for seeded detection (inference/pipeline/face_tracks.py): docs/speed.md,
# "Fast mode". Every 4th against every 2nd, on the five sample clips and their 1920x1080 copies with three
# sharp checkpoints: detection (with decoding) 1.0-1.9 s of CPU a 1080p video against 2.4-2.9, and
# the same largest fast-vs-exact differences (one video, a flickering background detection at the
# confident strategy's edge, 0.19 with both; the other 29 pairs within 0.035).
SEED_EVERY = 4
# Fewer sampled frames than this get the full pyramid on every frame, even in fast mode: each
# frame weighs more in the video's score, so a seeded frame's miss moved a 3-frame clip by 0.12
# and an 8-frame reading (--frames 8) by 0.14, where 32 frames stay within 0.035 (docs/speed.md).
MIN_SEEDED_FRAMES = 16
# How faces are found, for resumed runs (inference/prediction/progress.py): a progress file written by another
# revision is not resumed. 2: fast mode's seeded detection and the recall boost's retry cap. 3: key
# frames every 4th sampled frame in fast mode.
DETECTION_REVISION = 3


def inference_detector(scale, device, fast: bool = False) -> FaceDetector:
    """MTCNN as prediction runs it, with the original's thresholds. Fast: seeded detection on a
    CPU (inference/pipeline/face_tracks.py), key frames every `SEED_EVERY` sampled frames."""
    if not fast:
        return FaceDetector(INFERENCE_THRESHOLDS, scale, device=device)
    return FaceDetector(INFERENCE_THRESHOLDS, scale, device=device, seed_every=SEED_EVERY)


MAX_RETRY_SCALE = 2.0


def retry_scale(first: float) -> float:
    """The second try's scale: twice the first, up to 2x; where the first was at 2x already (the
    resolution rule on frames under 300 px), the frame's own size, so that the retry never repeats
    the first pass."""
    larger = min(MAX_RETRY_SCALE, 2 * first)
    return 1.0 if np.isclose(larger, first) else larger


def retry_faceless(detector: FaceDetector, frame: np.ndarray) -> np.ndarray:
    """Boxes of a frame where the detector found none: at `retry_scale`, then, if the frame is
    dark, on a brightened copy; by MTCNN as exact mode runs it in every mode."""
    height, width = frame.shape[:2]
    scale = retry_scale(detector.frame_scale(width, height))
    boxes = detector.detect(frame, scale).boxes
    if not len(boxes) and frame.mean() < DARK_MEAN:
        boxes = detector.detect(brightened(frame), scale).boxes
    return boxes


# Two frames at a time through MTCNN on a CPU: its many small operations leave cores idle, and two
# threads (PyTorch releases the GIL) detected the frames of a 720p video 20% sooner on 2 cores.
CPU_DETECTION_THREADS = 2


def detect_frames(
    detector: FaceDetector,
    frames: list[np.ndarray],
    recall: bool,
    threads: int = CPU_DETECTION_THREADS,
    frame_indices: list[int] | None = None,
) -> list[tuple[np.ndarray, str]]:
    """Boxes of each frame (the sampled frames of one video, in order, at `frame_indices`) and how
    they were found: at the detector's scale ("detected"), or, with `recall`, by `retry_faceless`
    ("retried"). Where the detector seeds (fast mode on a CPU), by seeded detection
    (inference/pipeline/face_tracks.py: "seeded" or "detected"); on CUDA all frames in one batch,
    otherwise `threads` frames at a time."""
    if detector.seed_every and detector.device.type == "cpu":
        indices = list(range(len(frames))) if frame_indices is None else frame_indices
        if len({frame.shape for frame in frames}) == 1 and len(frames) >= MIN_SEEDED_FRAMES:
            first = detect_seeded_frames(detector, frames, indices, detector.seed_every)
        else:  # frames that change size (no seeds across sizes), or too few frames to seed (see MIN_SEEDED_FRAMES)
            first = [(found.boxes, "detected") for found in detector.detect_each(frames)]
    elif detector.device.type == "cuda":
        first = [(detections.boxes, "detected") for detections in detector.detect_batch(frames)]
    else:

        def detect(frame: np.ndarray) -> tuple[np.ndarray, str]:
            return detector.detect(frame).boxes, "detected"

        first = list(map(detect, frames)) if threads == 1 else list(shared_pool(threads, "mtcnn").map(detect, frames))
    retried = set(frames_to_retry([len(boxes) for boxes, _ in first])) if recall else set()
    return [
        (retry_faceless(detector, frame), "retried") if position in retried else found
        for position, (frame, found) in enumerate(zip(frames, first, strict=True))
    ]


# The recall boost retries every faceless frame of a video up to this many; past it, every
# fourth faceless frame and the last, so that the interpolation (which bridges up to three sampled
# frames) can fill the others and the retries take a bounded time: a retry costs about 0.3 s on a
# 720p frame on 2 cores, and a dark clip had 12 faceless frames (3.4 s; now 4 retries).
MAX_RETRIED_FRAMES = 6
RETRY_STEP = 4


def frames_to_retry(faces_per_frame: list[int], limit: int = MAX_RETRIED_FRAMES) -> list[int]:
    """Positions of the faceless frames the recall boost retries: all of them up to `limit`, else
    every `RETRY_STEP`-th of them and the last (at most three faceless frames between two retried
    ones, as the interpolation needs)."""
    faceless = [position for position, count in enumerate(faces_per_frame) if not count]
    if len(faceless) <= limit:
        return faceless
    return sorted({*faceless[::RETRY_STEP], faceless[-1]})


def crop_faces(
    path: Path,
    decoded: dict[int, np.ndarray],
    detector: FaceDetector,
    margin_divisor: int = 3,
    recall: bool = False,
    threads: int = CPU_DETECTION_THREADS,
    faces_are_cropped: bool = False,
) -> VideoFaces:
    """Every face MTCNN finds in the decoded frames, cropped; with the recall boost, also the faces
    found by a second try and those interpolated between frames. With `faces_are_cropped`, each
    frame is a face crop already: no detection, the whole frame is the crop. Raise when there is
    no face."""
    faces = VideoFaces(Path(path), sorted(decoded))
    frames = [decoded[index] for index in faces.frame_indices]
    try:
        if faces_are_cropped:
            found = [(np.array([[0.0, 0.0, f.shape[1], f.shape[0]]]), "whole frame") for f in frames]
        else:
            found = detect_frames(detector, frames, recall, threads, faces.frame_indices)
    except Exception as error:
        raise DetectionError(f"{path}: face detection failed ({error})") from error
    per_frame = [([list(map(float, box)) for box in boxes], how) for boxes, how in found]
    if recall:
        for position, boxes in interpolated_boxes(faces.frame_indices, [b for b, _ in per_frame]).items():
            per_frame[position] = (boxes, "interpolated")
    for index, (boxes, how) in zip(faces.frame_indices, per_frame, strict=True):
        for box in boxes:
            crop = crop_face(decoded[index], box, margin_divisor)
            if crop.size:
                faces.crops.append(crop.copy())  # its own pixels, not a view: the frame is freed once cropped
                faces.face_frames.append(index)
                faces.boxes.append(box)
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
    faces_are_cropped: bool = False,
    limits: MediaLimits | None = DEFAULT_LIMITS,
    perturbation: FramePerturbation | None = None,
    video_id: str | None = None,
    sparse: bool = False,
    sampled: SampledFrames | None = None,
) -> VideoFaces:
    """Read the sampled frames of `path` (refused over `limits` before decoding) and crop every
    detected face (or, with `faces_are_cropped`, take each whole frame); raise on no frame or face.
    With `perturbation`, the sampled frames are distorted first, seeded by `video_id` (the video's
    filename under the folder scored; default its name). `sparse`: fast mode's reader (`sample_frames`).
    `sampled`: `sample_frames` of these arguments, decoded already (inference/pipeline/decode_ahead.py)."""
    started = time.perf_counter()
    if sampled is None:
        sampled = sample_frames(path, frames, backend, limits, sparse)
    decoded, applied = sampled.decoded, None
    decoded_at = time.perf_counter()
    if perturbation is not None:
        source = VideoSource(lambda indices: iter_frames(path, indices, backend, limits=limits), sampled.frame_count)
        decoded, applied = perturbation.apply(decoded, video_id or Path(path).name, sampled.fps, source)
    perturbed_at = time.perf_counter()
    faces = crop_faces(path, decoded, detector, margin_divisor, recall, faces_are_cropped=faces_are_cropped)
    faces.frames_requested, faces.partial_reason = sampled.requested, sampled.partial_reason
    faces.perturbation = applied
    faces.seconds = {"decode": decoded_at - started, "detect": time.perf_counter() - perturbed_at}
    if perturbation is not None:
        faces.seconds["perturb"] = perturbed_at - decoded_at
    return faces
