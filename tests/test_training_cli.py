"""Training configuration, the job script and the curves plot."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from PIL import Image

from common.cli import InputError
from tests.conftest import REPO_ROOT
from training import plot_log
from training.data.dataset import FAKE_SOURCES
from training.loop.schedule import lr_factor, resolve_max_iter
from training.models.tuning import TRAIN_ONLY
from training.models.zoo import encoder_spec, normalization
from training.settings.config import DEFAULTS, apply_overrides, load_config
from training.train import parse_args, resolve_config

CONFIGS = REPO_ROOT / "configs"


def test_the_list_below_names_every_shipped_training_config():
    shipped = {path.stem for path in CONFIGS.glob("*.yaml")} - {"preprocess", "preprocess_demo", "ensemble_original"}
    assert shipped == set(SHIPPED)


def _leaves(tree: dict, prefix: str = "") -> dict:
    leaves = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            leaves.update(_leaves(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


SHIPPED = [
    "b7",
    "b5",
    "b4",
    "xception",
    "resnet34",
    "resnet50",
    "inception_resnet_v2",
    "demo",
    "temporal_b0",
    "temporal_demo",
    "sbi_b4",
    "clip_vit_l14",
    "clip_vit_b16_lora",
    "dinov2_vit_b14",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_is_its_file_over_the_defaults_and_can_run(name):
    path = CONFIGS / f"{name}.yaml"
    written, config = _leaves(yaml.safe_load(path.read_text())), _leaves(load_config(path))
    assert config == {**_leaves(DEFAULTS), **written}, "every value of the file, defaults for the rest"
    encoder_spec(config["model.encoder"])  # a listed encoder or a timm model
    assert config["optimizer.name"] in {"sgd", "adamw", "sam_sgd", "sam_adamw"}
    assert config["data.fakes"] in FAKE_SOURCES and config["model.train_only"] in TRAIN_ONLY
    lr_factor(1, 10, config["schedule.name"], config["schedule.power"])
    fixed = {"b7": 100500, "b5": 75100}  # the original's two configs fix the schedule's length
    assert config["schedule.max_iter"] == fixed.get(name, "auto")
    assert resolve_max_iter(config["schedule.max_iter"], 123) == fixed.get(name, 123)


# The original's configs/b7.json and configs/b5.json, and the values its train_classifier.py
# hardcoded (label smoothing 0.01, gradient clip norm 1, PolyLR power 0.9, BCE).
ORIGINAL_JSON = {
    "b7": {"encoder": "tf_efficientnet_b7_ns", "batch_size": 12, "epochs": 40, "max_iter": 100500},
    "b5": {"encoder": "tf_efficientnet_b5_ns", "batch_size": 20, "epochs": 30, "max_iter": 75100},
}
ORIGINAL_SHARED = {
    "batches_per_epoch": 2500,
    "size": 380,
    "fp16": True,
    "type": "SGD",
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "learning_rate": 0.01,
    "nesterov": True,
    "schedule": {"type": "poly", "mode": "step"},
    "normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "label_smoothing": 0.01,
    "clip_grad_norm": 1,
    "poly_power": 0.9,
}


@pytest.mark.parametrize("name", ["b7", "b5"])
def test_b7_and_b5_are_the_originals_configs(name):
    original = {**ORIGINAL_SHARED, **ORIGINAL_JSON[name]}
    config = load_config(CONFIGS / f"{name}.yaml")
    model, data, optimizer = config["model"], config["data"], config["optimizer"]
    schedule, training = config["schedule"], config["training"]
    assert model["encoder"] == original["encoder"] and model["input_size"] == original["size"]
    assert encoder_spec(model["encoder"]).drop_path_rate == 0.2 and model["dropout"] == 0.0
    assert list(normalization(model["encoder"])) == [tuple(original["normalize"][k]) for k in ("mean", "std")]
    assert data["batch_size"] == original["batch_size"] and data["label_smoothing"] == original["label_smoothing"]
    assert {k: v for k, v in optimizer.items() if not k.startswith("sam_")} == {
        "name": original["type"].lower(),
        "lr": original["learning_rate"],
        "momentum": original["momentum"],
        "nesterov": original["nesterov"],
        "weight_decay": original["weight_decay"],
        "clip_grad_norm": original["clip_grad_norm"],
    }
    assert (schedule["name"], schedule["power"]) == (original["schedule"]["type"], original["poly_power"])
    assert schedule["max_iter"] == original["max_iter"]
    assert training["epochs"] == original["epochs"] and training["batches_per_epoch"] == original["batches_per_epoch"]
    assert training["amp"] is original["fp16"] and training["sync_bn"] and training["ohem_samples"] is None
    # its generate_folds kept frames < 320 (`range(320)`, every 10th), faces 0 and 1
    # (`range(2)`) and only originals with fakes (`get_original_with_fakes`)
    assert (data["frame_limit"], data["faces_per_frame"], data["paired_only"]) == (320, 2, True)
    assert data["val_frame_modulo"] == 20 and data["frames_per_video"] is None
    assert training["freeze_epochs"] == 0 and config["data"]["cutouts"] and config["data"]["fakes"] == "dataset"
    assert model["train_only"] == "all"


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
    with pytest.raises(InputError, match="no such config key"):
        apply_overrides(config, ["training.nope=1"])


def test_unknown_keys_in_a_config_file_are_refused(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"optimizer": {"learning_rate": 0.1}}))
    with pytest.raises(InputError, match="unknown config key 'optimizer.learning_rate'"):
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


def test_sbi_b4_draws_the_papers_iterations():
    """The reference (configs/sbi/base.json, initialize.py): 8 frames of each of FF++'s 720 training
    videos, batches of 16 reals + their 16 blends, 100 epochs, so 360 iterations an epoch."""
    config = load_config(CONFIGS / "sbi_b4.yaml")
    data, training = config["data"], config["training"]
    assert (data["fakes"], data["frames_per_video"], data["batch_size"]) == ("blends", 8, 32)
    assert training["batches_per_epoch"] is None and training["epochs"] == 100
    assert 720 * data["frames_per_video"] * 2 // data["batch_size"] == 360
