"""GenD's own face finder where the user places it (inference/detectors/gend_scrfd.py): SCRFD's
letterbox, input and post-processing against tests/scrfd_authors.py's re-derivation of the authors'
wrapper on synthetic outputs (always); the onnxruntime path on a tiny ONNX graph of det_10g's
signature (skipped without onnxruntime); a placed file that cannot run, or no onnxruntime: a warning
and the run's MTCNN."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from common.cli import InputError
from common.video_io import VideoWriter, iter_frames
from inference.detectors import gend, gend_scrfd
from inference.detectors.gend_crops import align_face
from preprocess.demo_world.identities import builtin_photos
from tests.scrfd_authors import (
    Face,
    authors_blob,
    authors_detections,
    authors_letterbox,
    overlap,
    scrfd_onnx,
    synthetic_outputs,
)

CPU = torch.device("cpu")
F32 = np.float32

# faces of every kind the decode meets: at the frame's edges (boxes and points beyond it, unclipped),
# at each stride and anchor, a score exactly at the threshold (kept) and one just below (dropped)
EDGES = [
    Face(8, 0, 0, 0, 0.95, (3.0, 2.0, 1.5, 1.0)),
    Face(8, 79, 79, 1, 0.9, (1.0, 1.0, 4.0, 3.5)),
    Face(16, 0, 39, 1, 0.8),
    Face(32, 19, 0, 0, 0.7, (0.5, 3.0, 2.0, 0.5)),
    Face(32, 10, 10, 1, float(F32(0.1))),
    Face(16, 20, 20, 0, float(np.nextafter(F32(0.1), F32(0)))),
]


def overlapping() -> list[Face]:
    """Boxes around one face at stride 16 (4 locations apart from the next cluster): the best
    suppresses a neighbour overlapping it by more than 0.4, keeps one at 0.4 or less; a box only the
    suppressed one overlapped survives (no chained suppression)."""
    faces = [Face(16, 10, 10, 0, 0.9, (3.0, 3.0, 3.0, 3.0))]
    faces.append(Face(16, 10, 11, 0, 0.8, (3.0, 3.0, 3.0, 3.0)))  # shifted by 1/6 of the box: overlap ~0.7
    faces.append(Face(16, 10, 13, 1, 0.7, (3.0, 3.0, 3.0, 3.0)))  # shifted by 1/2: overlap ~0.33
    faces.append(Face(16, 10, 12, 0, 0.6, (0.5, 0.5, 0.5, 0.5)))  # inside the suppressed one's box too
    faces.append(Face(16, 30, 30, 0, 0.85, (2.0, 2.0, 2.0, 2.0)))
    faces.append(Face(16, 30, 30, 1, 0.84, (2.0, 2.0, 2.0, 2.0)))  # the same box: suppressed
    return faces


# two boxes 56 x 33 (with their +1) 24 px apart: overlap 32 / 80, exactly float32(0.4): both kept
AT_THE_THRESHOLD = [Face(8, 60, 10, 0, 0.5, (3.5, 2.0, 3.375, 2.0)), Face(8, 60, 13, 0, 0.45, (3.5, 2.0, 3.375, 2.0))]


def assert_same(found, det, kps):
    """FaceDetections equal, number for number, to the authors' det and kps."""
    np.testing.assert_array_equal(found.boxes, det[:, :4])
    np.testing.assert_array_equal(found.probs, det[:, 4])
    np.testing.assert_array_equal(found.landmarks, kps)
    assert found.boxes.dtype == found.landmarks.dtype == np.float32


@pytest.mark.parametrize("shape", [(500, 281), (270, 480), (1080, 1920), (360, 360), (641, 3)])
def test_the_letterbox_and_input_are_the_authors(shape):
    """Portrait, landscape, 16:9, square and a sliver: their resize, paste and scale; the input their
    blobFromImage makes of the BGR letterbox (channels swapped to RGB) from the RGB frame here."""
    rng = np.random.default_rng(sum(shape))
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected, expected_scale = authors_letterbox(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    boxed, scale = gend_scrfd.letterbox(rgb)
    assert scale == expected_scale
    np.testing.assert_array_equal(boxed, cv2.cvtColor(expected, cv2.COLOR_BGR2RGB))
    np.testing.assert_array_equal(gend_scrfd.network_input(boxed), authors_blob(expected))


def test_a_frame_too_thin_to_letterbox_is_refused():
    """640 / 641 rounds the width to 0 pixels: their cv2.resize fails and their loop skips the frame."""
    with pytest.raises(ValueError, match="1 x 641 frame is too thin"):
        gend_scrfd.letterbox(np.zeros((641, 1, 3), np.uint8))


def test_anchor_centres_run_row_by_row_with_each_locations_two_anchors_together():
    centres = gend_scrfd.anchor_centres(80, 80, 8)
    assert centres.shape == (12800, 2) and centres.dtype == np.float32
    assert centres[:4].tolist() == [[0, 0], [0, 0], [8, 0], [8, 0]]
    assert centres[160].tolist() == [0, 8] and centres[-1].tolist() == [632, 632]


@pytest.mark.parametrize("det_scale", [1.0, 640 / 1920, 360 / 641])
def test_edges_and_ties_at_the_threshold_decode_as_the_authors(det_scale):
    outputs = synthetic_outputs(EDGES)
    found = gend_scrfd.frame_detections(outputs, det_scale)
    assert_same(found, *authors_detections(outputs, det_scale))
    assert len(found) == 5, "every face but the one just under the threshold"
    assert found.probs[-1] == F32(0.1), "a score equal to the threshold is kept"
    first = found.boxes[0] * F32(det_scale)
    assert first[0] < 0 and first[1] < 0, "the corner anchor's box goes beyond the frame, unclipped"
    assert found.boxes[1][2] * F32(det_scale) > 640


def test_nms_keeps_what_the_authors_keep():
    outputs = synthetic_outputs(overlapping(), seed=1)
    found = gend_scrfd.frame_detections(outputs, 0.75)
    det, kps = authors_detections(outputs, 0.75)
    assert_same(found, det, kps)
    assert found.probs.tolist() == [F32(0.9), F32(0.85), F32(0.7), F32(0.6)]
    suppressed = [Face(16, 10, 10, 0, 0.9, (3.0,) * 4), Face(16, 10, 11, 0, 0.8, (3.0,) * 4)]
    boxes = gend_scrfd.decode(synthetic_outputs(suppressed))[1]
    assert overlap(boxes[0], boxes[1]) > F32(0.4) > overlap(found.boxes[0] * F32(0.75), found.boxes[2] * F32(0.75))


def test_an_overlap_equal_to_the_nms_threshold_does_not_suppress():
    outputs = synthetic_outputs(AT_THE_THRESHOLD, seed=2)
    found = gend_scrfd.frame_detections(outputs, 1.0)
    assert_same(found, *authors_detections(outputs, 1.0))
    assert len(found) == 2 and overlap(found.boxes[0], found.boxes[1]) == F32(0.4)


def test_many_random_overlapping_candidates_decode_as_the_authors():
    """300 candidates in 6 clusters, distinct scores, at every stride: the same rows, in the same order."""
    rng = np.random.default_rng(7)
    scores = rng.permutation(np.linspace(0.1, 0.99, 300))
    faces = []
    for n, score in enumerate(scores):
        stride = (8, 16, 32)[n % 3]
        width = 640 // stride
        row, column = rng.integers(0, width // 6) + (n % 6) * (width // 6), rng.integers(0, width)
        distances = tuple(rng.uniform(0.5, 6, 4))
        faces.append(
            Face(stride, int(row), int(column), int(n % 2), float(score), distances, list(rng.uniform(-3, 3, 10)))
        )
    outputs = synthetic_outputs(faces, seed=3)
    found = gend_scrfd.frame_detections(outputs, 0.5)
    assert 6 < len(found) < 300
    assert_same(found, *authors_detections(outputs, 0.5))


def test_no_candidate_is_no_face():
    found = gend_scrfd.frame_detections(synthetic_outputs([]), 0.5)
    assert len(found) == 0 and found.boxes.shape == (0, 4) and found.landmarks.shape == (0, 5, 2)
    with pytest.raises(ValueError, match="9 outputs"):
        gend_scrfd.decode(synthetic_outputs([])[:6])


def _stub_models(monkeypatch):
    monkeypatch.setattr(gend, "load_model", lambda *args: SimpleNamespace(name="model.safetensors", weight=1.0))


def test_without_onnxruntime_a_placed_det_10g_is_warned_of_and_mtcnn_finds_the_faces(tmp_path, caplog, monkeypatch):
    _stub_models(monkeypatch)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    (tmp_path / "det_10g.onnx").write_bytes(scrfd_onnx(synthetic_outputs(EDGES)))
    with caplog.at_level(logging.WARNING):
        detector = gend.load_detector([tmp_path / "model.safetensors"], [1.0], CPU)
    assert detector.source == gend.GEND_FACES and detector.source.scrfd is None
    assert "det_10g.onnx was placed but is not used" in caplog.text and "pip install onnxruntime" in caplog.text
    with pytest.raises(InputError, match="needs onnxruntime"):
        gend.load_detector([tmp_path / "model.safetensors"], [1.0], CPU, scrfd=tmp_path / "det_10g.onnx")


@pytest.fixture
def onnxruntime():
    pytest.importorskip("onnxruntime")
    yield
    gend_scrfd.forget()


@pytest.mark.parametrize(
    "content, reason",
    [
        (lambda: b"not an onnx model", "not an ONNX model onnxruntime loads"),
        (lambda: scrfd_onnx(synthetic_outputs(EDGES), outputs_count=6), "not SCRFD with keypoints"),
    ],
    ids=["not onnx", "six outputs"],
)
def test_a_placed_file_onnxruntime_cannot_run_as_scrfd_is_warned_of(
    onnxruntime, content, reason, tmp_path, caplog, monkeypatch
):
    _stub_models(monkeypatch)
    (tmp_path / "det_10g.onnx").write_bytes(content())
    with caplog.at_level(logging.WARNING):
        assert gend.load_detector([tmp_path / "model.safetensors"], [1.0], CPU).source.scrfd is None
    assert "det_10g.onnx was placed but is not used" in caplog.text and reason in caplog.text
    with pytest.raises(InputError, match=reason):
        gend.load_detector([tmp_path / "model.safetensors"], [1.0], CPU, scrfd=tmp_path / "det_10g.onnx")


def test_a_placed_det_10g_finds_gends_faces_through_onnxruntime(onnxruntime, tmp_path, monkeypatch):
    """The graph's outputs through onnxruntime: the same faces as the authors' wrapper on the same
    frames (the input's letterbox, channel order and scaling show in the scores), the largest of
    each aligned as GenD aligns it."""
    _stub_models(monkeypatch)
    faces = [Face(16, 12, 18, 0, 0.6, (3.0, 3.5, 3.0, 3.5)), Face(8, 30, 30, 1, 0.7)]
    outputs = synthetic_outputs(faces)
    (tmp_path / "det_10g.onnx").write_bytes(scrfd_onnx(outputs))
    detector = gend.load_detector([tmp_path / "model.safetensors"], [1.0], CPU)
    assert detector.source.scrfd == str(tmp_path / "det_10g.onnx")

    frame = np.ascontiguousarray(builtin_photos()["astronaut"][:, 64:448])  # 512 x 384: portrait
    frame[..., 0] //= 2  # not grey: the order of the channels shows in the probe
    found = gend_scrfd.scrfd_detections([frame], tmp_path / "det_10g.onnx")[0]
    det_img, det_scale = authors_letterbox(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    probe = authors_blob(det_img)[0].mean(axis=(1, 2), dtype=np.float64) @ np.array([0.3, -0.2, 0.1])
    assert abs(probe) > 1e-3
    expected = [outputs[0] + F32(probe)] + outputs[1:]
    det, kps = authors_detections(expected, det_scale)
    assert len(found) == len(det) == 2
    thin = np.zeros((641, 1, 3), np.uint8)
    assert not len(gend_scrfd.scrfd_detections([thin], tmp_path / "det_10g.onnx")[0]), "too thin: no face"
    np.testing.assert_allclose(found.probs, det[:, 4], atol=1e-6)
    np.testing.assert_array_equal(found.boxes, det[:, :4])
    np.testing.assert_array_equal(found.landmarks, kps)

    video = tmp_path / "face.mp4"
    with VideoWriter(video, fps=25, width=frame.shape[1], height=frame.shape[0], crf=16) as writer:
        for _ in range(3):
            writer.write(frame)
    read = detector.source.read(video, None, None)
    assert len(read.crops) == 3
    largest = int(np.argmax((det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])))
    assert read.boxes[0] == [float(v) for v in found.boxes[largest]], "constant outputs: the same face"
    decoded = dict(iter_frames(video, [read.face_frames[0]], gend.COUNT_BACKEND))[read.face_frames[0]]
    np.testing.assert_array_equal(read.crops[0], align_face(decoded, found.landmarks[largest]))
