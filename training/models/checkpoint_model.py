"""What a checkpoint may ask the model it is loaded into to be, checked before that model is built.

A checkpoint names its encoder and carries its training config, and inference builds what the
config says: `config.model.encoder_args` went to timm's constructor as they stood, and
`train_only: lora` adds factors of rank `lora_rank`. A 1.5 KB file could so ask for any model
(encoder_args depth 48 took 2.2 GB before the load failed, num_classes 2e6 4.9 GB; depth 1000
would need about 28 GB, lora_rank 1e5 about 15 GB), and `encoder_args.checkpoint_path` made timm
read a file that the checkpoint names. So, before anything is built:
  - `encoder_args` may hold only ENCODER_ARGS (a ViT's sizes, the encoder's head size and its
    dropout rates), each a number within its bounds: no path, and nothing else, reaches timm;
  - LoRA's rank is a whole number from 1 to MAX_LORA_RANK, its alpha a finite number and its
    targets a few short layer names;
  - the model is built on PyTorch's meta device (shapes without memory) and its numbers counted:
    more than MAX_MODEL_NUMBERS, or more than the checkpoint's own weights hold (a strict load
    could never fill them), is refused. Only then is the model built for real.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping

import torch
from torch import nn

from common.bounded_numbers import finite_number, number_within, shown
from training.models.zoo import INPUT_SIZES

WHOLE, RATE, POSITIVE = "whole", "rate", "positive"
# timm constructor arguments a checkpoint may give, and their bounds: (kind, low, high)
ENCODER_ARGS = {
    "depth": (WHOLE, 1, 64),  # ViT-L/14 has 24 blocks, ViT-G 48
    "embed_dim": (WHOLE, 1, 4096),
    "num_heads": (WHOLE, 1, 128),
    "patch_size": (WHOLE, 1, 64),
    "img_size": (WHOLE, *INPUT_SIZES),
    "mlp_ratio": (POSITIVE, 0, 16),
    "num_classes": (WHOLE, 0, 21843),  # the encoder's own (unused) head: ImageNet-21k's classes at most
    "drop_rate": (RATE, 0, 1),
    "drop_path_rate": (RATE, 0, 1),
    "attn_drop_rate": (RATE, 0, 1),
    "proj_drop_rate": (RATE, 0, 1),
}
MAX_LORA_RANK = 1024
MAX_LORA_TARGETS, MAX_LAYER_NAME = 16, 64
# The largest listed encoder, CLIP ViT-L/14 with LoRA, holds 305 M numbers, EfficientNet-B7 67 M:
# twice the first (2.4 GB in fp32) covers them and any fine-tuning of them.
MAX_MODEL_NUMBERS = 600_000_000


def _number_problem(name: str, value, kind: str, low: float, high: float) -> str | None:
    if kind == WHOLE:
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not low <= value <= high:
            return f"`{name}` must be a whole number from {low} to {high}, got {shown(value)}"
        return None
    if number_within(value, low, high, low_open=kind == POSITIVE, high_open=kind == RATE) is None:
        interval = f"[{low:g}, {high:g})" if kind == RATE else f"({low:g}, {high:g}]"
        return f"`{name}` must be a number in {interval}, got {shown(value)}"
    return None


def encoder_args_problem(encoder_args: Mapping) -> str | None:
    """Why `encoder_args` may not go to timm's constructor (a key not in ENCODER_ARGS, or a value
    out of its bounds), or None."""
    for key, value in encoder_args.items():
        if key not in ENCODER_ARGS:
            return f"`config.model.encoder_args` may not give {shown(key)} to timm (only {', '.join(ENCODER_ARGS)})"
        problem = _number_problem(f"config.model.encoder_args.{key}", value, *ENCODER_ARGS[key])
        if problem:
            return problem
    return None


def lora_problem(model_config: Mapping) -> str | None:
    """Why the LoRA settings of `model_config` (`train_only: lora`) cannot be rebuilt, or None."""
    if model_config.get("train_only") != "lora":
        return None
    # a whole number, as training asks (lora_rank 8.0 is refused by both)
    problem = _number_problem("config.model.lora_rank", model_config.get("lora_rank", 8), WHOLE, 1, MAX_LORA_RANK)
    if problem:
        return problem
    alpha = model_config.get("lora_alpha", 8.0)
    if finite_number(alpha) is None:
        return f"`config.model.lora_alpha` must be a finite number, got {shown(alpha)}"
    targets = model_config.get("lora_targets") or ["qkv"]
    names = isinstance(targets, list) and all(isinstance(t, str) and 0 < len(t) <= MAX_LAYER_NAME for t in targets)
    if not names or len(targets) > MAX_LORA_TARGETS:
        return (
            f"`config.model.lora_targets` must be a list of at most {MAX_LORA_TARGETS} layer names, got "
            f"{shown(targets)}"
        )
    return None


def model_config_problem(model_config: Mapping) -> str | None:
    """Why the model a checkpoint's `config.model` describes may not be built, or None."""
    encoder_args = model_config.get("encoder_args") or {}
    if not isinstance(encoder_args, Mapping):
        return f"`config.model.encoder_args` must be a mapping of settings, got {shown(encoder_args)}"
    return encoder_args_problem(encoder_args) or lora_problem(model_config)


def size_problem(build: Callable[[], nn.Module], weights: Mapping[str, torch.Tensor]) -> str | None:
    """Why the model `build` makes is too big to build: it is built on the meta device (no memory)
    and its numbers (parameters and buffers) counted against MAX_MODEL_NUMBERS and against those
    of `weights`, the checkpoint's own, which a strict load must fill it with. None where it fits."""
    with torch.device("meta"):
        model = build()
    needed = sum(tensor.numel() for tensor in model.state_dict().values())
    held = sum(tensor.numel() for tensor in weights.values())
    if needed > MAX_MODEL_NUMBERS:
        return (
            f"the model it describes would hold {needed:,} numbers, more than the {MAX_MODEL_NUMBERS:,} allowed "
            "(twice the largest listed encoder's)"
        )
    if needed > held:
        return f"the model it describes would hold {needed:,} numbers, but its weights are only {held:,}"
    return None
