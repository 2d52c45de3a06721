"""Offline scoring: the competition's log loss and the other metrics, and row checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from inference import score
from inference.metrics import competition_log_loss, equal_error_rate, expected_calibration_error
from inference.metrics import score as metrics


def test_log_loss_clips_like_the_competition():
    assert competition_log_loss(np.array([1, 0]), np.array([0.0, 0.0])) == pytest.approx(-math.log(1e-15) / 2)
    assert competition_log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(
        -(math.log(0.8) + math.log(0.6)) / 2
    )


def test_metrics_on_a_known_example():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probabilities = np.array([0.1, 0.4, 0.7, 0.35, 0.8, 0.9])
    result = metrics(labels, probabilities)
    assert result["roc_auc"] == pytest.approx(7 / 9)
    assert result["confusion_matrix"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
    assert result["accuracy"] == pytest.approx(4 / 6) and result["f1"] == pytest.approx(2 / 3)
    assert equal_error_rate(labels, probabilities) == pytest.approx(1 / 3)
    assert expected_calibration_error(np.array([1, 0]), np.array([0.9, 0.1])) == pytest.approx(0.1)


def test_missing_and_extra_rows_are_listed(tmp_path):
    (tmp_path / "labels.csv").write_text("filename,label\na.mp4,1\nb.mp4,0\nc.mp4,0\n")
    (tmp_path / "submission.csv").write_text("filename,label\na.mp4,0.9\nb.mp4,0.2\nzz.mp4,0.5\n")
    with pytest.raises(score.ScoreError, match=r"1 missing: c.mp4; 1 extra: zz.mp4"):
        score.evaluate(score.read_submission(tmp_path / "submission.csv"), score.read_labels(tmp_path / "labels.csv"))
    assert score.main(["--submission", str(tmp_path / "submission.csv"), "--labels", str(tmp_path / "labels.csv")]) == 2


def test_metadata_json_labels_groups_and_outputs(tmp_path, capsys):
    (tmp_path / "metadata.json").write_text(
        json.dumps({"a.mp4": {"label": "FAKE", "original": "b.mp4"}, "b.mp4": {"label": "REAL"}})
    )
    (tmp_path / "labels.csv").write_text("filename,label,group\na.mp4,1,Deepfakes\nb.mp4,0,original\n")
    (tmp_path / "submission.csv").write_text("filename,label\nb.mp4,0.3\na.mp4,0.6\n")
    assert score.read_labels(tmp_path / "metadata.json") == {"a.mp4": (1, None), "b.mp4": (0, None)}
    out = tmp_path / "report"
    assert (
        score.main(
            [
                "--submission",
                str(tmp_path / "submission.csv"),
                "--labels",
                str(tmp_path / "labels.csv"),
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "score.json").read_text())
    assert result["overall"]["log_loss"] == pytest.approx(-(math.log(0.6) + math.log(0.7)) / 2)
    assert set(result["by_group"]) == {"Deepfakes", "original"}
    assert "log_loss" in capsys.readouterr().out
    for name in ("roc.png", "confusion_matrix.png", "reliability.png"):
        assert (out / name).stat().st_size > 1000
