"""Offline scoring: the competition's log loss and the other metrics, and row checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from inference.scoring import submission_scoring as score
from inference.scoring.metrics import competition_log_loss, equal_error_rate, expected_calibration_error
from inference.scoring.metrics import score as metrics


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


def test_brier_score_on_a_hand_example():
    result = metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.7, 1.0]))
    assert result["brier"] == pytest.approx((0.01 + 0.16 + 0.09 + 0.0) / 4)
    assert metrics(np.array([0, 1]), np.array([0.5, 0.5]))["brier"] == pytest.approx(0.25)


# 39 reals support 5% (k = floor(0.05 * 40) = 2: the threshold is the 2nd largest real, 0.37);
# three of the five fakes score above it. 10 reals give k = 0: unsupported, 19 needed.
BIG_REALS = [i / 100 for i in range(39)]
BIG_FAKES = [0.36, 0.37, 0.375, 0.5, 0.9]
SMALL_REALS = [i / 100 + 0.005 for i in range(10)]
SMALL_FAKES = [0.2, 0.4, 0.6, 0.8, 0.95]


def _labelled(reals, fakes):
    return np.array([0] * len(reals) + [1] * len(fakes)), np.array(reals + fakes)


def test_tpr_at_5_percent_fpr_with_39_reals_is_supported():
    rates = metrics(*_labelled(BIG_REALS, BIG_FAKES))["tpr_at_fpr"]
    assert set(rates) == {"0.05", "0.01", "0.001"}
    five = rates["0.05"]
    assert five["tpr"] == pytest.approx(3 / 5) and five["threshold"] == pytest.approx(0.37)
    assert (five["reals"], five["fakes"], five["reals_needed"]) == (39, 5, 19)
    assert five["fpr_on_these_reals"] == pytest.approx(1 / 39)
    assert rates["0.01"]["tpr"] is None and rates["0.01"]["reals_needed"] == 99
    assert rates["0.001"]["tpr"] is None and rates["0.001"]["reals_needed"] == 999


def test_tpr_at_5_percent_fpr_with_10_reals_is_null_with_the_reals_needed():
    five = metrics(*_labelled(SMALL_REALS, SMALL_FAKES))["tpr_at_fpr"]["0.05"]
    assert five["tpr"] is None and five["threshold"] is None
    assert (five["reals"], five["reals_needed"]) == (10, 19)


def test_score_json_and_table_carry_the_rates_and_their_reals(tmp_path, capsys):
    rows = ["filename,label,group"]
    submission = ["filename,label"]
    for group, values in (("big", (BIG_REALS, BIG_FAKES)), ("small", (SMALL_REALS, SMALL_FAKES))):
        for label, scores in enumerate(values):
            for i, value in enumerate(scores):
                name = f"{group}_{label}_{i}.mp4"
                rows.append(f"{name},{label},{group}")
                submission.append(f"{name},{value!r}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "submission.csv").write_text("\n".join(submission) + "\n")
    arguments = ["--submission", str(tmp_path / "submission.csv"), "--labels", str(tmp_path / "labels.csv")]
    assert score.main(arguments) == 0
    result = json.loads((tmp_path / "score.json").read_text())
    overall = result["overall"]["tpr_at_fpr"]["0.05"]
    # all 49 reals: k = floor(0.05 * 50) = 2, threshold 0.37 again; 3 + 4 of the 10 fakes above it
    assert (overall["reals"], overall["fakes"], overall["tpr"]) == (49, 10, pytest.approx(0.7))
    assert result["by_group"]["big"]["tpr_at_fpr"]["0.05"]["reals"] == 39
    small = result["by_group"]["small"]["tpr_at_fpr"]["0.05"]
    assert (small["reals"], small["tpr"], small["reals_needed"]) == (10, None, 19)
    squared_errors = [r**2 for r in BIG_REALS + SMALL_REALS] + [(1 - f) ** 2 for f in BIG_FAKES + SMALL_FAKES]
    assert result["overall"]["brier"] == pytest.approx(sum(squared_errors) / len(squared_errors))
    printed = capsys.readouterr().out
    header = next(i for i, line in enumerate(printed.splitlines()) if "tpr@5%fpr" in line)
    lines = printed.splitlines()
    assert lines[header].split() == ["reals", "fakes", "tpr@5%fpr", "tpr@1%fpr", "tpr@0.1%fpr"]
    table = {line.split()[0]: line.split()[1:] for line in lines[header + 1 : header + 4]}
    assert table == {
        "overall": ["49", "10", "0.7000", "-", "-"],
        "big": ["39", "5", "0.6000", "-", "-"],
        "small": ["10", "5", "-", "-", "-"],
    }
    assert "5% needs 19, 1% needs 99, 0.1% needs 999" in printed
    assert "brier" in lines[0]
