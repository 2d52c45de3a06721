"""The `calibration:` block of an ensemble file as predict, detect and the page read it: applied as
stored, and refused (never ignored) when it cannot describe the ensemble the file lists."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.special import expit, logit

from common import cli
from common.cli import InputError
from inference.models import ensemble_calibration as ensemble_calibration_module
from inference.models.ensemble_calibration import CalibrationFileError, member_fingerprint, operating_point_argument
from inference.models.ensemble_file import ensemble_calibration
from inference.models.model_options import load_calibration

MEMBERS = [{"checkpoint": "a_best.pt", "weight": 0.25}, {"checkpoint": "b_best.pt", "weight": 0.75}]
REALS = [0.02, 0.05, 0.1, 0.3, 0.6]


POINT = {"fpr": 0.2, "score": 0.6, "reals": 5, "rank": 1}  # consistent with REALS


def _block(**changes) -> dict:
    block = {
        "method": "temperature",
        "temperature": 2.0,
        "members": [dict(member) for member in MEMBERS],
        "operating_points": [
            {"fpr": 0.2, "score": 0.6, "probability": 0.55, "reals": 5, "rank": 1},  # the largest of REALS
            {"fpr": 0.01, "score": 0.9, "probability": 0.75, "reals": 120, "rank": 1},
        ],
        "real_scores": list(REALS),
        "fitted_on": {"source": "oof: a, b", "videos": 10},
    }
    return {**block, **changes}


def _file(tmp_path, block, members=MEMBERS) -> Path:
    path = tmp_path / "ensemble.yaml"
    document = {"members": members} if block is None else {"members": members, "calibration": block}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_a_stored_calibration_applies_its_temperature_and_operating_points(tmp_path):
    calibration = ensemble_calibration(_file(tmp_path, _block()))
    x = np.array([0.001, 0.2, 0.5, 0.8, 0.99])
    assert calibration.probability(x) == pytest.approx(expit(logit(x) / 2.0), abs=1e-12)
    assert calibration.probability(0.8) == pytest.approx(expit(logit(0.8) / 2.0), abs=1e-12)
    point = calibration.operating_point(0.01)
    assert (point.score, point.reals, point.rank) == (0.9, 120, 1)
    assert point.probability == pytest.approx(expit(logit(0.9) / 2.0), abs=1e-12)  # recomputed, not as stored
    assert calibration.default_operating_point() == point and point.describe() == "the 1% false-positive threshold"
    assert calibration.real_quantile(0.1) == 3 / 5 and calibration.real_quantile(0.7) == 0.0
    with pytest.raises(CalibrationFileError, match="no operating point at fpr=0.02 .* --fpr 0.02"):
        calibration.operating_point(0.02)
    assert calibration.summary()["temperature"] == 2.0 and calibration.summary()["fitted_on"]["videos"] == 10


def test_platt_and_no_calibration(tmp_path):
    calibration = ensemble_calibration(_file(tmp_path, _block(method="platt", a=0.5, b=-1.0)))
    assert calibration.probability(0.3) == pytest.approx(expit(0.5 * logit(0.3) - 1.0), abs=1e-12)
    assert calibration.method_parameters() == {"method": "platt", "a": 0.5, "b": -1.0}
    assert ensemble_calibration(_file(tmp_path, None)) is None
    assert ensemble_calibration(None) is None


def test_the_named_original_has_no_calibration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file called `original` here
    assert ensemble_calibration("original") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"members": [MEMBERS[0], {**MEMBERS[1], "weight": 0.5}]}, "fitted for other members or weights"),
        ({"members": [MEMBERS[0]]}, "fitted for other members or weights"),
        ({"members": [MEMBERS[0], {**MEMBERS[1], "weight": None}]}, "fitted for other members or weights"),
        ({"members": "a_best.pt"}, "fitted for other members or weights"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"temperature": -1.5}, "temperature must be > 0"),
        ({"temperature": math.nan}, "must be a finite number"),
        ({"temperature": "hot"}, "must be a finite number"),
        ({"method": "platt", "a": 0.0, "b": 0.0}, "slope 'a' must be > 0"),
        ({"method": "platt", "a": -1.0, "b": 0.0}, "slope 'a' must be > 0"),
        ({"method": "isotonic"}, "method must be one of temperature, platt"),
        ({"real_scores": [0.1, 1.5]}, "real score must be a number from 0 to 1"),
        ({"real_scores": [-0.1]}, "real score must be a number from 0 to 1"),
        ({"real_scores": "0.1"}, "`real_scores` must be a list"),
        ({"operating_points": [{"fpr": 0.05, "score": 2.0, "reals": 5, "rank": 1}]}, "operating point score"),
        ({"operating_points": [{"fpr": 1.0, "score": 0.5, "reals": 5, "rank": 1}]}, "operating point fpr"),
        ({"operating_points": ["0.05"]}, "each operating point must be a mapping"),
        ({"members": [{**MEMBERS[0], "encoder": "resnet18"}, MEMBERS[1]]}, "other members or weights"),
        ({"members": [MEMBERS[0], {**MEMBERS[1], "input_size": 96}]}, "other members or weights"),
        # a member read by another paper's detector since (or before): another model
        ({"members": [MEMBERS[0], {**MEMBERS[1], "detector": "sbi"}]}, "other members or weights"),
        # malformed: each one line, never a TypeError
        ({"operating_points": 5}, "`operating_points` must be a list"),
        ({"operating_points": True}, "`operating_points` must be a list"),
        ({"operating_points": {"fpr": 0.2, "score": 0.6}}, "`operating_points` must be a list"),
        ({"real_scores": 5}, "`real_scores` must be a list"),
        ({"real_scores": True}, "`real_scores` must be a list"),
        ({"real_scores": {"a": 0.1}}, "`real_scores` must be a list"),
        ({"fitted_on": "oof"}, "`fitted_on` must be a mapping"),
        ({"fitted_on": [1, 2]}, "`fitted_on` must be a mapping"),
        ({"fitted_on": 5}, "`fitted_on` must be a mapping"),
        # every field of the record of the fit, which the verdicts' JSON repeats
        ({"fitted_on": {"videos": math.nan}}, "`fitted_on.videos` must be a whole number from 0 to 1000000000"),
        ({"fitted_on": {"real": 2.5}}, "`fitted_on.real` must be a whole number"),
        ({"fitted_on": {"log_loss_before": math.nan}}, "`fitted_on.log_loss_before` must be a finite number from 0"),
        ({"fitted_on": {"ece_after": 1.5}}, "`fitted_on.ece_after` must be a finite number from 0 to 1, got 1.5"),
        ({"fitted_on": {"held_out": {"brier_after": math.inf}}}, "`fitted_on.held_out.brier_after` must be a finite"),
        ({"fitted_on": {"held_out": "set"}}, "`fitted_on.held_out` must be a mapping"),
        ({"fitted_on": {"held_out": {"forced": True}}}, "`fitted_on.held_out` has fields that are not known: 'forced'"),
        ({"fitted_on": {"forced": "yes"}}, "`fitted_on.forced` must be true or false, got 'yes'"),
        ({"fitted_on": {"method": "isotonic"}}, "`fitted_on.method` must be one of temperature, platt"),
        ({"fitted_on": {"source": ["a", "b"]}}, "`fitted_on.source` must be text, got list"),
        ({"fitted_on": {"notes": "mine"}}, "`fitted_on` has fields that are not known: 'notes' \\(known: brier_after"),
        # integers no float holds: OverflowError tracebacks (math.isfinite, float())
        ({"temperature": 10**400}, "'temperature' must be a finite number, got an integer of about 400 digits"),
        ({"fitted_on": {"log_loss_before": 10**400}}, "log_loss_before` must be a finite number from 0 to 100, got an"),
        ({"operating_points": [{**POINT, "rank": 10**400}]}, "operating point rank must be a number from 1 to inf"),
        ({"operating_points": [{**POINT, "rank": 1.9}]}, "operating point rank must be a whole number"),
        ({"operating_points": [{**POINT, "rank": True}]}, "operating point rank must be a number"),
        ({"operating_points": [{**POINT, "rank": 0}]}, "operating point rank must be a number from 1"),
        ({"operating_points": [{**POINT, "reals": 5.5}]}, "operating point reals must be a whole number"),
        ({"operating_points": [{**POINT, "reals": 6, "rank": 7}]}, "fpr=0.2 has rank 7 among only 6 reals"),
        # the block holds the point's reals: its rank and score must be theirs
        ({"operating_points": [{**POINT, "rank": 2}]}, "fpr=0.2 has rank 2, but 5 reals put it at rank 1"),
        ({"operating_points": [{**POINT, "fpr": 0.05}]}, "fpr=0.05 has rank 1, but 5 reals put it at rank 0"),
        ({"operating_points": [{**POINT, "score": 0.3}]}, "has score 0.3, not 0.6, the real score of rank 1"),
        ({"operating_points": [POINT, {**POINT, "fpr": 0.2 + 1e-12}]}, "fpr=0.2 is listed twice"),
    ],
)
def test_a_block_that_cannot_describe_the_ensemble_is_refused(tmp_path, change, message):
    path = _file(tmp_path, _block(**change))
    with pytest.raises(CalibrationFileError, match=message) as error:
        ensemble_calibration(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_a_date_in_the_record_of_the_fit_is_kept_as_text_that_json_holds(tmp_path):
    """YAML reads an unquoted date as a date, which the verdicts' JSON could not hold."""
    path = _file(tmp_path, _block(fitted_on={"videos": 10, "date": datetime.date(2026, 12, 2)}))
    assert "date: 2026-12-02\n" in path.read_text()
    summary = ensemble_calibration(path).summary()
    assert summary["fitted_on"] == {"videos": 10, "date": "2026-12-02"}
    assert json.loads(json.dumps(summary, allow_nan=False))["fitted_on"]["date"] == "2026-12-02"


def test_a_malformed_block_ends_a_command_in_one_line(tmp_path, capsys):
    path = _file(tmp_path, _block(operating_points=5))
    assert cli.run(lambda argv: ensemble_calibration(path), []) == 2
    assert capsys.readouterr().err == f"error: {path}: calibration `operating_points` must be a list, got 5\n"


def test_points_whose_reals_the_block_does_not_hold_are_not_checked_against_them(tmp_path):
    # 120 reals behind the 1% point, 5 stored: its rank and score cannot be checked, and are kept as written
    assert ensemble_calibration(_file(tmp_path, _block())).operating_point(0.01).rank == 1


def test_members_edited_after_calibration_are_refused(tmp_path):
    path = _file(tmp_path, _block(), members=[MEMBERS[0], {**MEMBERS[1], "weight": 0.7}])
    with pytest.raises(CalibrationFileError, match="run python -m inference.calibrate on it again"):
        ensemble_calibration(path)
    renamed = _file(tmp_path, _block(), members=[MEMBERS[0], {**MEMBERS[1], "checkpoint": "c_best.pt"}])
    with pytest.raises(CalibrationFileError, match="other members or weights"):
        ensemble_calibration(renamed)


@pytest.mark.parametrize("block", [[1, 2], "temperature: 2", 3.0])
def test_a_block_that_is_no_mapping_is_refused(tmp_path, block):
    with pytest.raises(CalibrationFileError, match="`calibration:` must be a mapping"):
        ensemble_calibration(_file(tmp_path, block))


def test_models_added_to_a_calibrated_ensemble_are_refused(tmp_path):
    path = _file(tmp_path, _block())
    with pytest.raises(InputError, match="--models would make another ensemble"):
        load_calibration(argparse.Namespace(ensemble=str(path), models=[tmp_path / "extra.pt"]))
    calibration = load_calibration(argparse.Namespace(ensemble=str(path), models=[]))
    assert calibration.method["temperature"] == 2.0
    plain = argparse.Namespace(ensemble=str(_file(tmp_path, None)), models=[tmp_path / "extra.pt"])
    assert load_calibration(plain) is None  # nothing to refuse: no calibration to misapply
    assert load_calibration(argparse.Namespace(ensemble=None, models=[tmp_path / "extra.pt"])) is None


def test_operating_point_argument_reads_fpr_equals_rate():
    assert operating_point_argument("fpr=0.01") == 0.01 and operating_point_argument("0.05") == 0.05
    for text in ("fpr=1", "0", "fpr=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            operating_point_argument(text)


def _checkpoints(folder: Path, contents=(b"first model", b"second model")) -> None:
    for member, content in zip(MEMBERS, contents, strict=True):
        (folder / member["checkpoint"]).write_bytes(content)


def _move_mtime(path: Path, seconds: int) -> None:
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + seconds * 10**9))


def test_the_fingerprint_records_each_checkpoint_files_size_and_sha256(tmp_path):
    _checkpoints(tmp_path)
    first = member_fingerprint(MEMBERS, tmp_path)[0]
    assert first == {
        "checkpoint": "a_best.pt",
        "encoder": None,
        "input_size": None,
        "weight": 0.25,
        "bytes": 11,
        "sha256": hashlib.sha256(b"first model").hexdigest(),
        "mtime_ns": (tmp_path / "a_best.pt").stat().st_mtime_ns,
    }
    absolute = {"checkpoint": str(tmp_path / "b_best.pt"), "encoder": "resnet18", "input_size": 64}
    [entry] = member_fingerprint([absolute], tmp_path / "elsewhere")
    assert (entry["encoder"], entry["input_size"], entry["weight"], entry["bytes"]) == ("resnet18", 64, 1.0, 12)
    assert entry["sha256"] == hashlib.sha256(b"second model").hexdigest()
    assert member_fingerprint([{"checkpoint": "gone.pt"}], tmp_path)[0]["sha256"] is None


def test_a_member_retrained_or_replaced_since_calibration_is_refused(tmp_path, monkeypatch):
    _checkpoints(tmp_path)
    path = _file(tmp_path, _block(members=member_fingerprint(MEMBERS, tmp_path)))
    hashed = []
    sha256 = ensemble_calibration_module.file_sha256
    monkeypatch.setattr(
        ensemble_calibration_module, "file_sha256", lambda file: hashed.append(file.name) or sha256(file)
    )
    assert ensemble_calibration(path).method["temperature"] == 2.0 and hashed == [], "unchanged: a stat, no hash"
    second = tmp_path / "b_best.pt"
    _move_mtime(second, 1)  # copied: the same bytes at another time
    assert ensemble_calibration(path).method["temperature"] == 2.0 and hashed == ["b_best.pt"]
    second.write_bytes(b"second modem")  # the same size, other bytes
    _move_mtime(second, 2)
    with pytest.raises(
        CalibrationFileError, match=r"member b_best\.pt was retrained or replaced .* \(another sha256\)"
    ):
        ensemble_calibration(path)
    second.write_bytes(b"a longer second model")
    with pytest.raises(CalibrationFileError, match=r"member b_best\.pt was retrained .* \(21 bytes, not 12\); run"):
        ensemble_calibration(path)
    second.unlink()  # left to the loading's own error, which names the missing file
    assert ensemble_calibration(path).method["temperature"] == 2.0


def test_a_block_without_the_checkpoints_fingerprint_is_refused_once_they_are_there(tmp_path):
    path = _file(tmp_path, _block())  # members written by hand: no size, no sha256
    assert ensemble_calibration(path).method["temperature"] == 2.0  # no checkpoint file to compare
    _checkpoints(tmp_path)
    with pytest.raises(CalibrationFileError, match="does not record the size and sha256 of member a_best.pt"):
        ensemble_calibration(path)
