"""The `calibration:` block of an ensemble file as predict, detect and the page read it: applied as
stored, and refused (never ignored) when it cannot describe the ensemble the file lists."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.special import expit, logit

from inference.ensemble import ensemble_calibration
from inference.ensemble_calibration import CalibrationFileError, operating_point_argument
from inference.model_options import load_calibration
from preprocess.cli import InputError

MEMBERS = [{"checkpoint": "a_best.pt", "weight": 0.25}, {"checkpoint": "b_best.pt", "weight": 0.75}]
REALS = [0.02, 0.05, 0.1, 0.3, 0.6]


def _block(**changes) -> dict:
    block = {
        "method": "temperature",
        "temperature": 2.0,
        "members": [dict(member) for member in MEMBERS],
        "operating_points": [
            {"fpr": 0.05, "score": 0.6, "probability": 0.55, "reals": 5, "rank": 1},
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
    ],
)
def test_a_block_that_cannot_describe_the_ensemble_is_refused(tmp_path, change, message):
    path = _file(tmp_path, _block(**change))
    with pytest.raises(CalibrationFileError, match=message) as error:
        ensemble_calibration(path)
    assert str(error.value).startswith(str(path))


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
