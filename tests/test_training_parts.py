"""Loss, validation metric, schedules and the crop dataset."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.training_data import make_crop_dataset
from training.data.dataset import CropDataset, read_folds, sample_epoch, split_folds
from training.loop.builders import train_sampler
from training.loop.losses import fake_real_bce
from training.loop.metrics import balanced_video_log_loss, log_loss, video_means
from training.loop.schedule import lr_factor, resolve_max_iter, schedule_lambdas, schedule_mismatch

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_loss_is_the_mean_of_fake_and_real_bce():
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0], [1.0]])
    labels = torch.tensor([[0.99], [0.99], [0.01], [0.01], [0.01]])
    fake = F.binary_cross_entropy_with_logits(logits[:2], labels[:2])
    real = F.binary_cross_entropy_with_logits(logits[2:], labels[2:])
    assert fake_real_bce(logits, labels).item() == pytest.approx(((fake + real) / 2).item())
    only_real = fake_real_bce(logits[2:], labels[2:])
    assert only_real.item() == pytest.approx((real / 2).item()) and only_real.requires_grad is False
    hardest = F.binary_cross_entropy_with_logits(logits[[1]], labels[[1]])
    hardest_real = F.binary_cross_entropy_with_logits(logits[[4]], labels[[4]])
    assert fake_real_bce(logits, labels, ohem_samples=1).item() == pytest.approx(((hardest + hardest_real) / 2).item())


def test_validation_score_averages_fake_and_real_video_log_losses():
    per_video = video_means(["a", "a", "b", "c"], [0.9, 0.7, 0.2, 0.6], [1, 1, 0, 0])
    assert per_video == {"a": (pytest.approx(0.8), 1), "b": (0.2, 0), "c": (0.6, 0)}
    result = balanced_video_log_loss(per_video)
    fake = -math.log(0.8)
    real = (-math.log(0.8) - math.log(0.4)) / 2
    assert result["score"] == pytest.approx((fake + real) / 2)
    assert result["video_accuracy"] == pytest.approx(2 / 3)
    assert log_loss(np.array([1.0]), np.array([0.0])) == pytest.approx(-math.log(1e-15))


def test_poly_and_cosine_schedules():
    assert lr_factor(0, 100, "poly") == 1.0
    assert lr_factor(50, 100, "poly") == pytest.approx(0.5**0.9)
    assert lr_factor(100, 100, "poly") == 0.0 and lr_factor(150, 100, "poly") == 0.0
    assert lr_factor(50, 100, "cosine", min_factor=0.1) == pytest.approx(0.55)
    linear = [lr_factor(i, 100, "linear", decay_start=0.75) for i in (0, 75, 80, 90, 100)]
    assert linear == pytest.approx([1.0, 1.0, 0.8, 0.4, 0.0])  # SBI: flat for 75 of 100 epochs, then to 0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0, 10, "steps")


def test_auto_max_iter_decays_over_the_run_and_a_fixed_one_warns_when_far_off():
    config = {
        "training": {"freeze_epochs": 0, "epochs": 4},
        "optimizer": {"lr": 0.01},
        "schedule": {"name": "poly", "max_iter": "auto", "power": 0.9, "min_lr": 0.0},
    }
    _, head = schedule_lambdas(config, iterations_per_epoch=25, plateau={"scale": 1.0})
    assert head(0) == 1.0 and head(50) == pytest.approx(0.5**0.9) and head(100) == 0.0
    assert schedule_mismatch(config["schedule"], 100, 0.01) is None

    b7 = {**config["schedule"], "max_iter": 100500}
    assert schedule_mismatch(b7, 40 * 2500, 0.01) is None, "the original's own run ends near its schedule's end"
    small = schedule_mismatch(b7, 40 * 30, 0.01)  # the B7 recipe on data of 30 batches an epoch
    assert "stops after 1200 iterations" in small and "ends at 99% of its start" in small and "auto" in small
    config["schedule"]["max_iter"] = 100500
    _, head = schedule_lambdas(config, iterations_per_epoch=25, plateau={"scale": 1.0})
    assert head(100) > 0.99, "a fixed max_iter is honoured as given"
    beyond = schedule_mismatch({**b7, "max_iter": 500}, 800, 0.01)
    assert "ends at iteration 500 but the run goes on to 800" in beyond and "last 300 iterations" in beyond
    assert schedule_mismatch({**b7, "name": "constant"}, 800, 0.01) is None
    with pytest.raises(ValueError, match="positive whole number or 'auto'"):
        resolve_max_iter("100k", 10)


def test_freeze_epochs_hold_the_encoder_and_plateau_cuts_both():
    config = {
        "training": {"freeze_epochs": 2, "epochs": 10},
        "optimizer": {"lr": 0.01},
        "schedule": {"name": "poly", "max_iter": None, "power": 0.9, "min_lr": 0.0},
    }
    plateau = {"scale": 1.0}
    encoder, head = schedule_lambdas(config, iterations_per_epoch=5, plateau=plateau)
    assert encoder(9) == 0.0 and head(9) > 0.8 and encoder(10) == head(10) > 0
    plateau["scale"] = 0.5
    assert head(10) == pytest.approx(0.5 * lr_factor(10, 50, "poly"))


def test_each_epoch_takes_all_reals_and_as_many_fresh_fakes(tmp_path):
    folds = read_folds(make_crop_dataset(tmp_path, groups=4, fakes_per_group=3))
    train_rows, val_rows = split_folds(folds, 0)
    assert set(train_rows["fold"]) == {1} and set(val_rows["fold"]) == {0}
    first, again, second = (sample_epoch(train_rows, e, 111) for e in (0, 0, 1))
    assert (first["label"] == 0).sum() == (first["label"] == 1).sum() == (train_rows["label"] == 0).sum()
    assert first.equals(again) and not first.equals(second)
    with pytest.raises(ValueError, match="fold 5 is not in folds.csv"):
        split_folds(folds, 5)


def _shares(data_dir, rows, epochs=(0, 1), world: int = 2) -> list[list[list[tuple[str, str]]]]:
    """Per epoch, the (video, file) samples each rank trains on; each rank has its own dataset and
    sampler, made before the first epoch is drawn, as training makes them."""
    datasets = [CropDataset(data_dir, rows, True, 32, MEAN, STD) for _ in range(world)]
    samplers = [train_sampler(dataset, world, rank) for rank, dataset in enumerate(datasets)]
    shares = []
    for epoch in epochs:
        for dataset in datasets:
            dataset.reset(epoch, 111)
        shares.append(
            [[tuple(d.samples.iloc[i][["video", "file"]]) for i in s] for d, s in zip(datasets, samplers, strict=True)]
        )
    return shares


def test_two_ranks_see_disjoint_complete_shares_that_change_every_epoch(tmp_path):
    train_rows, _ = split_folds(read_folds(make_crop_dataset(tmp_path, groups=4, fakes_per_group=2, crops=5)), 0)
    epoch_samples = {e: sorted(map(tuple, sample_epoch(train_rows, e, 111)[["video", "file"]].values)) for e in (0, 1)}
    assert len(epoch_samples[0]) == 20, "10 real crops and 10 fakes an epoch"
    first, second = _shares(tmp_path, train_rows)
    for shares, epoch in ((first, 0), (second, 1)):
        assert len(shares[0]) == len(shares[1]) == 10 and not set(shares[0]) & set(shares[1])
        assert sorted(shares[0] + shares[1]) == epoch_samples[epoch], "together the ranks see the whole epoch"
    assert first[0] != second[0] and set(first[0]) != set(second[0]), "each rank's share changes with the epoch"
    [three] = _shares(tmp_path, train_rows, epochs=(0,), world=3)  # 20 samples over 3 ranks: 6 each, 2 left out
    assert [len(share) for share in three] == [6, 6, 6] and len(set().union(*map(set, three))) == 18
    assert train_sampler(CropDataset(tmp_path, train_rows, True, 32, MEAN, STD), 1, 0) is None


def test_dataset_smooths_labels_and_replaces_unreadable_crops(tmp_path, caplog):
    folds = read_folds(make_crop_dataset(tmp_path))
    train_rows, val_rows = split_folds(folds, 0)
    dataset = CropDataset(tmp_path, train_rows, True, 32, MEAN, STD)
    dataset.reset(0, 111)
    sample = dataset[0]
    assert sample["image"].shape == (3, 32, 32) and sample["label"].item() in (pytest.approx(0.01), pytest.approx(0.99))
    assert torch.equal(dataset[3]["image"], dataset[3]["image"]), "augmentation is fixed by (seed, epoch, index)"
    broken = dataset.samples.iloc[5]
    (tmp_path / "crops" / broken["video"] / broken["file"]).write_text("not a png")
    with caplog.at_level(logging.WARNING):
        replaced = dataset[5]
    assert replaced["replaced"] == 1 and "unreadable crop" in caplog.text
    validation = CropDataset(tmp_path, val_rows, False, 32, MEAN, STD, val_frame_modulo=20)
    assert len(validation) == (val_rows["frame"] % 20 == 0).sum() and validation[0]["label"].item() in (0.0, 1.0)


def test_progress_keeps_the_best_and_cuts_the_lr_when_validation_stalls():
    from training.train import Progress

    progress = Progress()
    cut = {"factor": 0.5, "patience": 2}
    assert progress.record(0, 0.6, cut) and progress.record(1, 0.5, cut)
    assert not progress.record(2, 0.55, cut) and progress.plateau["scale"] == 1.0
    assert not progress.record(3, 0.52, cut) and progress.plateau["scale"] == 0.5
    assert progress.record(4, 0.4, cut) and progress.plateau["bad_epochs"] == 0
    assert (progress.best, progress.best_epoch, progress.next_epoch) == (0.4, 4, 5)
    assert not Progress().record(0, math.nan, None), "a NaN score is never the best"
