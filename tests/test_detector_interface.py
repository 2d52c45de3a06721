"""The detector interface (inference/pipeline/detector.py): a detector written here, knowing nothing
of predict or detect, scores through both; detectors of one face source share one read of each
video; the ensemble's arithmetic is the winner's weighted mean over models in their given order."""

from __future__ import annotations

from dataclasses import dataclass
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

# predict, detect and the authors' steps over the same clips: each frame through MTCNN once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


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


class FixedScore(Brightness):
    """A detector whose model scores every video 0.9, whatever its faces: its own `model_score`."""

    def model_score(self, model, probabilities, faces, run) -> float:
        return 0.9


class NothingToScore(Brightness):
    """A detector that finds nothing to score: its model gets the run's default score."""

    def probabilities(self, videos, run):
        return [[np.zeros(0, np.float32)] for _ in videos]


def _detect_document(folder: Path, detectors, *extra: str, out: Path | None = None) -> dict:
    options = [str(folder / "bright.mp4"), "--models", "unused.pt", "--frames", "2", *extra]
    args = detection.parse_args(options + (["--explain", str(out)] if out else []))
    args.detector_scale, args.strategy = 0.5, "confident"  # what resolve_scoring fills in
    rule = VerdictRule(None, None, 0.5)
    return detection.examine(folder / "bright.mp4", inference_detector(0.5, CPU), detectors, args, CPU, None, rule)


@pytest.mark.parametrize(
    "make, per_person",
    [
        (lambda: [FixedScore()], False),
        (lambda: [Brightness(name="a"), FixedScore(WholeFirstFrame("whole"), name="b")], False),
        (lambda: [Brightness(name="a"), NothingToScore(WholeFirstFrame("whole"), 2.0, "b")], False),
        (lambda: [Brightness(weight=1.0, name="a"), Brightness(WholeFirstFrame("whole"), 2.0, "c")], True),
    ],
    ids=["own model_score", "own model_score, other source", "nothing to score", "per person, two sources"],
)
def test_detect_scores_a_file_as_predict_scores_it(folder, make, per_person):
    """detect and predict hold the same detectors and score through them: a detector's own
    model_score, the run's default score and --per-person count the same in both."""
    extra = ["--per-person"] if per_person else []
    scores, errors, details = prediction.predict(_predict_args(folder, *extra), Ensemble(make()), CPU)
    document = _detect_document(folder, Ensemble(make()), *extra)
    assert not errors and document["error"] is None
    assert document["score"] == pytest.approx(scores["bright.mp4"], abs=1e-4)
    row = next(d for d in details if d["filename"] == "bright.mp4")
    assert [m["score"] for m in document["models"]] == pytest.approx(list(row["model_scores"].values()), abs=1e-4)
    assert {m["detector"] for m in document["models"]} == {d.name for d in make()}


class TwoViews(Detector):
    """Two models of one face source that disagree on who is fake: model a finds the left face fake,
    model b the right one."""

    name, aggregation = "two-views", "mean"

    def __init__(self):
        self.models = [SimpleNamespace(name="a", weight=1.0), SimpleNamespace(name="b", weight=1.0)]

    def probabilities(self, videos, run):
        sides = [[float(box[0] < 256) for box in faces.boxes] for faces in videos]
        return [[np.array(s, np.float32), 1 - np.array(s, np.float32)] for s in sides]

    def aggregate(self, probabilities) -> float:
        return float(np.mean(probabilities))

    def people(self, faces, model) -> list[int]:
        return [int(box[0] >= 256) for box in faces.boxes]


def test_per_person_takes_each_models_most_fake_person_in_detect_as_in_predict(tmp_path):
    """Two people side by side; model a says the left one is fake, model b the right one. --per-person
    scores each model by its own most fake person (1.0 and 1.0), as predict does, not the most fake
    person of the models' mean (0.5)."""
    photo = builtin_photos()["astronaut"]
    half = np.ascontiguousarray(photo[:, 128:384])
    frame = np.concatenate([half, half], axis=1)
    with VideoWriter(tmp_path / "pair.mp4", fps=25, width=512, height=512, crf=16) as writer:
        for _ in range(4):
            writer.write(frame)
    scores, errors, _ = prediction.predict(
        prediction.parse_args(["--test-dir", str(tmp_path), "--models", "unused.pt", "--frames", "2", "--per-person"]),
        Ensemble([TwoViews()]),
        CPU,
    )
    args = detection.parse_args([str(tmp_path / "pair.mp4"), "--models", "unused.pt", "--frames", "2", "--per-person"])
    args.detector_scale, args.strategy = 0.5, "confident"
    document = detection.examine(
        tmp_path / "pair.mp4",
        inference_detector(0.5, CPU),
        Ensemble([TwoViews()]),
        args,
        CPU,
        None,
        VerdictRule(None, None, 0.5),
    )
    assert len(document["people"]) == 2, "two faces side by side, two people"
    assert document["score"] == scores["pair.mp4"] == 1.0
    assert sorted(p["probability"] for p in document["people"]) == [0.5, 0.5], "each person: the models' mean"


def test_explain_writes_the_frame_and_plot_for_a_detector_without_heatmaps(folder, tmp_path):
    """A detector with no heatmaps (the default) still gets its frame and plot; the document says
    why there are no heatmaps, and the verdict stands."""
    document = _detect_document(folder, Ensemble([Brightness()]), out=tmp_path)
    explanation = document["explanation"]
    assert document["error"] is None and "error" not in explanation
    assert (
        explanation["heatmaps"] == [] and explanation["heatmaps_missing"] == "the brightness detector gives no heatmaps"
    )
    assert Path(explanation["frame"]).is_file() and Path(explanation["plot"]).is_file()


def test_a_detectors_heatmaps_are_drawn_where_it_gives_them(folder, tmp_path):
    class Looking(Brightness):
        def heatmaps(self, crops, device):
            return [np.full(crop.shape[:2], 0.5, np.float32) for crop in crops]

    document = _detect_document(folder, Ensemble([Looking()]), out=tmp_path)
    [heatmap] = document["explanation"]["heatmaps"][:1]
    assert Path(heatmap["path"]).is_file() and "heatmaps_missing" not in document["explanation"]


@dataclass(frozen=True)
class FindsNoFace(FaceSource):
    """A source of this test that finds no face in any video."""

    def read(self, path, mtcnn, args) -> VideoFaces:
        from inference.pipeline.faces import NoFaceError

        raise NoFaceError(f"{path}: no face found (this test's read)")


def test_a_detector_that_finds_no_face_beside_another_scores_the_default_and_the_video_stands(folder):
    """Beside the project's read, a detector whose own read finds no face gives its model the
    run's default score (predict and detect alike); the video is scored, not an error."""
    make = lambda: Ensemble([Brightness(name="a"), Brightness(FindsNoFace("none"), 1.0, "b")])  # noqa: E731
    scores, errors, _ = prediction.predict(_predict_args(folder, "--default-score", "0.25"), make(), CPU)
    assert not errors
    expected = (_expected(folder / "bright.mp4") + 0.25) / 2
    assert scores["bright.mp4"] == pytest.approx(expected, abs=1e-6)
    document = _detect_document(folder, make())
    assert document["error"] is None and [m["score"] for m in document["models"]][1] == 0.5, "detect's default"


def test_a_face_view_of_models_at_weight_0_still_shows_its_faces_and_the_video_is_scored(folder):
    """An ensemble file may keep a model at weight 0 (fit_ensemble writes exact zeros): the faces are
    shown with the face view's plain mean, and the video's score is the other models'."""
    make = lambda: Ensemble([Brightness(weight=0.0, name="a"), Brightness(WholeFirstFrame("w"), 1.0, "b")])  # noqa: E731
    scores, errors, details = prediction.predict(_predict_args(folder), make(), CPU)
    assert not errors
    expected = brightness(WholeFirstFrame("w").read(folder / "bright.mp4", None, None).crops[0])
    assert scores["bright.mp4"] == pytest.approx(expected, abs=1e-6)
    row = next(d for d in details if d["filename"] == "bright.mp4")
    assert row["face_scores"] and max(row["face_scores"]) == pytest.approx(_expected(folder / "bright.mp4"), abs=1e-5)
    document = _detect_document(folder, make(), "--per-person")
    assert document["error"] is None and document["score"] == pytest.approx(expected, abs=1e-4)
    assert all(person["probability"] is not None for person in document["people"])


class NotProbabilities(Brightness):
    """A detector with a bug: its 'probabilities' are brightness + 5."""

    def probabilities(self, videos, run):
        return [[units + 5 for units in per_model] for per_model in super().probabilities(videos, run)]


def test_scores_outside_0_to_1_are_the_files_error_in_predict_and_detect_alike(folder, tmp_path):
    """As NaN is: predict writes its files with the video's error row (stage classify); detect and
    the page give the file an error, never a verdict of probability 5.4."""
    args = prediction.parse_args(
        ["--test-dir", str(folder), "--models", "unused.pt", "--frames", "2", "--output", str(tmp_path / "s.csv")]
    )
    scores, errors, _ = prediction.predict(args, Ensemble([NotProbabilities()]), CPU)
    assert sorted(error["filename"] for error in errors) == ["bright.mp4", "dim.mp4"]
    assert all(e["stage"] == "classify" and "not a probability from 0 to 1" in e["reason"] for e in errors)
    assert set(scores.values()) == {0.5}, "the default score, as for any video that failed"
    document = _detect_document(folder, Ensemble([NotProbabilities()]))
    assert document["verdict"] is None and document["error"]["stage"] == "classify"
    assert "model bright produced scores outside 0 to 1 for 2 of 2 inputs (e.g. 5.4" in document["error"]["message"]
