"""DeepfakeBench's Xception and EfficientNet-B4 (SCLBD/DeepfakeBench, release v1.0.1 weights
`xception_best.pth` and `effnb4_best.pth`, CC BY-NC 4.0) as a detector of the detector interface
(inference/pipeline/detector.py), reading and scoring a video as the authors' code does:

- frames: 32 indices by `np.linspace(0, count - 1, 32, dtype=int)` over the container's stated frame
  count, a repeated index read once (preprocessing/preprocess.py, mode fixed_num_frames), decoded in
  order (inference/pipeline/faces.py `sample_frames`, the same rule);
- faces: the largest face of each frame (dlib's `max` by area), its five landmarks aligned to the
  ArcFace template at 256 px and scale 1.3 by a similarity transform (scikit-image) and warped by
  `cv2.warpAffine` (inference/detectors/deepfakebench_crops.py); a frame without a face is skipped;
- input (RGB / 255 - 0.5) / 0.5 at 256 px, p(fake) = softmax[:, 1] (inference/detectors/deepfakebench_model.py);
- video: the mean of its frames' probabilities (the video-level metric at the authors' HEAD,
  training/metrics/utils.py; v1.0.1 reports frame-level AUC only).

One detector serves both checkpoints, and both together: a file's keys say which model it is.

Differences from the authors' pipeline:
- face finder: the run's MTCNN (facenet-pytorch, at the run's --detector-scale) instead of dlib's
  HOG detector (upsampled once) and 81-point shape predictor, unless the user has dlib and places the
  predictor file (`dlib_predictor`: then the authors' finder, inference/detectors/deepfakebench_dlib.py).
  MTCNN's largest box picks the face; MTCNN's five points go where dlib's points 37, 44, 30, 49, 55
  went. Those are not the same points: dlib's 37 and 44 are upper-eyelid points where MTCNN gives
  the eye centres, and 49 and 55 lie inside the mouth corners MTCNN gives, so the similarity fitted
  to the same template places the face differently in the crop. Measured once (2026-12-07) against
  dlib 20.0.1's HOG detector and its 68-point predictor (the 81-point model's first 68 points follow
  the same scheme; the 81-point file itself could not be had here), where both found the same
  largest face: on 7 photos of ../shared/data/faces, MTCNN's crop is scaled 0.95-1.05 times dlib's,
  turned by 1.7 degrees on average (3.9 at most), its centre 2.7 px away on average (6.6 at most) of
  256, a point of the crop moving 7 px on average (20 at most); on 32 frames of the five sample
  clips, scale up to 1.13, 2.9 degrees on average (6.2 at most), centre 3.4 px (11.4), points 10 px
  (33); the face sits 2.6 px higher on average (MTCNN's eyes are 3.5 px below dlib's eyelid points).
  The effect on the released models' scores could not be measured (no real weights here).
- the authors' preprocessing runs dlib a second time on each crop, only to store landmarks, and at
  v1.0.1 a crop where it finds none ends the video's preprocessing (its later frames are lost):
  not reproduced (every frame with a face is kept).
- a video with no face in its 32 frames has no frame to score in the authors' code (no score at
  all): here its read raises NoFaceError, as the project's own read does, so that predict scores
  it the run's default score (--default-score, 0.5) with an error row saying so, and detect
  reports it as a file it could not judge; beside another detector's read (an ensemble with the
  winner), its models score the default and the video stands on the other's faces.
- frames are decoded by the project's reader (OpenCV by default: the authors' decoder);
  --tta (a horizontal flip) is not applied: the authors test without augmentation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.cli import InputError
from inference.detectors.deepfakebench_crops import CROP_SIZE, align_face, largest_face
from inference.detectors.deepfakebench_dlib import PREDICTOR_FILE, check_predictor, dlib_detections
from inference.detectors.deepfakebench_model import DeepfakeBenchModel, face_tensor, load_model
from inference.detectors.placed_finders import placed_finder
from inference.models.model_options import media_limits
from inference.pipeline.detector import Detector, FaceSource, Run
from inference.pipeline.faces import NoFaceError, VideoFaces, sample_frames
from preprocess.faces.face_detector import FaceDetections, FaceDetector
from preprocess.faces.tracks import link_people

logger = logging.getLogger(__name__)

NAME = "deepfakebench"
FRAMES = 32  # preprocessing/config.yaml num_frames, and the test loader's frame_num['test']


def aligned_faces(path: Path, decoded: dict[int, np.ndarray], detections: Sequence[FaceDetections]) -> VideoFaces:
    """The authors' crops of decoded frames ({index: RGB frame}, each with its detections, in index
    order): the largest face of each frame aligned on its landmarks; frames without one skipped."""
    faces = VideoFaces(Path(path), sorted(decoded))
    for index, found in zip(faces.frame_indices, detections, strict=True):
        chosen = largest_face(found.boxes)
        if chosen is None:
            continue
        crop = align_face(decoded[index], found.landmarks[chosen], CROP_SIZE)
        if crop is None:  # landmarks from which no similarity can be estimated
            continue
        faces.crops.append(crop)
        faces.face_frames.append(index)
        faces.boxes.append([float(value) for value in found.boxes[chosen]])
        faces.found.append("detected")
    return faces


def detect_faces(mtcnn: FaceDetector, frames: list[np.ndarray]) -> list[FaceDetections]:
    """MTCNN's boxes and landmarks of each frame, as exact mode detects them (one batch on CUDA)."""
    if mtcnn.device.type == "cuda" and len({frame.shape for frame in frames}) == 1:
        return mtcnn.detect_batch(frames)
    return mtcnn.detect_each(frames)


@dataclass(frozen=True)
class DeepfakeBenchFaces(FaceSource):
    """DeepfakeBench's read of a video: `frames` linspace frames, the largest face of each aligned;
    faces and landmarks by the run's MTCNN, or, given `dlib_predictor` (a shape predictor file: the
    authors' 81-point one), by dlib as the authors find them (inference/detectors/deepfakebench_dlib.py)."""

    name: str = NAME
    frames: int = FRAMES
    dlib_predictor: str | None = None

    def read(self, path: Path, mtcnn: FaceDetector, args) -> VideoFaces:
        started = time.perf_counter()
        sampled = sample_frames(path, self.frames, getattr(args, "video_backend", "opencv"), media_limits(args))
        decoded_at = time.perf_counter()
        frames = [sampled.decoded[index] for index in sorted(sampled.decoded)]
        if self.dlib_predictor:
            detections = dlib_detections(frames, self.dlib_predictor)
        else:
            detections = detect_faces(mtcnn, frames)
        faces = aligned_faces(path, sampled.decoded, detections)
        faces.frames_requested, faces.partial_reason = sampled.requested, sampled.partial_reason
        faces.seconds = {"decode": decoded_at - started, "detect": time.perf_counter() - decoded_at}
        if not faces.crops:
            raise NoFaceError(f"{path}: no face found in {len(frames)} sampled frames (DeepfakeBench's read)")
        return faces


def model_probabilities(model: DeepfakeBenchModel, crops: Sequence[np.ndarray], run: Run) -> np.ndarray:
    """p(fake) of each crop by `model`, `run.batch_size` crops at a time on `run.device`, under
    autocast only where the run sets a type."""
    found = []
    for start in range(0, len(crops), max(1, run.batch_size)):
        batch = face_tensor(np.stack(crops[start : start + run.batch_size])).to(run.device)
        with torch.inference_mode(), torch.autocast(run.device.type, run.amp_dtype, enabled=run.amp_dtype is not None):
            logits = model.network(batch)
        found.append(logits.float().softmax(1)[:, 1].cpu().numpy())
    return np.concatenate(found) if found else np.zeros(0, np.float32)


class DeepfakeBenchDetector(Detector):
    """DeepfakeBench's recipe with its released `models` (Xception and/or EfficientNet-B4)."""

    name = NAME
    aggregation = "mean"

    def __init__(self, models: Sequence[DeepfakeBenchModel], source: DeepfakeBenchFaces | None = None):
        self.models = list(models)
        self.source = source if source is not None else DeepfakeBenchFaces()

    def probabilities(self, videos: list[VideoFaces], run: Run) -> list[list[np.ndarray]]:
        crops = [crop for faces in videos for crop in faces.crops]
        bounds = np.cumsum([0] + [len(faces.crops) for faces in videos])
        per_model = [model_probabilities(model, crops, run) for model in self.models]
        return [[p[bounds[i] : bounds[i + 1]] for p in per_model] for i in range(len(videos))]

    def aggregate(self, probabilities: Sequence[float]) -> float:
        return float(np.mean(probabilities))

    def people(self, faces: VideoFaces, model) -> list[int]:
        return [person for frame in link_people(faces.boxes_by_frame()) for person in frame]


def load_detector(
    paths: Sequence[Path],
    weights: Sequence[float],
    device: torch.device,
    precision: str = "f32",
    dlib_predictor: str | Path | None = None,
) -> DeepfakeBenchDetector:
    """DeepfakeBench's detector with the checkpoints at `paths` (the authors' files, either model),
    weighted by `weights`, on `device`; faces by the run's MTCNN, or by dlib with `dlib_predictor` (by
    default the authors' predictor file found beside the checkpoints, inference/detectors/placed_finders.py).
    `precision` is the run's (its autocast type reaches `probabilities` through the Run); the
    weights stay fp32. A malformed file, or dlib asked for and missing, is an InputError."""
    if len(paths) != len(weights):
        raise InputError(f"{NAME}: {len(paths)} checkpoints but {len(weights)} weights")
    if dlib_predictor is not None:
        check_predictor(dlib_predictor)
    else:
        dlib_predictor = placed_finder(paths, (PREDICTOR_FILE,), "dlib's 81-point shape predictor", check_predictor)
    models = [load_model(path, weight, device) for path, weight in zip(paths, weights, strict=True)]
    for model in models:
        logger.info(
            "model %s: DeepfakeBench %s at %d px, weight %g", model.name, model.encoder, model.input_size, model.weight
        )
    source = DeepfakeBenchFaces(dlib_predictor=None if dlib_predictor is None else str(dlib_predictor))
    return DeepfakeBenchDetector(models, source)
