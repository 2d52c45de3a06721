"""Training end to end on a tiny crop dataset: outputs, exact resume, and DDP with gloo on CPU."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import REPO_ROOT, run_until_killed
from tests.training_data import make_crop_dataset
from training import train as train_module
from training.models.zoo import create_model, load_weights, read_checkpoint

TINY = [
    "--config",
    str(REPO_ROOT / "configs" / "demo.yaml"),
    "--fold",
    "0",
    "--seed",
    "7",
    "--workers",
    "0",
    "--batch-size",
    "4",
    "--set",
    "model.input_size=32",
    "--set",
    "training.channels_last=false",
    "--set",  # the recipe's augmentations and cutouts, which the CPU demo config tones down
    "data.cutouts=true",
    "--set",
    "data.augment_strength=1.0",
]


@pytest.fixture(scope="module")
def crop_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    make_crop_dataset(root, groups=4, fakes_per_group=2, crops=8)
    return root


def _metrics(log_dir) -> list[dict]:
    with open(log_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_run_writes_checkpoints_logs_and_the_resolved_config(crop_data, tmp_path):
    out = tmp_path / "weights"
    summary = train_module.train(
        train_module.parse_args(
            [*TINY, "--data-dir", str(crop_data), "--output-dir", str(out), "--epochs", "3", "--lr", "0.02"]
            + ["--batches-per-epoch", "8"]
        )
    )
    log_dir = out / "logs" / "demo_0_7"
    rows = _metrics(log_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    best_epoch = min(range(3), key=lambda e: float(rows[e]["score"]))
    assert summary["best_epoch"] == best_epoch and summary["world_size"] == 1  # replicas: tests/test_distributed.py
    assert json.loads((log_dir / "summary.json").read_text()) == summary
    assert sorted(path.name for path in out.glob("*.pt")) == ["demo_0_7_best.pt", "demo_0_7_last.pt"]
    best, last = read_checkpoint(out / "demo_0_7_best.pt"), read_checkpoint(out / "demo_0_7_last.pt")
    assert best["epoch"] == best_epoch and best["encoder"] == "resnet18" and best["input_size"] == 32
    assert "optimizer" not in best and "rng" not in best, "the best checkpoint holds weights, not training state"
    assert last["epoch"] == 2 and {"optimizer", "scheduler", "scaler", "rng"} <= set(last)
    assert len(best["mean"]) == 3 and "module." not in next(iter(best["state_dict"]))
    model = create_model(best["encoder"])
    load_weights(model, best["state_dict"])
    config = yaml.safe_load((log_dir / "config.yaml").read_text())
    assert config["optimizer"]["lr"] == 0.02 and config["model"]["input_size"] == 32
    assert config["data"]["batch_size"] == 4 and config["training"]["epochs"] == 3
    with open(log_dir / "oof_predictions.csv", newline="") as handle:
        oof = {row["video"] for row in csv.DictReader(handle)}
    assert oof == {"real0", "fake0_0", "fake0_1", "real2", "fake2_0", "fake2_1"}, "the fold-0 videos"
    assert any(path.name.startswith("events.out.tfevents") for path in log_dir.iterdir())


def _final_weights(path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


# Dies as epoch 1's _last starts to be written (its _best, if it improved, is already there): a
# run killed between two files, mid-write.
KILLED_AFTER_EPOCH_1_CHECKPOINT = """
import os, signal, sys
import training.loop.checkpoints as checkpoints
import training.train as train

save = checkpoints.save_checkpoint

def save_or_die(path, state):
    if state["epoch"] == 1 and path.name.endswith("_last.pt"):
        os.kill(os.getpid(), signal.SIGKILL)
    save(path, state)

checkpoints.save_checkpoint = save_or_die
sys.exit(train.main(sys.argv[1:]))
"""


SELF_BLENDS_AND_SAM = ["--set", "data.fakes=blends", "--set", "optimizer.name=sam_adamw"]

# What the resume and DDP tests check (bit-equal weights, equal replicas) holds for any encoder or
# not at all: they train timm's 0.36M-parameter test EfficientNet (depthwise convolutions,
# squeeze-excite, batch norm, as the recipe's B7), whose _last checkpoint (weights and AdamW's
# moments) is 4 MB where ResNet-18's is 140 MB, written and fsynced every epoch of every run.
SMALL_ENCODER = ["--set", "model.encoder=test_efficientnet"]


@pytest.mark.parametrize("variant", [[], SELF_BLENDS_AND_SAM], ids=["recipe", "self_blends_sam"])
@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights(crop_data, tmp_path, variant):
    # on the CPU: bit-exact resumption needs deterministic kernels, which cuDNN's backward is not by default.
    # Three epochs of three batches: the kill lands in epoch 1 and the resumed run carries the
    # optimizer, schedule and random state through two more epochs (epochs 1 and 2).
    args = [*TINY, *SMALL_ENCODER, *variant, "--data-dir", str(crop_data), "--epochs", "3", "--batches-per-epoch", "3"]
    args += ["--device", "cpu"]
    train_module.train(train_module.parse_args([*args, "--output-dir", str(tmp_path / "straight")]))

    out = tmp_path / "interrupted"
    # the killed process sums in this one's number of threads: float sums differ in their last bits
    # with it (a pytest-xdist worker runs with 1 thread; a step run in-process may have set 2 since)
    threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}
    run_until_killed(KILLED_AFTER_EPOCH_1_CHECKPOINT, [*args, "--output-dir", str(out)], env=threads)
    assert read_checkpoint(out / "demo_0_7_last.pt")["epoch"] == 0, "the kill came before _last moved on"
    assert not list(out.glob(".*.partial")), "no half-written file under any name"
    train_module.train(train_module.parse_args([*args, "--output-dir", str(out), "--resume", "auto"]))

    straight, resumed = (
        _final_weights(tmp_path / "straight" / "demo_0_7_last.pt"),
        _final_weights(out / "demo_0_7_last.pt"),
    )
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    assert len(_metrics(out / "logs" / "demo_0_7")) == 3


@pytest.mark.parametrize("variant", [[], SELF_BLENDS_AND_SAM], ids=["recipe", "self_blends_sam"])
@pytest.mark.slow
def test_two_process_gloo_run_keeps_replicas_equal(crop_data, tmp_path, variant):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        "-m",
        "training.train",
        *TINY,
        *SMALL_ENCODER,
        *variant,
        "--data-dir",
        str(crop_data),
        "--output-dir",
        str(out),
        "--epochs",
        "2",
        "--batches-per-epoch",
        "4",
        "--device",
        "cpu",
    ]
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "logs" / "demo_0_7" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["replicas_in_sync"] is True
    assert len(_metrics(out / "logs" / "demo_0_7")) == 2


def test_freeze_epochs_train_only_the_head(crop_data, tmp_path, caplog):
    torch.manual_seed(7)
    initial = create_model("resnet18").state_dict()
    out = tmp_path / "frozen"
    args = [*TINY, "--data-dir", str(crop_data), "--output-dir", str(out), "--epochs", "1", "--freeze-epochs", "1"]
    args += ["--batches-per-epoch", "8"]
    with caplog.at_level(logging.WARNING, logger="training.train"):
        train_module.train(train_module.parse_args([*args, "--set", "schedule.max_iter=100500"]))
    assert "demo_0_7: the run stops after 8 iterations but its poly schedule decays over 100500" in caplog.text
    trained = read_checkpoint(out / "demo_0_7_last.pt")["state_dict"]
    encoder_keys = [key for key in initial if key.startswith("encoder.")]
    assert all(torch.equal(initial[key], trained[key]) for key in encoder_keys), "encoder and its BN stats untouched"
    assert not torch.equal(initial["fc.weight"], trained["fc.weight"])
