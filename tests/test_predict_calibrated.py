"""inference.predict applies the calibration its --ensemble file carries: the submission holds the
calibrated probability of each video's ensemble score, details keep that raw score, a failed video
keeps the default score uncalibrated, --uncalibrated gives the raw scores (the same as the file
without its block), a resume under another calibration is refused, and so are --models added to a
calibrated ensemble."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml

from common import cli
from inference.calibration.methods import apply_calibration
from inference.models.ensemble_calibration import member_fingerprint
from inference.models.model_options import load_calibration
from inference.prediction import predict_folder as predict
from inference.prediction.predict_options import chosen_calibration
from inference.prediction.progress import Progress, progress_path, row_problem, run_settings
from tests.conftest import dfdc_metadata, save_tiny_checkpoint
from tests.test_predict_resume import _details, _folder, _rows

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")

MEMBERS = [{"checkpoint": "tiny_0.pt", "weight": 0.5}, {"checkpoint": "tiny_1.pt", "weight": 1.5}]
TEMPERATURE = {"method": "temperature", "temperature": 3.0}
PLATT = {"method": "platt", "a": 2.0, "b": 0.7}  # b moves 0.5 to 0.67: a failed video calibrated would show
BROKEN = "broken.mp4"


def write_ensemble(folder: Path, method: dict | None, name: str, members=None) -> Path:
    """An ensemble file of the two tiny models of `folder`, with a hand-written `calibration:` block
    of `method` (fitted for `members`, by default the file's own) or none."""
    document = {"members": MEMBERS}
    if method is not None:
        point = {"fpr": 0.05, "score": 0.6, "reals": 40, "rank": 2}
        fitted_for = member_fingerprint(members or MEMBERS, folder)
        document["calibration"] = {**method, "members": fitted_for, "operating_points": [point]}
    path = folder / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A folder holding the two tiny checkpoints MEMBERS names."""
    folder = tmp_path_factory.mktemp("models")
    for seed, member in enumerate(MEMBERS):
        save_tiny_checkpoint(folder / member["checkpoint"], seed=seed)
    return folder


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory, demo_world) -> Path:
    """Two demo videos and a file that is not a video."""
    folder = _folder(tmp_path_factory.mktemp("videos"), sorted(dfdc_metadata(demo_world))[:2])
    (folder / BROKEN).write_text("not a video\n")
    return folder


def _arguments(test_dir: Path, ensemble: Path, out: Path, *extra: str) -> list[str]:
    common = ["--runtime", "torch", "--device", "cpu", "--frames", "4", "--workers", "0"]
    return ["--test-dir", str(test_dir), "--ensemble", str(ensemble), "--output", str(out), *common, *extra]


def _run(test_dir: Path, ensemble: Path, out: Path, *extra: str) -> dict[str, dict]:
    assert predict.main(_arguments(test_dir, ensemble, out, *extra)) == 0
    return {row["filename"]: row for row in _details(out.parent / "details.jsonl")}


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory, models, test_dir) -> Path:
    """The submission of the ensemble file without a calibration block."""
    out = tmp_path_factory.mktemp("raw") / "submission.csv"
    _run(test_dir, write_ensemble(models, None, "plain.yaml"), out)
    return out


@pytest.fixture(scope="module")
def raw(raw_run) -> dict[str, dict]:
    return {row["filename"]: row for row in _details(raw_run.parent / "details.jsonl")}


def _check_calibrated(out: Path, details: dict[str, dict], raw: dict[str, dict], method: dict) -> None:
    labels = {row["filename"]: float(row["label"]) for row in _rows(out)}
    assert sorted(labels) == sorted(raw)
    moved = 0.0
    for name, row in details.items():
        if name == BROKEN:
            continue
        expected = float(apply_calibration(raw[name]["score"], method))
        assert row["calibrated"] is True and row["error"] is None
        assert row["ensemble_score"] == pytest.approx(raw[name]["score"], abs=1e-6), "the raw score is kept"
        assert row["score"] == pytest.approx(expected, abs=1e-6)
        assert labels[name] == pytest.approx(expected, abs=1.5e-6), "the submission holds the calibrated one"
        assert row["model_scores"] == pytest.approx(raw[name]["model_scores"], abs=1e-6), "model scores stay raw"
        assert row["face_scores"] == pytest.approx(raw[name]["face_scores"], abs=1e-5), "face scores stay raw"
        moved = max(moved, abs(expected - raw[name]["score"]))
    assert moved > 1e-3, "the calibration moves these scores: the comparison above tells applied from not"
    broken = details[BROKEN]
    assert (broken["score"], broken["ensemble_score"], broken["calibrated"]) == (0.5, 0.5, False)
    assert labels[BROKEN] == 0.5 and [row["filename"] for row in _rows(out.parent / "errors.csv")] == [BROKEN]


def test_a_temperature_block_is_applied_and_uncalibrated_gives_the_raw_scores(
    tmp_path, models, test_dir, raw_run, raw, caplog
):
    ensemble = write_ensemble(models, TEMPERATURE, "temperature.yaml")
    calibrated = _run(test_dir, ensemble, tmp_path / "calibrated" / "submission.csv")
    _check_calibrated(tmp_path / "calibrated" / "submission.csv", calibrated, raw, TEMPERATURE)

    caplog.set_level(logging.INFO, logger="inference")
    uncalibrated = _run(test_dir, ensemble, tmp_path / "raw" / "submission.csv", "--uncalibrated")
    assert f"--uncalibrated: ignoring the calibration of {ensemble}" in caplog.text
    assert (tmp_path / "raw" / "submission.csv").read_bytes() == raw_run.read_bytes(), "as the file without it"
    for name, row in uncalibrated.items():
        assert row["calibrated"] is False and row["ensemble_score"] == row["score"]
        assert row["score"] == pytest.approx(raw[name]["score"], abs=1e-6)
    assert {row["calibrated"] for row in raw.values()} == {False}, "without a block: the same keys, uncalibrated"
    assert all(row["ensemble_score"] == row["score"] for row in raw.values())


def test_a_platt_block_is_applied_and_a_failed_video_keeps_the_default(tmp_path, models, test_dir, raw):
    ensemble = write_ensemble(models, PLATT, "platt.yaml")
    details = _run(test_dir, ensemble, tmp_path / "out" / "submission.csv")
    _check_calibrated(tmp_path / "out" / "submission.csv", details, raw, PLATT)


def test_a_resume_under_another_calibration_is_refused_naming_it(tmp_path, models, test_dir, raw, capsys):
    ensemble = write_ensemble(models, TEMPERATURE, "resume.yaml")
    out = tmp_path / "out" / "submission.csv"
    arguments = [*_arguments(test_dir, ensemble, out), "--resume"]
    args = predict.parse_args(arguments)
    settings = run_settings(args, torch.device("cpu"), "f32", 1, load_calibration(args))
    with Progress(progress_path(out), settings, resume=False) as progress:
        progress.add(raw[BROKEN])  # an interrupted run, under temperature 3

    write_ensemble(models, {"method": "temperature", "temperature": 2.0}, "resume.yaml")
    assert cli.run(predict.main, arguments) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {progress_path(out)}: written with other settings (calibration: ")
    assert '"temperature": 3.0' in line and '"temperature": 2.0' in line, line
    assert not out.exists() and progress_path(out).exists(), "nothing written, the progress kept"

    write_ensemble(models, TEMPERATURE, "resume.yaml")  # the same calibration again: resumed
    again = run_settings(args, torch.device("cpu"), "f32", 1, load_calibration(args))
    with Progress(progress_path(out), again, resume=True) as progress:
        assert list(progress.rows) == [BROKEN]
    uncalibrated = predict.parse_args([*arguments, "--uncalibrated"])
    assert run_settings(uncalibrated, torch.device("cpu"), "f32", 1, None)["calibration"] is None


def test_models_added_to_a_calibrated_ensemble_are_refused(tmp_path, models, test_dir, capsys, caplog):
    ensemble = write_ensemble(models, TEMPERATURE, "refuse.yaml")
    out = tmp_path / "out" / "submission.csv"
    arguments = [*_arguments(test_dir, ensemble, out), "--models", str(models / "tiny_0.pt")]
    assert cli.run(predict.main, arguments) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {ensemble}: its calibration was fitted for its own members; --models"), line
    assert not out.parent.exists(), "refused before any file is written"

    caplog.set_level(logging.INFO, logger="inference")
    assert chosen_calibration(predict.parse_args([*arguments, "--uncalibrated"])) is None, "raw scores: allowed"
    assert "ignoring the calibration" in caplog.text


def test_a_calibration_fitted_for_other_members_is_refused(tmp_path, models, test_dir, capsys):
    other = [{"checkpoint": "tiny_0.pt", "weight": 1.0}, {"checkpoint": "tiny_1.pt", "weight": 1.0}]
    ensemble = write_ensemble(models, TEMPERATURE, "stale.yaml", members=other)
    assert cli.run(predict.main, _arguments(test_dir, ensemble, tmp_path / "submission.csv")) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {ensemble}: the calibration was fitted for other members or weights"), line
    assert not (tmp_path / "submission.csv").exists()


def test_a_progress_row_with_calibration_fields_of_another_type_is_not_a_row():
    row = {"filename": "a.mp4", "score": 0.7, "ensemble_score": 0.6, "calibrated": True, "error": None}
    assert row_problem(row) is None
    assert "calibrated 'yes'" in row_problem({**row, "calibrated": "yes"})
    assert "ensemble_score 1.5" in row_problem({**row, "ensemble_score": 1.5})
