"""The original solution's prediction steps (inference/benchmarks/original_baseline.py) against the original's
kernel_utils.py arithmetic, re-derived here; and the sharpened checkpoint (inference/benchmarks/sharp_checkpoint.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from common import cli
from common.video_writer import VideoWriter
from inference.benchmarks import original_baseline as baseline
from inference.benchmarks import sharp_checkpoint
from inference.models.ensemble import Member, face_batch, load_member, random_member
from inference.pipeline.faces import extract_faces, inference_detector
from preprocess.faces.face_detector import ORIGINAL_SCALE
from tests.conftest import dfdc_metadata
from training.models.zoo import create_model

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")

CPU = torch.device("cpu")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _video(path, count, width=64, height=48):
    """`count` frames, each visibly different (a level that moves with the frame), no face."""
    ramp = np.linspace(0, 120, width, dtype=np.uint8)[None, :, None]
    with VideoWriter(path, 25, width, height) as writer:
        for i in range(count):
            frame = np.broadcast_to(ramp, (height, width, 3)).copy()
            frame[..., 1] = (i * 6) % 256
            writer.write(frame)
    return path


def _all_frames_rgb(path):
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def _original_indices(count, num_frames=32):
    """kernel_utils.VideoReader.read_frames + _read_frames_at_indices, on indices alone."""
    frame_idxs = np.linspace(0, count - 1, num_frames, endpoint=True).astype(int)
    idxs_read = []
    for frame_idx in range(frame_idxs[0], frame_idxs[-1] + 1):
        current = len(idxs_read)
        if frame_idx == frame_idxs[current]:
            idxs_read.append(frame_idx)
    return idxs_read


@pytest.mark.parametrize("count", [40, 10])
def test_sampled_frames_are_the_originals_indices_and_pixels(tmp_path, count):
    path = _video(tmp_path / "v.mp4", count)
    frames, indices = baseline.sampled_frames(path)
    expected = _original_indices(count)
    if count >= 32:  # distinct indices: every one of linspace's
        assert expected == list(np.linspace(0, count - 1, 32).astype(int)) and len(set(expected)) == 32
    else:  # linspace repeats index 0 first: the original matches it once and never again
        assert expected == [0]
    assert indices == expected
    every = _all_frames_rgb(path)
    assert len(every) == count
    assert len(frames) == len(indices)
    for frame, index in zip(frames, indices, strict=True):
        assert frame.dtype == np.uint8 and np.array_equal(frame, every[index]), index
    assert not np.array_equal(every[0], every[1]), "frames differ, so a wrong index would show"


def test_original_crop_is_the_originals_slice():
    frame = np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    # int(b * 2) truncates toward zero; a third of height/width added; clipped at 0 on top/left only
    cases = {
        (5.3, 2.7, 30.9, 40.2): (0, 80 + 25, 0, 61 + 17),  # corners (10, 5, 61, 80), h 75, w 51
        (20.2, 15.6, 40.7, 35.1): (31 - 13, 70 + 13, 40 - 13, 81 + 13),  # (40, 31, 81, 70), h 39, w 41
        (-3.2, -1.7, 20.6, 30.6): (0, 61 + 21, 0, 41 + 15),  # (-6, -3, 41, 61): -6.4 -> -6 (w 47, not 48)
        (45.0, 38.0, 58.9, 49.9): (76 - 7, 99 + 7, 90 - 9, 117 + 9),  # (90, 76, 117, 99) past the bottom right
    }
    for box, (top, bottom, left, right) in cases.items():
        crop = baseline.original_crop(frame, np.array(box, np.float32))
        assert np.array_equal(crop, frame[top:bottom, left:right]), box
        assert np.shares_memory(crop, frame), "a view of the frame, as the original's slice"


class _FakeDetector:
    def __init__(self, answers):
        self.answers, self.calls = list(answers), []

    def detect(self, image, **kwargs):
        self.calls.append((image, kwargs))
        return self.answers.pop(0), None


def test_detect_faces_halves_each_frame_and_cuts_each_box():
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (90, 121, 3), dtype=np.uint8) for _ in range(3)]
    boxes = [np.array([[3.4, 4.1, 20.6, 25.2], [30.0, 10.5, 50.2, 40.9]], np.float32), None, np.array([[1, 1, 9, 9.0]])]
    detector = _FakeDetector(boxes)
    faces = baseline.detect_faces(detector, frames)
    assert len(detector.calls) == 3 and all(kwargs == {"landmarks": False} for _, kwargs in detector.calls)
    for (image, _), frame in zip(detector.calls, frames, strict=True):
        assert image.size == (60, 45)  # PIL's default filter since Pillow 7: bicubic
        expected = Image.fromarray(frame).resize((60, 45), Image.Resampling.BICUBIC)
        assert np.array_equal(np.asarray(image), np.asarray(expected))
    expected = []
    for frame, frame_boxes in ((frames[0], boxes[0]), (frames[2], boxes[2])):
        for box in frame_boxes:
            x0, y0, x1, y1 = (int(v * 2) for v in box)
            ph, pw = (y1 - y0) // 3, (x1 - x0) // 3
            expected.append(frame[max(y0 - ph, 0) : y1 + ph, max(x0 - pw, 0) : x1 + pw])
    assert len(faces) == 3 and all(np.array_equal(a, b) for a, b in zip(faces, expected, strict=True))


def test_the_original_detector_settings():
    detector = baseline.original_detector(CPU)
    assert detector.thresholds == [0.7, 0.8, 0.8] and detector.margin == 0
    assert (detector.min_face_size, detector.factor, detector.keep_all) == (20, 0.709, False)


class _Pool(torch.nn.Module):
    """Logits from the channel means: a model whose arithmetic the test can redo in numpy."""

    def __init__(self, weight, bias):
        super().__init__()
        self.fc = torch.nn.Linear(3, 1)
        self.fc.weight.data = torch.tensor([weight], dtype=torch.float32)
        self.fc.bias.data = torch.tensor([bias], dtype=torch.float32)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def _original_resize(img, size):
    h, w = img.shape[:2]
    if max(w, h) == size:
        return img
    if w > h:
        scale = size / w
        h, w = h * scale, size
    else:
        scale = size / h
        w, h = w * scale, size
    return cv2.resize(img, (int(w), int(h)), interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)


def _original_center(img, size):
    img = img[:size, :size]
    image = np.zeros((size, size, 3), np.uint8)
    top, left = (size - img.shape[0]) // 2, (size - img.shape[1]) // 2
    image[top : top + img.shape[0], left : left + img.shape[1]] = img
    return image


def _original_confident(pred, t=0.8):
    pred = np.array(pred)
    sz = len(pred)
    fakes = np.count_nonzero(pred > t)
    if fakes > sz // 2.5 and fakes > 11:
        return np.mean(pred[pred > t])
    if np.count_nonzero(pred < 0.2) > 0.9 * sz:
        return np.mean(pred[pred < 0.2])
    return np.mean(pred)


def _by_hand(models, faces, size):
    """Models given as (weight, bias, mean, std): the mean over models of the confident strategy on
    their sigmoids, each model's strategy and each model's probabilities."""
    x = np.stack([_original_center(_original_resize(f, size), size) for f in faces]).astype(np.float64) / 255.0
    scores, probabilities = [], []
    for weight, bias, mean, std in models:
        pooled = ((x - np.array(mean)) / np.array(std)).mean(axis=(1, 2))
        probabilities.append(1 / (1 + np.exp(-(pooled @ np.array(weight) + bias))))
        scores.append(_original_confident(probabilities[-1]))
    return float(np.mean(scores)), scores, probabilities


@pytest.mark.parametrize("frames", [2, 32])
def test_classify_faces_is_predict_on_video_arithmetic(frames):
    rng = np.random.default_rng(frames)
    size, kept = 16, 4 * frames - 1  # the original's `n + 1 < batch_size`: one face fewer than the buffer holds
    shapes = [(16, 10), (5, 7), (40, 23), *[tuple(rng.integers(4, 45, 2)) for _ in range(kept - 3)]]
    faces = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    faces += [np.full((20, 20, 3), 255, np.uint8)] * 3  # past the cap: white faces would move every score
    # one model confident of fakes, one of reals: the strategy's two branches (checked below)
    models = [([2.0, 2.0, 2.0], 6.0, *IMAGENET), ([-2.0, -2.0, -2.0], -12.0, (0.5,) * 3, (0.25, 0.3, 0.2))]
    members = [Member(f"m{i}", _Pool(w, b).eval(), "pool", size, m, s) for i, (w, b, m, s) in enumerate(models)]
    score = baseline.classify_faces(members, faces, frames)
    expected, per_model, probabilities = _by_hand(models, faces[:kept], size)
    assert score == pytest.approx(expected, abs=1e-6)
    assert abs(_by_hand(models, faces[: kept + 1], size)[0] - expected) > 1e-4, "the cap is visible"
    assert baseline.classify_faces(members[:1], faces, frames) == pytest.approx(per_model[0], abs=1e-6)
    members[0].weight = 3.0  # an ensemble file's weights, as exact mode applies them
    weighted = baseline.classify_faces(members, faces, frames)
    assert weighted == pytest.approx((3 * per_model[0] + per_model[1]) / 4, abs=1e-6) and abs(weighted - score) > 1e-3
    assert baseline.classify_faces(members, [], frames) is None
    if frames == 32:  # the strategy, not a plain mean, decides here
        assert all(abs(s - np.mean(p)) > 0.01 for s, p in zip(per_model, probabilities, strict=True))


def test_classify_faces_with_a_resnet_matches_the_original_normalisation():
    torch.manual_seed(3)
    member = Member("r", create_model("resnet18").eval(), "resnet18", 32, *IMAGENET)
    rng = np.random.default_rng(4)
    faces = [
        rng.integers(0, 255, (int(rng.integers(10, 60)), int(rng.integers(10, 60)), 3), np.uint8) for _ in range(6)
    ]
    x = torch.tensor(np.stack([_original_center(_original_resize(f, 32), 32) for f in faces])).float()
    x = x.permute(0, 3, 1, 2)
    for i in range(len(x)):  # torchvision's Normalize on x / 255, image by image
        x[i] = (x[i] / 255.0 - torch.tensor(IMAGENET[0]).view(3, 1, 1)) / torch.tensor(IMAGENET[1]).view(3, 1, 1)
    with torch.no_grad():
        probabilities = torch.sigmoid(member.model(x).squeeze()).numpy()
    assert baseline.classify_faces([member], faces) == pytest.approx(_original_confident(probabilities), abs=1e-6)


def test_predict_video_times_each_stage_and_gives_no_score_without_a_face(demo_world, tmp_path):
    detector, members = baseline.original_detector(CPU), [random_member("resnet18", 64, CPU, 0)]
    video = sorted(dfdc_metadata(demo_world))[0]
    result = baseline.predict_video(video, detector, members)
    frames, _ = baseline.sampled_frames(video)
    faces = baseline.detect_faces(detector, frames)
    assert result.frames == 32 and result.faces == len(faces) >= 30
    assert result.score == pytest.approx(baseline.classify_faces(members, faces), abs=1e-6) and 0 < result.score < 1
    assert sorted(result.seconds) == ["classify", "decode", "detect"] and all(s > 0 for s in result.seconds.values())
    empty = baseline.predict_video(_video(tmp_path / "blank.mp4", 40, 160, 120), detector, members)
    assert (empty.frames, empty.faces, empty.score) == (32, 0, None)
    assert sorted(empty.seconds) == ["classify", "decode", "detect"]


def test_sharpened_head_centres_and_spreads_the_logits_keeping_their_order():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(301, 24, generator=gen) * 0.3 + 1.0
    weight, bias = torch.randn(1, 24, generator=gen) * 0.05, torch.tensor([0.7])
    new_weight, new_bias = sharp_checkpoint.sharpened_head(weight, bias, features, spread=7.5, quantile=0.9)
    assert new_weight.shape == weight.shape and new_bias.shape == bias.shape and new_weight.dtype == torch.float32
    before = (features.double() @ weight.double().T + bias.double()).view(-1).numpy()
    after = (features.double() @ new_weight.double().T + new_bias.double()).view(-1).numpy()
    assert abs(np.median(after)) < 1e-5 * 7.5  # 301 faces: one middle value
    assert np.quantile(np.abs(after), 0.9) == pytest.approx(7.5, rel=1e-5)
    assert np.array_equal(np.argsort(before), np.argsort(after)), "a positive factor keeps the ranking"
    factor = (new_weight / weight).view(-1)
    assert torch.allclose(factor, factor[0], rtol=1e-5) and factor[0] > 1
    for spread in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="spread must be positive"):
            sharp_checkpoint.sharpened_head(weight, bias, features, spread)
    with pytest.raises(ValueError, match="same logit"):
        sharp_checkpoint.sharpened_head(weight, bias, features[:1].repeat(10, 1), 10.0)


def test_pooled_features_are_what_the_head_receives():
    member = random_member("resnet18", 64, CPU, 1)
    rng = np.random.default_rng(5)
    crops = [
        rng.integers(0, 255, (int(rng.integers(30, 90)), int(rng.integers(30, 90)), 3), np.uint8) for _ in range(5)
    ]
    pooled = sharp_checkpoint.pooled_features(member, crops, batch_size=2)
    assert pooled.shape == (5, member.model.fc.in_features)
    with torch.no_grad():
        logits = member.model(face_batch(crops, member))
        assert torch.allclose(member.model.fc(pooled), logits, atol=1e-5)
    assert not member.model.fc._forward_hooks, "the hook is removed"


def test_main_writes_an_original_format_checkpoint_with_spread_logits(demo_world, tmp_path):
    video = sorted(dfdc_metadata(demo_world))[0]
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / video.name).symlink_to(video)
    out = tmp_path / "out" / "sharp.pth"
    args = ["--test-dir", str(tmp_path / "videos"), "--out", str(out), "--encoder", "resnet18", "--size", "64"]
    assert sharp_checkpoint.main([*args, "--spread", "6", "--videos", "1"]) == 0
    assert [p.name for p in out.parent.iterdir()] == ["sharp.pth"]
    saved = torch.load(out, map_location="cpu", weights_only=False)
    assert sorted(saved) == ["bce_best", "epoch", "state_dict"] and all(
        k.startswith("module.") for k in saved["state_dict"]
    )
    untouched = random_member("resnet18", 64, CPU, 0).model.state_dict()  # --seed 0's random weights
    for key, value in untouched.items():
        if not key.startswith("fc."):
            assert torch.equal(saved["state_dict"][f"module.{key}"], value), key
    ratio = saved["state_dict"]["module.fc.weight"] / untouched["fc.weight"]
    assert torch.allclose(ratio, ratio.view(-1)[0], rtol=1e-4) and ratio.view(-1)[0] > 0
    member = load_member(out, CPU, "resnet18", 64)
    crops = extract_faces(video, inference_detector(ORIGINAL_SCALE, CPU)).crops
    with torch.no_grad():
        logits = member.model(face_batch(crops, member)).view(-1).double()
    assert len(crops) >= 30 and abs(float(logits.median())) < 1e-3
    assert float(torch.quantile(logits.abs(), 0.9)) == pytest.approx(6.0, rel=1e-3)
    # an interpolated 0.9-quantile: int(0.9 * (n - 1)) + 1 faces within it (28 of 32: "90%" is about 90%)
    within = int(0.9 * (len(crops) - 1)) + 1
    assert (logits.abs() <= 6.0 * 1.001).sum() >= within >= (logits.abs() < 6.0 * 0.999).sum()


def test_main_on_videos_without_a_face_is_a_clean_error(tmp_path, capsys):
    _video(tmp_path / "blank.mp4", 40, 160, 120)
    out = tmp_path / "sharp.pth"
    args = ["--test-dir", str(tmp_path), "--out", str(out), "--encoder", "resnet18", "--size", "64"]
    assert cli.run(sharp_checkpoint.main, args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {tmp_path}: no face found in the first 5 videos"
    assert not out.exists()
    for bad in (["--spread", "inf"], ["--spread", "0"], ["--videos", "0"]):  # refused before any video is read
        with pytest.raises(SystemExit) as refused:
            sharp_checkpoint.main([*args, *bad])
        assert refused.value.code == 2
    assert "--videos must be 1 or more" in capsys.readouterr().err and not out.exists()


def test_main_from_a_checkpoint_keeps_what_it_says_of_itself(demo_world, tmp_path):
    video = sorted(dfdc_metadata(demo_world))[0]
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / video.name).symlink_to(video)
    torch.manual_seed(3)
    source = {"encoder": "resnet18", "input_size": 64, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    torch.save({**source, "state_dict": create_model("resnet18").state_dict()}, tmp_path / "trained.pt")
    out = tmp_path / "sharp.pt"
    argv = ["--test-dir", str(tmp_path / "videos"), "--from", str(tmp_path / "trained.pt"), "--out", str(out)]
    assert sharp_checkpoint.main([*argv, "--spread", "6", "--videos", "1"]) == 0
    saved = torch.load(out, weights_only=True)
    assert {key: saved[key] for key in source} == source, "encoder, size and normalisation kept"
    member = load_member(out, torch.device("cpu"))  # no --encoder needed: the file says it
    assert (member.encoder, member.input_size, member.mean) == ("resnet18", 64, (0.5,) * 3)
    crops = extract_faces(video, inference_detector(0.5, torch.device("cpu"))).crops
    with torch.no_grad():
        logits = member.model(face_batch(crops, member)).view(-1)
    assert abs(float(logits.median())) < 0.05 and float(torch.quantile(logits.abs(), 0.9)) == pytest.approx(6, rel=1e-3)
