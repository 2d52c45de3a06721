"""A calibration is held to the scoring settings of its scores: predict records them in each
details row and refuses a calibration made for others (one line naming each difference), detect
and the page take the calibration's settings where none are given and warn, naming each
difference, where the user gave others."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest
import torch
import yaml

from common import cli
from inference.models.ensemble_calibration import member_fingerprint
from inference.prediction import predict_folder as predict
from inference.scoring.scoring_settings import (
    KEYS,
    RULE,
    TRAINING_VALIDATION,
    check_settings,
    differences,
    reference_settings,
    rows_settings,
    settings_problem,
)
from inference.serving import detection as detect
from inference.serving.detect_settings import DETECT_DEFAULTS, resolve_scoring
from inference.serving.judge_worker import load_models
from inference.serving.page import parse_args as page_arguments
from preprocess.faces.face_detector import RESOLUTION_RULE
from tests.test_calibrate_guard import SETTINGS
from tests.test_detect_calibrated import RUN, detect_run, world  # noqa: F401 (a fixture)
from tests.test_predict_calibrated import (  # noqa: F401 (fixtures)
    MEMBERS,
    TEMPERATURE,
    _arguments,
    models,
    test_dir,
)
from tests.test_predict_resume import _details

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")

PREDICT = {**SETTINGS, "frames": 4}  # what predict's options in tests/test_predict_calibrated.py score with on the CPU
CPU = torch.device("cpu")


class Stored:
    """What the checks read of an EnsembleCalibration."""

    def __init__(self, settings, held_out_settings=None, path="e.yaml"):
        self.settings, self.held_out_settings, self.path = settings, held_out_settings, Path(path)


def test_differences_name_each_setting_on_both_sides():
    other = {**PREDICT, "detector_scale": RULE, "frames": 32, "tta": True}
    assert differences(PREDICT, other) == [
        "detector_scale 0.5 (calibration) vs rule (here)",
        "frames 4 (calibration) vs 32 (here)",
        "tta off (calibration) vs on (here)",
    ]
    assert differences(PREDICT, dict(PREDICT)) == [] and RULE == RESOLUTION_RULE
    assert settings_problem(PREDICT) is None and settings_problem(TRAINING_VALIDATION) is None
    assert "no faces_are_cropped" in settings_problem({k: v for k, v in PREDICT.items() if k != "faces_are_cropped"})
    assert "precision 'fp8'" in settings_problem({**PREDICT, "precision": "fp8"})
    assert reference_settings(TRAINING_VALIDATION, PREDICT)[0] == PREDICT, "the held-out set's, it was checked on"
    assert reference_settings(TRAINING_VALIDATION, None)[0] is None


def test_rows_of_one_run_share_their_settings_and_rows_of_two_are_refused():
    assert rows_settings([{"scoring": PREDICT}] * 3, "d.jsonl") == PREDICT
    assert rows_settings([{}, {}], "d.jsonl") is None, "details written before settings were recorded"
    with pytest.raises(ValueError, match=r"d\.jsonl: some rows record their scoring settings and others do not"):
        rows_settings([{"scoring": PREDICT}, {}], "d.jsonl")


def test_predict_refuses_a_calibration_made_for_other_settings_unless_told(caplog):
    check_settings(Stored(PREDICT), dict(PREDICT))  # the same: applied
    with pytest.raises(ValueError) as refused:
        check_settings(Stored({**PREDICT, "frames": 32, "precision": "bf16"}), PREDICT)
    assert str(refused.value) == (
        "e.yaml: its calibration was made for other scoring settings (the settings of the scores it was fitted on): "
        "frames 32 (calibration) vs 4 (here); precision bf16 (calibration) vs fp32 (here); score with those, or pass "
        "--ignore-calibration-settings (or --uncalibrated)"
    )
    with pytest.raises(ValueError, match=r"held-out set it was checked on\): detector_scale rule \(calibration\)"):
        check_settings(Stored(TRAINING_VALIDATION, {**PREDICT, "detector_scale": RULE}), PREDICT)
    caplog.set_level(logging.WARNING)
    check_settings(Stored({**PREDICT, "frames": 32}), PREDICT, ignore=True)
    assert "--ignore-calibration-settings: applying the calibration of e.yaml to scores made otherwise: frames 32" in (
        caplog.text
    )
    check_settings(Stored(TRAINING_VALIDATION), PREDICT)
    assert "training's out-of-fold predictions (no predict settings to compare)" in caplog.text


def test_predict_records_its_settings_and_refuses_a_calibration_made_otherwise(tmp_path, models, test_dir, capsys):  # noqa: F811
    block = {**TEMPERATURE, "settings": {**PREDICT, "frames": 32}, "members": member_fingerprint(MEMBERS, models)}
    ensemble = models / "settings.yaml"
    ensemble.write_text(yaml.safe_dump({"members": MEMBERS, "calibration": block}, sort_keys=False))
    out = tmp_path / "out" / "submission.csv"
    assert cli.run(predict.main, _arguments(test_dir, ensemble, out)) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"error: {ensemble}: its calibration was made for other scoring settings (the settings of the scores it was "
        "fitted on): frames 32 (calibration) vs 4 (here); score with those, or pass --ignore-calibration-settings "
        "(or --uncalibrated)"
    )
    assert not out.parent.exists(), "refused before a video is read"
    assert predict.main(_arguments(test_dir, ensemble, out, "--ignore-calibration-settings")) == 0
    rows = [row for row in _details(out.parent / "details.jsonl") if not row["error"]]
    assert rows and all(row["scoring"] == PREDICT and row["calibrated"] for row in rows)


def _detect_args(*options: str) -> argparse.Namespace:
    return detect.parse_args(["clip.mp4", *options])


def test_detect_takes_the_calibrations_settings_and_warns_of_those_given_otherwise(caplog, monkeypatch):
    monkeypatch.setattr("inference.models.model_options.native_bf16", lambda: False)
    args = _detect_args()
    assert resolve_scoring(args, None, CPU) == "f32"
    assert (args.detector_scale, args.frames, args.strategy, args.no_recall_boost) == (
        RESOLUTION_RULE,
        32,
        "confident",
        False,
    )
    assert DETECT_DEFAULTS["detector_scale"] == RESOLUTION_RULE, "detect's own default: by resolution"

    calibration = Stored({**PREDICT, "frames": 32, "tta": True})
    caplog.set_level(logging.INFO)
    args = _detect_args()
    resolve_scoring(args, calibration, CPU)
    assert (args.detector_scale, args.frames, args.tta, args.fp32) == (0.5, 32, True, True), "predict's 0.5, not rule"
    assert "WARNING" not in caplog.text

    args = _detect_args("--detector-scale", "rule", "--frames", "8", "--no-tta")
    resolve_scoring(args, calibration, CPU)
    assert (args.detector_scale, args.frames, args.tta) == (RESOLUTION_RULE, 8, False)
    [warning] = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warning == (
        "e.yaml: scoring with other settings than its calibration was made for (the settings of the scores it was "
        "fitted on): detector_scale 0.5 (calibration) vs rule (here); frames 32 (calibration) vs 8 (here); tta on "
        "(calibration) vs off (here); its probabilities and operating points are for scores made the calibration's way"
    )
    caplog.clear()
    args = _detect_args()
    resolve_scoring(args, Stored({**PREDICT, "precision": "bf16"}), CPU)  # no native bf16 here: fp32
    assert args.cpu_bf16 is True and "precision bf16 (calibration) vs fp32 (here)" in caplog.text
    assert set(KEYS) >= set(DETECT_DEFAULTS)


def test_detect_and_the_page_score_with_the_calibrations_scale(world, tmp_path, caplog):  # noqa: F811
    block = dict(world["block"], settings={**PREDICT, "frames": 32})
    ensemble = world["folder"] / "with_settings.yaml"
    ensemble.write_text(
        yaml.safe_dump({"members": yaml.safe_load(world["plain"].read_text())["members"], "calibration": block})
    )
    caplog.set_level(logging.WARNING)
    code, [line], _ = detect_run([str(world["photo"]), "--ensemble", str(ensemble), *RUN, "--detector-scale", "1"])
    assert code == 0 and line.startswith(("REAL", "FAKE"))
    assert "detector_scale 0.5 (calibration) vs 1 (here)" in caplog.text
    page = load_models(page_arguments(["--ensemble", str(ensemble), *RUN]))
    assert (page.args.detector_scale, page.args.frames, page.args.fast) == (0.5, 32, False)
    caplog.clear()
    page = load_models(page_arguments(["--ensemble", str(ensemble), *RUN, "--fast"]))
    assert page.args.fast is True and "fast off (calibration) vs on (here)" in caplog.text


def test_fast_mode_on_cuda_is_said_in_the_log_and_the_details_and_recorded_as_the_default(
    tmp_path, monkeypatch, caplog
):
    """Issue 28: --fast did nothing on CUDA (seeded detection and bf16 are CPU-only) and said
    nothing. Now a warning says what it does there (lighter decoding only: the same frames, the
    default's scores), each details row says it, and `scoring` records fast off, as it scores."""
    from concurrent.futures import Future

    import numpy as np

    from inference.pipeline.faces import VideoFaces
    from inference.scoring.scoring_settings import FAST_ON_CUDA, fast_mode, scoring_settings

    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"")
    args = predict.parse_args(["--test-dir", str(tmp_path / "videos"), "--models", "m.pt", "--fast"])
    assert scoring_settings(args, "cuda", "f32")["fast"] is False and scoring_settings(args, "cpu", "f32")["fast"]
    assert fast_mode(args, "cuda", "f32") == FAST_ON_CUDA
    assert fast_mode(args, "cpu", "bf16") == "seeded detection, sparse decoding, classifiers in bf16"
    assert fast_mode(predict.parse_args(["--test-dir", ".", "--models", "m.pt"]), "cpu", "f32") is None

    class Reader:  # the faces of the one video, as if read on the GPU
        def __init__(self, *args, **kwargs):
            pass

        def read_all(self, paths):
            for path in paths:
                found = Future()
                found.set_result(
                    VideoFaces(path, [0], [np.zeros((8, 8, 3), np.uint8)], [0], [[0, 0, 8, 8]], ["detected"], {})
                )
                yield path, found

        def close(self, wait=True):
            pass

    monkeypatch.setattr(predict, "FaceReader", Reader)
    monkeypatch.setattr(predict, "score_videos", lambda videos, *rest: [(0.25, {"m.pt": 0.25}, [0.25])] * len(videos))
    with caplog.at_level("WARNING", logger="inference.predict"):
        scores, errors, [row] = predict.predict(args, [], torch.device("cuda"))
    assert FAST_ON_CUDA in caplog.text and scores == {"a.mp4": 0.25} and not errors
    assert row["fast_mode"] == FAST_ON_CUDA and row["scoring"]["fast"] is False
    caplog.clear()
    with caplog.at_level("INFO", logger="inference.predict"):
        *_, [row] = predict.predict(args, [], CPU)
    assert row["fast_mode"] == "seeded detection, sparse decoding, classifiers in fp32" and row["scoring"]["fast"]
    assert FAST_ON_CUDA not in caplog.text
