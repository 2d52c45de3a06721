"""inference.evaluate applies an `ensemble:` model's stored calibration: its submission holds the
calibrated probabilities of the scores the same ensemble gives without the block, and its table's
log loss is the one of those calibrated probabilities."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from inference.calibration.methods import apply_calibration
from inference.evaluation import protocols as evaluate
from inference.scoring.metrics import competition_log_loss
from tests.conftest import dfdc_metadata
from tests.test_predict_calibrated import TEMPERATURE, models, write_ensemble  # noqa: F401  (models: a fixture)
from tests.test_predict_resume import _folder

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


def _submission(path) -> dict[str, float]:
    with open(path, newline="") as handle:
        return {row["filename"]: float(row["label"]) for row in csv.DictReader(handle)}


def test_an_ensemble_model_is_scored_with_its_calibration(tmp_path, models, demo_world):  # noqa: F811
    entries = dict(sorted(dfdc_metadata(demo_world).items())[:3])
    videos = _folder(tmp_path, list(entries))
    labels = {path.name: int(entry["label"] == "FAKE") for path, entry in entries.items()}
    (videos / "labels.csv").write_text("filename,label\n" + "".join(f"{n},{y}\n" for n, y in labels.items()))
    protocol = {
        "models": [
            {"name": "plain", "ensemble": str(write_ensemble(models, None, "plain_eval.yaml"))},
            {"name": "calibrated", "ensemble": str(write_ensemble(models, TEMPERATURE, "calibrated_eval.yaml"))},
        ],
        "test_sets": [{"name": "three", "root": str(videos), "labels": "labels.csv"}],
        "predict": {"frames": 4, "runtime": "torch", "device": "cpu", "workers": 0},
    }
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(protocol))
    out = tmp_path / "out"
    assert evaluate.main(["--protocol", str(path), "--out", str(out)]) == 0

    raw = _submission(out / "predictions" / "plain" / "three" / "submission.csv")
    calibrated = _submission(out / "predictions" / "calibrated" / "three" / "submission.csv")
    assert raw.keys() == calibrated.keys() == labels.keys()
    names = sorted(raw)
    expected = apply_calibration([raw[n] for n in names], TEMPERATURE)
    assert [calibrated[n] for n in names] == pytest.approx(list(expected), abs=1e-6)
    assert np.max(np.abs(expected - [raw[n] for n in names])) > 1e-3  # the temperature moved them

    results = json.loads((out / "results.json").read_text())
    y = [labels[n] for n in names]
    table = {name: results[name]["three"]["all"] for name in ("plain", "calibrated")}
    assert table["calibrated"]["log_loss"] == pytest.approx(competition_log_loss(y, expected), abs=1e-5)
    assert table["plain"]["log_loss"] == pytest.approx(competition_log_loss(y, [raw[n] for n in names]), abs=1e-5)
