"""inference.predict's answers that are never half true: a model giving NaN makes error rows, not
`nan` in the submission; a default score must be a probability; the final files are all made and
checked before any is written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.prediction import predict_folder as predict
from inference.prediction.submission import write_outputs
from tests.conftest import save_tiny_checkpoint
from tests.test_predict_resume import (  # noqa: F401  (checkpoint, sources: fixtures shared with the resume tests)
    _arguments,
    _details,
    _folder,
    _rows,
    checkpoint,
    sources,
)

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


def _nan_checkpoint(path: Path) -> Path:
    """Finite weights whose scores are NaN: a stem so large that its outputs overflow to +-inf."""
    save_tiny_checkpoint(path)
    state = torch.load(path, weights_only=True)
    stem = state["state_dict"]["encoder.conv1.weight"]
    state["state_dict"]["encoder.conv1.weight"] = torch.sign(torch.randn_like(stem)) * 3e38
    torch.save(state, path)
    return path


def _check_nan_is_an_error(out: Path, names: list[str]) -> None:
    rows = _rows(out)
    assert [row["filename"] for row in rows] == names
    assert all(row["label"] == "0.500000" for row in rows), rows
    errors = _rows(out.parent / "errors.csv")
    assert [row["filename"] for row in errors] == names and {row["stage"] for row in errors} == {"classify"}
    assert all("finite" in row["reason"] for row in errors), errors
    details = _details(out.parent / "details.jsonl")  # strict JSON: no NaN anywhere
    assert [d["score"] for d in details] == [0.5] * len(names)


def test_a_checkpoint_giving_nan_makes_error_rows_not_nan(tmp_path, sources):  # noqa: F811 (fixture)
    model = _nan_checkpoint(tmp_path / "nan.pt")
    test_dir = _folder(tmp_path, sources[:2])
    out = tmp_path / "out" / "submission.csv"
    assert predict.main(_arguments(test_dir, model, out)) == 1, "every video failed"
    _check_nan_is_an_error(out, sorted(p.name for p in test_dir.iterdir()))


def test_predict_refuses_a_nan_score_whatever_the_models_return(tmp_path, sources, checkpoint, monkeypatch):  # noqa: F811
    def nan_scores(member, crops, *args, **kwargs):  # scores not checked on their way out of the model
        return np.full(len(crops), np.nan, np.float32)

    monkeypatch.setattr("inference.detectors.recipes.face_probabilities", nan_scores)
    test_dir = _folder(tmp_path, sources[:2])
    out = tmp_path / "out" / "submission.csv"
    assert predict.main(_arguments(test_dir, checkpoint, out)) == 1, "every video failed"
    _check_nan_is_an_error(out, sorted(p.name for p in test_dir.iterdir()))


def test_a_run_where_every_video_failed_writes_every_row_and_exits_1(tmp_path, checkpoint, capsys):  # noqa: F811
    """It exited 0, the failures only in errors.csv: a submission of nothing but --default-score
    looked like a run that worked. Every video keeps its row; one line names errors.csv."""
    test_dir = tmp_path / "videos"
    test_dir.mkdir()
    (test_dir / "empty.mp4").write_bytes(b"")
    (test_dir / "text.mp4").write_text("no video here\n" * 40)
    out = tmp_path / "out" / "submission.csv"
    assert predict.main(_arguments(test_dir, checkpoint, out)) == 1
    rows = [(row["filename"], row["label"]) for row in _rows(out)]
    assert rows == [("empty.mp4", "0.500000"), ("text.mp4", "0.500000")]
    assert [row["filename"] for row in _rows(out.parent / "errors.csv")] == ["empty.mp4", "text.mp4"]
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {out.parent / 'errors.csv'}: all 2 videos failed, none was scored (this file says why)"]


def test_a_link_to_nothing_gets_a_row_and_an_error_line(tmp_path, sources, checkpoint, capsys):  # noqa: F811
    """Review 1, T4: a dangling v02.mp4 -> /nonexistent was left out of the listing ("33 videos"),
    with no row and no errors.csv line."""
    test_dir = _folder(tmp_path, sources[:1])
    (test_dir / "v02.mp4").symlink_to(tmp_path / "nonexistent.mp4")
    out = tmp_path / "out" / "submission.csv"
    assert predict.main(_arguments(test_dir, checkpoint, out)) == 0
    rows = {row["filename"]: row["label"] for row in _rows(out)}
    assert sorted(rows) == sorted([sources[0].name, "v02.mp4"]) and rows["v02.mp4"] == "0.500000"
    errors = _rows(out.parent / "errors.csv")
    assert [(row["filename"], row["stage"]) for row in errors] == [("v02.mp4", "decode")], errors
    assert errors[0]["reason"].endswith(f"a link to {tmp_path / 'nonexistent.mp4'}, which does not exist"), errors
    assert [d["filename"] for d in _details(out.parent / "details.jsonl")] == sorted(rows)


def test_a_default_score_that_is_not_a_probability_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.parse_args(["--test-dir", str(tmp_path), "--models", "m.pt", "--default-score", "nan"])
    assert exit_info.value.code == 2
    assert "--default-score must be a probability from 0 to 1, got nan" in capsys.readouterr().err


# Lines of a progress file that are no row of predict's: each would have made a traceback, a NaN or
# a score out of range in the submission; each is left out with a warning, its video scored again.


def test_outputs_that_cannot_all_be_written_leave_none(tmp_path):
    """A details line JSON cannot hold (a NaN) is found before the submission is written: never a
    submission without its details, nor one of a run that failed."""
    out, errors_path, details_path = tmp_path / "submission.csv", tmp_path / "errors.csv", tmp_path / "details.jsonl"
    scores = {"a.mp4": 0.25, "b.mp4": 0.5}
    details = [
        {"filename": "a.mp4", "score": 0.25, "error": None, "face_scores": [0.25]},
        {"filename": "b.mp4", "score": 0.5, "error": None, "face_scores": [0.5, math.nan]},
    ]
    with pytest.raises(ValueError, match=rf"^{details_path}: the details of b.mp4 cannot be written \(Out of range"):
        write_outputs(scores, [], details, out, errors_path, details_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=rf"^{out}: the score of b.mp4 is nan, not a probability from 0 to 1"):
        write_outputs({**scores, "b.mp4": math.nan}, [], details[:1], out, errors_path, details_path)
    assert list(tmp_path.iterdir()) == []

    write_outputs(scores, [], details[:1], out, errors_path, details_path)
    assert out.read_bytes() == b"filename,label\r\na.mp4,0.250000\r\nb.mp4,0.500000\r\n"
    assert errors_path.read_text() == "filename,stage,reason\n" and len(_details(details_path)) == 1


def test_a_missing_or_empty_folder_is_said_before_any_model_is_loaded(tmp_path, monkeypatch, capsys):
    """The folder was listed only once the models were loaded (with an OpenVINO export, seconds to
    minutes): a typo in --test-dir was said after that wait."""
    from common import cli

    def no_loading(*args, **kwargs):
        raise AssertionError("the models were loaded before the folder was looked at")

    monkeypatch.setattr(predict, "load_detectors", no_loading)
    (tmp_path / "empty").mkdir()
    model = save_tiny_checkpoint(tmp_path / "tiny.pt")
    for folder, problem in ((tmp_path / "empty", "no videos or photos"), (tmp_path / "typo", "not a folder")):
        argv = ["--test-dir", str(folder), "--models", str(model), "--output", str(tmp_path / "s.csv")]
        assert cli.run(predict.main, argv) == 2
        assert capsys.readouterr().err.strip().startswith(f"error: {folder}: {problem}")
