"""MTCNN wrapper: coordinates in frame pixels at any scale, frames too small for any face, channels-last
networks, frames held plane by plane (fast mode's seeded detection: tests/test_seeded_detection.py)."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from preprocess.faces.face_detector import INFERENCE_THRESHOLDS, FaceDetector


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


def test_channels_last_networks_find_the_original_boxes(astronaut):
    frames = [astronaut, np.ascontiguousarray(astronaut[:, ::-1]), astronaut[40:400, 60:500]]
    original = FaceDetector(INFERENCE_THRESHOLDS, scale=1.0, device="cpu", channels_last=False)
    ours = FaceDetector(INFERENCE_THRESHOLDS, scale=1.0, device="cpu")
    assert ours.mtcnn.pnet.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for frame in frames:
        expected, found = original.detect(frame), ours.detect(frame)
        assert len(found) == len(expected) >= 1
        assert np.abs(found.boxes - expected.boxes).max() < 1e-3
        assert np.abs(found.landmarks - expected.landmarks).max() < 1e-3
        assert np.abs(found.probs - expected.probs).max() < 1e-5


def test_frames_held_plane_by_plane_give_facenets_own_numbers(astronaut):
    """Exact mode hands MTCNN its frames as planes (`planar`), for a faster image pyramid: the boxes,
    probabilities and landmarks are those of the PIL images the original handed it, bit for bit."""
    from PIL import Image

    from preprocess.faces.face_detector import planar

    detector = FaceDetector(INFERENCE_THRESHOLDS, scale=0.5, device="cpu")
    crowd = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)  # two faces
    images = [
        Image.fromarray(frame).resize((frame.shape[1] // 2, frame.shape[0] // 2), Image.BICUBIC)
        for frame in (crowd, crowd[::-1, ::-1])
    ]
    with torch.inference_mode():
        original = detector.mtcnn.detect(images, landmarks=True)
        mine = detector.mtcnn.detect(planar(images), landmarks=True)
    assert planar(images).shape == (2, *np.asarray(images[0]).shape) and planar(images).stride()[-1] > 1
    for theirs, ours in zip(original, mine, strict=True):
        for a, b in zip(theirs, ours, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert len(original[0][0]) == 2, "both faces found"
    with torch.inference_mode():  # one frame alone, as exact mode detects it
        alone = detector.mtcnn.detect(images[:1], landmarks=True)
    np.testing.assert_array_equal(detector.detect(crowd).boxes, np.asarray(alone[0][0], np.float32) / 0.5)
