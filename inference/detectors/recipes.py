"""The two recipes of the detector interface (inference/pipeline/detector.py) that the project has
had from its start.

`WinnerRecipe`, the DFDC winner's: the project's read (32 evenly spaced frames, MTCNN, each face
cropped with a third of margin), each crop resized isotropically and centred on a black square at
the model's size and normalised with its mean and std (inference/models/ensemble.py), every face
scored by every frame model, a model's faces aggregated by --strategy (`confident`, the winner's;
per person with --per-person), the models averaged by their weights.

`TemporalRecipe`: temporal models (a checkpoint with clips, inference/pipeline/clips.py) score
clips of T crops of one face track, read with the project's faces; a model's clips are aggregated
by the same strategy (per track with --per-person), and a video without a clip gets the run's
default score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from inference.models.ensemble import Member, face_probabilities
from inference.models.heatmaps import face_heatmaps
from inference.pipeline.aggregate import STRATEGIES
from inference.pipeline.clips import clip_probabilities
from inference.pipeline.detector import Detector, Run
from inference.pipeline.faces import VideoFaces
from preprocess.faces.tracks import link_people


class WinnerRecipe(Detector):
    """The DFDC winner's recipe with `members` (frame models) and frame aggregation `strategy`."""

    name = "dfdc-winner"

    def __init__(self, members: Sequence[Member], strategy: str = "confident"):
        self.models = list(members)
        self.aggregation = strategy
        self._aggregate = STRATEGIES[strategy]

    def probabilities(self, videos: list[VideoFaces], run: Run) -> list[list[np.ndarray]]:
        crops = [crop for faces in videos for crop in faces.crops]
        bounds = np.cumsum([0] + [len(faces.crops) for faces in videos])
        per_model = [
            face_probabilities(member, crops, run.device, run.batch_size, run.amp_dtype, run.tta)
            for member in self.models
        ]
        return [[p[bounds[i] : bounds[i + 1]] for p in per_model] for i in range(len(videos))]

    def aggregate(self, probabilities) -> float:
        return self._aggregate(probabilities)

    def people(self, faces: VideoFaces, model) -> list[int]:
        return [person for frame in link_people(faces.boxes_by_frame()) for person in frame]

    def heatmaps(self, crops: list[np.ndarray], device: torch.device) -> list[np.ndarray]:
        """Grad-CAM of each frame model toward "fake", averaged by the models' weights."""
        return face_heatmaps(self.models, crops, device)


class TemporalRecipe(Detector):
    """Temporal `members` (each with its clip window) with clip aggregation `strategy`."""

    name = "temporal"
    scores_faces = False

    def __init__(self, members: Sequence[Member], strategy: str = "confident"):
        self.models = list(members)
        self.clip_windows = frozenset(member.clip for member in self.models)
        self.aggregation = strategy
        self._aggregate = STRATEGIES[strategy]

    def probabilities(self, videos: list[VideoFaces], run: Run) -> list[list[np.ndarray]]:
        return [
            [
                clip_probabilities(member, [clip.crops for clip in clips], run.device)
                if (clips := faces.clips.get(member.clip, []))
                else np.zeros(0, np.float32)
                for member in self.models
            ]
            for faces in videos
        ]

    def aggregate(self, probabilities) -> float:
        return self._aggregate(probabilities)

    def people(self, faces: VideoFaces, model) -> list[int]:
        return [clip.track for clip in faces.clips.get(model.clip, [])]

    def unit_frames(self, faces: VideoFaces, model) -> list[int]:
        return [clip.last_frame for clip in faces.clips.get(model.clip, [])]
