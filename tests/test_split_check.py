"""A fold without enough crops of a class is refused before training, not trained on."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from common import cli
from tests.conftest import REPO_ROOT
from tests.training_data import make_crop_dataset
from training import train as train_module
from training.data.dataset import DegenerateSplitError, check_split, class_counts, read_folds


def _rows(reals: int, fakes: int, videos: int = 2) -> pd.DataFrame:
    labels = [0] * reals + [1] * fakes
    return pd.DataFrame(
        {"video": [f"{'fake' if y else 'real'}{i % videos}" for i, y in enumerate(labels)], "label": labels}
    )


def test_a_split_without_reals_names_the_fold_and_the_counts():
    with pytest.raises(DegenerateSplitError) as raised:
        check_split(
            {"training": (_rows(0, 300), "dataset"), "validation": (_rows(40, 40), "dataset")}, "fold 3", 10, 10
        )
    message = str(raised.value)
    assert "\n" not in message
    assert message == (
        "fold 3: the training split has 0 REAL crops of 0 videos, 300 FAKE crops of 2 videos: no REAL crop at all, "
        "which nothing trains on (refused even with --allow-degenerate-split)"
    )


@pytest.mark.parametrize(
    ("training", "validation", "named"),
    [
        ((0, 300), (40, 40), "fold 2: the training split has 0 REAL crops .*: no REAL crop at all"),
        ((50, 50), (30, 0), "fold 2: the validation split has 30 REAL crops .*: no FAKE crop at all"),
        ((0, 0), (30, 30), "fold 2: the training split .*: no REAL or FAKE crop at all"),
    ],
)
def test_a_missing_class_is_refused_even_when_degenerate_splits_are_allowed(training, validation, named):
    """The flag once let a missing class through with a warning (issue 28, item 7)."""
    parts = {"training": (_rows(*training), "dataset"), "validation": (_rows(*validation), "dataset")}
    with pytest.raises(DegenerateSplitError, match=named):
        check_split(parts, "fold 2", 10, 10, allow=True)


def test_too_few_of_a_class_in_validation_is_refused_and_an_expert_may_go_on():
    parts = {"training": (_rows(50, 50), "dataset"), "validation": (_rows(30, 9), "dataset")}
    with pytest.raises(DegenerateSplitError, match="fold 0: the validation split has 30 REAL crops .* 9 FAKE"):
        check_split(parts, "fold 0", 10, 10)
    assert check_split(parts, "fold 0", 9, 10) == []
    allowed = check_split(parts, "fold 0", 10, 10, allow=True)
    assert len(allowed) == 1 and "validation split has 30 REAL" in allowed[0]


def test_a_strong_imbalance_is_a_warning_with_the_counts():
    parts = {"training": (_rows(20, 201), "dataset"), "validation": (_rows(20, 200), "dataset")}
    warnings = check_split(parts, "fold 1", 10, 10)
    assert warnings == [
        "fold 1: the training split is imbalanced: 20 REAL crops of 2 videos, 201 FAKE crops of 2 videos "
        "(more than 10 to 1, data.max_class_ratio)"
    ]


def test_self_blends_count_as_fakes_where_they_are_made():
    reals_only = _rows(40, 0)
    assert class_counts(reals_only, "blends")["FAKE"] == (40, 2)
    assert class_counts(_rows(40, 5), "both")["FAKE"] == (45, 4)
    assert (
        check_split({"training": (reals_only, "blends"), "validation": (reals_only, "blends")}, "fold 0", 10, 10) == []
    )
    with pytest.raises(DegenerateSplitError, match="validation split has 40 REAL crops of 2 videos, 0 FAKE"):
        check_split({"training": (reals_only, "blends"), "validation": (reals_only, "dataset")}, "fold 0", 10, 10)


def _args(data, out, *extra):
    return [
        "--config",
        str(REPO_ROOT / "configs" / "demo.yaml"),
        "--data-dir",
        str(data),
        "--output-dir",
        str(out),
        "--fold",
        "0",
        "--workers",
        "0",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--batches-per-epoch",
        "1",
        "--set",
        "model.input_size=32",
        *extra,
    ]


def _reals_in_training(root, kept: int):
    """A dataset whose training folds keep `kept` real crops (the others moved to fold 0)."""
    folds_csv = make_crop_dataset(root, groups=4, fakes_per_group=1, crops=12)
    folds = read_folds(folds_csv)
    moved = folds.index[(folds["label"] == 0) & (folds["fold"] != 0)][kept:]
    folds.loc[moved, "fold"] = 0
    folds.to_csv(folds_csv, index=False)
    return root


def test_training_stops_in_one_line_before_any_step(tmp_path, capsys):
    out = tmp_path / "weights"
    code = cli.run(train_module.main, _args(_reals_in_training(tmp_path / "data", 0), out))
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert error[-1].startswith("error: fold 0: the training split has 0 REAL crops of 0 videos, 24 FAKE crops")
    assert not list(out.glob("*.pt"))


def test_the_flag_trains_anyway_with_a_warning(tmp_path, caplog):
    out, data = tmp_path / "weights", _reals_in_training(tmp_path / "data", 5)
    with pytest.raises(cli.InputError, match="fold 0: the training split has 5 REAL crops of 1 videos, 24 FAKE"):
        train_module.train(train_module.parse_args(_args(data, out)))
    with caplog.at_level(logging.WARNING):
        train_module.train(train_module.parse_args(_args(data, out, "--allow-degenerate-split")))
    assert (out / "demo_0_111_last.pt").is_file()
    assert any("training split has 5 REAL crops" in record.getMessage() for record in caplog.records)


def test_the_flag_does_not_train_a_fold_without_reals_it_names_the_class_up_front(tmp_path, capsys):
    """Before: a warning, then an empty epoch and "fold 0: 24 training crops are fewer than one batch
    per process", which blamed the batch size (issue 28, item 7)."""
    out = tmp_path / "weights"
    args = _args(_reals_in_training(tmp_path / "data", 0), out, "--allow-degenerate-split")
    code = cli.run(train_module.main, args)
    error = capsys.readouterr().err
    assert code == 2
    assert error.strip().splitlines()[-1] == (
        "error: fold 0: the training split has 0 REAL crops of 0 videos, 24 FAKE crops of 2 videos: no REAL crop "
        "at all, which nothing trains on (refused even with --allow-degenerate-split)"
    )
    assert "fewer than one batch" not in error and not list(out.glob("*.pt"))


def test_train_methods_that_leave_too_few_fakes_are_refused(tmp_path, capsys):
    folds_csv = make_crop_dataset(tmp_path, groups=4, fakes_per_group=2, crops=12)
    folds = read_folds(folds_csv)
    rare = (folds["label"] == 1) & (folds["frame"] == 0)  # one crop of each fake video: 4 per fold
    folds["method"] = [
        "rare" if is_rare else ("swap" if label else "real")
        for is_rare, label in zip(rare, folds["label"], strict=True)
    ]
    folds.to_csv(folds_csv, index=False)
    code = cli.run(train_module.main, _args(tmp_path, tmp_path / "w", "--set", "data.train_methods=[rare]"))
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert error.startswith(
        "error: fold 0 (data.train_methods: rare): the training split has 24 REAL crops of 2 videos, "
        "4 FAKE crops of 4 videos"
    )


def test_a_missing_class_is_refused_whatever_the_minimum():
    with pytest.raises(DegenerateSplitError, match="0 FAKE crops"):
        check_split({"training": (_rows(2, 0), "dataset")}, "fold 0", 0, 10)
    with pytest.raises(DegenerateSplitError, match="0 REAL crops of 0 videos, 0 FAKE"):
        check_split({"training": (_rows(0, 0), "dataset")}, "fold 0", 0, 10)


@pytest.mark.parametrize(
    ("setting", "message"),
    [("data.min_class_crops=0", "data.min_class_crops must be"), ("data.frames_per_video=0", "data.frames_per_video")],
)
def test_settings_out_of_range_are_refused(tmp_path, capsys, setting, message):
    make_crop_dataset(tmp_path, groups=4, fakes_per_group=1, crops=12)
    assert cli.run(train_module.main, _args(tmp_path, tmp_path / "w", "--set", setting)) == 2
    assert message in capsys.readouterr().err


def test_validation_counts_the_frames_it_will_validate_on_and_names_the_crop_selection(tmp_path, capsys):
    """Crops of frames 0, 10, ..., 110; below 100 and divisible by 40: 0, 40, 80 of each video."""
    make_crop_dataset(tmp_path, groups=4, fakes_per_group=1, crops=12)
    extra = ["--set", "data.val_frame_modulo=40", "--set", "data.frame_limit=100"]
    assert cli.run(train_module.main, _args(tmp_path, tmp_path / "w", *extra)) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(
        "error: fold 0 (80 of 96 crops kept by data.frame_limit 100, faces_per_frame None, paired_only False): "
        "the validation split has 6 REAL crops of 2 videos, 6 FAKE crops of 2 videos"
    )
