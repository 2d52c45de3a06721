"""Temporal models: face tracks in folds.csv, clips of one track, one augmentation per clip, the
three sequence heads, an encoder started from a frame checkpoint or frozen, and a training run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch

from common.video_io import probe_video
from inference.evaluation import timeliness
from inference.pipeline.clips import clip_windows as inference_windows
from inference.prediction import predict_folder as predict
from inference.serving import detection as detect
from preprocess.faces.tracks import frame_tracks
from tests.conftest import REPO_ROOT, save_tiny_checkpoint, score_tolerance
from tests.training_data import make_crop_dataset
from training import train as train_module
from training.models.pretrained import create_encoder
from training.models.temporal import ClipDataset, TemporalClassifier, clip_windows, create_temporal_model, encoder_state
from training.models.zoo import create_model, read_checkpoint

# predict, detect and timeliness over the same videos with one model, another, and both: each frame
# through MTCNN once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)  # its `remembered_detections` fixture
pytestmark = pytest.mark.usefixtures("remembered_detections")

SETTINGS = {"head": "gru", "hidden": 16, "layers": 1, "bidirectional": True, "dropout": 0.0, "freeze_encoder": False}


@pytest.fixture(scope="module")
def crop_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    make_crop_dataset(root, groups=4, fakes_per_group=1, crops=8, size=40)
    return root


def test_tracks_follow_each_person_whatever_the_order_of_the_boxes():
    left, right = [10, 10, 50, 50], [200, 10, 240, 50]
    boxes = {0: [left, right], 10: [right, left], 20: None, 30: [[12, 11, 52, 51]]}
    assert frame_tracks(boxes) == {0: [0, 1], 10: [1, 0], 30: [0]}


def test_clips_are_windows_of_one_track_in_frame_order():
    rows = pd.DataFrame(
        {
            "video": ["a"] * 5 + ["b"] * 2,
            "track": [0, 0, 0, 0, 0, 1, 1],
            "frame": [40, 0, 10, 20, 30, 0, 10],
        }
    )
    assert clip_windows(rows, 4, stride=1) == [[1, 2, 3, 4], [2, 3, 4, 0], [5, 6, 6, 6]]
    assert clip_windows(rows, 4, stride=4) == [[1, 2, 3, 4], [5, 6, 6, 6]]


def test_every_crop_of_a_clip_is_transformed_alike(crop_data):
    rows = pd.read_csv(crop_data / "folds.csv")
    one = rows[rows["video"] == "real0"].iloc[[0]]
    same_crop = pd.concat([one] * 4).assign(frame=[0, 10, 20, 30]).reset_index(drop=True)
    clips = ClipDataset(crop_data, same_crop, True, 32, (0.5,) * 3, (0.25,) * 3, length=4)
    outputs = []
    for epoch in range(6):
        clips.reset(epoch, seed=3)
        outputs.append(clips[0]["image"])
    for clip in outputs:
        assert clip.shape == (4, 3, 32, 32)
        assert all(torch.equal(clip[0], frame) for frame in clip[1:]), "one transform for the whole clip"
    assert not all(torch.equal(outputs[0], other) for other in outputs[1:]), "yet a new one each epoch"
    own_cutouts = ClipDataset(crop_data, same_crop, True, 32, (0.5,) * 3, (0.25,) * 3, length=4, clip_cutouts=False)
    differing = 0
    for epoch in range(6):
        own_cutouts.reset(epoch, seed=3)
        clip = own_cutouts[0]["image"]
        differing += not all(torch.equal(clip[0], frame) for frame in clip[1:])
    assert differing, "clip_cutouts false: each crop draws its own cutout"
    noisy = ClipDataset(crop_data, same_crop, True, 32, (0.5,) * 3, (0.25,) * 3, length=4, frame_noise=0.1)
    noisy.reset(0, seed=3)
    clip = noisy[0]["image"]
    assert not torch.equal(clip[0], clip[1]), "frame noise is each crop's own"
    assert (clip[0] - clip[1]).std() < 0.2, "and only noise"


@pytest.mark.parametrize("head", ["gru", "lstm", "transformer"])
def test_each_head_turns_a_clip_into_one_logit_and_trains_the_encoder(head):
    torch.manual_seed(0)
    model = TemporalClassifier(create_encoder("resnet18"), **{**SETTINGS, "head": head})
    logits = model(torch.randn(2, 3, 3, 32, 32))
    assert logits.shape == (2, 1)
    logits.sum().backward()
    assert model.encoder.conv1.weight.grad is not None and model.fc.weight.grad is not None
    assert {id(p) for p in model.head_parameters()}.isdisjoint(id(p) for p in model.encoder.parameters())


def test_the_encoder_starts_from_a_frame_checkpoint_and_can_stay_frozen(tmp_path):
    torch.manual_seed(1)
    frame_model = create_model("resnet18")
    torch.save({"encoder": "resnet18", "state_dict": frame_model.state_dict()}, tmp_path / "frame.pt")
    model_config = {"encoder": "resnet18", "pretrained": False, "drop_path_rate": None}
    temporal = {**SETTINGS, "encoder_checkpoint": str(tmp_path / "frame.pt"), "freeze_encoder": True}
    model = create_temporal_model(model_config, temporal)
    state = encoder_state(read_checkpoint(tmp_path / "frame.pt")["state_dict"])
    assert all(torch.equal(model.encoder.state_dict()[key], value) for key, value in state.items())
    model.train()
    assert not model.encoder.training and not any(p.requires_grad for p in model.encoder.parameters())
    assert model.sequence.training and all(p.requires_grad for p in model.head_parameters())


@pytest.fixture(scope="module")
def temporal_checkpoint(crop_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("temporal_weights")
    flags = ["--config", str(REPO_ROOT / "configs" / "temporal_demo.yaml"), "--data-dir", str(crop_data)]
    flags += ["--fold", "0", "--seed", "5", "--workers", "0", "--output-dir", str(out), "--epochs", "2"]
    flags += ["--batches-per-epoch", "2", "--batch-size", "2", "--set", "model.input_size=32"]
    train_module.train(train_module.parse_args([*flags, "--set", "temporal.clip_length=3"]))
    return out / "temporal_demo_0_5_best.pt"


def test_a_temporal_model_trains_and_its_checkpoint_says_what_it_is(temporal_checkpoint):
    checkpoint = read_checkpoint(temporal_checkpoint)
    assert checkpoint["kind"] == "temporal" and checkpoint["temporal"]["clip_length"] == 3
    assert checkpoint["temporal"]["head"] == "gru" and checkpoint["input_size"] == 32
    assert checkpoint["temporal"]["frame_step"] == 10, "make_crop_dataset crops every 10th frame"
    rebuilt = create_temporal_model({**checkpoint["config"]["model"], "pretrained": False}, checkpoint["temporal"])
    rebuilt.load_state_dict(checkpoint["state_dict"])
    validation = pd.read_csv(temporal_checkpoint.parent / "logs" / "temporal_demo_0_5" / "oof_predictions.csv")
    assert set(validation["video"]) == {"real0", "fake0_0", "real2", "fake2_0"}, "fold 0's videos, judged by clips"
    assert np.isfinite(checkpoint["best_score"])


def test_clip_windows_spread_over_the_video_at_the_trained_step():
    assert inference_windows(100, 4, 10, 3) == [[0, 10, 20, 30], [34, 44, 54, 64], [69, 79, 89, 99]]
    assert inference_windows(20, 4, 10, 2) == [[0, 6, 12, 18]], "a short video: the step shrinks to fit"


@pytest.mark.slow
def test_predict_scores_with_a_temporal_model_alone_and_in_a_mixed_ensemble(demo_world, temporal_checkpoint, tmp_path):
    frame = save_tiny_checkpoint(tmp_path / "frame.pt")
    common = ["--test-dir", str(demo_world / "test_videos"), "--detector-scale", "rule", "--runtime", "torch"]
    runs = {"temporal": [temporal_checkpoint], "frame": [frame], "mixed": [temporal_checkpoint, frame]}
    scores, details = {}, {}
    for name, models in runs.items():
        out = tmp_path / name
        assert predict.main([*common, "--models", *map(str, models), "--output", str(out / "submission.csv")]) == 0
        with open(out / "submission.csv", newline="") as handle:
            scores[name] = {row["filename"]: float(row["label"]) for row in csv.DictReader(handle)}
        details[name] = [json.loads(line) for line in (out / "details.jsonl").read_text().splitlines()]
    for row in details["temporal"]:
        frames = probe_video(demo_world / "test_videos" / row["filename"]).frame_count
        windows = inference_windows(frames, 3, 10, 32 // 3)
        assert row["error"] is None and row["clips"] == {"3x10": len(windows)} and windows, "one track a window"
    for video, mixed in scores["mixed"].items():
        expected = (scores["temporal"][video] + scores["frame"][video]) / 2
        assert mixed == pytest.approx(expected, abs=score_tolerance(1e-5))
    labels = demo_world / "test_videos" / "labels.csv"
    models = ["--models", str(temporal_checkpoint), str(frame)]
    assert timeliness.main([*common, *models, "--labels", str(labels), "--out", str(tmp_path / "timely")]) == 0
    early = json.loads((tmp_path / "timely" / "timeliness.json").read_text())
    for row in early["per_video"]:
        expected = scores["mixed"][row["filename"]]
        assert row["scores"][-1] == pytest.approx(expected, abs=score_tolerance(1e-5)), "k = 32: all clips"
    assert all(set(row["model_scores"]) == {temporal_checkpoint.name, "frame.pt"} for row in details["mixed"])


def test_detect_judges_with_a_temporal_model_alone_and_mixed_as_predict_does(
    demo_world, temporal_checkpoint, tmp_path, capsys
):
    video = sorted((demo_world / "test_videos").glob("*.mp4"))[0]
    frame = save_tiny_checkpoint(tmp_path / "frame.pt")
    common = ["--detector-scale", "rule", "--runtime", "torch"]
    for models in ([temporal_checkpoint], [temporal_checkpoint, frame]):
        assert detect.main([str(video), "--models", *map(str, models), *common, "--json"]) == 0
        document = json.loads(capsys.readouterr().out)
        out = tmp_path / f"predict_{len(models)}"
        predict.main(["--test-dir", str(video.parent), "--models", *map(str, models), *common, "--output", str(out)])
        with open(out, newline="") as handle:
            expected = {row["filename"]: float(row["label"]) for row in csv.DictReader(handle)}[video.name]
        assert document["probability"] == pytest.approx(expected, abs=score_tolerance(1e-4))
        temporal_entry = next(m for m in document["models"] if m["name"] == temporal_checkpoint.name)
        assert temporal_entry["clips"] > 0
        alone = len(models) == 1
        assert all((f["probability"] is None) == alone for f in document["per_frame"] if f["faces"]), (
            "per-frame views come from frame models"
        )


def test_folds_give_each_crop_its_track_and_a_fake_its_originals(tmp_path):
    from preprocess.datasets import VideoRecord
    from preprocess.folds import fold_rows

    left, right = [10, 10, 50, 50], [200, 10, 240, 50]
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / "orig.json").write_text(json.dumps({"0": [left, right], "10": [right, left]}))
    for video in ("orig", "fake"):
        folder = tmp_path / "crops" / video
        folder.mkdir(parents=True)
        for name in ("0_0.png", "0_1.png", "10_0.png", "10_1.png"):
            (folder / name).write_bytes(b"")
    records = [
        VideoRecord("orig", tmp_path / "orig.mp4", 0, None, "orig", "part"),
        VideoRecord("fake", tmp_path / "fake.mp4", 1, "orig", "orig", "part"),
    ]
    rows = fold_rows(records, {"orig": 0, "fake": 0}, tmp_path)
    tracks = {(row["video"], row["file"]): row["track"] for row in rows}
    expected = {"0_0.png": 0, "0_1.png": 1, "10_0.png": 1, "10_1.png": 0}  # the two people swap places in the list
    assert tracks == {(video, name): track for video in ("fake", "orig") for name, track in expected.items()}
    assert json.loads((tmp_path / "tracks" / "orig.json").read_text()) == {"0": [0, 1], "10": [1, 0]}
