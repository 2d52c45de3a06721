"""The recall boost's second try and interpolation: never a repeat of the first pass, never a face
scored twice."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from inference.pipeline import face_tracks, faces
from inference.pipeline.faces import interpolated_boxes, retry_faceless, retry_scale
from preprocess.faces.face_detector import INFERENCE_THRESHOLDS, FaceDetector


def test_two_boxes_before_a_gap_never_pair_with_one_after_it():
    left, right = [100, 100, 160, 160], [120, 100, 180, 160]  # two faces side by side, IoU 0.5
    after = [110, 100, 170, 160]  # one of them seen after the gap
    found = interpolated_boxes([0, 10, 20], [[left, right], [], [after]])
    assert len(found[1]) == 1, "one person after the gap: one interpolated box, not two"
    assert found[1] == [[105.0, 100.0, 165.0, 160.0]], "paired with the box it overlaps most (a tie: the first)"


def test_pairs_are_one_to_one_and_maximise_the_overlap():
    a, b = [0, 0, 100, 100], [60, 0, 160, 100]
    a_later, b_later = [30, 0, 130, 100], [90, 0, 190, 100]  # a overlaps both, b only b_later
    found = interpolated_boxes([0, 2, 4], [[a, b], [], [a_later, b_later]])
    assert found[1] == [[15.0, 0.0, 115.0, 100.0], [75.0, 0.0, 175.0, 100.0]]
    alone = interpolated_boxes([0, 2, 4], [[a], [], [a_later, b_later]])
    assert alone[1] == [[15.0, 0.0, 115.0, 100.0]]


def test_pairs_below_the_minimum_overlap_do_not_steer_the_pairing(monkeypatch):
    """Overlaps 0.9 / 0.5 (first box before) and 0.5 / 0.19 (second): with the 0.19 pair counted,
    the most total overlap pairs 0.9 + 0.19 and then drops the 0.19 pair (one box); without it,
    the two 0.5 pairs (two boxes, each overlapping enough)."""
    table = {(0, 10): 0.9, (0, 11): 0.5, (1, 10): 0.5, (1, 11): 0.19}
    monkeypatch.setattr(face_tracks, "box_iou", lambda first, last: table[(first[0], last[0])])
    found = faces.interpolated_boxes([0, 2, 4], [[[0, 0, 1, 1], [1, 0, 2, 1]], [], [[10, 0, 11, 1], [11, 0, 12, 1]]])
    assert found[1] == [[5.5, 0.0, 6.5, 1.0], [5.5, 0.0, 6.5, 1.0]]


@pytest.mark.parametrize(("first", "retry"), [(0.5, 1.0), (1.0, 2.0), (0.33, 0.66), (2.0, 1.0), (3.0, 2.0), (1.5, 2.0)])
def test_the_retry_scale_is_never_the_first(first, retry):
    assert retry_scale(first) == pytest.approx(retry)
    assert not np.isclose(retry_scale(first), first)


@pytest.mark.parametrize(
    ("scale", "size", "tried"), [("rule", 240, [2.0, 1.0]), ("rule", 640, [1.0, 2.0]), (0.5, 240, [0.5, 1.0])]
)
def test_a_faceless_frame_is_retried_at_another_scale(monkeypatch, scale, size, tried):
    detector = FaceDetector(INFERENCE_THRESHOLDS, scale, device="cpu")
    frame = np.full((size * 3 // 4, size, 3), 30, np.uint8)  # dark: the brightened copy is tried too
    scales = []

    def detect(image, at=None):
        scales.append(at or detector.frame_scale(image.shape[1], image.shape[0]))
        return SimpleNamespace(boxes=np.zeros((0, 4)))

    monkeypatch.setattr(detector, "detect", detect)
    detector.detect(frame)
    assert len(retry_faceless(detector, frame)) == 0
    assert scales == [tried[0], tried[1], tried[1]], "first pass, retry, retry on the brightened copy"
