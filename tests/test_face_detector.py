"""MTCNN wrapper: coordinates in frame pixels at any scale, and frames too small for any face."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from preprocess.face_detector import INFERENCE_THRESHOLDS, FaceDetector


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


def test_boxes_are_in_frame_pixels_whatever_the_detection_scale(astronaut):
    boxes = {
        scale: FaceDetector(INFERENCE_THRESHOLDS, scale=scale, device="cpu").detect(astronaut).boxes
        for scale in (1.0, 0.5, 2.0)
    }
    assert all(len(b) == 1 for b in boxes.values())
    for scale in (0.5, 2.0):
        assert np.abs(boxes[scale][0] - boxes[1.0][0]).max() < 8, scale


@pytest.mark.parametrize("shape", [(1, 1, 3), (8, 8, 3), (15, 200, 3)])
def test_frames_too_small_for_a_face_have_none(shape):
    assert len(FaceDetector(INFERENCE_THRESHOLDS, scale=1.0, device="cpu").detect(np.zeros(shape, np.uint8))) == 0
