"""inference.evaluate's models (an ensemble file among them), its cache keys, and its table columns."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from inference.evaluation.evaluate_models import (
    ModelSource,
    model_source,
    option_arguments,
    predict_set,
    prediction_source,
)
from inference.evaluation.protocols import ProtocolError, read_protocol, summarise, write_table
from inference.models.ensemble_calibration import member_fingerprint
from inference.scoring.metrics import score


def calibrated_ensemble(folder: Path, temperature: float) -> Path:
    """An ensemble file of one (stand-in) checkpoint with a temperature calibration fitted for it."""
    checkpoint = folder / "member.pt"
    if not checkpoint.exists():
        checkpoint.write_bytes(b"not read: only its size and time are")
    members = [{"checkpoint": "member.pt", "weight": 1.0}]
    fitted_for = member_fingerprint(members, folder)  # as inference.calibrate records them
    calibration = {"method": "temperature", "temperature": temperature, "members": fitted_for}
    path = folder / "ensemble.yaml"
    path.write_text(yaml.safe_dump({"members": members, "calibration": calibration}))
    return path


@pytest.fixture
def test_set(tmp_path):
    folder = tmp_path / "sets" / "s"
    folder.mkdir(parents=True)
    video = tmp_path / "a.mp4"
    video.write_bytes(b"x")
    (folder / "a.mp4").symlink_to(video)
    labels = tmp_path / "sets" / "s.labels.csv"
    labels.write_text("filename,label,group\na.mp4,0,real\n")
    return folder, labels


def stand_in_predict(monkeypatch) -> list[list[str]]:
    """inference.prediction.predict_folder.main replaced by one that records its arguments and writes a one-row
    submission: the calls a set's predictions would make, without predicting."""
    import inference.prediction.predict_folder

    calls = []

    def fake_predict(arguments):
        calls.append(arguments)
        Path(arguments[arguments.index("--output") + 1]).write_text("filename,label\na.mp4,0.5\n")
        return 0

    monkeypatch.setattr(inference.prediction.predict_folder, "main", fake_predict)
    return calls


def test_an_edited_calibration_or_member_makes_the_ensemble_predict_again(tmp_path, test_set, monkeypatch):
    folder, labels = test_set
    path = calibrated_ensemble(tmp_path, 1.5)
    source = model_source({"name": "ens", "ensemble": str(path)}, tmp_path / "out")
    assert source == ModelSource(ensemble=str(path)) and source.predict_arguments() == ["--ensemble", str(path)]
    before = prediction_source(source, folder, labels, {"frames": 8})
    assert before["ensemble"]["calibration"] == {"method": "temperature", "temperature": 1.5}
    assert "checkpoints" not in before
    assert [m["path"] for m in before["ensemble"]["members"]] == [str((tmp_path / "member.pt").resolve())]

    calibrated_ensemble(tmp_path, 2.0)  # only the calibration block changes
    after = prediction_source(source, folder, labels, {"frames": 8})
    assert after != before and {k for k in after if after[k] != before[k]} == {"ensemble"}
    assert after["ensemble"]["members"] == before["ensemble"]["members"]
    calibrated_ensemble(tmp_path, 1.5)
    assert prediction_source(source, folder, labels, {"frames": 8}) == before
    document = yaml.safe_load(path.read_text())
    document["calibration"]["fitted_on"] = {"videos": 40, "date": "2026-12-02"}  # refitted to the same values
    path.write_text(yaml.safe_dump(document))
    assert prediction_source(source, folder, labels, {"frames": 8}) == before
    member = tmp_path / "member.pt"
    os.utime(member, ns=(member.stat().st_atime_ns, member.stat().st_mtime_ns + 10**9))  # a member retrained
    assert (
        prediction_source(source, folder, labels, {"frames": 8})["ensemble"]["members"] != before["ensemble"]["members"]
    )

    calls = stand_in_predict(monkeypatch)
    output = tmp_path / "out" / "submission.csv"
    output.parent.mkdir(parents=True)
    assert predict_set(source, folder, labels, output, {"frames": 8}) is True
    assert calls[0][calls[0].index("--ensemble") + 1] == str(path) and "--models" not in calls[0]
    assert predict_set(source, folder, labels, output, {"frames": 8}) is False  # cached
    calibrated_ensemble(tmp_path, 3.0)
    assert predict_set(source, folder, labels, output, {"frames": 8}) is True and len(calls) == 2


def test_checkpoint_models_keep_the_cache_key_they_had(tmp_path, test_set):
    folder, labels = test_set
    checkpoint = tmp_path / "c.pt"
    checkpoint.write_bytes(b"123")
    key = prediction_source(ModelSource((checkpoint,)), folder, labels, None)
    stat = checkpoint.stat()
    assert key["checkpoints"] == [{"path": str(checkpoint.resolve()), "bytes": 3, "mtime_ns": stat.st_mtime_ns}]
    assert set(key) == {"checkpoints", "labels", "videos", "predict"} and key["predict"] == {}


def test_a_perturbed_set_is_predicted_again_when_its_seed_or_level_changes(tmp_path, test_set, monkeypatch):
    folder, labels = test_set
    checkpoint = tmp_path / "c.pt"
    checkpoint.write_bytes(b"123")
    source = ModelSource((checkpoint,))
    calls = stand_in_predict(monkeypatch)
    output = tmp_path / "out" / "perturbed" / "submission.csv"
    output.parent.mkdir(parents=True)
    for perturb, seed, predicted in [
        ("GB:1", 0, True),
        ("GB:1", 0, False),  # cached
        ("GB:1", 1, True),  # another seed: other noise, blocks and chains
        ("GB:3", 1, True),  # another level
        ("GB:3", 1, False),
        ("mixed:3", 1, True),
    ]:
        assert predict_set(source, folder, labels, output, {"frames": 8, "perturb": perturb, "perturb_seed": seed}) is (
            predicted
        )
    assert len(calls) == 4 and calls[2][-4:] == ["--perturb", "GB:3", "--perturb-seed", "1"]
    key = prediction_source(source, folder, labels, {"perturb": "mixed:3", "perturb_seed": 1})
    assert key["predict"] == {"perturb": "mixed:3", "perturb_seed": 1} and key["perturbation_revision"] == 3
    # VC encoded with the frames around the sampled ones (issue 28): its cached predictions are made again
    assert prediction_source(source, folder, labels, {"perturb": "VC:3"})["perturbation_revision"] == 2
    # a mixed prediction cached before the chain was fixed per video has no revision: made again
    stale = {k: v for k, v in key.items() if k != "perturbation_revision"}
    (output.with_name("source.json")).write_text(json.dumps({**stale, "predict": {"frames": 8, **stale["predict"]}}))
    assert predict_set(source, folder, labels, output, {"frames": 8, "perturb": "mixed:3", "perturb_seed": 1}) is True
    assert "perturbation_revision" not in prediction_source(source, folder, labels, {"perturb": "GB:3"})


def test_predict_options_become_flags_zero_included():
    arguments = option_arguments({"frames": 8, "fast": True, "tta": False, "errors": None, "perturb_seed": 0})
    assert arguments == ["--frames", "8", "--fast", "--perturb-seed", "0"]


def test_protocol_models_are_one_kind_each(tmp_path):
    path = tmp_path / "p.yaml"
    sets = [{"name": "t", "root": "r"}]
    path.write_text(yaml.safe_dump({"models": [{"name": "e", "ensemble": "x.yaml"}], "test_sets": sets}))
    assert read_protocol(path)["models"][0]["ensemble"] == "x.yaml"
    path.write_text(
        yaml.safe_dump({"models": [{"name": "e", "ensemble": "x", "checkpoints": ["c"]}], "test_sets": sets})
    )
    with pytest.raises(ProtocolError, match="model e: give one of"):
        read_protocol(path)
    path.write_text(yaml.safe_dump({"models": [{"name": "e", "ensemble": "x", "detector": "sbi"}], "test_sets": sets}))
    with pytest.raises(ProtocolError, match="model e: `detector:` names the detector of its `checkpoints:`"):
        read_protocol(path)
    their = tmp_path / "FFc23.tar"
    their.write_bytes(b"x")
    source = model_source({"name": "s", "checkpoints": [str(their)], "detector": "sbi"}, tmp_path)
    assert source.predict_arguments() == ["--models", f"sbi:{their}"] and source.identity()["detector"] == "sbi"
    with pytest.raises(ProtocolError, match="ensemble file not found: nowhere.yaml"):
        model_source({"name": "e", "ensemble": "nowhere.yaml"}, tmp_path)
    bad_set = [{"name": "t", "root": "r", "perturbations": {"levels": [0]}}]
    path.write_text(yaml.safe_dump({"models": [{"name": "e", "ensemble": "x"}], "test_sets": bad_set}))
    with pytest.raises(ProtocolError, match="test set t: distortion level must be a whole number from 1 to 5"):
        read_protocol(path)
    path.write_text(
        yaml.safe_dump({"models": [{"name": "e", "ensemble": "x"}], "test_sets": sets, "predict": {"perturb": "GB:1"}})
    )
    with pytest.raises(ProtocolError, match="give a test set `perturbations:`"):
        read_protocol(path)


def test_table_columns_hold_calibration_and_rates_with_their_reals(tmp_path):
    rng = np.random.default_rng(0)
    big_y = np.r_[np.zeros(1000), np.ones(60)].astype(int)  # 1000 reals: enough for 0.1% (999)
    big_p = np.clip(np.r_[rng.beta(2, 5, 1000), rng.beta(5, 2, 60)], 0, 1)
    small_y, small_p = np.array([0] * 30 + [1] * 10), np.linspace(0.05, 0.95, 40)
    empty = np.zeros(0)
    results = {
        "m": {
            "big": {"all": summarise(score(big_y, big_p), empty, empty)},
            "small": {"all": summarise(score(small_y, small_p), empty, empty)},
        }
    }
    rows = write_table(results, tmp_path)
    big, small = rows
    reals_big = np.sort(big_p[big_y == 0])[::-1]
    # the finite-sample thresholds by hand: k-th largest real, k = floor(target * (n + 1))
    for target, column in [(0.05, "tpr_at_5pct_fpr"), (0.01, "tpr_at_1pct_fpr"), (0.001, "tpr_at_0.1pct_fpr")]:
        threshold = reals_big[int(np.floor(round(target * 1001, 9))) - 1]
        assert big[column] == pytest.approx(np.mean(big_p[big_y == 1] > threshold))
    small_threshold = np.sort(small_p[small_y == 0])[::-1][0]  # 30 reals: k = floor(0.05 * 31) = 1
    assert small["tpr_at_5pct_fpr"] == pytest.approx(np.mean(small_p[small_y == 1] > small_threshold))
    assert small["tpr_at_1pct_fpr"] is None and small["tpr_at_0.1pct_fpr"] is None
    assert (big["reals"], small["reals"]) == (1000, 30)
    assert big["brier"] == pytest.approx(np.mean((big_p - big_y) ** 2))
    assert big["ece"] == pytest.approx(score(big_y, big_p)["ece"]) and big["ece"] > 0
    table = (tmp_path / "table.md").read_text().splitlines()
    assert table[0].endswith("| ECE | Brier | TPR@5%FPR | TPR@1%FPR | TPR@0.1%FPR | reals | videos |")
    assert table[3].split(" | ")[-5:-2] == [f"{small['tpr_at_5pct_fpr']:.4f}", "-", "-"]
    with open(tmp_path / "table.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert written[1]["tpr_at_1pct_fpr"] == "" and float(written[0]["tpr_at_0.1pct_fpr"]) == pytest.approx(
        big["tpr_at_0.1pct_fpr"]
    )
    import json

    saved = json.loads((tmp_path / "results.json").read_text())["m"]["small"]["all"]["tpr_at_fpr"]
    assert saved["0.01"]["reals_needed"] == 99 and saved["0.05"]["threshold"] == pytest.approx(small_threshold)
