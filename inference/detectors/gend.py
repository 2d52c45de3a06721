"""GenD (yermandy/GenD, WACV 2026) as a detector of the detector interface (inference/pipeline/detector.py):
the paper's evaluation pipeline (detector.py with the README's command `-m at_least -n 32 -s 1.3
--target_size none`, then run_exp.py's test: the mean of the frames' probabilities per video), not
their web demo (app/run.py: every face of every frame of a stride, their mean, 0.0 without a face).

- Frames: every frame of the video, in the farthest-first order from the middle frame
  (gend_crops.farthest_first_order), until 32 have a face; the frame count is PyAV's, as the
  authors' `imageio.improps(..., plugin="pyav")` gives it, and the frames are decoded by PyAV.
- Faces: the largest of each frame, aligned by its 5 landmarks to GenD's template at scale 1.3
  (gend_crops.align_face); each crop is S x S, S following the face's size.
- Model: CLIP ViT-L/14's pooled features, L2-normalised, Linear(1024, 2) (gend_model.py), on CLIP's
  preprocessing (gend_crops.clip_input); p_fake = softmax[:, 1]; a video is the mean over its frames.
- Face finder: where the user has placed insightface's `det_10g.onnx` (SCRFD-10GF, the authors'
  finder; non-commercial research use only) beside model.safetensors and onnxruntime is installed
  (not a requirement: `pip install onnxruntime`), SCRFD finds the faces as the authors' wrapper does
  (640 x 640 letterbox, score >= 0.1, NMS 0.4, 5 keypoints: inference/detectors/gend_scrfd.py);
  `load_detector(..., scrfd=PATH)` names a file elsewhere. Otherwise the run's MTCNN finds them,
  with a warning naming the placed file and why it is not used.

Where this differs from the authors' pipeline:
- Without SCRFD placed, the face finder is the run's MTCNN (boxes and 5 landmarks, its own
  thresholds and detection scale): the landmarks are the same five points but not at the same
  pixels, so the crops differ by a few pixels, and a frame where one finder sees a face and the
  other none changes which 32 frames are used. With SCRFD, a frame its network fails on ends the
  read with that error, where the authors' loop prints it and skips the frame.
- The authors try every frame until 32 have a face; here at most `FaceFrames.max_tried` (4 x 32)
  are tried, so that a video without faces costs a bounded time: a video with a face in fewer than
  32 of its first 128 frames in that order is scored on those it has.
- A video with no face at all is a video without faces, as for the project's read (NoFaceError):
  predict gives it the run's default score (0.5) with an error row, detect says it could not judge
  it (the authors' evaluation has no crops for it and leaves it out; their demo gives 0.0); beside
  another detector's read, its models score the default and the video stands on the other's faces.
- Test-time flips (--tta) are not GenD's and are not applied; --per-person is not either (one face
  per frame).
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
from common.video_io import check_media, iter_frames
from inference.detectors.gend_crops import (
    ALIGN_SCALE,
    FRAMES,
    align_face,
    clip_input,
    farthest_first_order,
    largest_face,
)
from inference.detectors.gend_model import GenDModel, load_model
from inference.detectors.gend_scrfd import FILE_NAME as SCRFD_FILE
from inference.detectors.gend_scrfd import check_scrfd, scrfd_detections
from inference.detectors.placed_finders import placed_finder
from inference.models.model_options import media_limits
from inference.pipeline.detector import Detector, FaceSource, Run
from inference.pipeline.faces import NoFaceError, VideoFaces, partial_reason

logger = logging.getLogger(__name__)

NAME = "gend"
TRIED_PER_FACE_FRAME = 4  # at most 4 x 32 frames are tried (see the module's docstring)
COUNT_BACKEND = "pyav"  # the authors count and decode frames with imageio's PyAV plugin


def detect_faces(mtcnn, frames: list[np.ndarray]):
    """The run's MTCNN on frames of one video: all at once on CUDA, else each alone (two at a time)."""
    if not frames:
        return []
    return mtcnn.detect_batch(frames) if mtcnn.device.type == "cuda" else mtcnn.detect_each(frames)


@dataclass(frozen=True)
class FaceFrames(FaceSource):
    """GenD's read of a video: the first `frames` frames in farthest-first order that have a face,
    the largest face of each aligned at `scale` (trying at most `max_tried` frames; 0: every frame);
    faces found by the run's MTCNN, or, given `scrfd` (the path of det_10g.onnx), by SCRFD as the
    authors find them (inference/detectors/gend_scrfd.py)."""

    name: str = NAME
    frames: int = FRAMES
    scale: float = ALIGN_SCALE
    max_tried: int = TRIED_PER_FACE_FRAME * FRAMES
    scrfd: str | None = None

    def find(self, mtcnn, frames: list[np.ndarray]):
        """Each frame's faces (FaceDetections): SCRFD's where the user placed it, else the run's MTCNN's."""
        if self.scrfd is None:
            return detect_faces(mtcnn, frames)
        return scrfd_detections(frames, self.scrfd, getattr(mtcnn, "device", None))

    def read(self, path: Path, mtcnn, args) -> VideoFaces:
        started = time.perf_counter()
        path, limits = Path(path), media_limits(args)
        order = farthest_first_order(check_media(path, limits, COUNT_BACKEND).frame_count)
        if self.max_tried:
            order = order[: self.max_tried]
        kept: list[tuple[int, np.ndarray, list[float]]] = []  # (frame, crop, box)
        decode_seconds, requested, examined = 0.0, [], []  # asked for / decoded and looked at, in order
        for start in range(0, len(order), self.frames):
            if len(kept) >= self.frames:
                break
            chunk = order[start : start + self.frames]
            decoding = time.perf_counter()
            decoded = dict(iter_frames(path, chunk, COUNT_BACKEND, limits=limits))
            decode_seconds += time.perf_counter() - decoding
            readable = [index for index in chunk if index in decoded]  # a frame that does not decode is skipped
            found_in = dict(zip(readable, self.find(mtcnn, [decoded[i] for i in readable]), strict=True))
            for index in chunk:
                if len(kept) >= self.frames:
                    break
                requested.append(index)
                if index not in found_in:
                    continue
                examined.append(index)
                face = self.face(decoded[index], found_in[index])
                if face is not None:
                    kept.append((index, *face))
        kept.sort(key=lambda entry: entry[0])
        faces = VideoFaces(path, sorted(examined), frames_requested=sorted(requested))
        faces.partial_reason = partial_reason(path, requested, examined)
        for index, crop, box in kept:
            faces.crops.append(crop)
            faces.face_frames.append(index)
            faces.boxes.append(box)
            faces.found.append("detected")
        faces.seconds = {"decode": decode_seconds, "detect": time.perf_counter() - started - decode_seconds}
        if not kept:
            raise NoFaceError(f"{path}: no face found in {len(examined)} frames tried (GenD's read)")
        return faces

    def face(self, frame: np.ndarray, found) -> tuple[np.ndarray, list[float]] | None:
        """The largest face of a frame, aligned, with its box; None where there is none (or its
        landmarks give no alignment)."""
        if not len(found.boxes):
            return None
        chosen = largest_face(found.boxes)
        crop = align_face(frame, found.landmarks[chosen], self.scale)
        return None if crop is None else (crop, [float(v) for v in found.boxes[chosen]])


GEND_FACES = FaceFrames()


class GenDDetector(Detector):
    """GenD's models (usually one) on GenD's read of each video; a model's score is the mean of its
    frames' probabilities."""

    name = NAME
    aggregation = "mean"

    def __init__(self, models: Sequence[GenDModel], source: FaceFrames = GEND_FACES):
        self.models = list(models)
        self.source = source

    def probabilities(self, videos: list[VideoFaces], run: Run) -> list[list[np.ndarray]]:
        crops = [crop for faces in videos for crop in faces.crops]
        bounds = np.cumsum([0] + [len(faces.crops) for faces in videos])
        per_model = [model_probabilities(model, crops, run) for model in self.models]
        return [[p[bounds[i] : bounds[i + 1]] for p in per_model] for i in range(len(videos))]

    def aggregate(self, probabilities) -> float:
        return float(np.mean(probabilities))


def model_probabilities(model: GenDModel, crops: list[np.ndarray], run: Run) -> np.ndarray:
    """p_fake (softmax[:, 1]) of each crop, in batches of `run.batch_size` on `run.device`."""
    results = []
    for start in range(0, len(crops), run.batch_size):
        batch = torch.from_numpy(np.stack([clip_input(crop) for crop in crops[start : start + run.batch_size]]))
        with torch.inference_mode():
            with torch.autocast(
                run.device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None
            ):
                logits = model(batch.to(run.device))
            results.append(logits.float().softmax(dim=1)[:, 1].cpu())
    return torch.cat(results).numpy() if results else np.zeros(0, np.float32)


def load_detector(
    paths: Sequence[Path],
    weights: Sequence[float],
    device: torch.device,
    precision: str = "f32",
    scrfd: str | Path | None = None,
) -> GenDDetector:
    """GenD's detector with the models of `paths` (model.safetensors in the authors' format), each
    with its weight. The weights stay float32: a lower precision is the run's autocast (Run.amp_dtype).
    Faces by SCRFD with `scrfd` (by default det_10g.onnx where the user placed it beside the models,
    inference/detectors/placed_finders.py), else by the run's MTCNN; `scrfd` named but unusable is an
    InputError."""
    if len(paths) != len(weights):
        raise InputError(f"GenD: {len(paths)} model files but {len(weights)} weights")
    if scrfd is not None:
        check_scrfd(scrfd, device)
    else:
        scrfd = placed_finder(paths, (SCRFD_FILE,), "SCRFD-10GF", lambda path: check_scrfd(path, device))
    logger.debug("GenD models in %s, precision %s (autocast only)", device, precision)
    models = [load_model(Path(path), weight, device) for path, weight in zip(paths, weights, strict=True)]
    return GenDDetector(models, FaceFrames(scrfd=None if scrfd is None else str(scrfd)))
