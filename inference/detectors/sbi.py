"""Self-Blended Images (Shiohara and Yamasaki, CVPR 2022; mapooon/SelfBlendedImages) as a detector
of the detector interface (inference/pipeline/detector.py), scoring as the authors' inference code
does (src/inference/inference_video.py and inference_dataset.py, which gave their published AUCs):

- frames: `np.linspace(0, n - 1, 32, dtype=int)` over the container's stated frame count `n`
  (OpenCV's CAP_PROP_FRAME_COUNT, as theirs: the project's `sample_frames` with the OpenCV backend;
  with --video-backend pyav, PyAV's stated count), each index once (a video of fewer than 32
  frames gives each of its frames once), RGB;
- faces: every face with a box of at least half the largest's area, each cropped with their
  margin and int rule, not square, resized to 380 x 380 (inference/detectors/sbi_crops.py);
- model: their EfficientNet-B4 (inference/detectors/sbi_model.py) on RGB / 255, p(fake) =
  softmax[:, 1];
- a frame's score is its most fake face's, the video's the mean over the frames with a face;
- a photo as their inference_image.py reads one: every face (no half-area rule), the most fake
  scoring it, and RetinaFace (where placed) at the photo's own size rather than 2048.

Where this differs from theirs:
- the face finder: the run's MTCNN (facenet-pytorch, at the run's --detector-scale) instead of
  RetinaFace R50 (ternaus/retinaface, frames upscaled to 2048 on the long side, score > 0.7).
  MTCNN's boxes go through RetinaFace's own output rule (a box whose clipped extent is
  degenerate is dropped; the others are kept unclipped, rounded to 0.01) and then through
  SBI's rules. The two finders were trained on different box conventions, so the crops are not
  the pixels RetinaFace's boxes would give: the difference in score was not measured (no
  RetinaFace weights here). Where the user places their RetinaFace weights (and its package,
  installed with --no-deps: inference/detectors/sbi_retinaface.py), `load_detector(...,
  retinaface=PATH)` finds the faces with it, as theirs does, but with this project's
  albumentations 2.x resizing frames to 2048 where theirs pinned 1.0.0;
- a frame that cannot be read ends the reading, and the frames read so far are scored (theirs
  raises there: the video scores 0.5 in their dataset script and crashes their video script);
- in fast mode (--fast), the project's fast reading and seeded MTCNN (the classifier is the same);
- their faces go through the model in one batch, here `run.batch_size` at a time (the same
  scores: batch norm in eval mode); --tta (a horizontal flip) is not applied: they test without;
- a video with no face in any frame: their dataset script scores it 0.5 (their model raises on an
  empty batch, and the script catches every error). Here its read raises NoFaceError, as the
  project's own read does, so that predict scores it the run's --default-score (0.5 by default)
  with an error row saying so, and detect reports a file it could not judge; beside another
  detector's read (an ensemble with the winner), its models score the default and the video
  stands on the other's faces.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.cli import InputError
from common.video_io import is_image
from inference.detectors import sbi_crops, sbi_retinaface
from inference.detectors.placed_finders import placed_finder
from inference.detectors.sbi_model import SbiModel, grad_cam, load_model
from inference.models.model_options import media_limits
from inference.pipeline.detector import Detector, FaceSource, Run
from inference.pipeline.faces import DetectionError, NoFaceError, VideoFaces, detect_frames, sample_frames
from preprocess.faces.tracks import link_people

NAME = "sbi"
FRAMES = 32  # their `-n` default (inference_video.py, inference_dataset.py)


@dataclass(frozen=True)
class SbiFaces(FaceSource):
    """SBI's read of a video: `frames` linspace frames, the run's MTCNN boxes (or, with `retinaface`,
    the path of their RetinaFace weights, that finder's at `finder_size`) through SBI's face
    selection and crop rule (inference/detectors/sbi_crops.py), 380 x 380 uint8 RGB crops."""

    name: str = NAME
    frames: int = FRAMES
    size: int = sbi_crops.INPUT_SIZE
    retinaface: str | None = None
    finder_size: int = sbi_retinaface.MAX_SIZE

    def boxes(
        self, frames: list[np.ndarray], indices: list[int], mtcnn, photo: bool = False
    ) -> list[tuple[np.ndarray, str]]:
        """Each frame's boxes and how they were found: RetinaFace's where the user placed it, else
        the run's MTCNN as exact (or fast) mode runs it, without the recall boost."""
        if self.retinaface is None:
            return detect_frames(mtcnn, frames, recall=False, frame_indices=indices)
        found = []
        for frame in frames:  # a photo at its own size (their inference_image.py), video frames at finder_size
            size = max(frame.shape) if photo else self.finder_size
            finder = sbi_retinaface.retinaface(self.retinaface, mtcnn.device, size)
            found.append((sbi_retinaface.finder_boxes(finder, frame), "detected"))
        return found

    def read(self, path: Path, mtcnn, args) -> VideoFaces:
        started = time.perf_counter()
        backend, fast = getattr(args, "video_backend", "opencv"), bool(getattr(args, "fast", False))
        sampled = sample_frames(path, self.frames, backend, media_limits(args), sparse=fast)
        decoded_at = time.perf_counter()
        faces, photo = VideoFaces(Path(path), sorted(sampled.decoded)), is_image(path)
        frames = [sampled.decoded[index] for index in faces.frame_indices]
        try:
            found = self.boxes(frames, faces.frame_indices, mtcnn, photo)
        except InputError:
            raise
        except Exception as error:
            raise DetectionError(f"{path}: face detection failed ({error})") from error
        for index, frame, (detected, how) in zip(faces.frame_indices, frames, found, strict=True):
            detected = np.asarray(detected, np.float64 if self.retinaface else np.float32).reshape(-1, 4)
            boxes, crops = sbi_crops.frame_faces(frame, detected, self.size, self.retinaface is not None, photo)
            faces.crops += crops
            faces.boxes += boxes
            faces.face_frames += [index] * len(crops)
            faces.found += [how] * len(crops)
        faces.frames_requested, faces.partial_reason = sampled.requested, sampled.partial_reason
        faces.seconds = {"decode": decoded_at - started, "detect": time.perf_counter() - decoded_at}
        if not faces.crops:
            raise NoFaceError(f"{path}: no face found in {len(frames)} sampled frames (SBI's read)")
        return faces


def frame_maxima(probabilities: np.ndarray, face_frames: Sequence[int]) -> np.ndarray:
    """Each frame's most fake face, frames in the order they come (theirs groups consecutive faces
    of one frame: the faces come frame by frame)."""
    maxima: dict[int, float] = {}
    for frame, probability in zip(face_frames, probabilities, strict=True):
        maxima[frame] = max(maxima.get(frame, -np.inf), float(probability))
    return np.array(list(maxima.values()), np.float64)


class SbiDetector(Detector):
    """SBI's recipe with its checkpoints (`models`: SbiModel, each with its weight)."""

    name = NAME
    aggregation = "mean of each frame's most fake face"

    def __init__(self, models: Sequence[SbiModel], source: SbiFaces | None = None):
        self.models = list(models)
        self.source = source or SbiFaces()

    def probabilities(self, videos: list[VideoFaces], run: Run) -> list[list[np.ndarray]]:
        crops = [crop for faces in videos for crop in faces.crops]
        bounds = np.cumsum([0] + [len(faces.crops) for faces in videos])
        per_model = [
            model.probabilities(crops, run.device, run.batch_size, run.amp_dtype).numpy() for model in self.models
        ]
        return [[p[bounds[i] : bounds[i + 1]] for p in per_model] for i in range(len(videos))]

    def aggregate(self, probabilities) -> float:
        """The mean over units that are one face a frame (one person's faces, with --per-person):
        SBI's rule where no frame has two faces; `model_score` applies it over frames."""
        return float(np.mean(probabilities))

    def model_score(self, model, probabilities: np.ndarray, faces: VideoFaces, run: Run) -> float:
        """Their video score: the mean over frames of each frame's most fake face (per person with
        --per-person, the most fake person's mean); the run's default score without a face."""
        if not len(probabilities):
            return run.default_score
        if run.per_person:
            return super().model_score(model, probabilities, faces, run)
        return float(frame_maxima(probabilities, faces.face_frames).mean())

    def people(self, faces: VideoFaces, model) -> list[int]:
        return [person for frame in link_people(faces.boxes_by_frame()) for person in frame]

    def heatmaps(self, crops: list[np.ndarray], device: torch.device) -> list[np.ndarray]:
        """Grad-CAM of each model's fake logit on SBI's own input, averaged by the models' weights."""
        return grad_cam(self.models, crops, device)


def load_detector(
    paths: Sequence[Path],
    weights: Sequence[float],
    device: torch.device,
    precision: str = "f32",
    retinaface: Path | None = None,
) -> SbiDetector:
    """SBI's detector with the checkpoints `paths` in the authors' format (FFraw.tar, FFc23.tar, or
    one trained by their code), weighted by `weights`; with `retinaface` (their face finder's weights,
    placed by the user: by default the release zip found beside the checkpoints,
    inference/detectors/placed_finders.py), faces found by it rather than by the run's MTCNN (loaded now, so that a
    missing package or a wrong file stops the run before any video). PyTorch runs the models:
    `precision` is the run's autocast (Run.amp_dtype), not a compiled model's."""
    if len(paths) != len(weights):
        raise InputError(f"SBI: {len(paths)} checkpoints but {len(weights)} weights")
    if retinaface is not None:
        sbi_retinaface.retinaface(retinaface, device)
    else:
        retinaface = placed_finder(
            paths, sbi_retinaface.FILE_NAMES, "RetinaFace R50", lambda path: sbi_retinaface.retinaface(path, device)
        )
    models = [load_model(path, device, weight) for path, weight in zip(paths, weights, strict=True)]
    return SbiDetector(models, SbiFaces(retinaface=None if retinaface is None else str(retinaface)))
