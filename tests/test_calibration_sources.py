"""Where inference.calibrate's labelled scores come from, refused when they cannot be trusted: a
run's out-of-fold predictions as training writes them, and a predicted set's details that are the
submission's own."""

from __future__ import annotations

import json

import pytest

from common.cli import InputError
from inference.fitting.calibration_sources import read_oof, submission_scores
from tests.test_calibrate import _predicted


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("video,label,probability\n", "no videos, only a header"),
        ("video,label\nv,1\n", "expected columns video,label,probability, got video,label"),
        ("video,label,probability\n,1,0.5\n", "line 2: no video name"),
        ("video,label,probability\nv,True,0.5\n", "line 2: label 'True' of v is not 0 \\(real\\) or 1 \\(fake\\)"),
        ("video,label,probability\nv,2,0.5\n", "label '2' of v is not 0"),
        ("video,label,probability\nv,REAL,0.5\n", "label 'REAL' of v is not 0"),
        ("video,label,probability\nv,1.0,0.5\n", "label '1.0' of v is not 0"),
        ("video,label,probability\nv,1,0.5\nv,1,0.6\n", "line 3: video v is listed twice"),
        ("video,label,probability\nv,1,1.5\n", "probability '1.5' of v is not from 0 to 1"),
        ("video,label,probability\nv,1,nan\n", "probability 'nan' of v is not from 0 to 1"),
        ("video,label,probability\nv,1,\n", "probability '' of v is not from 0 to 1"),
        ("video,label,probability\nv,1\n", "line 2: 2 fields, expected 3"),
    ],
)
def test_a_hostile_oof_file_is_one_line_naming_it(tmp_path, text, message):
    path = tmp_path / "oof_predictions.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as error:
        read_oof(tmp_path, "m_best.pt")
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


def test_a_well_formed_oof_file_is_read_as_training_writes_it(tmp_path):
    (tmp_path / "oof_predictions.csv").write_text("video,label,probability\nb.mp4,1,0.75\n\na.mp4,0,0.0\n")
    assert read_oof(tmp_path) == {"b.mp4": (1, 0.75), "a.mp4": (0, 0.0)}


def test_calibrated_raw_scores_that_rank_the_videos_otherwise_are_refused(tmp_path):
    """Details whose probabilities are the submission's but whose raw scores come from another run:
    a calibration is monotone, so raw scores ranked against the probabilities cannot be theirs."""
    probabilities = {"a.mp4": 0.2, "b.mp4": 0.5, "c.mp4": 0.9}
    raws = {"a.mp4": 0.3, "b.mp4": 0.5, "c.mp4": 0.7}
    rows = [
        {"filename": n, "score": p, "ensemble_score": raws[n], "calibrated": True, "error": None}
        for n, p in probabilities.items()
    ]
    submission, labels = _predicted(tmp_path / "set", rows, {"a.mp4": 0, "b.mp4": 0, "c.mp4": 1})
    assert submission_scores(submission, labels).scores.tolist() == [0.3, 0.5, 0.7]
    reversed_rows = [{**row, "ensemble_score": 1 - raws[row["filename"]]} for row in rows]
    submission, labels = _predicted(tmp_path / "other", reversed_rows, {"a.mp4": 0, "b.mp4": 0, "c.mp4": 1})
    with pytest.raises(InputError, match=r"c\.mp4 and b\.mp4 are ranked one way by their ensemble_score"):
        submission_scores(submission, labels)


def test_details_that_are_not_the_submissions_are_refused(tmp_path):
    rows = [
        {"filename": "a.mp4", "score": 0.31, "ensemble_score": 0.2, "calibrated": True, "error": None},
        {"filename": "b.mp4", "score": 0.7, "ensemble_score": 0.7, "calibrated": False, "error": None},
    ]
    submission, labels = _predicted(tmp_path / "set", rows, {"a.mp4": 0, "b.mp4": 1})
    details = tmp_path / "set" / "details.jsonl"
    assert submission_scores(submission, labels).scores.tolist() == [0.2, 0.7]
    submission.write_text("filename,label\na.mp4,0.900000\nb.mp4,0.700000\n")  # a calibrated row is compared too
    with pytest.raises(InputError, match=rf"^{details}: a\.mp4 has score 0\.31 there but 0\.900000 in the submission"):
        submission_scores(submission, labels)
    submission.write_text("filename,label\na.mp4,0.310000\nb.mp4,0.600000\n")
    with pytest.raises(InputError, match=rf"^{details}: b\.mp4 has score 0\.7 there but 0\.600000 in the submission"):
        submission_scores(submission, labels)
    submission.write_text("filename,label\na.mp4,0.310000\nb.mp4,0.700000\n")
    details.write_text(details.read_text() + json.dumps(rows[1]) + "\n")
    with pytest.raises(InputError, match=rf"^{details}: line 3: b\.mp4 is listed twice$"):
        submission_scores(submission, labels)
