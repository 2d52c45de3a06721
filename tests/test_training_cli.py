"""Training configuration, the job script and the curves plot."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from PIL import Image

from tests.conftest import REPO_ROOT
from training import plot_log
from training.config import DEFAULTS, apply_overrides, load_config
from training.train import parse_args, resolve_config

CONFIGS = REPO_ROOT / "configs"


@pytest.mark.parametrize("name", ["b7", "b5", "b4", "xception", "resnet34", "demo"])
def test_every_shipped_config_loads(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert set(config) == set(DEFAULTS)


def test_b7_is_the_recipe():
    config = load_config(CONFIGS / "b7.yaml")
    assert config["model"]["encoder"] == "tf_efficientnet_b7_ns" and config["model"]["input_size"] == 380
    assert config["data"]["batch_size"] == 12 and config["data"]["label_smoothing"] == 0.01
    assert config["optimizer"] == {
        "name": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 1e-4,
        "clip_grad_norm": 1.0,
    }
    assert config["schedule"]["name"] == "poly" and config["schedule"]["max_iter"] == 100500
    assert config["training"]["epochs"] == 40 and config["training"]["batches_per_epoch"] == 2500
    assert config["training"]["amp"] and config["training"]["sync_bn"]


def test_flags_and_set_override_the_file(tmp_path):
    args = parse_args(
        [
            "--config",
            str(CONFIGS / "b7.yaml"),
            "--data-dir",
            str(tmp_path),
            "--lr",
            "0.02",
            "--batch-size",
            "6",
            "--set",
            "schedule.name=cosine",
            "--set",
            "training.ohem_samples=4",
        ]
    )
    config = resolve_config(args)
    assert config["optimizer"]["lr"] == 0.02 and config["data"]["batch_size"] == 6
    assert config["schedule"]["name"] == "cosine" and config["training"]["ohem_samples"] == 4
    with pytest.raises(SystemExit, match="no such config key"):
        apply_overrides(config, ["training.nope=1"])


def test_unknown_keys_in_a_config_file_are_refused(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"optimizer": {"learning_rate": 0.1}}))
    with pytest.raises(SystemExit, match="unknown config key 'optimizer.learning_rate'"):
        load_config(path)


def test_plot_marks_the_best_epoch_of_each_run(tmp_path):
    for run, scores in {"a": [0.69, 0.5, 0.55], "b": [0.7, 0.66, 0.6]}.items():
        (tmp_path / run).mkdir()
        rows = "\n".join(f"{epoch},{0.7 - 0.05 * epoch},{score}" for epoch, score in enumerate(scores))
        (tmp_path / run / "metrics.csv").write_text("epoch,train_loss,score\n" + rows + "\n")
    out = tmp_path / "curves.png"
    assert plot_log.plot_runs([tmp_path / "a", tmp_path / "b"], out) == {"a": 1, "b": 2}
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 800
    with pytest.raises(FileNotFoundError, match="no metrics"):
        plot_log.plot_runs([tmp_path], out)


def test_job_script_lists_one_job_per_config_fold_and_seed(tmp_path):
    result = subprocess.run(
        [str(REPO_ROOT / "train.sh"), str(tmp_path), "--list"],
        capture_output=True,
        text=True,
        env={"JOBS": "configs/b7.yaml:0:111 configs/b5.yaml:1:555", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.stdout.splitlines() == ["0 configs/b7.yaml:0:111", "1 configs/b5.yaml:1:555"]
    bad = subprocess.run(
        [str(REPO_ROOT / "train.sh"), str(tmp_path), "--job", "7"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert bad.returncode == 2 and "--job takes 0..4" in bad.stderr
