"""DeepfakeBench's detector (inference/detectors/deepfakebench.py) through the detector interface:
predict and detect score a video by its read (the largest face of each frame, aligned), its models
and the mean of the frames' probabilities; a video without a face is a detection failure (predict:
the run's default score and an error row); a checkpoint that is not the authors' format is one
InputError line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from common.cli import InputError
from common.video_io import VideoWriter
from inference.detectors import deepfakebench as dfb
from inference.pipeline.detector import Ensemble, Run
from inference.pipeline.faces import inference_detector
from inference.prediction import predict_folder as prediction
from inference.serving import detection
from inference.serving.verdict_options import VerdictRule
from preprocess.demo_world.identities import builtin_photos
from tests import deepfakebench_authors as authors

CPU = torch.device("cpu")

# predict, detect and the authors' steps over the same clips: each frame through MTCNN once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A clip of a face moving a little from frame to frame, and one of a grey ramp (no face)."""
    folder = tmp_path_factory.mktemp("videos")
    photo = builtin_photos()["astronaut"]
    ramp = np.broadcast_to(np.linspace(40, 200, 256, dtype=np.uint8)[None, :, None], (256, 256, 3))
    with VideoWriter(folder / "face.mp4", fps=25, width=512, height=512, crf=16) as writer:
        for shift in range(0, 20, 5):
            writer.write(np.roll(photo, shift, axis=1))
    with VideoWriter(folder / "none.mp4", fps=25, width=256, height=256, crf=16) as writer:
        for _ in range(3):
            writer.write(np.ascontiguousarray(ramp))
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """effnb4_best.pth in the authors' format: random weights that tell 256 px inputs apart."""
    path = tmp_path_factory.mktemp("weights") / "effnb4_best.pth"
    batch = authors.varied_batch(256, count=2)
    state = authors.b4_state(torch.Generator().manual_seed(2))
    torch.save(authors.calibrated(state, authors.b4_logits, batch, "backbone.last_layer"), path)
    return path


@pytest.fixture(scope="module")
def detector(checkpoint) -> dfb.DeepfakeBenchDetector:
    return dfb.load_detector([checkpoint], [1.0], CPU)


def _expected(detector, path: Path) -> tuple[float, int]:
    """The mean of the frames' probabilities of DeepfakeBench's read, and how many frames had a face."""
    faces = detector.source.read(path, inference_detector(0.5, CPU), None)
    [[probabilities]] = detector.probabilities([faces], Run(CPU))
    return float(np.mean(probabilities)), len(faces.crops)


def test_the_detector_scores_through_predict(folder, detector):
    args = prediction.parse_args(["--test-dir", str(folder), "--models", "unused.pt", "--default-score", "0.25"])
    scores, errors, details = prediction.predict(args, Ensemble([detector]), CPU)
    assert sorted(scores) == ["face.mp4", "none.mp4"]
    assert [(e["filename"], e["stage"]) for e in errors] == [("none.mp4", "detect")]
    assert "no face found in 3 sampled frames (DeepfakeBench's read)" in errors[0]["reason"]
    expected, faces = _expected(detector, folder / "face.mp4")
    assert faces == 4, "the largest face of each of the 4 frames (a 4-frame clip: linspace's 32 indices are 4)"
    assert scores["face.mp4"] == pytest.approx(expected, abs=1e-6)
    assert abs(expected - 0.5) > 1e-3 and scores["none.mp4"] == 0.25, "no face: the run's default score"
    row = next(d for d in details if d["filename"] == "face.mp4")
    assert row["model_scores"] == {"effnb4_best.pth": pytest.approx(expected, abs=1e-6)}
    assert row["frames_with_face"] == 4 and len(row["face_scores"]) == 4
    assert min(row["face_scores"]) > 0 and max(row["face_scores"]) < 1, "weights that do not saturate"
    assert np.mean(row["face_scores"]) == pytest.approx(expected, abs=1e-5)


def test_the_detector_judges_through_detect(folder, detector):
    path = folder / "face.mp4"
    args = detection.parse_args([str(path), "--models", "unused.pt"])
    args.detector_scale, args.strategy = 0.5, "confident"  # what resolve_scoring fills in
    document = detection.examine(
        path, inference_detector(0.5, CPU), Ensemble([detector]), args, CPU, None, VerdictRule(None, None, 0.5)
    )
    assert document["error"] is None
    assert document["score"] == pytest.approx(_expected(detector, path)[0], abs=1e-4)  # rounded to 4 places
    assert document["aggregation"]["strategy"] == "mean"
    assert [model["name"] for model in document["models"]] == ["effnb4_best.pth"]
    with_face = [frame for frame in document["per_frame"] if frame["faces"]]
    assert len(with_face) == 4 and all(frame["probability"] is not None for frame in with_face)


def test_detect_says_a_video_without_a_face_cannot_be_judged(folder, detector):
    path = folder / "none.mp4"
    args = detection.parse_args([str(path), "--models", "unused.pt"])
    args.detector_scale, args.strategy = 0.5, "confident"
    document = detection.examine(
        path, inference_detector(0.5, CPU), Ensemble([detector]), args, CPU, None, VerdictRule(None, None, 0.5)
    )
    assert document["error"]["stage"] == "detect" and "no face found" in document["error"]["message"]
    assert document["probability"] is None and document["verdict"] is None


def _state() -> dict:
    return authors.b4_state(torch.Generator().manual_seed(0))


def _renamed(state):
    state["backbone.head.weight"] = state.pop("backbone.last_layer.weight")
    return state


def _reshaped(state):
    state["backbone.last_layer.weight"] = torch.zeros(3, 1792)
    return state


def _nan(state):
    state["backbone.efficientnet._blocks.4._bn1.weight"][7] = float("nan")
    return state


HOSTILE = {
    "not a checkpoint": (
        lambda path: path.write_bytes(b"PK\x03\x04 not a pickle"),
        "not a readable PyTorch checkpoint",
    ),
    "SBI's format": (lambda path: torch.save({"model": {"net._fc.bias": torch.zeros(2)}, "epoch": 3}, path), "model"),
    "other keys": (lambda path: torch.save({"conv1.weight": torch.zeros(1)}, path), "not a DeepfakeBench"),
    "a renamed key": (lambda path: torch.save(_renamed(_state()), path), "unexpected keys 1 (backbone.head.weight)"),
    "a wrong shape": (lambda path: torch.save(_reshaped(_state()), path), "backbone.last_layer.weight (3, 1792)"),
    "a NaN": (lambda path: torch.save(_nan(_state()), path), "NaN or infinite: 1 (backbone.efficientnet._blocks.4"),
    "no file": (lambda path: None, "does not exist"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_checkpoint_not_in_the_authors_format_is_one_line_naming_the_file(tmp_path, case):
    write, said = HOSTILE[case]
    path = tmp_path / "effnb4_best.pth"
    write(path)
    with pytest.raises(InputError) as caught:
        dfb.load_detector([path], [1.0], CPU)
    message = str(caught.value)
    assert str(path) in message and said in message and "\n" not in message, message


def test_weights_must_match_the_checkpoints(checkpoint):
    with pytest.raises(InputError, match="2 checkpoints but 1 weights"):
        dfb.load_detector([checkpoint, checkpoint], [1.0], CPU)
