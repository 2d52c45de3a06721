"""The model and the data of a resolved training config: a frame or a temporal classifier, crops
or clips of the folds, loaders that give each process of a run its share."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler, Subset

from common.cli import InputError
from training.data.dataset import (
    CropDataset,
    DegenerateSplitError,
    check_split,
    keep_methods,
    pair_collate,
    read_folds,
    select_crops,
    split_folds,
    validation_fakes,
    validation_frames,
)
from training.models.checkpoint_model import model_config_problem
from training.models.temporal import ClipDataset, create_temporal_model
from training.models.tuning import apply_tuning
from training.models.zoo import create_model

logger = logging.getLogger(__name__)


class RankShare(Sampler[int]):
    """This rank's share of the training set as it stands: every `world`-th sample from `rank` on.

    The dataset draws and shuffles each epoch's samples from (seed, epoch) alone, so every rank
    holds the same list and the shares are disjoint and new each epoch; no shuffling of its own.
    The share is taken when iterated, so it follows the epoch's length (torch's DistributedSampler
    fixes the length when built, and would pad a resized epoch with repeated samples). The last
    `len % world` samples of an epoch are left out, never repeated.
    """

    def __init__(self, dataset: CropDataset, world: int, rank: int):
        self.dataset, self.world, self.rank = dataset, world, rank

    def __len__(self) -> int:
        return len(self.dataset) // self.world

    def __iter__(self):
        return iter(range(self.rank, len(self) * self.world, self.world))


def train_sampler(dataset: CropDataset, world: int, rank: int) -> RankShare | None:
    return RankShare(dataset, world, rank) if world > 1 else None


def make_datasets(config: dict, data_dir: Path, train_rows, val_rows, size: int, mean, std):
    """Crops for a frame model; clips of one track's crops for a temporal one."""
    data = config["data"]
    augmentation = {key: data[key] for key in ("label_smoothing", "cutouts", "augment_strength")}
    training_crops = (data_dir, train_rows, True, size, mean, std)
    if config["model"]["kind"] == "temporal":
        if data["fakes"] != "dataset":
            raise InputError(
                f"data.fakes: {data['fakes']} is for frame models; a temporal model trains on the dataset's fakes"
            )
        temporal = config["temporal"]
        length = temporal["clip_length"]
        return (
            ClipDataset(
                *training_crops,
                length,
                **augmentation,
                frame_noise=temporal["frame_noise"],
                clip_cutouts=temporal["clip_cutouts"],
            ),
            ClipDataset(data_dir, val_rows, False, size, mean, std, length),
        )
    try:
        train_set = CropDataset(
            *training_crops,
            **augmentation,
            fakes=data["fakes"],
            blend_share=data["blend_share"],
            frames_per_video=data["frames_per_video"],
        )
        val_set = CropDataset(
            data_dir,
            val_rows,
            False,
            size,
            mean,
            std,
            val_frame_modulo=data["val_frame_modulo"],
            fakes=validation_fakes(data["fakes"]),
        )
    except ValueError as error:
        raise InputError(str(error)) from error
    return train_set, val_set


def build_model(config: dict) -> torch.nn.Module:
    """The frame classifier, or the temporal one, of a resolved config."""
    model = config["model"]
    if model["kind"] == "temporal":
        return create_temporal_model(model, config["temporal"])
    if model["kind"] != "frame":
        raise InputError(f"model.kind must be frame or temporal, got {model['kind']!r}")
    problem = model_config_problem(model)
    if problem:  # refused before hours of training, not by inference afterwards
        raise InputError(f"{problem}: inference would refuse the checkpoint")
    classifier = create_model(
        model["encoder"],
        model["pretrained"],
        model["pretrained_file"],
        model["dropout"],
        model["drop_path_rate"],
        model["input_size"],
        model["encoder_args"],
    )
    counts = apply_tuning(classifier, model)
    if model["train_only"] != "all":
        logger.info(
            "train_only %s: %d of %d parameters train", model["train_only"], counts["trainable"], counts["total"]
        )
    return classifier


def check_fold(data: dict, fold: int, train_rows, val_rows, temporal: bool, selection: str = "") -> None:
    """Stop before training on a fold without enough crops of a class; warn on a strong imbalance.
    Counts what the datasets will use: validation frames by data.val_frame_modulo (frame models).
    The counts' ranges were checked with the config (training/settings/config_bounds.py)."""
    if temporal and data["frames_per_video"]:
        logger.warning("data.frames_per_video is for frame models: a temporal model trains on every clip")
    if data["train_methods"]:
        selection += f" (data.train_methods: {', '.join(data['train_methods'])})"
    validated = val_rows if temporal else validation_frames(val_rows, data["val_frame_modulo"])
    parts = {
        "training": (train_rows, data["fakes"]),
        "validation": (validated, validation_fakes(data["fakes"])),
    }
    try:
        warnings = check_split(
            parts,
            f"fold {fold}{selection}",
            data["min_class_crops"],
            data["max_class_ratio"],
            data["allow_degenerate_split"],
        )
    except DegenerateSplitError as error:
        raise InputError(str(error)) from error
    for warning in warnings:
        logger.warning("%s", warning)


def make_loaders(config: dict, data_dir: Path, folds_csv: Path, fold: int, size: int, mean, std, world, rank):
    data = config["data"]
    folds = read_folds(folds_csv)
    kept = select_crops(folds, data["frame_limit"], data["faces_per_frame"], data["paired_only"])
    selection = ""
    if len(kept) < len(folds):
        selection = (
            f" ({len(kept)} of {len(folds)} crops kept by data.frame_limit {data['frame_limit']}, "
            f"faces_per_frame {data['faces_per_frame']}, paired_only {data['paired_only']})"
        )
        logger.info("folds.csv:%s", selection)
    train_rows, val_rows = split_folds(kept, fold)
    if data["train_methods"]:  # validation too: no other method's fake helps to pick the epoch
        try:
            train_rows = keep_methods(train_rows, data["train_methods"], f"{folds_csv} (training folds)")
            val_rows = keep_methods(val_rows, data["train_methods"], f"{folds_csv} (fold {fold})")
        except ValueError as error:
            raise InputError(str(error)) from error
    check_fold(data, fold, train_rows, val_rows, config["model"]["kind"] == "temporal", selection)
    train_set, val_set = make_datasets(config, data_dir, train_rows, val_rows, size, mean, std)
    sampler = train_sampler(train_set, world, rank)
    common = {"num_workers": data["num_workers"], "pin_memory": torch.cuda.is_available()}
    per_item = getattr(train_set, "images_per_item", 1)
    if data["batch_size"] % per_item:
        raise InputError(
            f"data.batch_size {data['batch_size']} must be even with data.fakes: blends (real + blend pairs)"
        )
    collate = {"collate_fn": pair_collate} if per_item == 2 else {}
    train_loader = DataLoader(
        train_set, data["batch_size"] // per_item, sampler=sampler, shuffle=False, drop_last=True, **common, **collate
    )
    val_subset = Subset(val_set, range(rank, len(val_set), world))
    val_loader = DataLoader(val_subset, data["val_batch_size"], shuffle=False, **common)
    return train_set, train_loader, val_loader, train_rows


def epoch_length(train_set, config: dict, fold: int, seed: int, world: int, train_crops: int) -> tuple[int, int]:
    """(iterations per epoch, crops per epoch). An epoch is every real crop and as many fakes; where
    that is fewer than training.batches_per_epoch batches, each epoch draws its fakes again (reals
    repeat) until it holds that many, so a small dataset trains as configured."""
    batch, wanted = config["data"]["batch_size"], config["training"]["batches_per_epoch"]
    per_item = getattr(train_set, "images_per_item", 1)  # crops per item (or clips)
    train_set.reset(0, seed)
    balanced = len(train_set) * per_item
    if balanced < batch * world:
        raise InputError(f"fold {fold}: {train_crops} training crops are fewer than one batch per process")
    if wanted and balanced < wanted * batch * world:
        train_set.min_samples = wanted * world * (batch // per_item)
        train_set.reset(0, seed)
        logger.info(
            "a balanced epoch of fold %d holds %d %s (%d batches of %d); batches_per_epoch is %d: each epoch "
            "draws it %d times (its fakes drawn again, its reals repeated)",
            fold,
            balanced,
            "clips" if hasattr(train_set, "clips") else "crops",
            balanced // (batch * world),
            batch * world,
            wanted,
            math.ceil(len(train_set) * per_item / balanced),
        )
    crops = len(train_set) * per_item
    return min(crops // (batch * world), wanted or crops), crops
