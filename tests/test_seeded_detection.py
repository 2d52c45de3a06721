"""Fast mode's seeded detection (inference/pipeline/face_tracks.py, mtcnn_seeded.detect_seeded): the key
frames, the seeds planned between them, the fallback to the full pyramid where a face is lost, and
the recall boost's bound on retried frames (inference/pipeline/faces.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from inference.pipeline import face_tracks, faces
from inference.pipeline.face_tracks import (
    detect_seeded_frames,
    face_lost,
    interpolated_boxes,
    jittered,
    key_positions,
    seeds,
)
from inference.pipeline.faces import (
    MAX_RETRIED_FRAMES,
    RETRY_STEP,
    SEED_EVERY,
    detect_frames,
    frames_to_retry,
    inference_detector,
)
from preprocess.faces.face_detector import FaceDetections

# Boxes of the real detector within this fraction of the face's width (8 px on the 41 px face
# here): the full pyramid's own box of this face moves by up to 4 px between detection at half size
# and at the frame's size (where seeded detection looks), and by 4-7 px between frames shifted by
# 6 px. A box in the wrong pixels (half size) or a seed returned unrefined (12 px off) fails it.
BOX_TOLERANCE = 0.2


def detections(*boxes) -> FaceDetections:
    return FaceDetections(np.array(boxes, np.float32).reshape(-1, 4), np.ones(len(boxes)), np.zeros((len(boxes), 5, 2)))


@pytest.mark.parametrize(
    ("count", "every", "expected"),
    [(32, 4, [0, 4, 8, 12, 16, 20, 24, 28, 31]), (0, 4, []), (5, 1, [0, 1, 2, 3, 4]), (9, 4, [0, 4, 8]), (1, 4, [0])],
)
def test_key_frames_are_every_nth_and_the_last(count, every, expected):
    assert key_positions(count, every) == expected


def test_seeds_are_both_key_boxes_and_their_interpolation_at_three_sizes():
    """Frame indices unevenly spaced: the interpolation goes by index (weight 2/20 at position 1)."""
    before, after = [100, 100, 140, 140], [120, 100, 160, 140]  # one face moving right, IoU 1/3
    planned = seeds([0, 2, 10, 15, 20], [0, 4], {0: np.array([before]), 4: np.array([after])})
    assert sorted(planned) == [1, 2, 3], "the frames between the key frames, not the key frames"
    expected = [
        *([103, 103, 137, 137], [123, 103, 157, 137], [105, 103, 139, 137]),  # 0.85 about each centre
        *(before, after, [102, 100, 142, 140]),  # as found, and interpolated at index 2
        *([96, 96, 144, 144], [116, 96, 164, 144], [98, 96, 146, 144]),  # 1.2
    ]
    np.testing.assert_allclose(planned[1], expected, atol=1e-4)
    assert face_tracks.SEED_SCALES == (0.85, 1.0, 1.2)
    np.testing.assert_allclose(planned[2][4:6], [after, [110, 100, 150, 140]], atol=1e-4)  # halfway


def test_a_face_seen_by_one_key_frame_seeds_but_is_not_interpolated():
    moving, elsewhere = [100, 100, 140, 140], [400, 100, 440, 140]
    moved = [110, 100, 150, 140]
    planned = seeds([0, 1, 2], [0, 2], {0: np.array([moving, elsewhere]), 2: np.array([moved])})
    np.testing.assert_allclose(planned[1], jittered([moving, elsewhere, moved, [105, 100, 145, 140]]), atol=1e-4)
    alone = seeds([0, 1, 2], [0, 2], {0: np.array([elsewhere]), 2: np.zeros((0, 4))})
    np.testing.assert_allclose(alone[1], jittered([elsewhere]), atol=1e-4)
    assert len(seeds([0, 1, 2], [0, 2], {0: np.zeros((0, 4)), 2: np.zeros((0, 4))})[1]) == 0


@pytest.mark.parametrize(
    ("found", "before", "after", "lost"),
    [
        (0, 0, 0, True),  # nothing found: the full pyramid, even where the key frames saw nothing
        (0, 1, 1, True),
        (1, 1, 1, False),
        (1, 2, 2, True),  # fewer than both key frames saw
        (1, 1, 2, False),  # as many as one of them: a face may have come or gone
        (1, 2, 1, False),
        (3, 2, 2, False),
        (1, 0, 0, False),
    ],
)
def test_face_lost(found, before, after, lost):
    assert face_lost(found, before, after) is lost


def test_past_six_faceless_frames_every_fourth_and_the_last_are_retried():
    assert (MAX_RETRIED_FRAMES, RETRY_STEP) == (6, 4)
    assert frames_to_retry([1, 0, 0, 2, 0]) == [1, 2, 4], "six or fewer: all of them"
    assert frames_to_retry([0] * 6 + [1]) == list(range(6))
    faces_per_frame = [0] * 15
    for position in (3, 7, 8):
        faces_per_frame[position] = 1
    # faceless: 0 1 2 4 5 6 9 10 11 12 13 14; their 0th, 4th and 8th, and the last
    assert frames_to_retry(faces_per_frame) == [0, 5, 11, 14]
    assert frames_to_retry([1, 2, 1]) == []


def test_the_retried_frames_leave_no_gap_the_interpolation_cannot_bridge():
    """Every faceless video length up to 100: if every retry finds the face, the interpolation
    (at most three sampled frames between two boxes) gives every frame one."""
    for count in range(7, 101):
        retried = frames_to_retry([0] * count)
        boxes = [[[0.0, 0.0, 10.0, 10.0]] if position in retried else [] for position in range(count)]
        filled = set(retried) | set(interpolated_boxes(list(range(count)), boxes))
        assert filled == set(range(count)), count
        assert len(retried) <= count // RETRY_STEP + 2


class FakeDetector:
    """detect_each: the full pyramid, boxes from `full`; detect_seeded: boxes from `seeded`; both
    keyed by frame position (each frame is filled with its position), every call recorded."""

    def __init__(self, full: dict, seeded: dict):
        self.full, self.seeded, self.batches, self.seeded_calls = full, seeded, [], []

    def detect_each(self, frames):
        positions = [int(frame[0, 0, 0]) for frame in frames]
        self.batches.append(positions)
        return [self.full[p] for p in positions]

    def detect_seeded(self, frames, planned):
        positions = [int(frame[0, 0, 0]) for frame in frames]
        self.seeded_calls.append((positions, planned))
        return [self.seeded[p] for p in positions]


def test_seeded_frames_fall_back_to_the_full_pyramid_where_a_face_is_lost():
    one, two = [100, 100, 140, 140], [300, 100, 340, 140]
    full = {p: detections([p, 0, p + 10, 10]) for p in range(9)}  # the fallback's boxes tell it apart
    full |= {0: detections(one), 4: detections(one, two), 8: detections(one, two)}
    seeded = {1: detections(one), 2: detections(), 3: detections(one)}  # between 1 face and 2
    seeded |= {5: detections(one), 6: detections(one, two), 7: detections(one, two, [0, 0, 30, 30])}  # 2 and 2
    detector, frames = FakeDetector(full, seeded), [np.full((4, 4, 3), p, np.uint8) for p in range(9)]
    indices = [0, 3, 6, 9, 12, 15, 18, 21, 24]
    found = detect_seeded_frames(detector, frames, indices, every=4)
    assert detector.batches == [[0, 4, 8], [2, 5]], "the key frames, then the frames that lost a face"
    [(positions, planned)] = detector.seeded_calls
    assert positions == [1, 2, 3, 5, 6, 7]
    expected = seeds(indices, [0, 4, 8], {k: full[k].boxes for k in (0, 4, 8)})
    for position, frame_seeds in zip(positions, planned, strict=True):
        np.testing.assert_array_equal(frame_seeds, expected[position])
    assert len(found) == 9, "one entry per frame, in frame order"
    for position, (boxes, how) in enumerate(found):
        source = full if position in (0, 2, 4, 5, 8) else seeded
        np.testing.assert_array_equal(boxes, source[position].boxes, err_msg=f"frame {position}")
        assert how == ("detected" if source is full else "seeded"), f"frame {position}"


@pytest.fixture(scope="module")
def detector():
    """Fast mode's detector on a CPU, as predict --fast makes it."""
    fast = inference_detector(0.5, torch.device("cpu"), fast=True)
    assert fast.seed_every == SEED_EVERY == 4 and fast.device.type == "cpu"
    return fast


@pytest.fixture(scope="module")
def face():
    """The astronaut's photo at 256 px: a face about 41 px wide."""
    return cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)


def canvas(face: np.ndarray, left: int | None) -> np.ndarray:
    frame = np.full((360, 640, 3), 90, np.uint8)
    if left is not None:
        frame[60:316, left : left + 256] = face
    return frame


def assert_close(found: np.ndarray, expected: np.ndarray) -> None:
    assert found.shape == expected.shape == (1, 4)
    width = expected[0, 2] - expected[0, 0]
    assert np.abs(found - expected).max() < BOX_TOLERANCE * width, (found, expected)


def test_a_seed_near_a_face_finds_the_full_pyramids_box(detector, face):
    frame = canvas(face, 100)
    expected = detector.detect_each([frame])[0].boxes
    seed = expected + np.float32([12, -6, 12, -6])  # where the face was a few frames before
    assert np.abs(seed - expected).max() > BOX_TOLERANCE * (expected[0, 2] - expected[0, 0])
    [found] = detector.detect_seeded([frame], [jittered(seed)])  # as detect_seeded_frames gives seeds
    assert_close(found.boxes, expected)
    assert found.probs[0] > 0.8 and found.landmarks.shape == (1, 5, 2)


def test_seeds_find_only_their_own_frames_faces(detector, face):
    """Two frames in one call: the first seeded on a blank corner and where the second's face is
    (blank in the first), the second on its face."""
    first, second = canvas(face, 20), canvas(face, 360)
    expected = detector.detect_each([second])[0].boxes
    blank_corner = np.float32([[560, 270, 630, 350]])
    found = detector.detect_seeded([first, second], [np.concatenate([blank_corner, expected]), jittered(expected)])
    assert len(found[0]) == 0, "seeds far from the first frame's face find nothing"
    assert_close(found[1].boxes, expected)
    assert [len(f) for f in detector.detect_seeded([first, second], [np.zeros((0, 4)), blank_corner])] == [0, 0]


def recorded(detector, monkeypatch) -> list[int]:
    """Sizes of the detector's full-pyramid calls, recorded from now on."""
    sizes, detect_each = [], detector.detect_each
    monkeypatch.setattr(
        detector, "detect_each", lambda frames, *a, **k: sizes.append(len(frames)) or detect_each(frames, *a, **k)
    )
    return sizes


def test_seeded_detection_of_a_moving_face_matches_the_full_pyramid(detector, face, monkeypatch):
    frames = [canvas(face, 40 + 3 * k) for k in range(17)]
    full_pyramid = recorded(detector, monkeypatch)
    found = detect_frames(detector, frames, recall=False)
    assert full_pyramid == [5], "the full pyramid on the key frames 0, 4, 8, 12 and 16 only: no face lost"
    everywhere = [found.boxes for found in detector.detect_each(frames)]  # exact mode's boxes
    assert full_pyramid == [5, 17]
    for position, ((boxes, how), expected) in enumerate(zip(found, everywhere, strict=True)):
        assert how == ("detected" if position % 4 == 0 else "seeded"), "key frames detected, the others seeded"
        assert_close(boxes, expected)


def test_a_face_that_jumps_past_its_seeds_is_found_by_the_full_pyramid(detector, face, monkeypatch):
    """The face on the left in the key frames and on the right between them: the seeds (left)
    find nothing, and those frames get the full pyramid."""
    lefts = [40 if position % 4 == 0 else 360 for position in range(17)]
    full_pyramid = recorded(detector, monkeypatch)
    found = detect_frames(detector, [canvas(face, left) for left in lefts], recall=False)
    assert full_pyramid == [5, 12], "the key frames, then the twelve frames between"
    for (boxes, _), left in zip(found, lefts, strict=True):
        assert len(boxes) == 1 and left <= boxes[0, 0] < boxes[0, 2] <= left + 256


def test_the_recall_boost_retries_four_of_twelve_faceless_frames(monkeypatch):
    class Faceless:
        seed_every, device = 0, torch.device("cpu")

        def detect(self, frame):
            return detections()

    retried = []

    def retry(detector, frame):
        retried.append(int(frame[0, 0, 0]))
        return np.float32([[0, 0, 10, 10]])

    monkeypatch.setattr(faces, "retry_faceless", retry)
    frames = [np.full((4, 4, 3), p, np.uint8) for p in range(12)]
    found = detect_frames(Faceless(), frames, recall=True, threads=1)
    assert retried == [0, 4, 8, 11]
    assert [how for _, how in found] == ["retried" if p in retried else "detected" for p in range(12)]
    assert all(len(boxes) == (1 if how == "retried" else 0) for boxes, how in found)


class ExactOnly:
    """A seeding detector that records which frames get the full pyramid; seeding must not run."""

    seed_every, device = 2, torch.device("cpu")

    def __init__(self):
        self.full = []

    def detect_each(self, frames):
        self.full.append([frame.shape for frame in frames])
        return [detections([0, 0, 4, 4]) for _ in frames]

    def detect_seeded(self, frames, planned):
        raise AssertionError("no seeds here")


@pytest.mark.parametrize("count", [1, 2, 3, 8, faces.MIN_SEEDED_FRAMES - 1])
def test_too_few_frames_to_seed_are_all_detected_as_exact_mode_does(count):
    """A seeded frame's miss weighs more in a video of few frames: a 3-frame clip moved by 0.12
    and an 8-frame reading by 0.14 in fast mode (32 frames: within 0.035), so fewer than
    MIN_SEEDED_FRAMES get the full pyramid on every frame."""
    detector = ExactOnly()
    found = detect_frames(detector, [np.zeros((8, 8, 3), np.uint8)] * count, recall=False)
    assert detector.full == [[(8, 8, 3)] * count] and [how for _, how in found] == ["detected"] * count


def test_from_min_seeded_frames_on_the_frames_between_key_frames_are_seeded():
    class Seeding(ExactOnly):
        def detect_seeded(self, frames, planned):
            return [detections([0, 0, 4, 4]) for _ in frames]

    found = detect_frames(Seeding(), [np.zeros((8, 8, 3), np.uint8)] * faces.MIN_SEEDED_FRAMES, recall=False)
    assert [how for _, how in found].count("seeded") == faces.MIN_SEEDED_FRAMES - len(
        key_positions(faces.MIN_SEEDED_FRAMES, Seeding.seed_every)
    )


def test_frames_that_change_size_get_the_full_pyramid_each():
    """PyAV decodes a stream whose frames change size as they are: seeds from one size would be
    clipped to another's frame, so no frame is seeded."""
    detector = ExactOnly()
    frames = [np.zeros((8, 8, 3), np.uint8)] * 10 + [np.zeros((4, 6, 3), np.uint8)] * 8
    found = detect_frames(detector, frames, recall=False)
    assert detector.full == [[(8, 8, 3)] * 10 + [(4, 6, 3)] * 8] and len(found) == 18


def test_seeded_candidates_are_cut_and_resized_as_facenet_pytorch_cuts_them():
    """Seeded frames give RNet and ONet the patches exact mode's MTCNN would: the same pixels of
    the frame at detection size, PyTorch's area interpolation, the same normalisation."""
    from facenet_pytorch.models.utils.detect_face import imresample, pad

    from preprocess.faces.mtcnn_seeded import _candidates_as_facenet

    image = np.random.default_rng(5).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    boxes = torch.tensor([[10.0, 5.0, 40.0, 35.0], [-6.0, -4.0, 20.0, 22.0], [70.0, 50.0, 95.0, 75.0]])
    image_of = torch.zeros(3, dtype=torch.long)
    patches = _candidates_as_facenet([image], image_of, boxes, 24)
    outside = _candidates_as_facenet([image], torch.zeros(1, dtype=torch.long), torch.tensor([[90.0, 70, 99, 79]]), 24)
    assert torch.equal(outside, torch.zeros(1, 3, 24, 24)), "a box wholly outside: a neutral input"
    floats = torch.from_numpy(image).permute(2, 0, 1).float().unsqueeze(0)
    y, ey, x, ex = pad(boxes, 80, 60)
    for k in range(3):
        expected = (imresample(floats[:, :, y[k] - 1 : ey[k], x[k] - 1 : ex[k]], (24, 24)) - 127.5) * 0.0078125
        assert torch.equal(patches[k], expected[0]), k
