"""The detector interface: what a detection recipe is, and the ensemble of the recipes a run uses.

A `Detector` says
- what it reads of a video (`source`: how frames are sampled, how faces are found and cropped;
  `clip_windows`: the clips of face tracks a temporal model scores, read with the faces);
- which models score it (`models`: each with a `name` and a `weight`; `scores_faces` when its units
  are the faces of its source, from which people, frames and heatmaps are shown);
- how it scores a batch of videos (`probabilities`: per video, per model, each unit's probability
  of fake; a unit is a face, or a clip), normalising crops its own way;
- how a model's unit probabilities become the model's score of the video (`aggregate`; per person
  with --per-person, `model_score`);
- where its models looked in a face (`heatmaps`, for --explain; none by default).

The winner's recipe and the temporal one are in inference/detectors/recipes.py; the options are
turned into detectors in one place, inference/detectors/options.py. predict, detect, the
page, evaluate (through predict) and the benches hold an `Ensemble` and know nothing else of a
recipe.

Detectors with equal sources share one read of each video (MTCNN is what costs). `PROJECT_FACES`
is the project's read (the run's --frames, --detector-scale, recall boost and fast mode:
inference/pipeline/faces.py), which the winner's and the temporal recipes share; another source
subclasses `FaceSource` and reads its own faces with `read` (given the run's MTCNN, so that its own
frame sampling and crop geometry can use the project's boxes and landmarks), kept in
`VideoFaces.views`.

The ensemble's arithmetic is the winner's: the video score is the mean of every model's score
weighted by the models' weights (over all detectors, in the order the models were given), and a
calibration (inference/models/ensemble_calibration.py) applies to that score.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inference.pipeline.aggregate import per_person
from inference.pipeline.faces import NoFaceError, VideoFaces

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceSource:
    """What is read of a video. Equal sources (hashable, compared by value) share one read."""

    name: str = "project"

    def read(self, path: Path, mtcnn, args) -> VideoFaces:
        """The faces of `path` as this source reads them; `mtcnn` is the run's face detector and
        `args` the run's options (media limits, backend). PROJECT_FACES is read by the callers
        (inference/pipeline/reader.py, inference/serving/detection.py), with their decode-ahead and
        perturbation."""
        raise NotImplementedError(f"{self.name}: a face source other than the project's reads its own faces")


PROJECT_FACES = FaceSource()


def read_views(faces: VideoFaces, sources: Sequence[FaceSource], path: Path, mtcnn, args) -> None:
    """Each of `sources`' reads of `path` (the sources after a video's own) into `faces.views`. A
    source that finds no face gives an empty read, its models the run's default score, and a
    warning: the video stands on the others' faces."""
    for source in sources:
        try:
            faces.views[source] = source.read(path, mtcnn, args)
        except NoFaceError as error:
            logger.warning("%s; its models score the default", error)
            faces.views[source] = VideoFaces(Path(path), [])


def weighted_mean(values, weights: Sequence[float]):
    """The mean of `values` (along the first axis) weighted by `weights`; the plain mean where the
    weights add up to 0 (models an ensemble file keeps at weight 0 are still shown)."""
    return np.average(values, axis=0, weights=weights if sum(weights) > 0 else None)


def faces_of(video: VideoFaces, source: FaceSource) -> VideoFaces:
    """`source`'s read of a video: the video's own (its first source's), or one of its views."""
    return video.views.get(source, video)


@dataclass(frozen=True)
class Run:
    """How a run scores: device and precision, batch size, test-time flip, --per-person, and the
    score of a model with nothing to score (a temporal model without a clip)."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    batch_size: int = 64
    tta: bool = False
    per_person: bool = False
    default_score: float = 0.5

    @classmethod
    def from_args(cls, args, device: torch.device, amp_dtype: torch.dtype | None) -> Run:
        return cls(
            device,
            amp_dtype,
            getattr(args, "batch_size", 64),
            bool(getattr(args, "tta", False)),
            bool(getattr(args, "per_person", False)),
            getattr(args, "default_score", 0.5),
        )


class Detector(ABC):
    """A detection recipe (see the module's docstring)."""

    name: str = "detector"
    source: FaceSource = PROJECT_FACES
    clip_windows: frozenset = frozenset()
    scores_faces: bool = True
    aggregation: str = "mean"  # how the document names `aggregate`
    models: Sequence = ()

    @abstractmethod
    def probabilities(self, videos: list[VideoFaces], run: Run) -> list[list[np.ndarray]]:
        """Per video (its `source`'s read), per model: each unit's probability of fake."""

    @abstractmethod
    def aggregate(self, probabilities: Sequence[float]) -> float:
        """A model's units (of one video, or one person) to one score."""

    def people(self, faces: VideoFaces, model) -> list[int] | None:
        """Each unit's person, for --per-person (None: the units are not told apart)."""
        return None

    def unit_frames(self, faces: VideoFaces, model) -> list[int]:
        """The sampled frame at which each unit is known (a face's frame), for judging early."""
        return faces.face_frames

    def model_score(self, model, probabilities: np.ndarray, faces: VideoFaces, run: Run) -> float:
        """A model's score of a video: its units aggregated (the most fake person's with
        --per-person), or the run's default score when it had nothing to score."""
        if not len(probabilities):
            return run.default_score
        people = self.people(faces, model) if run.per_person else None
        return float(per_person(probabilities, people, self.aggregate) if people else self.aggregate(probabilities))

    def heatmaps(self, crops: list[np.ndarray], device: torch.device) -> list[np.ndarray] | None:
        """Where the models looked in each of `crops` (this detector's), for --explain: a map in
        [0, 1] at each crop's size; None where the detector has no way to say (the default)."""
        return None

    def face_scores(self, probabilities: list[np.ndarray]) -> np.ndarray:
        """Each face's probability (the models' weighted mean), where the units are faces."""
        if not self.scores_faces or not probabilities or not len(probabilities[0]):
            return np.zeros(0)
        return weighted_mean(probabilities, [model.weight for model in self.models])


@dataclass(frozen=True)
class VideoScore:
    score: float  # the models' weighted mean
    model_scores: dict[str, float]  # each model's, by name (by position too where two share one)
    face_scores: list[float]  # each face's of the face view (rounded), empty without one
    per_model: list[tuple[Detector, object, np.ndarray, float]]  # (detector, model, unit probabilities, score)
    face_probabilities: np.ndarray  # each face's of the face view, unrounded (empty without one)


class Ensemble:
    """The detectors of a run. `models` is their models in the order they were given (the order of
    the weighted mean and of `model_scores`)."""

    def __init__(self, detectors: Sequence[Detector], models: Sequence | None = None):
        self.detectors = list(detectors)
        everyone = [model for detector in self.detectors for model in detector.models]
        self.models = list(models) if models is not None else everyone
        if sorted(map(id, self.models)) != sorted(map(id, everyone)):
            raise ValueError("an ensemble's models are its detectors' models")
        names = [model.name for model in self.models]
        self.keys = [name if names.count(name) == 1 else f"{index}:{name}" for index, name in enumerate(names)]

    @property
    def sources(self) -> list[FaceSource]:
        """The reads a video needs, each once: the first is the video's own, the others its views."""
        found = []
        for detector in self.detectors:
            if detector.source not in found:
                found.append(detector.source)
        return sorted(found, key=lambda source: source != PROJECT_FACES) or [PROJECT_FACES]

    @property
    def clip_windows(self) -> set[tuple[int, int]]:
        return {window for detector in self.detectors for window in detector.clip_windows}

    def face_view(self) -> Detector | None:
        """The detector whose faces people, frames and heatmaps are shown from: the first that scores
        the faces of the videos' own read."""
        first = self.sources[0]
        return next((d for d in self.detectors if d.scores_faces and d.source == first), None)

    def probabilities(self, videos: list[VideoFaces], run: Run) -> list[list[list[np.ndarray]]]:
        """Per detector, per video, per model: each unit's probability (each detector's units of all
        the videos scored together, so that a GPU gets full batches)."""
        return [
            detector.probabilities([faces_of(video, detector.source) for video in videos], run)
            for detector in self.detectors
        ]

    def score(
        self,
        videos: list[VideoFaces],
        run: Run,
        check: Callable[[np.ndarray, str], np.ndarray] | None = None,
    ) -> list[VideoScore]:
        """Each video's score: every model's score weighted by its weight. `check` (a model's
        probabilities of one video, its name) may refuse what a model gave."""
        return self.combine(videos, self.probabilities(videos, run), run, check)

    def combine(
        self,
        videos: list[VideoFaces],
        per_detector: list[list[list[np.ndarray]]],
        run: Run,
        check: Callable[[np.ndarray, str], np.ndarray] | None = None,
    ) -> list[VideoScore]:
        """`score` from the probabilities the detectors gave (`probabilities`' answer)."""
        face_view = self.face_view()
        order = {id(model): position for position, model in enumerate(self.models)}
        results = []
        for index, video in enumerate(videos):
            scored, faces = [], np.zeros(0)
            for detector, probabilities in zip(self.detectors, per_detector, strict=True):
                mine = probabilities[index]
                read = faces_of(video, detector.source)
                for model, units in zip(detector.models, mine, strict=True):
                    units = check(units, model.name) if check is not None else units
                    scored.append((detector, model, units, detector.model_score(model, units, read, run)))
                if detector is face_view:
                    faces = detector.face_scores([entry[2] for entry in scored if entry[0] is detector])
            scored.sort(key=lambda entry: order[id(entry[1])])
            scores = [entry[3] for entry in scored]
            average = float(np.average(scores, weights=[entry[1].weight for entry in scored]))
            results.append(
                VideoScore(
                    average,
                    dict(zip(self.keys, scores, strict=True)),
                    [round(float(value), 5) for value in faces],
                    scored,
                    faces,
                )
            )
        return results
