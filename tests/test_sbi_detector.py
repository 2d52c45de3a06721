"""Self-Blended Images (inference/detectors/sbi.py) through the detector interface: predict and
detect score a short clip as the authors' steps (tests/sbi_authors.py) score it, alone and beside
another detector; a video without a face gets the run's default score; a checkpoint that is not
theirs is one line naming the file. (Parity with their code: tests/test_sbi_parity.py.)"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common.cli import InputError
from common.video_io import VideoWriter
from inference.detectors import sbi, sbi_model
from inference.detectors.options import load_detectors
from inference.pipeline.detector import Ensemble, Run
from inference.pipeline.faces import inference_detector
from inference.prediction import predict_folder as prediction
from inference.serving import detection
from inference.serving.verdict_options import VerdictRule
from preprocess.demo_world.identities import builtin_photos
from tests import sbi_authors as authors
from tests.test_detector_interface import Brightness, brightness

CPU = torch.device("cpu")

# predict, detect and the authors' steps over the same clips: each frame through MTCNN once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")
FRAMES = 2  # of the 32 theirs samples: enough for a frame mean, cheap at 380 px on a CPU


def _calibrated_authors_state(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Random weights in their key names whose batch-norm statistics are those of `images` (timm's
    model in training mode, cumulative statistics), so that p(fake) is neither 0.5 nor saturated."""
    model = sbi_model.build_model()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        model.train()(images)
    state = model.state_dict()
    return {theirs: state[ours] for theirs, ours in sbi_model.authors_keys(model).items()}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two short clips of a face (one dimmed), one without any, and beside the folder a clip of two
    faces and a checkpoint in SBI's format."""
    folder = tmp_path_factory.mktemp("videos")
    photo = builtin_photos()["astronaut"]
    for name, frame in (("bright.mp4", photo), ("dim.mp4", (photo * 0.6).astype(np.uint8))):
        with VideoWriter(folder / name, fps=25, width=512, height=512, crf=16) as writer:
            for _ in range(4):
                writer.write(frame)
    pair = np.concatenate([photo, (photo * 0.6).astype(np.uint8)], axis=1)
    with VideoWriter(folder.parent / "two_faces.mp4", fps=25, width=1024, height=512, crf=16) as writer:
        for _ in range(3):
            writer.write(pair)
    with VideoWriter(folder / "empty.mp4", fps=25, width=128, height=96) as writer:
        for level in (40, 90, 140):
            writer.write(np.full((96, 128, 3), level, np.uint8))
    face = cv2.resize(photo[:300, 100:400], (380, 380))
    images = torch.tensor(np.stack([face, face[:, ::-1] // 2])).permute(0, 3, 1, 2).float() / 255
    torch.manual_seed(0)
    torch.save(authors.authors_checkpoint(_calibrated_authors_state(images)), folder.parent / "FFraw.tar")
    return folder


@pytest.fixture(scope="module")
def detector(folder):
    found = sbi.load_detector([folder.parent / "FFraw.tar"], [1.0], CPU)
    found.source = sbi.SbiFaces(frames=FRAMES)
    return found


def _expected(path: Path, detector, faces_per_frame: int = 1) -> float:
    """Their steps on their own reading of `path` with the run's MTCNN boxes and the loaded model."""
    mtcnn = inference_detector(0.5, CPU)
    crops, face_frames = [], []
    for index, frame in authors.authors_frames(path, FRAMES).items():
        _, cropped = authors.authors_frame_faces(frame, mtcnn.detect(frame).boxes.tolist())
        crops += cropped
        face_frames += [index] * len(cropped)
    images = torch.tensor(np.array([crop.transpose((2, 0, 1)) for crop in crops])).float() / 255
    with torch.no_grad():
        p_fake = detector.models[0].model(images).softmax(1)[:, 1].numpy()
    assert len(set(face_frames)) == FRAMES and len(face_frames) == FRAMES * faces_per_frame
    score = authors.authors_video_score(p_fake, face_frames)
    if faces_per_frame > 1:
        assert abs(score - float(np.mean(p_fake))) > 1e-4, "each frame's most fake face, not every face"
    return score


def _predict_args(folder: Path, *extra: str):
    return prediction.parse_args(["--test-dir", str(folder), "--models", "unused.pt", *extra])


def test_sbi_scores_through_predict_as_its_authors_steps(folder, detector):
    args = _predict_args(folder, "--default-score", "0.25")
    scores, errors, details = prediction.predict(args, Ensemble([detector]), CPU)
    assert sorted(scores) == ["bright.mp4", "dim.mp4", "empty.mp4"]
    [error] = errors  # no face in any frame: the run's default score, as theirs gives 0.5, and a row saying so
    assert error["filename"] == "empty.mp4" and error["stage"] == "detect" and "SBI's read" in error["reason"]
    assert scores["empty.mp4"] == 0.25
    expected = {name: _expected(folder / name, detector) for name in ("bright.mp4", "dim.mp4")}
    assert abs(expected["bright.mp4"] - expected["dim.mp4"]) > 1e-3, "the two clips score apart"
    for name, score in expected.items():
        assert scores[name] == pytest.approx(score, abs=1e-6)
        row = next(d for d in details if d["filename"] == name)
        assert row["model_scores"] == {"FFraw.tar": pytest.approx(score, abs=1e-6)}
        assert row["frames_sampled"] == FRAMES and len(row["face_scores"]) == row["frames_with_face"] == FRAMES

    beside = Brightness(weight=3.0)  # the project's read, SBI's its view: both read each video
    scores, errors, details = prediction.predict(_predict_args(folder), Ensemble([detector, beside]), CPU)
    assert [error["filename"] for error in errors] == ["empty.mp4"], "the project's read: no face is an error"
    bright = max(brightness(crop) for crop in inference_faces(folder / "bright.mp4").crops)
    assert scores["bright.mp4"] == pytest.approx((expected["bright.mp4"] + 3 * bright) / 4, abs=1e-6)
    row = next(d for d in details if d["filename"] == "bright.mp4")
    assert list(row["model_scores"]) == ["FFraw.tar", "bright"]


def inference_faces(path: Path):
    from inference.pipeline.faces import extract_faces

    return extract_faces(path, inference_detector(0.5, CPU), 32, recall=True)


def test_sbi_judges_two_faces_a_frame_through_detect_as_predict_does(folder, detector):
    """detect's score is the detector's (`model_score`: the mean of each frame's most fake face),
    alone and beside another detector; predict's is the same."""
    path = folder.parent / "two_faces.mp4"
    expected = _expected(path, detector, faces_per_frame=2)
    args = detection.parse_args([str(path), "--models", "unused.pt", "--frames", "32"])
    args.detector_scale, args.strategy = 0.5, "confident"  # what resolve_scoring fills in
    rule = VerdictRule(None, None, 0.5)
    mtcnn = inference_detector(0.5, CPU)
    document = detection.examine(path, mtcnn, Ensemble([detector]), args, CPU, None, rule)
    assert document["error"] is None
    assert document["score"] == pytest.approx(expected, abs=1e-4)
    assert document["models"][0]["name"] == "FFraw.tar"
    assert document["models"][0]["score"] == pytest.approx(expected, abs=1e-4)
    assert document["aggregation"]["strategy"] == detector.aggregation
    assert [frame["faces"] for frame in document["per_frame"]] == [2] * FRAMES
    assert all(frame["probability"] is not None for frame in document["per_frame"])
    assert len(document["people"]) == 2

    empty = detection.examine(folder / "empty.mp4", mtcnn, Ensemble([detector]), args, CPU, None, rule)
    assert empty["error"] is not None and "SBI's read" in str(empty["error"]), "a file it could not judge"

    beside = Brightness(weight=3.0)  # now the face view; SBI scores its own read beside it
    document = detection.examine(path, mtcnn, Ensemble([beside, detector]), args, CPU, None, rule)
    bright = max(brightness(crop) for crop in inference_faces(path).crops)
    assert document["score"] == pytest.approx((3 * bright + expected) / 4, abs=1e-4)
    assert [m["score"] for m in document["models"]] == pytest.approx([bright, expected], abs=1e-4)


def test_frame_maxima_then_their_mean_is_the_video_score():
    probabilities = np.array([0.2, 0.9, 0.4, 0.1, 0.3])
    assert sbi.frame_maxima(probabilities, [0, 0, 5, 9, 9]).tolist() == [0.9, 0.4, 0.3]
    faces = type("Faces", (), {"face_frames": [0, 0, 5, 9, 9]})()
    run = Run(CPU, default_score=0.3)
    detector = sbi.SbiDetector([])
    assert detector.model_score(None, probabilities, faces, run) == pytest.approx((0.9 + 0.4 + 0.3) / 3)
    assert detector.model_score(None, np.zeros(0), faces, run) == 0.3


def _state(folder: Path) -> dict:
    return torch.load(folder.parent / "FFraw.tar", weights_only=True)["model"]


def _hostile(name: str, folder: Path, tmp_path: Path) -> Path:
    """A file named `name` that is not a Self-Blended Images checkpoint in one way."""
    path = tmp_path / name
    state = _state(folder)
    if name == "junk.tar":
        path.write_bytes(b"PK\x03\x04 not a checkpoint" * 10)
    elif name == "numpy.tar":
        torch.save({"model": {"net._fc.bias": np.zeros(2)}}, path)
    elif name == "bare.tar":
        torch.save(state, path)
    elif name == "timm_keys.tar":
        torch.save({"model": sbi_model.build_model().state_dict()}, path)
    elif name == "three_classes.tar":
        torch.save({"model": {**state, "net._fc.weight": torch.zeros(3, 1792), "net._fc.bias": torch.zeros(3)}}, path)
    elif name == "nan.tar":
        torch.save({"model": {**state, "net._bn1.running_var": torch.full((1792,), float("nan"))}}, path)
    elif name == "integers.tar":
        torch.save({"model": {**state, "net._conv_stem.weight": torch.zeros(48, 3, 3, 3, dtype=torch.int32)}}, path)
    elif name == "not_tensors.tar":
        torch.save({"model": {**state, "net._fc.bias": [0.0, 1.0]}, "epoch": 1}, path)
    return path


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("missing.tar", "no such checkpoint file"),
        ("junk.tar", "not a readable PyTorch checkpoint"),
        ("numpy.tar", "weights-only load"),
        ("bare.tar", "without a `model` entry"),
        ("timm_keys.tar", "missing 706 (net._blocks.0._bn1.bias"),
        ("three_classes.tar", "shape differs 2 (net._fc.bias (3,) vs (2,), net._fc.weight (3, 1792) vs (2, 1792))"),
        ("nan.tar", "NaN or infinite: 1 (net._bn1.running_var)"),
        ("integers.tar", "not floating point numbers: 1 (net._conv_stem.weight torch.int32)"),
        ("not_tensors.tar", "net._fc.bias is a list, not a tensor"),
    ],
)
def test_a_checkpoint_not_in_their_format_is_one_line_naming_the_file(folder, tmp_path, name, problem):
    path = _hostile(name, folder, tmp_path)
    with pytest.raises(InputError) as refused:
        sbi.load_detector([path], [1.0], CPU)
    message = str(refused.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert problem in message


def test_weights_and_checkpoints_are_counted_alike(folder):
    with pytest.raises(InputError, match="1 checkpoints but 2 weights"):
        sbi.load_detector([folder.parent / "FFraw.tar"], [1.0, 2.0], CPU)
    model = sbi.load_detector([folder.parent / "FFraw.tar"], [0.5], CPU).models[0]
    assert (model.name, model.weight, model.encoder, model.input_size) == ("FFraw.tar", 0.5, "tf_efficientnet_b4", 380)


def test_the_options_name_sbi_for_its_authors_files(folder):
    """`--models sbi:FILE` (inference/detectors/options.py): SBI's detector with that file."""
    args = _predict_args(folder)
    args.models = [f"sbi:{folder.parent / 'FFraw.tar'}"]
    [found] = load_detectors(args, CPU).detectors
    assert isinstance(found, sbi.SbiDetector) and [m.name for m in found.models] == ["FFraw.tar"]
    assert found.source == sbi.SbiFaces() and found.source.frames == 32


def test_its_heatmaps_are_grad_cam_of_the_fake_logit_on_its_own_input(detector):
    """--explain's heatmaps of SBI's faces (Detector.heatmaps): at the crop's size, in [0, 1], with
    warm and cold parts, each of its own face."""
    face = cv2.resize(builtin_photos()["astronaut"][:300, 100:400], (380, 380))
    plain, mirrored = detector.heatmaps([face, np.ascontiguousarray(face[:, ::-1])], CPU)
    for heatmap in (plain, mirrored):
        assert heatmap.shape == (380, 380) and heatmap.min() >= 0 and heatmap.max() <= 1
        assert heatmap.max() - heatmap.min() > 0.5
    assert np.abs(plain - mirrored).max() > 0.1


def test_a_photo_keeps_every_face_as_their_image_script_does_and_a_video_frame_only_the_large(tmp_path):
    """Their inference_image.py crops every face RetinaFace finds (no half-area rule) and scores the
    most fake; their video scripts keep faces of at least half the largest's area."""
    from inference.detectors import sbi_crops

    frame = np.zeros((400, 800, 3), np.uint8)
    boxes = [[50.0, 50.0, 350.0, 350.0], [500.0, 100.0, 600.0, 200.0]]  # the second: a ninth of the area
    assert len(sbi_crops.frame_faces(frame, boxes)[1]) == 1
    assert len(sbi_crops.frame_faces(frame, boxes, every_face=True)[1]) == 2
    face = builtin_photos()["astronaut"]
    small = cv2.resize(face, (200, 200))
    scene = np.zeros((512, 900, 3), np.uint8)
    scene[:, :512], scene[156:356, 650:850] = face, small
    cv2.imwrite(str(tmp_path / "scene.png"), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    with VideoWriter(tmp_path / "scene.mp4", fps=25, width=900, height=512, crf=16) as writer:
        writer.write(scene)
    finder = inference_detector(1.0, torch.device("cpu"))
    assert len(sbi.SbiFaces().read(tmp_path / "scene.png", finder, None).crops) == 2, "a photo: every face"
    assert len(sbi.SbiFaces().read(tmp_path / "scene.mp4", finder, None).crops) == 1, "a video frame: the large"
