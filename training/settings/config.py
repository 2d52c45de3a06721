"""Training configuration: a YAML file sets the defaults, command-line flags override them, and
the resolved configuration is saved next to the outputs."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from common import safe_yaml
from common.cli import InputError

DEFAULTS: dict = {
    "model": {
        "kind": "frame",  # frame: one crop -> one probability; temporal: a clip of one track's crops
        "encoder": "tf_efficientnet_b7_ns",
        "pretrained": True,
        "pretrained_file": None,
        "init_from": None,  # weights that start the run (training/loop/start_from.py); pretrained then off
        "dropout": 0.0,
        "drop_path_rate": None,  # None: the encoder's recipe value
        "input_size": None,  # None: the encoder's recipe size
        "encoder_args": {},  # more arguments for timm's constructor (e.g. depth: 2 for a tiny test ViT)
        "train_only": "all",  # all, head, layernorm or lora (training/models/tuning.py; frame models)
        "lora_rank": 8,
        "lora_alpha": 8.0,
        "lora_targets": ["qkv"],  # names of the attention's linear layers that get a low-rank update
    },
    "temporal": {  # model.kind: temporal (training/models/temporal.py)
        "clip_length": 8,  # T consecutive crops of one face track per clip
        "head": "gru",  # gru, lstm or transformer
        "hidden": 128,
        "layers": 1,
        "bidirectional": True,
        "dropout": 0.0,
        "encoder_checkpoint": None,  # a frame checkpoint of ours (or the original's) to start the encoder from
        "freeze_encoder": False,
        "frame_noise": 0.0,  # std of Gaussian noise added to each crop of a clip on its own (normalised units)
        "clip_cutouts": True,  # one cutout choice for the whole clip; false: each crop its own
    },
    "data": {
        "batch_size": 12,
        "val_batch_size": 32,
        "num_workers": 4,
        "label_smoothing": 0.01,
        "cutouts": True,
        "augment_strength": 1.0,  # scales every optional augmentation's probability but the flip's (1: the recipe)
        "val_frame_modulo": 20,  # validate on frames divisible by this (the recipe's speed-up)
        "fakes": "dataset",  # dataset (the recipe), blends (reals + their self-blends only) or both
        "blend_share": 0.5,  # fakes: both: the share of fake draws that are self-blends of reals
        "train_methods": None,  # a list: train and validate on these methods' fakes only (folds.csv's method)
        "frame_limit": None,  # use crops of frames below this only (the original: 320)
        "faces_per_frame": None,  # use the first N faces of a frame only (the original: 2)
        "paired_only": False,  # reals that have a fake and fakes whose original is there only (the original)
        "frames_per_video": None,  # each epoch draws at most this many crops of each video (SBI: 8)
        "min_class_crops": 10,  # fewer real or fake crops than this in the fold's training or validation split: stop
        "max_class_ratio": 10.0,  # a class outnumbering the other by more than this: a warning
        "allow_degenerate_split": False,  # train even when min_class_crops is not met (a warning instead)
    },
    "optimizer": {
        "name": "sgd",  # sgd (nesterov) or adamw; sam_sgd / sam_adamw: inside SAM (training/loop/sam.py)
        "lr": 0.01,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 1.0e-4,
        "clip_grad_norm": 1.0,
        "sam_rho": 0.05,  # SAM's neighbourhood radius
        "sam_adaptive": False,  # ASAM: the radius scaled by each weight's size
    },
    "schedule": {
        "name": "poly",  # poly, cosine, linear (flat, then down to 0 from decay_start) or constant; per iteration
        "max_iter": "auto",  # iterations to the end of the schedule; auto = epochs x batches actually run
        "power": 0.9,
        "min_lr": 0.0,  # cosine floor
        "decay_start": 0.75,  # linear: the fraction of the schedule after which it decays
    },
    "training": {
        "epochs": 40,
        "batches_per_epoch": 2500,  # null: the whole (re-sampled) epoch
        "amp": True,  # fp16 + GradScaler on CUDA; on CPU only with cpu_bf16
        "cpu_bf16": False,
        "channels_last": True,
        "sync_bn": True,  # CUDA + DDP only
        "freeze_epochs": 0,  # train only the head for this many epochs (fine-tuning)
        "ohem_samples": None,  # keep the k hardest fakes and reals of each batch
        "early_stopping_patience": None,  # epochs without improvement before stopping
        "reduce_on_plateau": None,  # {factor: 0.5, patience: 2}: lr cut when validation stalls
        "deterministic": False,
        "keep_every": None,  # also keep the weights of every Nth epoch (_best and _last are always kept)
    },
}


# Settings whose value is a mapping of the user's own keys (checked where they are used:
# training/settings/config_bounds.py), not a section of known keys.
OPEN_MAPPINGS = {"model.encoder_args"}


def _merge(base: dict, update: dict, where: str = "") -> dict:
    merged = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if key not in merged:
            raise KeyError(f"unknown config key '{where}{key}' (known: {', '.join(sorted(merged))})")
        if f"{where}{key}" in OPEN_MAPPINGS:
            merged[key] = value
        elif isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = _merge(merged[key], value, f"{where}{key}.")
        else:
            merged[key] = value
    return merged


def load_config(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        loaded = safe_yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{path}: cannot read the training config ({error})") from error
    try:
        return _merge(DEFAULTS, loaded)
    except KeyError as error:
        raise InputError(f"{path}: {error.args[0]}") from error


def apply_overrides(config: dict, assignments: list[str]) -> dict:
    """`section.key=value` strings (value parsed as YAML) over the config."""
    config = copy.deepcopy(config)
    for assignment in assignments:
        if "=" not in assignment or "." not in assignment.split("=", 1)[0]:
            raise InputError(f"--set takes section.key=value, got '{assignment}'")
        dotted, raw = assignment.split("=", 1)
        section, key = dotted.split(".", 1)
        if section not in config or key not in config[section]:
            raise InputError(f"--set {dotted}: no such config key")
        try:
            config[section][key] = safe_yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise InputError(f"--set {dotted}: cannot read its value as YAML ({error})") from None
    return config


def save_config(config: dict, path: str | os.PathLike) -> None:
    from common.io_utils import atomic_path

    with atomic_path(path) as temporary:
        temporary.write_text(safe_yaml.safe_dump(config, sort_keys=False))
