"""inference.detect and the page without --models or --ensemble after ./run_all.sh: its calibrated
ensemble work/ensemble.yaml is used when it lists exactly the newest run's `_best` checkpoints,
and a warning says why it is not when it lists others or cannot be read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from PIL import Image

from inference.calibration.methods import apply_calibration
from inference.models.ensemble_calibration import member_fingerprint
from inference.serving import detection as detect
from inference.serving.page import parse_args as page_arguments
from preprocess.demo_world.identities import builtin_photos
from tests.conftest import save_tiny_checkpoint

TEMPERATURE = 2.0
NEWEST = ["demo_0_111_best.pt", "demo_1_555_best.pt"]


def write_run_all_ensemble(work: Path, checkpoints: list[str], block: bool = True) -> Path:
    """work/ensemble.yaml as inference.calibrate writes it: `checkpoints` (in work/weights), equal
    weights, and a temperature with a 1% operating point at 0.5."""
    members = [{"checkpoint": f"weights/{name}", "weight": 1.0} for name in checkpoints]
    calibration = {
        "method": "temperature",
        "temperature": TEMPERATURE,
        "members": member_fingerprint(members, work),
        "operating_points": [{"fpr": 0.01, "score": 0.5, "probability": 0.5, "reals": 120, "rank": 1}],
        "real_scores": [0.1, 0.2, 0.3],
    }
    path = work / "ensemble.yaml"
    path.write_text(yaml.safe_dump({"members": members} | ({"calibration": calibration} if block else {})))
    return path


@pytest.fixture
def run_all_world(tmp_path, monkeypatch) -> Path:
    """A folder laid out as ./run_all.sh leaves it: an older run and the newest run's checkpoints in
    work/weights, and the current folder there; no fetched weights."""
    weights = tmp_path / "work" / "weights"
    weights.mkdir(parents=True)
    old = save_tiny_checkpoint(weights / "older_0_111_best.pt", 3)
    os.utime(old, (1e9, 1e9))
    for seed, name in enumerate(NEWEST):
        save_tiny_checkpoint(weights / name, seed)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEEPFAKE_DETECTOR_WEIGHTS", str(tmp_path / "no_cache"))
    return tmp_path


def test_the_calibrated_ensemble_of_the_newest_checkpoints_is_used(run_all_world, caplog, capsys):
    write_run_all_ensemble(run_all_world / "work", NEWEST)
    caplog.set_level("INFO", logger="inference.detect")
    args = page_arguments([])  # the page chooses as detect does
    detect.choose_models(args)
    assert args.ensemble == "work/ensemble.yaml" and args.models == []
    members = ", ".join(f"work/weights/{name}" for name in NEWEST)
    assert f"no --models given: using the calibrated ensemble work/ensemble.yaml (its members {members})" in caplog.text

    photo = run_all_world / "face.png"
    Image.fromarray(builtin_photos()["astronaut"]).save(photo)
    assert detect.main([str(photo), "--json", "--runtime", "torch", "--device", "cpu"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in document["models"]] == NEWEST
    assert document["calibrated"] is True and document["calibration"]["file"] == "work/ensemble.yaml"
    by_hand = float(apply_calibration(document["score"], {"method": "temperature", "temperature": TEMPERATURE}))
    assert document["probability"] == pytest.approx(by_hand, abs=2e-4)
    assert document["verdict_text"].endswith("at the 1% false-positive threshold")


def test_an_ensemble_of_other_checkpoints_is_not_used_and_the_log_says_why(run_all_world, caplog):
    newest = [Path("work/weights") / name for name in NEWEST]
    for listed in (["older_0_111_best.pt"], [NEWEST[0]], [*NEWEST, "older_0_111_best.pt"]):
        write_run_all_ensemble(run_all_world / "work", listed)
        caplog.clear()
        args = detect.parse_args(["face.png"])
        detect.choose_models(args)
        assert args.ensemble is None and args.models == newest, listed
        [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
        assert warning.getMessage().startswith("work/ensemble.yaml was not used: its members (")
        assert "differ from the newest run's checkpoints (work/weights/demo_0_111_best.pt, " in warning.getMessage()

    ensemble = run_all_world / "work" / "ensemble.yaml"
    unusable = {"members: 5\n": "expected a `members:` list of checkpoints"}
    write_run_all_ensemble(run_all_world / "work", NEWEST)
    stale = yaml.safe_load(ensemble.read_text())
    stale["calibration"]["members"][0]["weight"] = 2.0  # fitted for another ensemble than the file lists
    unusable[yaml.safe_dump(stale)] = "the calibration was fitted for other members or weights"
    for text, why in unusable.items():
        ensemble.write_text(text)
        caplog.clear()
        args = detect.parse_args(["face.png"])
        detect.choose_models(args)
        assert args.models == newest and args.ensemble is None
        assert f"work/ensemble.yaml was not used: {why}" in caplog.text


def test_given_models_or_an_ensemble_win_over_the_run_all_ensemble(run_all_world, caplog):
    write_run_all_ensemble(run_all_world / "work", NEWEST)
    for given, chosen in ((["--models", "x.pt"], ([Path("x.pt")], None)), (["--ensemble", "o.yaml"], ([], "o.yaml"))):
        args = detect.parse_args(["face.png", *given])
        detect.choose_models(args)
        assert (args.models, args.ensemble) == chosen
    assert "no --models given" not in caplog.text
