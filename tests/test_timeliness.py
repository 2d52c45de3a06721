"""inference.evaluation.timeliness: scores on the first k sampled frames, the first k that settles the
decision, and the full run (at k = 32 the scores are inference.predict's); an ensemble file's
calibration applied to each k's score before the metrics."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from inference.calibration.methods import apply_calibration
from inference.evaluation import timeliness
from inference.evaluation.timeliness import first_right_step, scores_by_prefix, video_row
from inference.models.ensemble_calibration import read_calibration
from inference.prediction import predict_folder as predict
from inference.scoring.metrics import score
from tests.conftest import save_tiny_checkpoint, score_tolerance
from tests.test_predict_calibrated import MEMBERS, PLATT, write_ensemble

# timeliness and predict over the same videos: each frame through MTCNN once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)  # its `remembered_detections` fixture
pytestmark = pytest.mark.usefixtures("remembered_detections")


def test_each_k_sees_only_what_each_model_had_seen_by_then():
    faces_model = (np.array([0.2, 0.8, 0.6]), np.array([10, 30, 30]))  # faces of frames 10, 30, 30
    clips_model = (np.array([0.9, 0.3]), np.array([25, 40]))  # clips known at their last frames
    scores = scores_by_prefix([faces_model, clips_model], [1.0, 3.0], [0, 10, 30, 40], "mean", default=0.5)
    assert scores == pytest.approx(
        [0.5, (0.2 + 3 * 0.5) / 4, (np.mean([0.2, 0.8, 0.6]) + 3 * 0.9) / 4, (np.mean([0.2, 0.8, 0.6]) + 3 * 0.6) / 4]
    ), "nothing yet: the default; a model with nothing yet counts as the default"


def test_the_first_right_k_is_where_the_decision_settles():
    steps = [1, 2, 4, 8]
    assert first_right_step([0.6, 0.4, 0.7, 0.8], 1, steps) == 4, "right at 1, wrong at 2, right from 4 on"
    assert first_right_step([0.3, 0.2, 0.1, 0.1], 0, steps) == 1
    assert first_right_step([0.6, 0.7, 0.8, 0.4], 1, steps) is None, "wrong at the end: never settled"
    assert first_right_step([0.5, 0.5, 0.5, 0.5], 1, steps) is None, "0.5 is not FAKE"


@pytest.mark.slow
def test_the_report_and_plot_on_demo_videos_end_at_predicts_scores(demo_world, tmp_path):
    test_dir = demo_world / "test_videos"
    model = save_tiny_checkpoint(tmp_path / "tiny.pt")
    common = ["--test-dir", str(test_dir), "--models", str(model), "--detector-scale", "rule", "--runtime", "torch"]
    out = tmp_path / "timely"
    assert timeliness.main([*common, "--labels", str(test_dir / "labels.csv"), "--out", str(out)]) == 0
    result = json.loads((out / "timeliness.json").read_text())
    assert (out / "timeliness.png").stat().st_size > 0
    assert [step["frames"] for step in result["steps"]] == [1, 2, 4, 8, 16, 32]
    seen = [step["seconds_seen"] for step in result["steps"]]
    assert seen == sorted(seen) and seen[0] > 0
    predict.main([*common, "--output", str(tmp_path / "submission.csv")])
    with open(tmp_path / "submission.csv", newline="") as handle:
        expected = {row["filename"]: float(row["label"]) for row in csv.DictReader(handle)}
    assert sorted(row["filename"] for row in result["per_video"]) == sorted(expected)
    for row in result["per_video"]:
        assert row["scores"][-1] == pytest.approx(expected[row["filename"]], abs=score_tolerance(1e-5))
        assert row["first_right_frames"] == first_right_step(row["scores"], row["label"], [1, 2, 4, 8, 16, 32])


def test_a_video_row_calibrates_what_was_judged_and_keeps_the_default_elsewhere(tmp_path):
    calibration = read_calibration({**PLATT, "members": MEMBERS}, tmp_path / "e.yaml", MEMBERS)
    raw = [0.5, 0.3, 0.45, 0.8]
    row = video_row("a.mp4", 1, raw, [False, True, True, True], [0.1, 0.2, 0.4, 0.8], [1, 2, 4, 8], calibration)
    expected = [0.5, *(float(v) for v in apply_calibration(raw[1:], PLATT))]  # nothing seen at k=1: the default
    assert row["scores"] == pytest.approx(expected, abs=1e-6) and row["ensemble_scores"] == raw
    assert expected[2] > 0.5 > raw[2], "0.45 calibrated is FAKE"
    assert row["first_right_frames"] == 4, "decided on the calibrated score: right from k=4 on"
    plain = video_row("a.mp4", 1, raw, [False, True, True, True], [0.1, 0.2, 0.4, 0.8], [1, 2, 4, 8])
    assert plain["scores"] == plain["ensemble_scores"] == raw and plain["first_right_frames"] == 8


def test_each_ks_metrics_are_taken_on_the_calibrated_scores(demo_world, tmp_path):
    test_dir = demo_world / "test_videos"
    for seed, member in enumerate(MEMBERS):
        save_tiny_checkpoint(tmp_path / member["checkpoint"], seed=seed)
    ensemble = write_ensemble(tmp_path, PLATT, "platt.yaml")
    common = ["--test-dir", str(test_dir), "--labels", str(test_dir / "labels.csv"), "--ensemble", str(ensemble)]
    common += [
        "--detector-scale",
        "rule",
        "--runtime",
        "torch",
        "--device",
        "cpu",
        "--frames",
        "4",
        "--steps",
        "1",
        "4",
    ]
    assert timeliness.main([*common, "--out", str(tmp_path / "calibrated")]) == 0
    assert timeliness.main([*common, "--out", str(tmp_path / "raw"), "--uncalibrated"]) == 0
    calibrated = json.loads((tmp_path / "calibrated" / "timeliness.json").read_text())
    raw = json.loads((tmp_path / "raw" / "timeliness.json").read_text())
    assert raw["calibration"] is None and all(row["ensemble_scores"] == row["scores"] for row in raw["per_video"])
    assert {key: calibrated["calibration"][key] for key in ("file", "method", "a", "b")} == {
        "file": str(ensemble),
        **PLATT,
    }
    labels = np.array([row["label"] for row in raw["per_video"]])
    assert [row["filename"] for row in calibrated["per_video"]] == [row["filename"] for row in raw["per_video"]]
    for position, (step, raw_step) in enumerate(zip(calibrated["steps"], raw["steps"], strict=True)):
        raw_scores = np.array([row["scores"][position] for row in raw["per_video"]])
        by_hand = score(labels, apply_calibration(raw_scores, PLATT))
        assert step["log_loss"] == pytest.approx(by_hand["log_loss"], abs=1e-5)
        assert step["accuracy"] == by_hand["accuracy"] and step["roc_auc"] == raw_step["roc_auc"]
        assert step["log_loss"] != pytest.approx(raw_step["log_loss"], abs=1e-3), "the calibration moved it"
