"""MTCNN's detection scale: the original's half size by default for the recipe, the resolution rule on request."""

from __future__ import annotations

import logging
import os
import subprocess

import pytest
from PIL import Image

from inference import predict
from preprocess import run_all
from preprocess.demo_world.identities import builtin_photos
from preprocess.face_detector import ORIGINAL_SCALE, RESOLUTION_RULE, FaceDetector, parse_scale
from preprocess.steps import load_config
from tests.conftest import REPO_ROOT


def test_scales_parse_as_a_positive_number_or_rule():
    assert parse_scale("rule") == parse_scale(" Rule ") == parse_scale(None) == RESOLUTION_RULE
    assert parse_scale("0.5") == parse_scale(0.5) == 0.5 and parse_scale(2) == 2.0 and parse_scale("4") == 4.0
    for bad in ("0", "-1", "half", True, float("nan"), "nan", "inf", float("inf"), "-inf", "1e308", 4.01):
        with pytest.raises(ValueError, match=r"^detection scale must be a positive number up to 4 or 'rule', got "):
            parse_scale(bad)


@pytest.mark.parametrize("scale", ["inf", "nan", "Infinity", "1000"])
def test_a_scale_that_is_no_finite_size_is_refused_by_the_commands(scale, capsys):
    """--detector-scale inf used to pass, then predict died writing its settings as JSON ("Out of
    range float values are not JSON compliant"); 1000 would resize a frame to a thousand times its size."""
    with pytest.raises(SystemExit) as refused:
        predict.parse_args(["--test-dir", ".", "--models", "m.pt", "--detector-scale", scale])
    assert refused.value.code == 2
    message = f"argument --detector-scale: detection scale must be a positive number up to 4 or 'rule', got '{scale}'"
    assert message in capsys.readouterr().err


def test_the_recipe_detects_at_half_size_unless_told_to_scale_by_resolution(capsys):
    assert ORIGINAL_SCALE == 0.5
    assert load_config()["detection"]["scale"] == 0.5
    assert load_config(REPO_ROOT / "configs" / "preprocess_demo.yaml")["detection"]["scale"] == RESOLUTION_RULE
    detector = FaceDetector(device="cpu")
    assert detector.frame_scale(480, 270) == 0.5 and detector.frame_scale(1920, 1080) == 0.5
    rule = FaceDetector(scale=RESOLUTION_RULE, device="cpu")
    assert rule.frame_scale(480, 270) == 1.0 and rule.frame_scale(250, 200) == 2.0
    args = ["--test-dir", ".", "--models", "m.pt"]
    assert predict.parse_args(args).detector_scale == 0.5
    assert predict.parse_args([*args, "--detector-scale", "rule"]).detector_scale == RESOLUTION_RULE
    with pytest.raises(SystemExit) as refused:
        predict.parse_args([*args, "--detector-scale", "0"])
    assert refused.value.code == 2
    message = "error: argument --detector-scale: detection scale must be a positive number up to 4 or 'rule', got '0'"
    assert message in capsys.readouterr().err


def test_preprocessing_runs_at_the_configured_scale_and_the_flag_overrides_it(tmp_path, caplog):
    (tmp_path / "real").mkdir()
    Image.fromarray(builtin_photos()["astronaut"]).save(tmp_path / "real" / "astronaut.png")
    for flags, scale in (([], "0.5"), (["--scale", "rule"], "rule"), (["--scale", "1"], "1.0")):
        caplog.clear()
        out = tmp_path / f"out{scale}"
        with caplog.at_level(logging.INFO, logger="preprocess"):
            assert run_all.main(["--root-dir", str(tmp_path), "--output-dir", str(out), *flags]) == 0
        assert f"MTCNN thresholds [0.85, 0.95, 0.95] at scale {scale} on" in caplog.text
        assert (out / "boxes" / "real__astronaut.json").is_file()


def _dry_run(*args, **env) -> list[str]:
    result = subprocess.run(
        [str(REPO_ROOT / "run_all.sh"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DRY_RUN": "1", **env},
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if "preprocess.run_all" in line or "inference.predict" in line]


def test_run_all_on_real_data_uses_the_original_settings_unless_told_otherwise(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "test").mkdir()
    preprocess_line, predict_line = _dry_run(str(tmp_path / "data"), str(tmp_path / "test"))
    assert preprocess_line.endswith("--config configs/preprocess.yaml --scale 0.5")
    assert predict_line.endswith("--detector-scale 0.5 --resume --no-recall-boost"), "no second try, as the original"
    lines = _dry_run(str(tmp_path / "data"), str(tmp_path / "test"), DETECTOR_SCALE="rule", RECALL_BOOST="1")
    assert lines[0].endswith("--scale rule") and lines[1].endswith("--detector-scale rule --resume")
    demo = _dry_run(WORK_DIR=str(tmp_path / "work"), PREDICT_WORKERS="2")
    assert demo[0].endswith("--scale rule"), "the demo's small clips scale by resolution"
    assert demo[1].endswith("--detector-scale rule --resume --workers 2"), "and get the recall boost"
