"""Every size and count of the training config has a range; a value outside it stops in one line
naming the setting, the value and the range, before anything is built (issue 28, item 15)."""

from __future__ import annotations

import pytest

from preprocess import cli
from preprocess.cli import InputError
from tests.conftest import REPO_ROOT
from tests.test_training_cli import SHIPPED, _leaves
from training import train as train_module
from training.config import DEFAULTS, load_config
from training.config_bounds import BOUNDS, settings_problem

CONFIGS = REPO_ROOT / "configs"


def _resolve(setting: str, value: str) -> dict:
    """The demo config with `setting` (maybe section.key.sub) set to the YAML text `value`."""
    section, key, *sub = setting.split(".")
    assignment = f"{section}.{key}={{{sub[0]}: {value}}}" if sub else f"{section}.{key}={value}"
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
        assert message.startswith(f"{CONFIGS / 'demo.yaml'}: {bound.setting}"), message
        assert f"a whole number from {bound.low} to {bound.high}" in message, message


def test_the_value_is_named_as_given():
    """The issue's example: 30000 px is 2.7 GB a crop (30000 x 30000 x 3 bytes), and each crop that
    failed to load was replaced by another, so training went on trying."""
    with pytest.raises(InputError) as refused:
        _resolve("model.input_size", "30000")
    assert str(refused.value).endswith(
        "model.input_size must be null or a whole number from 16 to 2048 (pixels a side), got 30000"
    )
    with pytest.raises(InputError, match=r"data.num_workers \(--workers\) must be .* got 500$"):
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
        f"error: {CONFIGS / 'demo.yaml'}: model.input_size must be null or a whole number from 16 to 2048 "
        "(pixels a side), got 30000"
    ]
    assert not list(tmp_path.iterdir())
