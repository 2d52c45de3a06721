"""Every size, count and rate of the training config has a range; a value outside it stops in one
line naming where it came from (flag, --set or config file), the setting, the value and the range,
before anything is built (issue 28, item 15; review 1, T2 and T3)."""

from __future__ import annotations

import math

import pytest

from common import cli
from common.cli import InputError
from tests.conftest import REPO_ROOT
from tests.test_training_cli import SHIPPED, _leaves
from training import train as train_module
from training.settings.config import DEFAULTS, load_config
from training.settings.config_bounds import BOUNDS, SPANS, settings_problem

CONFIGS = REPO_ROOT / "configs"


def _resolve(setting: str, value: str) -> dict:
    """The demo config with `setting` (maybe section.key.sub) set to the YAML text `value`."""
    section, key, *sub = setting.split(".")
    other = {"patience": "factor: 0.5", "factor": "patience: 2"}  # reduce_on_plateau needs both
    assignment = f"{section}.{key}={{{sub[0]}: {value}, {other[sub[0]]}}}" if sub else f"{section}.{key}={value}"
    args = ["--config", str(CONFIGS / "demo.yaml"), "--data-dir", "unused", "--set", assignment]
    return train_module.resolve_config(train_module.parse_args(args))


def test_every_whole_number_setting_of_the_schema_has_a_bound():
    """A new count or size in DEFAULTS without a range fails here (lists of names are not counts)."""
    counts = {
        name
        for name, value in _leaves(DEFAULTS).items()
        if isinstance(value, int) and not isinstance(value, bool) or name.endswith(("_size", "_samples", "_every"))
    }
    counts |= {"model.input_size", "data.frame_limit", "data.faces_per_frame", "data.frames_per_video"}
    counts |= {"training.batches_per_epoch", "training.early_stopping_patience", "schedule.max_iter"}
    bounded = {bound.setting for bound in BOUNDS}
    assert counts - bounded == set()
    assert "training.reduce_on_plateau.patience" in bounded


@pytest.mark.parametrize("bound", BOUNDS, ids=[bound.setting for bound in BOUNDS])
def test_each_bound_takes_its_range_and_refuses_the_rest_in_one_line(bound):
    for inside in (bound.low, bound.high, *(["null" if v is None else v for v in bound.also])):
        _resolve(bound.setting, str(inside))
    outside = [bound.low - 1, bound.high + 1, 10**12, f"{bound.low}.5", "true", "'12'", "[3]"]
    if None not in bound.also:
        outside.append("null")
    for value in outside:
        with pytest.raises(InputError) as refused:
            _resolve(bound.setting, str(value))
        message = str(refused.value)
        assert "\n" not in message and len(message) < 200, message
        assert message.startswith(f"--set {'.'.join(bound.setting.split('.')[:2])}: {bound.setting}"), message
        assert f"a whole number from {bound.low} to {bound.high}" in message, message


def test_the_value_is_named_as_given():
    """The issue's example: 30000 px is 2.7 GB a crop (30000 x 30000 x 3 bytes), and each crop that
    failed to load was replaced by another, so training went on trying."""
    with pytest.raises(InputError) as refused:
        _resolve("model.input_size", "30000")
    assert str(refused.value).endswith(
        "model.input_size must be null or a whole number from 16 to 2048 (pixels a side), got 30000"
    )
    with pytest.raises(InputError, match=r"^--workers: data.num_workers must be .* got 500$"):
        train_module.resolve_config(
            train_module.parse_args(["--config", str(CONFIGS / "demo.yaml"), "--data-dir", "x", "--workers", "500"])
        )


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_is_within_the_bounds(name):
    assert settings_problem(load_config(CONFIGS / f"{name}.yaml")) is None


def test_the_command_line_stops_with_one_error_line(tmp_path, capsys):
    args = ["--config", str(CONFIGS / "demo.yaml"), "--data-dir", str(tmp_path), "--output-dir", str(tmp_path)]
    assert cli.run(train_module.main, [*args, "--set", "model.input_size=30000"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        "error: --set model.input_size: model.input_size must be null or a whole number from 16 to 2048 "
        "(pixels a side), got 30000"
    ]
    assert not list(tmp_path.iterdir())


def _refusal(args: list[str]) -> str:
    with pytest.raises(InputError) as refused:
        train_module.resolve_config(train_module.parse_args(["--data-dir", "unused", *args]))
    return str(refused.value)


def test_the_origin_of_the_value_is_named_not_always_the_config_file(tmp_path):
    """Review 1, T2: `--set model.input_size=30000` and `--epochs 1000000000` were blamed on the
    config file ("error: configs/b4.yaml: model.input_size must be ...")."""
    demo = ["--config", str(CONFIGS / "demo.yaml")]
    assert _refusal([*demo, "--epochs", "1000000000"]).startswith("--epochs: training.epochs must be a whole")
    assert _refusal([*demo, "--set", "model.input_size=30000"]).startswith("--set model.input_size: model.input_size")
    # --set is applied after the flags, so it is the one that gave the value
    assert _refusal([*demo, "--lr", "0.1", "--set", "optimizer.lr=.nan"]).startswith("--set optimizer.lr: ")
    nested = _refusal([*demo, "--set", "training.reduce_on_plateau={factor: 0.5, patience: 0}"])
    assert nested.startswith("--set training.reduce_on_plateau: training.reduce_on_plateau.patience must be")
    written = tmp_path / "mine.yaml"
    written.write_text("model: {input_size: 30000}\n")
    assert _refusal(["--config", str(written), "--epochs", "3"]).startswith(f"{written}: model.input_size must be")
    in_file = tmp_path / "lr.yaml"
    in_file.write_text("optimizer: {lr: .nan}\n")
    assert _refusal(["--config", str(in_file)]).startswith(f"{in_file}: optimizer.lr (--lr) must be a number in")


def test_every_fractional_setting_of_the_schema_has_a_range():
    """A new rate or factor in DEFAULTS without a range fails here."""
    fractional = {name for name, value in _leaves(DEFAULTS).items() if isinstance(value, float)}
    fractional |= {"model.drop_path_rate", "optimizer.clip_grad_norm", "training.reduce_on_plateau.factor"}
    assert fractional - {span.setting for span in SPANS} == set()


@pytest.mark.parametrize("span", SPANS, ids=[span.setting for span in SPANS])
def test_each_rate_takes_its_range_and_refuses_nan_inf_and_the_rest_in_one_line(span):
    """Review 1, T3: optimizer.lr=.nan and optimizer.weight_decay=.inf passed (whole numbers only
    were bounded) and trained on nan."""
    middle = (span.low + span.high) / 2
    inside = [middle, int(middle)] if int(middle) != span.low or not span.low_open else [middle]
    inside += [] if span.low_open else [span.low]
    inside += [] if span.high_open else [span.high]
    for value in [*inside, *(["null"] if None in span.also else [])]:
        _resolve(span.setting, repr(value) if isinstance(value, float) else str(value))
    outside = [".nan", ".inf", "-.inf", repr(span.high * 2 + 1), repr(span.low - 1), "true", "'0.5'", "[0.5]"]
    outside += ["9" * 400]  # an OverflowError traceback (math.isfinite of an int no float holds)
    outside += [repr(span.low)] if span.low_open else []
    outside += [repr(span.high)] if span.high_open else []
    outside += [] if None in span.also else ["null"]
    for value in outside:
        with pytest.raises(InputError) as refused:
            _resolve(span.setting, value)
        message = str(refused.value)
        assert "\n" not in message and len(message) < 200, message
        assert message.startswith(f"--set {'.'.join(span.setting.split('.')[:2])}: {span.setting}"), message
        assert f"a number in {span.interval()}" in message, message


def test_the_reviews_examples_are_refused():
    lr = _refusal(["--config", str(CONFIGS / "demo.yaml"), "--set", "optimizer.lr=.nan"])
    assert lr == "--set optimizer.lr: optimizer.lr (--lr) must be a number in (0, 10] (the learning rate), got nan"
    decay = _refusal(["--config", str(CONFIGS / "demo.yaml"), "--set", "optimizer.weight_decay=.inf"])
    assert decay.endswith("optimizer.weight_decay must be a number in [0, 1] (the weight decay), got inf")
    assert math.isinf(float(decay.rsplit(" ", 1)[1]))


def test_a_config_file_sets_the_encoders_own_arguments_within_their_bounds(tmp_path):
    """`model.encoder_args` is a mapping of timm's keyword arguments, not a section of known keys:
    a config file could not set it ("unknown config key 'model.encoder_args.depth' (known: )"),
    only --set could. Its keys and values are checked as a checkpoint's are."""
    tiny = tmp_path / "tiny_vit.yaml"
    tiny.write_text("model: {encoder: vit_tiny_patch16_224, encoder_args: {depth: 2, embed_dim: 96}}\n")
    resolved = train_module.resolve_config(train_module.parse_args(["--config", str(tiny), "--data-dir", "unused"]))
    assert resolved["model"]["encoder_args"] == {"depth": 2, "embed_dim": 96}
    assert load_config(tiny)["model"]["encoder_args"] == {"depth": 2, "embed_dim": 96}
    deep = tmp_path / "deep.yaml"
    deep.write_text("model: {encoder_args: {depth: 1000}}\n")
    refused = _refusal(["--config", str(deep)])
    assert refused.startswith(
        f"{deep}: `config.model.encoder_args.depth` must be a whole number from 1 to 64, got 1000"
    )
    path = tmp_path / "path.yaml"
    path.write_text("model: {encoder_args: {checkpoint_path: /elsewhere/model.pth}}\n")
    assert "may not give 'checkpoint_path' to timm" in _refusal(["--config", str(path)])
    other = tmp_path / "other.yaml"
    other.write_text("model: {encoder_ars: {depth: 2}}\n")  # a misspelt section key is still refused
    with pytest.raises(InputError, match="unknown config key 'model.encoder_ars'"):
        load_config(other)
