"""tests/detection_memo.py: a frame detected again with the same settings gets the boxes it got, and
anything that changes MTCNN's answer (the pixels, the scale, the thresholds) is detected afresh."""

from __future__ import annotations

import numpy as np
import torch

from preprocess.demo_world.identities import builtin_photos
from preprocess.faces.face_detector import INFERENCE_THRESHOLDS, FaceDetections, FaceDetector

pytest_plugins = ("tests.detection_memo",)  # its `remembered_detections` fixture


DETECTION_MEMO_OF_ITS_OWN = True  # its counts are of its own calls, from an empty memo


def test_the_same_frame_and_settings_are_answered_from_memory_and_nothing_else_is(remembered_detections):
    counts = remembered_detections["counts"]
    photo = builtin_photos()["astronaut"]
    detector = FaceDetector(INFERENCE_THRESHOLDS, 0.5, device="cpu")
    first = detector.detect(photo)
    assert counts == {"misses": 1, "hits": 0} and len(first) == 1
    again = FaceDetector(INFERENCE_THRESHOLDS, 0.5, device="cpu").detect(photo.copy())  # another detector, alike
    assert counts == {"misses": 1, "hits": 1}
    np.testing.assert_array_equal(again.boxes, first.boxes)
    again.boxes[:] = 0  # a caller that changes its answer changes no one else's
    np.testing.assert_array_equal(detector.detect(photo).boxes, first.boxes)
    assert counts == {"misses": 1, "hits": 2}
    detector.detect(photo, scale=0.25)  # another scale
    FaceDetector([0.6, 0.7, 0.9], 0.5, device="cpu").detect(photo)  # other thresholds
    darker = (photo * 0.9).astype(np.uint8)
    detector.detect(darker)  # other pixels
    assert counts == {"misses": 4, "hits": 2}
    FaceDetector(INFERENCE_THRESHOLDS, "rule", device="cpu").detect(photo, scale=0.5)  # 0.5 asked for: the same
    assert counts == {"misses": 4, "hits": 3}


def test_an_answer_given_in_one_worker_is_read_in_another(monkeypatch, tmp_path):
    from tests import detection_memo

    detection_memo.record_detections()
    photo = builtin_photos()["astronaut"]
    monkeypatch.setattr(detection_memo, "shared_folder", tmp_path)
    answers = {}
    for worker in ("gw0", "gw1"):  # each with a memory of its own, empty
        monkeypatch.setattr(detection_memo, "SHARED_ANSWERS", {})
        memo = {"answers": detection_memo.SHARED_ANSWERS, "own": False, "counts": {"misses": 0, "hits": 0}}
        monkeypatch.setitem(detection_memo._asking, "memo", memo)
        answers[worker] = FaceDetector(INFERENCE_THRESHOLDS, 0.5, device="cpu").detect(photo)
        answers[worker + " counts"] = dict(memo["counts"])
    assert answers["gw0 counts"] == {"misses": 1, "hits": 0} and answers["gw1 counts"] == {"misses": 0, "hits": 1}
    assert [path.suffix for path in tmp_path.iterdir()] == [".npz"], "one file, no partial one left"
    for part in ("boxes", "probs", "landmarks"):
        np.testing.assert_array_equal(getattr(answers["gw1"], part), getattr(answers["gw0"], part))
    assert len(answers["gw1"]) == 1


def test_answers_that_are_not_mtcnns_own_are_not_given_from_memory(monkeypatch, tmp_path):
    """Every module's answers are recorded: those of a detector with other weights are kept apart, and a
    stand-in for MTCNN's detect (a test of what uses it) is neither recorded nor answered from memory."""
    from tests import detection_memo

    detection_memo.record_detections()
    photo = builtin_photos()["astronaut"]
    monkeypatch.setattr(detection_memo, "shared_folder", tmp_path)
    monkeypatch.setattr(detection_memo, "SHARED_ANSWERS", {})
    monkeypatch.setitem(detection_memo._asking, "memo", None)  # a module that does not ask
    faked = FaceDetector(INFERENCE_THRESHOLDS, 0.5, device="cpu")
    box, points = np.float32([[1, 2, 3, 4]]), np.zeros((1, 5, 2), np.float32)
    monkeypatch.setattr(faked.mtcnn, "detect", lambda images, landmarks=True: ([box], [np.float32([0.9])], [points]))
    assert faked.detect(photo).boxes.tolist() == [[2, 4, 6, 8]]
    reweighted = FaceDetector(INFERENCE_THRESHOLDS, 0.5, device="cpu")
    with torch.no_grad():
        reweighted.mtcnn.onet.dense6_3.weight.mul_(0)  # the landmarks' layer: the same box, other landmarks
    moved = reweighted.detect(photo)
    assert len(list(tmp_path.iterdir())) == 1, "the reweighted detector's answer only"
    memo = {"answers": detection_memo.SHARED_ANSWERS, "own": False, "counts": {"misses": 0, "hits": 0}}
    monkeypatch.setitem(detection_memo._asking, "memo", memo)  # a module that asks
    found = FaceDetector(INFERENCE_THRESHOLDS, 0.5, device="cpu").detect(photo)
    assert memo["counts"] == {"misses": 1, "hits": 0}
    assert len(found) == 1 and found.boxes[0, 2] - found.boxes[0, 0] > 50, "a face, not the stand-in's box"
    np.testing.assert_allclose(found.boxes, moved.boxes, atol=1e-3)
    assert np.abs(found.landmarks - moved.landmarks).max() > 1, "MTCNN's own landmarks"


def test_a_stand_in_for_detect_batch_set_for_a_whole_module_is_left_as_it_is(monkeypatch):
    from tests import detection_memo

    detection_memo.record_detections()

    def stand_in(self, frames_rgb, scale=None):
        return [FaceDetections.empty() for _ in frames_rgb]

    monkeypatch.setattr(FaceDetector, "detect_batch", stand_in)
    detection_memo.record_detections()  # as tests/conftest.py calls it before each test
    assert FaceDetector.__dict__["detect_batch"] is stand_in, "not recorded as MTCNN's answers"
