"""The encoders the recipe uses, and `DeepFakeClassifier` on top of any of them.

`create_model("tf_efficientnet_b7_ns")` builds the winning model: timm encoder ->
forward_features -> global average pool -> dropout -> Linear(features, 1). The encoder keeps its
own (unused) classifier head, so parameter names are `encoder.*` and `fc.*` exactly as in the
original solution's checkpoints, which therefore load strictly.
"""

from __future__ import annotations

import logging
import numbers
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

from common.bounded_numbers import number_within, shown
from common.cli import InputError, describe
from training.models.pretrained import create_encoder

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What a checkpoint may say about its inputs. Crops are scaled to 0..1 before normalising (training/data/dataset.py
# to_tensor): every timm encoder's mean lies in [0, 0.5] and std in [0.14, 1]; 0..255-scale values are refused.
INPUT_SIZES = (16, 2048)
MEAN_RANGE = (0.0, 1.0)
STD_RANGE = (0.01, 1.0)


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder of the recipe: its timm model, regularisation and the input size it trains at
    (and any constructor arguments timm needs for it)."""

    timm_name: str
    drop_path_rate: float | None
    input_size: int
    kwargs: dict = field(default_factory=dict)


# One list of the encoders: the original's names on the left.
ENCODERS: dict[str, EncoderSpec] = {
    "tf_efficientnet_b7_ns": EncoderSpec("tf_efficientnet_b7.ns_jft_in1k", 0.2, 380),
    "tf_efficientnet_b6_ns": EncoderSpec("tf_efficientnet_b6.ns_jft_in1k", 0.2, 380),
    "tf_efficientnet_b5_ns": EncoderSpec("tf_efficientnet_b5.ns_jft_in1k", 0.2, 380),
    "tf_efficientnet_b4_ns": EncoderSpec("tf_efficientnet_b4.ns_jft_in1k", 0.5, 380),
    "tf_efficientnet_b3_ns": EncoderSpec("tf_efficientnet_b3.ns_jft_in1k", 0.2, 300),
    "tf_efficientnet_b2_ns": EncoderSpec("tf_efficientnet_b2.ns_jft_in1k", 0.2, 260),
    "tf_efficientnet_b1_ns": EncoderSpec("tf_efficientnet_b1.ns_jft_in1k", 0.2, 240),
    "tf_efficientnet_b0_ns": EncoderSpec("tf_efficientnet_b0.ns_jft_in1k", 0.2, 224),
    "xception": EncoderSpec("legacy_xception", None, 299),
    "resnet34": EncoderSpec("resnet34.tv_in1k", None, 320),
    # the encoders of photo-set baselines (the 140k real/fake faces notebooks fine-tune these)
    "resnet50": EncoderSpec("resnet50.tv_in1k", None, 224),
    "inception_resnet_v2": EncoderSpec("inception_resnet_v2.tf_in1k", None, 299),
    # foundation-model encoders, tuned lightly (model.train_only, training/models/tuning.py)
    "clip_vit_l14": EncoderSpec("vit_large_patch14_clip_224.openai", None, 224),
    "clip_vit_b16": EncoderSpec("vit_base_patch16_clip_224.openai", None, 224),
    "dinov2_vit_b14": EncoderSpec("vit_base_patch14_dinov2.lvd142m", None, 224, {"img_size": 224}),
    "dinov2_vit_l14": EncoderSpec("vit_large_patch14_dinov2.lvd142m", None, 224, {"img_size": 224}),
}
TRANSFORMER_MODULES = ["vision_transformer", "eva", "vision_transformer_hybrid"]


def encoder_spec(name: str) -> EncoderSpec:
    """The recipe's spec for a listed encoder; any other timm model name gets timm's defaults."""
    if name in ENCODERS:
        return ENCODERS[name]
    if not timm.is_model(name):
        known = ", ".join(ENCODERS)
        raise ValueError(f"unknown encoder '{name}': not one of {known}, nor a timm model name")
    cfg = timm.models.get_pretrained_cfg(name)
    return EncoderSpec(name, None, int(cfg.input_size[-1]) if cfg else 224)


def input_size_problem(size) -> str | None:
    """Why `size` is not an input size in pixels (a whole number in INPUT_SIZES), or None."""
    low, high = INPUT_SIZES
    whole = isinstance(size, numbers.Integral) and not isinstance(size, bool)
    if not whole or not low <= size <= high:
        return f"input size {shown(size)} is not a whole number of pixels from {low} to {high}"
    return None


def normalization_problem(mean, std) -> str | None:
    """Why `mean` and `std` are not a normalisation of 0..1 RGB crops (three finite numbers each,
    within MEAN_RANGE and STD_RANGE), or None."""
    for name, values, (low, high) in (("mean", mean, MEAN_RANGE), ("std", std, STD_RANGE)):
        all_numbers = isinstance(values, (list, tuple)) and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values
        )
        if not all_numbers or len(values) != 3:
            return f"`{name}` must be three numbers (R, G, B), got {shown(values)}"
        if not all(number_within(v, low, high) is not None for v in values):
            return (
                f"`{name}` {shown(list(values))} is out of range: each must be from {low} to {high} "
                "(crops scale to 0..1)"
            )
    return None


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std of the encoder's pretraining (ImageNet's for the EfficientNets, as the recipe)."""
    cfg = timm.models.get_pretrained_cfg(encoder_spec(name).timm_name)
    if cfg is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean), tuple(cfg.std)


class DeepFakeClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, dropout_rate: float = 0.0):
        super().__init__()
        self.encoder = encoder
        # The encoder's own classifier stays (for the checkpoint layout) but never runs: frozen, so
        # that DDP does not wait for its gradients.
        for parameter in encoder.get_classifier().parameters():
            parameter.requires_grad_(False)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout_rate)
        self.fc = nn.Linear(encoder.num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder.forward_features(x)
        # a transformer's tokens go through its own pooling (class token or mean) and norm
        x = self.encoder.forward_head(x, pre_logits=True) if x.dim() == 3 else self.avg_pool(x).flatten(1)
        x = self.dropout(x)
        return self.fc(x)


def create_model(
    encoder: str,
    pretrained: bool = False,
    pretrained_file: str | os.PathLike | None = None,
    dropout_rate: float = 0.0,
    drop_path_rate: float | None = None,
    input_size: int | None = None,
    encoder_args: dict | None = None,
) -> DeepFakeClassifier:
    """The classifier on `encoder` (a listed name or any timm model), weights per `pretrained`.

    A transformer is built for `input_size` (its position embeddings resampled from the
    pretrained ones); `encoder_args` go to timm's constructor (e.g. a tiny depth for tests)."""
    spec = encoder_spec(encoder)
    rate = spec.drop_path_rate if drop_path_rate is None else drop_path_rate
    kwargs = {**spec.kwargs, **({} if rate is None else {"drop_path_rate": rate})}
    if input_size and timm.models.is_model_in_modules(spec.timm_name.split(".")[0], TRANSFORMER_MODULES):
        kwargs["img_size"] = input_size
    kwargs.update(encoder_args or {})
    backbone = create_encoder(spec.timm_name, pretrained=pretrained, pretrained_file=pretrained_file, **kwargs)
    return DeepFakeClassifier(backbone, dropout_rate)


class CheckpointError(InputError, RuntimeError):
    """A checkpoint cannot be read safely or does not fit the model; the message names the file and why."""


def _numpy_scalar_globals() -> list:
    """The numpy globals a pickled numpy float (the original's `bce_best`) needs, and nothing more:
    the scalar constructor under numpy 1's module name and numpy 2's, `numpy.dtype`, and the
    float64 dtype class that the unpickler sets the state of."""
    numpy_core = np._core if hasattr(np, "_core") else np.core
    scalar = numpy_core.multiarray.scalar
    return [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        type(np.dtype(np.float64)),
    ]


def torch_load_problem(error: Exception) -> str:
    """What torch.load said of a file it could not read, in one line: its first sentence, without
    terminal colours and without the advice to load with weights_only=False (never taken here)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = re.split(r"\s+(?:In PyTorch 2\.6|Re-running `torch\.load`)", first)[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__  # a bare "101" says nothing


def weights_only_refusal(error: Exception) -> str:
    """Why a weights-only load refused a file, in one line: the globals or classes it would not allow."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    named = sorted(set(re.findall(r"GLOBAL ([\w.]+)", text) + re.findall(r"but got <class '([\w.]+)'>", text)))
    if named:
        return f"its pickle holds {', '.join(named)}, which a weights-only load does not allow"
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(boilerplate)]
    return f"not a checkpoint that a weights-only load can read ({lines[0] if lines else type(error).__name__})"


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file safely (weights_only); a bare state dict comes back as {'state_dict': ...}.

    Tensors, plain Python values and numpy floats (which the original solution's checkpoints hold,
    pickled under numpy 1 or 2) load; a pickle naming any other global is refused with a
    CheckpointError naming the file and the global, and so is a state dict that is not a mapping
    of parameter names to tensors.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: refused to load: {weights_only_refusal(error)}") from None
    except Exception as error:  # the legacy unpickler meets junk bytes with KeyError, IndexError, struct.error...
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({torch_load_problem(error)})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(checkpoint).__name__}")
    if "state_dict" not in checkpoint:
        problem = state_dict_problem(checkpoint)
        if problem:
            raise CheckpointError(f"{path}: no `state_dict`, and not a bare state dict either: {problem}")
        checkpoint = {"state_dict": checkpoint}
    problem = state_dict_problem(checkpoint["state_dict"])
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return checkpoint


def state_dict_problem(state) -> str | None:
    """Why `state` is not a state dict (a mapping of parameter names to dense tensors of real
    numbers with their data: not meta, sparse, quantized or complex), or None."""
    if not isinstance(state, Mapping):
        return f"`state_dict` is a {type(state).__name__}, not a mapping of parameter names to tensors"
    for key, value in state.items():
        if not isinstance(key, str):
            return f"`state_dict` has a key {shown(key)} that is not a parameter name"
        if not isinstance(value, torch.Tensor):
            return f"`state_dict` entry {key} is a {type(value).__name__}, not a tensor"
        if value.is_meta:
            return f"`state_dict` entry {key} is a meta tensor, a shape without its numbers"
        if value.layout != torch.strided or value.is_quantized:
            return f"`state_dict` entry {key} is a {value.layout} tensor, not a dense one"
        if value.is_complex():
            return f"`state_dict` entry {key} holds complex numbers ({value.dtype})"
    return None


def _kind_problems(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> list[str]:
    """`name dtype` of each tensor that is not floating point where the model's is (a parameter,
    a running mean); integer buffers (BatchNorm's num_batches_tracked) take what they are given."""
    return [
        f"{key} {state[key].dtype}"
        for key in sorted(set(state) & set(expected))
        if expected[key].is_floating_point() and not state[key].is_floating_point()
    ]


def _describe(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating point tensors of `state` holding a NaN or an infinity."""
    return [key for key, value in state.items() if value.is_floating_point() and not bool(torch.isfinite(value).all())]


def overflowing_tensors(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> list[str]:
    """`name stored type -> model's type` of each floating point tensor of `state` that holds a NaN
    or an infinity once cast to the type of the model's tensor `expected[name]`, as loading casts it:
    1e300 is finite in float64 but inf in a float32 model, 1e5 in float32 inf in a float16 one."""
    names = []
    for key, value in state.items():
        target = expected[key].dtype
        cast = value.is_floating_point() and expected[key].is_floating_point() and value.dtype != target
        if cast and not bool(torch.isfinite(value.to(target)).all()):  # one tensor's copy at a time
            names.append(f"{key} {value.dtype} -> {target}")
    return names


def load_weights(model: nn.Module, state_dict: dict, source: str = "checkpoint") -> None:
    """Strict load after stripping DDP's `module.` prefix; a mismatch says which keys differ, and
    weights that are not finite numbers are refused."""
    problem = state_dict_problem(state_dict)
    if problem:
        raise CheckpointError(f"{source}: {problem}")
    state = {key.removeprefix("module."): value for key, value in state_dict.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing {_describe(missing)}")
        if unexpected:
            problems.append(f"unexpected {_describe(unexpected)}")
        if mismatched:
            shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched]
            problems.append(f"shape differs {_describe(shapes)}")
        raise CheckpointError(f"{source} does not fit the model (wrong --encoder?): " + "; ".join(problems))
    not_floating = _kind_problems(state, expected)
    if not_floating:
        raise CheckpointError(f"{source}: weights that are not floating point numbers: {_describe(not_floating)}")
    not_finite = non_finite_tensors(state)
    if not_finite:  # a NaN weight gives every face NaN: each file an error, and never a verdict
        raise CheckpointError(f"{source}: weights that are NaN or infinite: {_describe(not_finite)}")
    overflowing = overflowing_tensors(state, expected)
    if overflowing:
        raise CheckpointError(
            f"{source}: weights too large for the model's number type (infinite once cast): {_describe(overflowing)}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # whatever the checks above let through: still the file's fault
        raise CheckpointError(f"{source}: the model cannot load its weights ({describe(error)})") from None
