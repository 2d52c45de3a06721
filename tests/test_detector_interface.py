"""The detector interface (inference/pipeline/detector.py): a detector written here, knowing nothing
of predict or detect, scores through both; detectors of one face source share one read of each
video; the ensemble's arithmetic is the winner's weighted mean over models in their given order."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.cli import InputError
from common.video_io import VideoWriter
from inference.detectors.options import as_ensemble, recipes_of
from inference.detectors.recipes import TemporalRecipe, WinnerRecipe
from inference.models.ensemble import Member
from inference.pipeline import reader
from inference.pipeline.aggregate import confident, per_person
from inference.pipeline.detector import PROJECT_FACES, Detector, Ensemble, FaceSource, Run, faces_of
from inference.pipeline.faces import VideoFaces, extract_faces, inference_detector
from inference.prediction import predict_folder as prediction
from inference.serving import detection
from inference.serving.verdict_options import VerdictRule
from preprocess.demo_world.identities import builtin_photos

CPU = torch.device("cpu")


def brightness(crop: np.ndarray) -> float:
    return float(crop.mean() / 255)


class Brightness(Detector):
    """A detector of this test: the brighter a face, the more fake; a video is its brightest face."""

    name, aggregation = "brightness", "max"

    def __init__(self, source: FaceSource = PROJECT_FACES, weight: float = 1.0, name: str = "bright"):
        self.source = source
        self.models = [SimpleNamespace(name=name, weight=weight)]

    def probabilities(self, videos, run):
        return [[np.array([brightness(crop) for crop in faces.crops], np.float32)] for faces in videos]

    def aggregate(self, probabilities) -> float:
        return float(np.max(probabilities))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two short clips of a face, one of them dimmed."""
    folder = tmp_path_factory.mktemp("videos")
    photo = builtin_photos()["astronaut"]
    for name, frame in (("bright.mp4", photo), ("dim.mp4", (photo * 0.6).astype(np.uint8))):
        with VideoWriter(folder / name, fps=25, width=512, height=512, crf=16) as writer:
            for _ in range(4):
                writer.write(frame)
    return folder


def _predict_args(folder: Path, *extra: str):
    return prediction.parse_args(["--test-dir", str(folder), "--models", "unused.pt", "--frames", "2", *extra])


def _expected(path: Path) -> float:
    faces = extract_faces(path, inference_detector(0.5, CPU), 2, recall=True)
    return max(brightness(crop) for crop in faces.crops)


def test_a_new_detector_scores_through_predict_unchanged(folder):
    args = _predict_args(folder)
    scores, errors, details = prediction.predict(args, Ensemble([Brightness()]), CPU)
    assert not errors and sorted(scores) == ["bright.mp4", "dim.mp4"]
    for name in scores:
        assert scores[name] == pytest.approx(_expected(folder / name), abs=1e-6)
    assert scores["bright.mp4"] > scores["dim.mp4"]
    row = next(d for d in details if d["filename"] == "bright.mp4")
    assert row["model_scores"] == {"bright": pytest.approx(scores["bright.mp4"])}
    assert max(row["face_scores"]) == pytest.approx(scores["bright.mp4"], abs=1e-5)


def test_a_new_detector_judges_through_detect_unchanged(folder):
    args = detection.parse_args([str(folder / "bright.mp4"), "--models", "unused.pt", "--frames", "2"])
    args.detector_scale, args.strategy = 0.5, "confident"  # what resolve_scoring fills in
    rule = VerdictRule(None, None, 0.5)
    path = folder / "bright.mp4"
    document = detection.examine(path, inference_detector(0.5, CPU), Ensemble([Brightness()]), args, CPU, None, rule)
    assert document["error"] is None
    assert document["score"] == pytest.approx(_expected(path), abs=1e-4)
    assert document["verdict"] == ("FAKE" if document["probability"] > 0.5 else "REAL")
    assert document["aggregation"]["strategy"] == "max"
    assert [m["name"] for m in document["models"]] == ["bright"]
    assert all(frame["probability"] is not None for frame in document["per_frame"] if frame["faces"])


class WholeFirstFrame(FaceSource):
    """A source of this test: the first frame, whole, as the one face."""

    def read(self, path, mtcnn, args) -> VideoFaces:
        from common.video_io import iter_frames

        (index, frame), *_ = iter_frames(path, [0])
        return VideoFaces(path, [index], [frame], [index], [[0, 0, frame.shape[1], frame.shape[0]]], ["whole frame"])


def test_detectors_of_one_source_share_its_read_and_another_source_reads_its_own(folder, monkeypatch):
    reads, original = [], reader.extract_faces
    monkeypatch.setattr(reader, "extract_faces", lambda path, *a, **k: reads.append(path) or original(path, *a, **k))
    whole = WholeFirstFrame("whole-first-frame")
    detectors = [Brightness(weight=1.0, name="a"), Brightness(weight=3.0, name="b"), Brightness(whole, 2.0, "c")]
    args = _predict_args(folder)
    scores, errors, details = prediction.predict(args, Ensemble(detectors), CPU)
    assert not errors and len(reads) == 2, "one MTCNN read per video for the two detectors that share it"
    for name in scores:
        faces = _expected(folder / name)
        frame = brightness(whole.read(folder / name, None, args).crops[0])
        assert scores[name] == pytest.approx((faces + 3 * faces + 2 * frame) / 6, abs=1e-6)
        row = next(d for d in details if d["filename"] == name)
        assert list(row["model_scores"]) == ["a", "b", "c"]
    assert Ensemble(detectors).sources == [PROJECT_FACES, whole]
    assert Ensemble([Brightness(whole)]).sources == [whole], "the first source is the video's own read"


def _member(name: str, weight: float, clip=None) -> Member:
    return Member(name, None, "tiny", 8, (0.5,) * 3, (0.5,) * 3, weight, clip=clip)


def test_the_ensemble_is_the_weighted_mean_of_its_models_in_their_given_order():
    """The factory splits frame and temporal members into their recipes and keeps the order and
    arithmetic predict had: each model's score (confident; per person), their weighted mean."""
    members = [_member("t.pt", 0.2, (4, 2)), _member("f.pt", 0.5), _member("f.pt", 0.3)]
    ensemble = recipes_of(members)
    assert [type(d) for d in ensemble.detectors] == [WinnerRecipe, TemporalRecipe]
    assert ensemble.keys == ["t.pt", "1:f.pt", "2:f.pt"] and ensemble.clip_windows == {(4, 2)}
    assert as_ensemble(ensemble, None) is ensemble
    rng = np.random.default_rng(0)
    units = {id(m): rng.random(n).astype(np.float32) for m, n in zip(members, (3, 14, 14), strict=True)}

    class Canned:  # each model's probabilities, as the recipes would give them
        def __init__(self, recipe):
            self.recipe = recipe

        def __call__(self, videos, run):
            return [[units[id(m)] for m in self.recipe.models] for _ in videos]

    for detector in ensemble.detectors:
        detector.probabilities = Canned(detector)
    boxes = [[10.0 * (i % 2) * 50, 0, 10.0 * (i % 2) * 50 + 40, 40] for i in range(14)]
    faces = VideoFaces(
        Path("v.mp4"), list(range(7)), [None] * 14, [i // 2 for i in range(14)], boxes, ["detected"] * 14
    )
    for per in (False, True):
        [result] = ensemble.score([faces], Run(CPU, per_person=per))
        people = WinnerRecipe(members[1:]).people(faces, members[1]) if per else None
        frame = [per_person(units[id(m)], people) if per else confident(units[id(m)]) for m in members[1:]]
        temporal = confident(units[id(members[0])])  # its clips' (no tracks read: not per person)
        expected = np.average([temporal, *frame], weights=[0.2, 0.5, 0.3])
        assert result.score == pytest.approx(expected, abs=1e-12)
        assert list(result.model_scores.values()) == pytest.approx([temporal, *frame])
        faces_expected = np.average([units[id(members[1])], units[id(members[2])]], axis=0, weights=[0.5, 0.3])
        assert result.face_scores == pytest.approx(np.round(faces_expected, 5).tolist())
    assert faces_of(faces, PROJECT_FACES) is faces
    assert TemporalRecipe(members[:1]).model_score(members[0], np.zeros(0), faces, Run(CPU, default_score=0.25)) == 0.25
    with pytest.raises(ValueError, match="detectors' models"):
        Ensemble(ensemble.detectors, members[:2])


def test_a_perturbed_run_refuses_a_detector_that_reads_its_own_faces(folder):
    args = _predict_args(folder, "--perturb", "GB:1")
    with pytest.raises(InputError, match="whole-first-frame"):
        reader.FaceReader(args, CPU, 0, set(), [PROJECT_FACES, WholeFirstFrame("whole-first-frame")])
    reader.FaceReader(args, CPU, 0).close()  # the project's read alone is distorted as before
