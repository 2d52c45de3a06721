"""inference.timeliness: scores on the first k sampled frames, the first k that settles the
decision, and the full run (at k = 32 the scores are inference.predict's)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from inference import predict, timeliness
from inference.timeliness import first_right_step, scores_by_prefix
from tests.conftest import save_tiny_checkpoint, score_tolerance


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
