"""MTCNN wrapper: coordinates in frame pixels at any scale, frames too small for any face, channels-last
networks, and the OpenCV pipeline of fast mode."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from preprocess import mtcnn_seeded as mtcnn_opencv
from preprocess.face_detector import INFERENCE_THRESHOLDS, FaceDetector
from preprocess.mtcnn_seeded import pyramid_scales


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


def test_the_opencv_pipeline_has_the_original_pyramid_and_finds_the_same_faces(astronaut, monkeypatch):
    exact = FaceDetector(INFERENCE_THRESHOLDS, scale=0.5, device="cpu")
    fast = FaceDetector(INFERENCE_THRESHOLDS, scale=0.5, device="cpu", pipeline="opencv")
    levels = {"exact": [], "fast": []}
    for name, detector in (("exact", exact), ("fast", fast)):
        pnet = detector.mtcnn.pnet
        record = levels[name].append
        monkeypatch.setattr(pnet, "forward", lambda images, f=pnet.forward, r=record: r(images.shape[2:]) or f(images))
        detector.detect(astronaut)
    assert levels["fast"] == levels["exact"] and len(levels["exact"]) == 8, "facenet-pytorch's pyramid"
    assert pyramid_scales(256, 256, 20, 0.709) == pytest.approx([0.6 * 0.709**k for k in range(8)])
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    canvas[100:279, 300:479] = cv2.resize(astronaut, (179, 179), interpolation=cv2.INTER_AREA)  # a 30 px face
    canvas[300:556, 700:956] = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)  # and a 43 px one
    for frame in (astronaut, canvas, np.ascontiguousarray(canvas[:, ::-1])):
        expected, found = exact.detect(frame), fast.detect(frame)
        assert len(found) == len(expected) >= 1, "the same faces, the 15 px one (at half size) too"
        widths = expected.boxes[:, 2:3] - expected.boxes[:, 0:1]
        assert np.all(np.abs(found.boxes - expected.boxes) < 0.1 * widths), "within a tenth of the face's width"
        assert np.all(np.abs(found.landmarks - expected.landmarks) < 0.1 * widths[:, :, None])
        areas = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
        assert np.all(np.diff(areas) <= 0), "largest first, as MTCNN.detect orders them"
        assert np.abs(found.boxes - expected.boxes).max() > 1e-2, "the pyramid and candidates resized by OpenCV"
    assert len(fast.detect(np.full((200, 300, 3), 90, np.uint8))) == 0


def test_the_opencv_pipeline_finds_in_groups_what_it_finds_frame_by_frame(astronaut, monkeypatch):
    fast = FaceDetector(INFERENCE_THRESHOLDS, scale=1.0, device="cpu", pipeline="opencv")
    face = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)
    frames = []
    for left in (0, 120, None, 300, 440):  # a frame without a face in the middle
        frame = np.full((240, 600, 3), 80, np.uint8)
        if left is not None:
            frame[40:200, left : left + 160] = face
        frames.append(frame)
    monkeypatch.setattr(mtcnn_opencv, "GROUP_PIXELS", 2 * 240 * 600)
    assert mtcnn_opencv.group_size(600, 240) == 2, "three groups, run two at a time"
    grouped = fast.detect_batch(frames)
    alone = [fast.detect(frame) for frame in frames]
    assert [len(found) for found in grouped] == [len(found) for found in alone] == [1, 1, 0, 1, 1]
    for together, by_itself, left in zip(grouped, alone, (0, 120, None, 300, 440), strict=True):
        if left is None:
            continue
        assert np.abs(together.boxes - by_itself.boxes).max() < 1e-2
        assert np.abs(together.landmarks - by_itself.landmarks).max() < 1e-2
        assert left <= together.boxes[0, 0] < together.boxes[0, 2] <= left + 160, "each frame's own face"


def test_pipeline_must_be_known():
    with pytest.raises(ValueError, match="pipeline"):
        FaceDetector(INFERENCE_THRESHOLDS, device="cpu", pipeline="area")


def test_frames_held_plane_by_plane_give_facenets_own_numbers(astronaut):
    """Exact mode hands MTCNN its frames as planes (`planar`), for a faster image pyramid: the boxes,
    probabilities and landmarks are those of the PIL images the original handed it, bit for bit."""
    from PIL import Image

    from preprocess.face_detector import planar

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
