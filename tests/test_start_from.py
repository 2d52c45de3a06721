"""Fine-tuning from other weights (--init-from), --resume kept to its own run, small datasets that
train as configured, and the checkpoints a run keeps."""

from __future__ import annotations

import csv
import logging

import pytest
import timm
import torch

from common import cli
from tests.conftest import REPO_ROOT
from tests.training_data import make_crop_dataset
from training import train as train_module
from training.data.dataset import CropDataset, read_folds, split_folds
from training.loop.builders import epoch_length
from training.loop.start_from import init_from, match_weights, model_state_names
from training.models.temporal import create_temporal_model
from training.models.zoo import CheckpointError, create_model, read_checkpoint
from training.settings.config import load_config

TINY = [
    "--config",
    str(REPO_ROOT / "configs" / "demo.yaml"),
    "--fold",
    "0",
    "--workers",
    "0",
    "--batch-size",
    "4",
    "--set",
    "model.input_size=32",
    "--set",
    "training.channels_last=false",
    "--device",
    "cpu",
]
TEMPORAL = {"kind": "temporal", "encoder": "resnet18", "pretrained": False, "pretrained_file": None}
TEMPORAL_HEAD = {
    "clip_length": 4,
    "head": "gru",
    "hidden": 16,
    "layers": 1,
    "bidirectional": True,
    "dropout": 0.0,
    "encoder_checkpoint": None,
    "freeze_encoder": False,
}


@pytest.fixture(scope="module")
def crop_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    make_crop_dataset(root, groups=4, fakes_per_group=2, crops=8)
    return root


@pytest.fixture(scope="module")
def trained(crop_data, tmp_path_factory):
    """A finished two-epoch run of ours: its folder and its _best checkpoint."""
    out = tmp_path_factory.mktemp("source_run")
    args = [*TINY, "--seed", "3", "--data-dir", str(crop_data), "--output-dir", str(out), "--epochs", "2"]
    train_module.train(train_module.parse_args([*args, "--batches-per-epoch", "2"]))
    return out


def _random_model(seed: int):
    torch.manual_seed(seed)
    return create_model("resnet18")


def _equal(model, state: dict, names) -> bool:
    mine = model.state_dict()
    return all(torch.equal(mine[name], state[name]) for name in names)


def test_a_checkpoint_of_ours_loads_whole_head_included(tmp_path):
    source = _random_model(1)
    torch.save(
        {"format": "deepfake-detector-checkpoint/1", "encoder": "resnet18", "state_dict": source.state_dict()},
        tmp_path / "ours.pt",
    )
    model = _random_model(2)
    match = init_from(model, tmp_path / "ours.pt", "resnet18")
    total = len(source.state_dict())
    assert (len(match.loaded), len(match.skipped), len(match.new), len(match.unused)) == (total, 0, 0, 0)
    assert _equal(model, source.state_dict(), ["fc.weight", "fc.bias", "encoder.conv1.weight"])


def test_the_original_releases_format_loads_whole(tmp_path):
    source = _random_model(1)
    state = {f"module.{name}": value for name, value in source.state_dict().items()}
    torch.save({"epoch": 31, "state_dict": state, "bce_best": 0.2}, tmp_path / "final_111_DeepFakeClassifier.pt")
    model = _random_model(2)
    match = init_from(model, tmp_path / "final_111_DeepFakeClassifier.pt")
    assert len(match.loaded) == len(source.state_dict()) and not match.new and not match.skipped
    assert _equal(model, source.state_dict(), ["fc.weight", "fc.bias"]), "the trained head is kept"


def test_a_timm_encoder_state_dict_loads_the_encoder_and_leaves_the_head_new(tmp_path):
    torch.manual_seed(1)
    encoder = timm.create_model("resnet18", pretrained=False)
    torch.save(encoder.state_dict(), tmp_path / "resnet18_timm.pth")
    model = _random_model(2)
    head = {name: value.clone() for name, value in model.state_dict().items() if name.startswith("fc.")}
    match = init_from(model, tmp_path / "resnet18_timm.pth")
    assert len(match.loaded) == len(encoder.state_dict()) and sorted(match.new) == ["fc.bias", "fc.weight"]
    assert _equal(model, {f"encoder.{k}": v for k, v in encoder.state_dict().items()}, ["encoder.conv1.weight"])
    assert _equal(model, head, head), "the head keeps its fresh initialisation"


def test_a_temporal_checkpoint_gives_a_frame_model_its_encoder_and_names_the_head_it_skips(tmp_path):
    temporal = create_temporal_model(TEMPORAL, TEMPORAL_HEAD)
    torch.save({"encoder": "resnet18", "kind": "temporal", "state_dict": temporal.state_dict()}, tmp_path / "t.pt")
    model = _random_model(2)
    match = init_from(model, tmp_path / "t.pt", "resnet18")
    encoder_tensors = [name for name in model.state_dict() if name.startswith("encoder.")]
    assert sorted(match.loaded) == sorted(encoder_tensors)
    # the GRU's 2 x 16 outputs feed its fc: the weight differs, and the bias goes with it
    assert match.skipped == [("fc.weight", (1, 32), (1, 512)), ("fc.bias", (1,), (1,))]
    assert sorted(match.new) == ["fc.bias", "fc.weight"]
    assert "skipped 2 of layers whose shape differs (fc.weight [1, 32] vs [1, 512], fc.bias [1] vs [1])" in (
        match.summary()
    )


def test_a_frame_checkpoint_starts_a_temporal_models_encoder(tmp_path):
    source = _random_model(1)
    torch.save({"encoder": "resnet18", "state_dict": source.state_dict()}, tmp_path / "frame.pt")
    temporal = create_temporal_model(TEMPORAL, TEMPORAL_HEAD)
    match = init_from(temporal, tmp_path / "frame.pt", "resnet18")
    assert all(name.startswith("encoder.") for name in match.loaded) and len(match.loaded) > 100
    assert any(name.startswith("sequence.") for name in match.new)


def test_names_are_mapped_before_shapes_are_compared():
    assert list(model_state_names({"module.encoder.x": 1, "module.fc.weight": 2})) == ["encoder.x", "fc.weight"]
    assert list(model_state_names({"conv_stem.weight": 1})) == ["encoder.conv_stem.weight"]
    source = {"a.w": torch.zeros(2), "b.w": torch.zeros(3), "b.bias": torch.zeros(1), "c.w": torch.zeros(1)}
    target = {"a.w": torch.ones(2), "b.w": torch.ones(4), "b.bias": torch.ones(1), "d.w": torch.ones(1)}
    match = match_weights(source, target)
    assert match.loaded == ["a.w"] and match.skipped == [("b.w", (3,), (4,)), ("b.bias", (1,), (1,))]
    assert (match.new, match.unused) == (["b.w", "b.bias", "d.w"], ["c.w"])


@pytest.mark.parametrize(
    "content, problem",
    [
        ("efficientnet", "none of its"),
        ("nan", "NaN or infinite"),
        ("junk", "not a readable PyTorch checkpoint"),
    ],
)
def test_an_unusable_file_is_one_error_line_exit_2(content, problem, crop_data, tmp_path, capsys):
    path = tmp_path / "weights.pt"
    if content == "efficientnet":
        torch.save(timm.create_model("efficientnet_b0", pretrained=False).state_dict(), path)
    elif content == "nan":
        state = _random_model(1).state_dict()
        state["fc.weight"].fill_(float("nan"))
        torch.save({"encoder": "resnet18", "state_dict": state}, path)
    else:
        path.write_bytes(b"these are not weights")
    args = [*TINY, "--data-dir", str(crop_data), "--output-dir", str(tmp_path / "out"), "--init-from", str(path)]
    assert cli.run(train_module.main, args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "weights.pt" in lines[-1] and problem in lines[-1], lines[-1]
    assert not any("Traceback" in line for line in lines)


def _metrics(log_dir) -> list[dict]:
    with open(log_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_init_from_starts_a_fresh_run_from_the_project_checkpoint(trained, crop_data, tmp_path, caplog):
    best = read_checkpoint(trained / "demo_0_3_best.pt")
    out = tmp_path / "finetuned"
    args = [*TINY, "--seed", "5", "--data-dir", str(crop_data), "--output-dir", str(out), "--epochs", "1"]
    with caplog.at_level(logging.INFO):
        summary = train_module.train(
            train_module.parse_args(
                [*args, "--batches-per-epoch", "1", "--init-from", str(trained / "demo_0_3_best.pt")]
            )
        )
    total = len(best["state_dict"])
    assert (
        f"loaded {total} tensors" in caplog.text and "skipped" not in caplog.text.split("init from")[1].split("\n")[0]
    )
    assert [int(row["epoch"]) for row in _metrics(out / "logs" / "demo_0_5")] == [0], "a fresh epoch counter"
    assert summary["epochs_run"] == 1 and summary["best_epoch"] == 0, "no best carried over from the source run"
    config = read_checkpoint(out / "demo_0_5_last.pt")["config"]
    assert config["model"]["init_from"].endswith("demo_0_3_best.pt") and config["model"]["pretrained"] is False


def test_resume_refuses_another_runs_checkpoint_and_points_to_init_from(trained, crop_data, tmp_path, capsys):
    args = [*TINY, "--seed", "5", "--data-dir", str(crop_data), "--output-dir", str(tmp_path), "--epochs", "3"]
    assert cli.run(train_module.main, [*args, "--resume", str(trained / "demo_0_3_last.pt")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "run demo_0_3, not of demo_0_5" in line and f"--init-from {trained / 'demo_0_3_last.pt'}" in line
    assert cli.run(train_module.main, [*args, "--resume", str(trained / "demo_0_3_best.pt")]) == 2
    assert "holds no training state" in capsys.readouterr().err


def test_resume_refuses_its_own_runs_checkpoint_on_other_data_or_config(trained, crop_data, tmp_path, capsys):
    same_run = [*TINY, "--seed", "3", "--output-dir", str(tmp_path), "--epochs", "3", "--batches-per-epoch", "2"]
    last = str(trained / "demo_0_3_last.pt")
    other_data = tmp_path / "other_data"
    make_crop_dataset(other_data, groups=4, fakes_per_group=1, crops=8)
    assert cli.run(train_module.main, [*same_run, "--data-dir", str(other_data), "--resume", last]) == 2
    assert "trained on other data" in capsys.readouterr().err
    assert cli.run(train_module.main, [*same_run, "--data-dir", str(crop_data), "--lr", "0.5", "--resume", last]) == 2
    assert "optimizer.lr: 0.001 -> 0.5" in capsys.readouterr().err
    assert (
        cli.run(train_module.main, [*same_run, "--data-dir", str(crop_data), "--resume", last, "--init-from", last])
        == 2
    )
    assert "give one" in capsys.readouterr().err


def test_resume_continues_its_own_run_with_more_epochs(trained, crop_data, tmp_path):
    import shutil

    out = tmp_path / "continued"
    shutil.copytree(trained, out)
    args = [*TINY, "--seed", "3", "--data-dir", str(crop_data), "--output-dir", str(out), "--batches-per-epoch", "2"]
    summary = train_module.train(train_module.parse_args([*args, "--epochs", "3", "--resume", "auto"]))
    assert summary["epochs_run"] == 3 and [int(r["epoch"]) for r in _metrics(out / "logs" / "demo_0_3")] == [0, 1, 2]


def _training_set(crop_data, config) -> CropDataset:
    train_rows, _ = split_folds(read_folds(crop_data / "folds.csv"), 0)
    return CropDataset(crop_data, train_rows, True, 32, (0.5,) * 3, (0.5,) * 3, cutouts=False)


def test_a_small_dataset_trains_the_configured_batches_per_epoch(crop_data, caplog):
    config = load_config(REPO_ROOT / "configs" / "demo.yaml")
    config["data"]["batch_size"], config["training"]["batches_per_epoch"] = 4, 25
    dataset = _training_set(crop_data, config)
    dataset.reset(0, 7)
    balanced = dataset.samples.copy()  # 16 real crops and 16 of the 32 fake ones: 8 batches
    assert len(balanced) == 32
    with caplog.at_level(logging.INFO):
        iterations, crops = epoch_length(dataset, config, 0, 7, 1, 48)
    assert iterations == 25 and crops >= 100 and "draws it 4 times" in caplog.text
    assert dataset.samples.iloc[:32].equals(balanced), "the first draw is the epoch a large dataset gets"
    for draw in range(4):  # each draw balanced: every real crop, as many fakes
        labels = dataset.samples.iloc[32 * draw : 32 * (draw + 1)]["label"]
        assert (labels == 0).sum() == (labels == 1).sum() == 16
    first = dataset.samples
    dataset.reset(0, 7)
    assert dataset.samples.equals(first), "fixed by seed and epoch"
    dataset.reset(1, 7)
    assert not dataset.samples.equals(first), "a new epoch draws anew"
    fakes = dataset.samples[dataset.samples["label"] == 1]
    assert fakes.drop_duplicates(["video", "file"]).shape[0] > 16, "fakes one draw left out come in others"


def test_a_large_dataset_keeps_its_epoch_as_before(crop_data):
    config = load_config(REPO_ROOT / "configs" / "demo.yaml")
    config["data"]["batch_size"], config["training"]["batches_per_epoch"] = 4, 3
    dataset = _training_set(crop_data, config)
    assert epoch_length(dataset, config, 0, 7, 1, 48) == (3, 32) and dataset.min_samples == 0


def test_keep_every_keeps_the_weights_of_those_epochs(crop_data, tmp_path):
    out = tmp_path / "kept"
    args = [*TINY, "--seed", "3", "--data-dir", str(crop_data), "--output-dir", str(out), "--epochs", "4"]
    train_module.train(train_module.parse_args([*args, "--batches-per-epoch", "1", "--keep-every", "2"]))
    names = sorted(path.name for path in out.glob("*.pt"))
    assert names == ["demo_0_3_1.pt", "demo_0_3_3.pt", "demo_0_3_best.pt", "demo_0_3_last.pt"]
    kept = read_checkpoint(out / "demo_0_3_1.pt")
    assert kept["epoch"] == 1 and "optimizer" not in kept and "state_dict" in kept


def test_unreadable_init_from_in_the_original_format_is_refused_before_training(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        init_from(_random_model(0), tmp_path / "missing.pt")


def test_a_run_started_from_other_weights_resumes_with_the_same_command(trained, crop_data, tmp_path, caplog):
    """train.sh restarts a job with the same command and --resume auto: the run goes on from its own
    _last, not from --init-from again; and without --init-from on the command line too."""
    out = tmp_path / "fine"
    args = [*TINY, "--seed", "5", "--data-dir", str(crop_data), "--output-dir", str(out), "--batches-per-epoch", "1"]
    start = ["--init-from", str(trained / "demo_0_3_best.pt"), "--resume", "auto"]
    with caplog.at_level(logging.INFO):
        train_module.train(train_module.parse_args([*args, *start, "--epochs", "1"]))
        assert "no " in caplog.text and "a new run" in caplog.text and "init from" in caplog.text
        caplog.clear()
        summary = train_module.train(train_module.parse_args([*args, *start, "--epochs", "2"]))
    assert "resuming" in caplog.text and "init from" not in caplog.text
    assert summary["epochs_run"] == 2
    again = train_module.train(train_module.parse_args([*args, "--resume", "auto", "--epochs", "3"]))
    assert again["epochs_run"] == 3 and [int(r["epoch"]) for r in _metrics(out / "logs" / "demo_0_5")] == [0, 1, 2]


def test_lora_layers_take_the_files_plain_weights():
    from training.loop.start_from import lora_names

    target = {
        "attn.qkv.base.weight": torch.zeros(6, 2),
        "attn.qkv.lora_a": torch.zeros(1, 2),
        "fc.weight": torch.zeros(1),
    }
    source = {"attn.qkv.weight": torch.ones(6, 2), "fc.weight": torch.ones(1)}
    renamed = lora_names(source, target)
    assert sorted(renamed) == ["attn.qkv.base.weight", "fc.weight"]
    match = match_weights(renamed, target)
    assert match.loaded == ["attn.qkv.base.weight", "fc.weight"] and match.new == ["attn.qkv.lora_a"]


@pytest.mark.parametrize(
    "flags, problem",
    [
        (
            ["--keep-every", "0"],
            "error: --keep-every: training.keep_every must be null or a whole number from 1 to 10000 (epochs), got 0",
        ),
        (["--keep-every", "-1"], "got -1"),
        (["--batches-per-epoch", "0"], "error: --batches-per-epoch: training.batches_per_epoch must be"),
        (["--epochs", "0"], "error: --epochs: training.epochs must be"),
        (["--batch-size", "0"], "error: --batch-size: data.batch_size must be"),
    ],
)
def test_counts_that_make_no_run_are_refused(flags, problem, crop_data, tmp_path, capsys):
    """The flag that gave the value is named, not the config file (review 1, T2)."""
    args = [*TINY, "--data-dir", str(crop_data), "--output-dir", str(tmp_path), *flags]
    assert cli.run(train_module.main, args) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: --") and "demo.yaml" not in line and problem in line, line


def test_a_folder_given_as_the_weights_is_named_as_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match="a folder, not a checkpoint file"):
        init_from(_random_model(0), tmp_path)


def test_a_checkpoint_of_another_encoder_is_refused_not_loaded_in_part(tmp_path):
    torch.manual_seed(0)
    state = create_model("resnet34").state_dict()  # its first layers' names and shapes fit a resnet18
    torch.save({"encoder": "resnet34", "state_dict": state}, tmp_path / "r34.pt")
    with pytest.raises(
        CheckpointError, match="its encoder is resnet34, this run's is resnet18: give --encoder resnet34"
    ):
        init_from(_random_model(0), tmp_path / "r34.pt", "resnet18")


def test_weights_finite_only_in_float64_are_refused_before_they_load(tmp_path):
    """1e300 in float64 passed the check of the stored tensors and loaded as inf in float32."""
    state = {
        name: value.double() if value.is_floating_point() else value
        for name, value in _random_model(1).state_dict().items()
    }
    state["fc.weight"][0, 0] = 1e300
    torch.save({"encoder": "resnet18", "state_dict": state}, tmp_path / "wide.pt")
    model = _random_model(2)
    with pytest.raises(
        CheckpointError, match=r"wide\.pt: 1 tensors too large .*fc\.weight torch\.float64 -> torch\.float32"
    ):
        init_from(model, tmp_path / "wide.pt", "resnet18")
    assert bool(torch.isfinite(model.fc.weight).all())
