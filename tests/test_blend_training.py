"""Training on self-blended fakes: data.fakes = blends (reals and their blends) or both."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common import cli
from tests.conftest import REPO_ROOT
from tests.training_data import make_crop_dataset
from training import train as train_module
from training.data.dataset import CropDataset, keep_methods, pair_collate, read_folds, sample_epoch, split_folds
from training.models.zoo import read_checkpoint

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    root = tmp_path_factory.mktemp("blend_crops")
    train_rows, _ = split_folds(read_folds(make_crop_dataset(root, groups=4, fakes_per_group=2, crops=6, size=48)), 1)
    return root, train_rows


def test_blends_mode_pairs_every_real_crop_with_its_blend_and_no_dataset_fake(crops):
    root, rows = crops
    dataset = CropDataset(root, rows, True, 48, MEAN, STD, cutouts=False, fakes="blends")
    dataset.reset(0, 11)
    reals = rows[rows["label"] == 0]
    assert len(dataset) == len(reals) and set(dataset.samples["video"]) == set(reals["video"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=pair_collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (6, 3, 48, 48)
    assert batch["label"].view(-1).tolist() == pytest.approx([0.01, 0.99] * 3)
    assert batch["video"][0] == batch["video"][1] and all(v.startswith("real") for v in batch["video"])
    differences = torch.stack(
        [(item["image"][0] - item["image"][1]).abs().amax(0) for item in map(dataset.__getitem__, range(len(dataset)))]
    )
    assert (differences.flatten(1).amax(1) > 0.1).all()  # every blend changes its crop
    # one transform for both crops of a pair: they differ on the face, hardly above the brows
    # (image-wide colour operations such as FancyPCA still shift every pixel a little)
    mean_difference = differences.mean(0)
    assert mean_difference[:3].mean() < 0.3 * mean_difference[16:32, 16:32].mean()


def test_the_same_epoch_and_index_give_the_same_pair(crops):
    root, rows = crops
    first, again = (CropDataset(root, rows, True, 48, MEAN, STD, fakes="blends") for _ in range(2))
    for dataset in (first, again):
        dataset.reset(2, 5)
    assert torch.equal(first[3]["image"], again[3]["image"])
    first.reset(3, 5)
    assert not torch.equal(first[3]["image"], again[3]["image"])


def test_reals_without_landmarks_are_not_blended(crops, tmp_path):
    root, rows = crops
    partial = rows.copy()
    partial.loc[partial["video"] == "real0", "original"] = "nowhere"  # its landmarks are not found
    dataset = CropDataset(root, partial, True, 48, MEAN, STD, fakes="blends")
    assert "real0" not in set(dataset.rows["video"]) and len(dataset.rows) == (partial["label"] == 0).sum() - 6
    none = rows.assign(original="nowhere")
    with pytest.raises(ValueError, match="no real training crop has landmarks"):
        CropDataset(root, none, True, 48, MEAN, STD, fakes="blends")
    with pytest.raises(ValueError, match="data.fakes must be one of dataset, blends, both"):
        CropDataset(root, rows, True, 48, MEAN, STD, fakes="swaps")


def test_both_mode_replaces_a_share_of_the_fake_draws_by_blends(crops):
    root, rows = crops
    reals = rows[rows["label"] == 0]
    epoch = sample_epoch(rows, 0, 9, blendable=reals, blend_share=0.5)
    assert (epoch["label"] == 0).sum() == len(reals)
    blends, dataset_fakes = epoch[epoch["blend"]], epoch[(epoch["label"] == 1) & ~epoch["blend"]]
    assert len(blends) == round(len(reals) * 0.5) and (blends["label"] == 1).all()
    assert set(blends["video"]) <= set(reals["video"]) and len(dataset_fakes) == len(reals) - len(blends)
    dataset = CropDataset(root, rows, True, 48, MEAN, STD, fakes="both", blend_share=0.5)
    dataset.reset(0, 9)
    position = int(np.flatnonzero(dataset.samples["blend"].to_numpy())[0])
    item = dataset[position]
    assert item["image"].shape == (3, 48, 48) and item["label"].item() == pytest.approx(0.99)
    assert item["video"].startswith("real")
    assert dataset.images_per_item == 1


def test_a_run_on_reals_alone_trains_and_records_its_fake_source(crops, tmp_path, capsys):
    root, _ = crops
    out = tmp_path / "weights"
    args = [
        *("--config", str(REPO_ROOT / "configs" / "demo.yaml"), "--fold", "1", "--seed", "3", "--workers", "0"),
        *("--batch-size", "4", "--epochs", "1", "--batches-per-epoch", "2"),
        *("--set", "model.input_size=32", "--set", "training.channels_last=false", "--set", "data.fakes=blends"),
        *("--data-dir", str(root), "--output-dir", str(out)),
    ]
    summary = train_module.train(train_module.parse_args(args))
    checkpoint = read_checkpoint(out / "demo_1_3_last.pt")
    assert checkpoint["config"]["data"]["fakes"] == "blends"
    assert checkpoint["history"][0]["batches"] == 2 and summary["epochs_run"] == 1
    capsys.readouterr()
    odd = tmp_path / "odd"
    assert cli.run(train_module.main, [*args[:-1], str(odd), "--batch-size", "3"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line == "error: data.batch_size 3 must be even with data.fakes: blends (real + blend pairs)"
    assert not list(odd.glob("*.pt")), "refused before training"


def test_validation_of_a_blends_run_sees_reals_and_fixed_blends_never_a_dataset_fake(crops):
    root, _ = crops
    _, val_rows = split_folds(read_folds(root / "folds.csv"), 1)
    validation = CropDataset(root, val_rows, False, 48, MEAN, STD, fakes="blends")
    reals = val_rows[val_rows["label"] == 0]
    assert len(validation) == 2 * len(reals) and set(validation.samples["video"]) == set(reals["video"])
    items = [validation[i] for i in range(len(validation))]
    blends = [item for item in items if item["video"].endswith("#blend")]
    assert len(blends) == len(reals) and all(item["label"].item() == 1.0 for item in blends)
    assert all(item["label"].item() == 0.0 for item in items if not item["video"].endswith("#blend"))
    again = validation[len(reals)]
    assert torch.equal(again["image"], items[len(reals)]["image"])  # the same blends every epoch
    assert not torch.equal(items[0]["image"], items[len(reals)]["image"])


def test_train_methods_keeps_the_reals_and_the_named_methods_fakes(crops):
    root, rows = crops
    with pytest.raises(ValueError, match="no method column"):
        keep_methods(rows, ["swap"], "folds.csv")
    methods = rows.assign(
        method=["real" if label == 0 else ("swap" if i % 2 else "blend") for i, label in enumerate(rows["label"])]
    )
    kept = keep_methods(methods, ["swap"], "folds.csv")
    assert (kept["label"] == 0).sum() == (methods["label"] == 0).sum()
    assert set(kept.loc[kept["label"] == 1, "method"]) == {"swap"}
    with pytest.raises(ValueError, match="no fake made by morph; its methods: blend, swap"):
        keep_methods(methods, ["morph"], "folds.csv")
