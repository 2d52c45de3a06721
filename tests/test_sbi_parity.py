"""Self-Blended Images (inference/detectors/sbi*.py) against the authors' code re-derived in
tests/sbi_authors.py: given the same decoded frames and the same boxes, the same frames, boxes and
crops to the pixel; given the same crops and a checkpoint in their format, the same p(fake) and
video score as their EfficientNet-B4 in fp32 (1e-4)."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from inference.detectors import sbi, sbi_crops
from inference.pipeline.detector import Run
from inference.pipeline.faces import inference_detector
from preprocess.faces.face_detector import FaceDetections
from tests import sbi_authors as authors
from tests.conftest import shared_data
from tests.test_media_limits import cut_video  # noqa: F401 (a fixture)

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")

CPU = torch.device("cpu")


def _key(frame: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(frame).tobytes()).hexdigest()


class Recording:
    """The run's MTCNN as the source calls it (frame by frame), each frame's boxes kept by its pixels;
    or, with `boxes`, a finder that gives those boxes (scaled to each frame) instead."""

    def __init__(self, inner=None, boxes=None):
        self.inner, self.boxes, self.seen = inner, boxes, {}
        self.seed_every, self.device = 0, CPU

    def detect(self, frame: np.ndarray) -> FaceDetections:
        if self.inner is not None:
            found = self.inner.detect(frame)
        else:
            height, width = frame.shape[:2]
            boxes = np.array([[x * width, y * height, x2 * width, y2 * height] for x, y, x2, y2 in self.boxes])
            found = FaceDetections(
                boxes.astype(np.float32), np.ones(len(boxes), np.float32), np.zeros((len(boxes), 5, 2))
            )
        self.seen[_key(frame)] = found.boxes
        return found


def _hostile_frame_boxes(width: int, height: int) -> list[tuple[str, list[list[float]]]]:
    """Boxes RetinaFace could return (unclipped) and MTCNN gives as float32, on one frame each."""
    w, h = 80.0, 96.0  # w / 8 = 10, h / 8 = 12
    f32 = np.float32
    near_edge = [width - 90.2, height - 100.7, width + 35.55, height + 9.1]
    face = [10, 10, 110, 110]
    return [
        ("past the top left, past the bottom right", [[-12.37, -20.4, 150.81, 170.26], near_edge]),
        (
            "ends at .5 exactly: int() truncates, +1",
            [[100.5, 60.5, 100.5 + w, 60.5 + h], [300.25, 200.75, 380.25, 296.75]],
        ),
        ("starts at -0.5 after the margin: int() gives 0", [[9.5, 11.5, 9.5 + w, 11.5 + h]]),
        ("float32 rounded at the second decimal", [[f32(40.125), f32(50.335), f32(141.005), f32(160.994999)]]),
        ("exactly half the largest area is kept, less is not", [face, [200, 10, 250, 110], [300, 10, 349, 110]]),
        ("a box wholly left of the frame: their slice end wraps", [face, [-300.0, 10.0, -200.0, 110.0]]),
        ("a crop with no pixels loses the frame", [face, [-19.5, 20.0, -3.5, 60.0]]),
        ("a box at the right edge is the finder's degenerate box", [face, [width - 1.0, 10, width + 40.0, 60]]),
        ("no box", []),
    ]


@pytest.mark.shared_data
def test_crops_are_the_authors_to_the_pixel_on_hostile_boxes():
    frames = authors.authors_frames(shared_data("dfdc_mini", "dfdc_train_part_0", "634.mp4"))
    frame = frames[min(frames)]
    height, width = frame.shape[:2]
    outcomes = {}
    for case, boxes in _hostile_frame_boxes(width, height):
        expected_boxes, expected_crops = authors.authors_frame_faces(frame, boxes)
        got_boxes, got_crops = sbi_crops.frame_faces(frame, np.asarray(boxes, np.float32).reshape(-1, 4))
        assert got_boxes == expected_boxes, case
        assert len(got_crops) == len(expected_crops), case
        for got, expected in zip(got_crops, expected_crops, strict=True):
            assert got.shape == (380, 380, 3) and got.dtype == np.uint8, case
            assert np.array_equal(got, expected), case
        outcomes[case] = len(got_crops)
    # the cases test what they say: kept, dropped and lost as their code does
    assert outcomes["exactly half the largest area is kept, less is not"] == 2
    assert outcomes["a box wholly left of the frame: their slice end wraps"] == 2
    assert outcomes["a crop with no pixels loses the frame"] == 0
    assert outcomes["a box at the right edge is the finder's degenerate box"] == 1
    assert sbi_crops.finder_box([40.125, 50.335, 141.005, 160.995], width, height) == [40.12, 50.34, 141.0, 161.0]
    assert sbi_crops.crop_bounds([100.5, 60.5, 180.5, 156.5], width, height) == (48, 169, 90, 191)
    assert sbi_crops.crop_bounds([-300.0, 10.0, -200.0, 110.0], width, height)[3] == -186, "their slice end, unclamped"


def _read_as_the_source_does(path, mtcnn):
    return sbi.SbiFaces().read(path, mtcnn, SimpleNamespace())


def _authors_read(path, seen: dict) -> tuple[list[int], list[list[float]], list[np.ndarray], list[int]]:
    """Their extract_frames on their own reading of `path`, with the boxes the finder gave each frame."""
    frames = authors.authors_frames(path)
    boxes, crops, face_frames = [], [], []
    for index, frame in frames.items():
        assert _key(frame) in seen, f"frame {index}: not the pixels the source decoded"
        kept, cropped = authors.authors_frame_faces(frame, seen[_key(frame)].tolist())
        boxes += kept
        crops += cropped
        face_frames += [index] * len(cropped)
    return sorted(frames), boxes, crops, face_frames


@pytest.fixture(scope="module")
def clip_004():
    """004.mp4 read by the source with the run's MTCNN (recorded), and the authors' read of it."""
    path = shared_data("dfdc_mini", "dfdc_train_part_0", "004.mp4")
    mtcnn = Recording(inference_detector(0.5, CPU))
    faces = _read_as_the_source_does(path, mtcnn)
    return faces, _authors_read(path, mtcnn.seen)


def _assert_same_read(faces, expected, whole: bool = True) -> None:
    indices, boxes, crops, face_frames = expected
    assert faces.frame_indices == indices and (faces.frames_requested == indices or not whole)
    assert faces.boxes == boxes and faces.face_frames == face_frames
    assert len(faces.crops) == len(crops)
    for got, want in zip(faces.crops, crops, strict=True):
        assert np.array_equal(got, want)


@pytest.mark.shared_data
def test_a_real_clip_read_is_the_authors_frames_faces_and_crops(clip_004):
    faces, expected = clip_004
    _assert_same_read(faces, expected)
    assert len(faces.frame_indices) == 32 and len(faces.crops) >= 32
    assert any(faces.face_frames.count(i) > 1 for i in faces.frame_indices), "a frame with two faces kept"


@pytest.mark.shared_data
def test_a_portrait_clip_with_hostile_boxes_is_read_as_theirs_reads_it():
    """The DFDC portrait clip (720 x 1280, 30.02 fps), boxes past every edge and with .5 arithmetic."""
    path = shared_data("dfdc_mini", "dfdc_train_part_10", "yhffcuhhjy.mp4")
    finder = Recording(boxes=[(-0.05, 0.2, 0.6, 0.55), (0.5, 0.6, 1.07, 1.03), (0.125, 0.3, 0.3125, 0.4)])
    faces = _read_as_the_source_does(path, finder)
    _assert_same_read(faces, _authors_read(path, finder.seen))
    assert len(faces.crops) == 2 * 32 and faces.crops[0].shape == (380, 380, 3)


def _calibrated_state(images: torch.Tensor) -> dict:
    """Random weights in their names, each batch norm's statistics set to those of `images` (so that
    a signal passes 32 random blocks; statistics taken at one size do not carry to another)."""
    state = authors.random_authors_state(seed=3)
    with torch.no_grad():
        authors.authors_logits(state, images, calibrate=True, image_size=images.shape[-1])
    return state


@pytest.mark.shared_data
def test_scores_are_the_authors_model_in_fp32_at_380(clip_004, tmp_path):
    """THE full-size check (380 x 380, B4 on the CPU): a checkpoint in their exact format with random
    weights; their forward re-derived functionally (static padding for 380) against the timm model."""
    faces, _ = clip_004
    two_faces = next(i for i in faces.frame_indices if faces.face_frames.count(i) == 2)
    chosen = [k for k, frame in enumerate(faces.face_frames) if frame == two_faces]
    chosen.append(next(k for k, frame in enumerate(faces.face_frames) if frame != two_faces))
    crops, face_frames = [faces.crops[k] for k in chosen], [faces.face_frames[k] for k in chosen]
    state = _calibrated_state(torch.tensor(np.stack(crops)).permute(0, 3, 1, 2).float() / 255)
    path = tmp_path / "FFraw.tar"
    torch.save(authors.authors_checkpoint(state), path)
    detector = sbi.load_detector([path], [1.0], CPU)
    expected = authors.authors_p_fake(state, crops)
    assert np.ptp(expected) > 1e-3 and expected.min() > 0.01 and expected.max() < 0.99, "p(fake) not saturated"
    video = SimpleNamespace(crops=crops, face_frames=face_frames)
    [[got]] = detector.probabilities([video], Run(CPU, batch_size=2))
    assert np.abs(got - expected).max() < 1e-4
    score = detector.model_score(detector.models[0], got, video, Run(CPU))
    assert score == pytest.approx(authors.authors_video_score(expected, face_frames), abs=1e-4)
    assert score != pytest.approx(float(np.mean(expected)), abs=1e-6), "a frame's max, not every face, counts"


def test_their_model_package_is_the_oracle_of_the_key_map(tmp_path):
    """efficientnet_pytorch 0.7.1 (their model's package; skipped where not installed) built at 64 px,
    where its static padding equals timm's dynamic one: the same keys and shapes as the re-derivation,
    the same logits as it and as the detector's model."""
    efficientnet = pytest.importorskip("efficientnet_pytorch")
    net = efficientnet.EfficientNet.from_name("efficientnet-b4", num_classes=2, image_size=64).eval()
    theirs = {f"net.{key}": tuple(value.shape) for key, value in net.state_dict().items()}
    assert theirs == authors.authors_shapes()
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    state = _calibrated_state(images)
    net.load_state_dict({key.removeprefix("net."): value for key, value in state.items()})
    torch.save(authors.authors_checkpoint(state), tmp_path / "FFc23.tar")
    model = sbi.load_detector([tmp_path / "FFc23.tar"], [1.0], CPU).models[0].model
    with torch.no_grad():
        expected = net(images)
        assert torch.allclose(authors.authors_logits(state, images, image_size=64), expected, atol=1e-5)
        got = model(images)
    p_fake = expected.softmax(1)[:, 1]
    assert p_fake.min() > 0.01 and p_fake.max() < 0.99 and np.ptp(p_fake.numpy()) > 1e-3, "no saturated softmax"
    assert (got.softmax(1)[:, 1] - p_fake).abs().max() < 1e-4
    assert (got - expected).abs().max() < 1e-4


def test_timm_b4_at_380_is_their_padding_and_the_key_map_is_one_to_one():
    """The arithmetic behind the map, cheap: their static padding for 380 at each stride-2 conv is
    what TF-'same' gives a 380 input, and every tensor of timm's B4 has one of their names."""
    from inference.detectors import sbi_model

    size = 380
    for kernel, stride in [(3, 2)] + [(b["kernel"], b["stride"]) for b in authors.b4_blocks()]:
        pad = authors.static_same_pad(size, kernel, stride)
        dynamic = max((-(-size // stride) - 1) * stride + kernel - size, 0)  # timm's get_same_padding
        assert pad == (dynamic // 2, dynamic - dynamic // 2) * 2
        size = -(-size // stride)
    model = sbi_model.build_model()
    names = sbi_model.authors_keys(model)
    assert set(names) == set(authors.authors_shapes()) and len(set(names.values())) == len(model.state_dict())


def test_a_video_shorter_than_32_frames_gives_each_frame_once(tmp_path):
    """linspace(0, 9, 32, dtype=int) repeats indices: their loop takes each frame once, so do we."""
    from common.video_io import VideoWriter

    path = tmp_path / "short.mp4"
    with VideoWriter(path, 25, 160, 120) as writer:
        for level in range(10):
            writer.write(np.full((120, 160, 3), 20 * level, np.uint8))
    finder = Recording(boxes=[(0.25, 0.25, 0.75, 0.75)])
    faces = _read_as_the_source_does(path, finder)
    assert faces.frame_indices == list(range(10)) and faces.face_frames == list(range(10))
    _assert_same_read(faces, _authors_read(path, finder.seen))


def test_a_cut_video_is_scored_on_the_frames_read_before_the_first_failed_read(cut_video):  # noqa: F811
    """Where the container states more frames than it holds, their loop raises at the first failed
    read (their dataset script then scores the video 0.5); the source stops there and flags it."""
    import cv2

    finder = Recording(boxes=[(0.2, 0.2, 0.8, 0.8)])
    faces = _read_as_the_source_does(cut_video, finder)
    capture = cv2.VideoCapture(str(cut_video))
    stated, readable = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0
    while capture.read()[0]:
        readable += 1
    capture.release()
    assert stated == 40 and readable < 40, "their `frame_org.shape` on a failed read would raise"
    _assert_same_read(faces, _authors_read(cut_video, finder.seen), whole=False)
    assert 10 < len(faces.frame_indices) < 32 and faces.partial_reason.startswith("decoded")
    assert faces.frames_requested == sorted(set(np.linspace(0, 39, 32, dtype=int).tolist()))
