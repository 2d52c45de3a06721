"""tests/detection_memo.py: a frame detected again with the same settings gets the boxes it got, and
anything that changes MTCNN's answer (the pixels, the scale, the thresholds) is detected afresh."""

from __future__ import annotations

import numpy as np

from preprocess.demo_world.identities import builtin_photos
from preprocess.faces.face_detector import INFERENCE_THRESHOLDS, FaceDetector

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
        memo = {"answers": detection_memo.SHARED_ANSWERS, "counts": {"misses": 0, "hits": 0}}
        monkeypatch.setitem(detection_memo._asking, "memo", memo)
        answers[worker] = FaceDetector(INFERENCE_THRESHOLDS, 0.5, device="cpu").detect(photo)
        answers[worker + " counts"] = dict(memo["counts"])
    assert answers["gw0 counts"] == {"misses": 1, "hits": 0} and answers["gw1 counts"] == {"misses": 0, "hits": 1}
    assert [path.suffix for path in tmp_path.iterdir()] == [".npz"], "one file, no partial one left"
    for part in ("boxes", "probs", "landmarks"):
        np.testing.assert_array_equal(getattr(answers["gw1"], part), getattr(answers["gw0"], part))
    assert len(answers["gw1"]) == 1
