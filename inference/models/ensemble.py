"""Checkpoints to score faces with: one or many, mixed encoders and input sizes, weighted.

A checkpoint saved by our training names its encoder, input size and normalisation. A bare one,
such as the original solution's, needs `encoder` (and optionally `input_size`; default: the
encoder's recipe size). An ensemble file lists members:

    members:
      - checkpoint: weights/b7_0_111_best.pt      # paths relative to this file
        weight: 1.0
      - checkpoint: final_555_DeepFakeClassifier_tf_efficientnet_b7_ns_0_19
        encoder: tf_efficientnet_b7_ns
        input_size: 380

Loading checks what a checkpoint says before building anything (training/models/zoo.py: a state dict of
dense real tensors with their data, floating point where the model's are, a known
encoder, an input size of 16 to 2048 pixels, a mean and std of three numbers for crops scaled to
0..1; training/models/checkpoint_model.py: only known `encoder_args`, bounded, bounded LoRA settings, and
a model no bigger than its weights, counted on the meta device before it is built;
training/models/temporal.py: a temporal model's settings, its head at most 4096 units and 8 layers): a
malformed one, one whose model cannot be built or take its weights, and one whose weights hold a
NaN or an infinity, is a one-line CheckpointError naming the file. `check_finite_scores` refuses a file's scores when a
model gave it any that is not finite (NonFiniteScoreError, naming the model): a NaN is no
probability.
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from common.cli import InputError, describe
from inference.models.runtime import OpenVinoClassifier, default_cache_dir
from training.data.face_input import isotropically_resize_image, to_tensor
from training.models.checkpoint_model import model_config_problem, size_problem
from training.models.tuning import apply_tuning
from training.models.zoo import (
    CheckpointError,
    DeepFakeClassifier,
    create_model,
    encoder_spec,
    input_size_problem,
    load_weights,
    normalization,
    normalization_problem,
    read_checkpoint,
)


@dataclass
class Member:
    name: str
    model: DeepFakeClassifier
    encoder: str
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weight: float = 1.0
    runtime: str = "torch"
    compiled: Callable[[torch.Tensor], torch.Tensor] | None = None  # the model as another runtime runs it
    clip: tuple[int, int] | None = None  # a temporal model's clip length and frame step (inference/pipeline/clips.py)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of normalised faces."""
        return (self.compiled or self.model)(images)


class NonFiniteScoreError(RuntimeError):
    """A model gave a NaN or infinite score: an error for the file scored, never a verdict."""


def check_finite_scores(scores: np.ndarray, member_name: str) -> np.ndarray:
    """`scores` (one file's, by one model) when every one is a probability, else a
    NonFiniteScoreError naming the model and how many are not: not finite (NaN or infinity), or
    outside 0 to 1 (a detector that gives no probabilities)."""
    scores = np.asarray(scores)
    bad = int(np.count_nonzero(~np.isfinite(scores)))
    if bad:
        raise NonFiniteScoreError(
            f"model {member_name} produced non-finite scores (NaN or infinity) for {bad} of {scores.size} inputs "
            "(broken weights, or an overflow at this precision)"
        )
    outside = int(np.count_nonzero((scores < 0) | (scores > 1)))
    if outside:
        raise NonFiniteScoreError(
            f"model {member_name} produced scores outside 0 to 1 for {outside} of {scores.size} inputs "
            f"(e.g. {float(scores[(scores < 0) | (scores > 1)][0]):g}): not probabilities"
        )
    return scores


def prepare_for_inference(model: DeepFakeClassifier, device: torch.device) -> DeepFakeClassifier:
    """The model in eval mode on `device`, channels-last on CUDA."""
    model.to(device).eval()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def load_member(
    path: str | os.PathLike,
    device: torch.device,
    encoder: str | None = None,
    input_size: int | None = None,
    weight: float = 1.0,
    runtime: str = "torch",
    cache_dir: Path | None = None,
    precision: str = "f32",
) -> Member:
    """A checkpoint ready to score faces on `device`, run by `runtime` ("torch" or "openvino";
    the latter in `precision`, "f32" or "bf16"). What the checkpoint says wins over `encoder` and
    `input_size`; anything malformed is a CheckpointError naming the file."""
    checkpoint = read_checkpoint(path)
    settings = member_settings(checkpoint, path, encoder, input_size)
    encoder, size, mean, std = settings["encoder"], settings["input_size"], settings["mean"], settings["std"]
    clip = None
    temporal = checkpoint.get("temporal") if checkpoint.get("kind") == "temporal" else None
    if temporal:
        clip = (temporal["clip_length"], temporal.get("frame_step", 10))
        runtime = "torch"  # the sequence heads are not exported; PyTorch runs temporal members

    def build() -> DeepFakeClassifier:
        if temporal:
            from training.models.temporal import create_temporal_model

            return create_temporal_model(
                {"encoder": encoder, "pretrained": False}, {**temporal, "encoder_checkpoint": None}
            )
        model_config = settings["model_config"]
        model = create_model(encoder, input_size=size, encoder_args=model_config.get("encoder_args"))
        # rebuilds LoRA factors, if the model was trained with them; its errors name the encoder
        apply_tuning(model, {**model_config, "encoder": encoder})
        return model

    try:
        problem = size_problem(build, checkpoint["state_dict"])  # counted on the meta device: no memory
        if problem:
            raise CheckpointError(f"{path}: {problem}")
        model = build()
    except CheckpointError:
        raise
    except (AssertionError, AttributeError, InputError, KeyError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot build the model it describes ({describe(error)})") from error
    load_weights(model, checkpoint["state_dict"], str(path))
    prepare_for_inference(model, device)
    compiled = None
    if runtime == "openvino":
        compiled = OpenVinoClassifier(
            model, Path(path), encoder, size, cache_dir or default_cache_dir(), precision, mean, std
        )
    return Member(Path(path).name, model, encoder, size, mean, std, float(weight), runtime, compiled, clip)


def random_member(encoder: str, size: int | None, device: torch.device, seed: int) -> Member:
    """A classifier of `encoder` with random weights (timing only: nothing is downloaded)."""
    torch.manual_seed(seed)
    model = prepare_for_inference(create_model(encoder), device)
    mean, std = normalization(encoder)
    return Member(f"random-{seed}", model, encoder, size or encoder_spec(encoder).input_size, mean, std)


def member_settings(checkpoint: dict, path, encoder: str | None = None, input_size: int | None = None) -> dict:
    """The encoder, input size, normalisation and model config a checkpoint is to be built with,
    checked: the checkpoint's own, else `encoder` and `input_size` (the command's or the ensemble
    file's), else the encoder's defaults. A CheckpointError naming `path` says what is wrong."""

    def refuse(problem: str) -> NoReturn:
        raise CheckpointError(f"{path}: {problem}")

    kind = checkpoint.get("kind", "frame")
    if kind not in ("frame", "temporal", None):
        refuse(f"`kind` {kind!r} is neither frame nor temporal")
    if kind == "temporal":
        from training.models.temporal import temporal_settings_problem

        problem = temporal_settings_problem(checkpoint.get("temporal"))
        if problem:
            refuse(problem)
    encoder = checkpoint.get("encoder") or encoder
    if not encoder:
        refuse(
            "a bare checkpoint does not say its encoder; pass --encoder NAME (e.g. tf_efficientnet_b7_ns) "
            "or `encoder:` in the ensemble file"
        )
    if not isinstance(encoder, str):
        refuse(f"the encoder must be a name, got {type(encoder).__name__} {reprlib.repr(encoder)}")
    try:
        spec = encoder_spec(encoder)
    except ValueError as error:
        refuse(describe(error))
    if input_size is not None and input_size_problem(input_size):
        refuse(f"{input_size_problem(input_size)} (given by --size or the ensemble file)")
    size = checkpoint.get("input_size")
    if size is not None and input_size_problem(size):
        refuse(f"`input_size`: {input_size_problem(size)}")
    default_mean, default_std = normalization(encoder)
    mean, std = checkpoint.get("mean", default_mean), checkpoint.get("std", default_std)
    problem = normalization_problem(mean, std)
    if problem:
        refuse(problem)
    config = checkpoint.get("config") or {}
    model_config = (config.get("model") if isinstance(config, dict) else config) or {}
    if not isinstance(model_config, dict) or not isinstance(model_config.get("encoder_args") or {}, dict):
        refuse("`config.model` (and its `encoder_args`) must be mappings of settings")
    problem = model_config_problem(model_config)
    if problem:
        refuse(problem)
    return {
        "encoder": encoder,
        "input_size": size or input_size or spec.input_size,
        "mean": tuple(float(v) for v in mean),
        "std": tuple(float(v) for v in std),
        "model_config": model_config,
    }


def refuse_temporal(members: list[Member], command: str) -> None:
    """Stop `command`, which scores faces one by one, on a temporal member (inference.predict scores them)."""
    for member in members:
        if member.clip:
            raise InputError(
                f"{member.name}: a temporal model (clips of {member.clip[0]} crops); {command} scores frame models "
                "only for now: use inference.predict for temporal models"
            )


def put_to_center(image: np.ndarray, size: int) -> np.ndarray:
    """The image on a black size x size canvas, centred (cut to size first if larger)."""
    image = image[:size, :size]
    canvas = np.zeros((size, size, 3), np.uint8)
    top, left = (size - image.shape[0]) // 2, (size - image.shape[1]) // 2
    canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    return canvas


def face_pixels(crops: list[np.ndarray], member: Member) -> np.ndarray:
    """Crops resized isotropically (INTER_AREA down, INTER_CUBIC up) and centred: uint8, N x size x size x 3."""
    size = member.input_size
    return np.stack([put_to_center(isotropically_resize_image(crop, size), size) for crop in crops])


def face_batch(crops: list[np.ndarray], member: Member) -> torch.Tensor:
    """Crops resized isotropically (INTER_AREA down, INTER_CUBIC up), centred, normalised."""
    return torch.stack(
        [
            to_tensor(
                put_to_center(isotropically_resize_image(crop, member.input_size), member.input_size),
                member.mean,
                member.std,
            )
            for crop in crops
        ]
    )


def member_logits(member: Member, crops: list[np.ndarray], device: torch.device, hflip: bool = False):
    """Logits of the crops (and of their mirror images, with `hflip`): the pixels straight into an
    OpenVINO member's graph, which normalises them, or a normalised batch into any other."""
    if hasattr(member.compiled, "pixels"):
        pixels = face_pixels(crops, member)
        mirrored = member.compiled.pixels(pixels[:, :, ::-1]) if hflip else None
        return member.compiled.pixels(pixels), mirrored
    images = face_batch(crops, member)
    if device.type == "cuda":
        images = images.pin_memory().to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    else:
        images = images.to(device)
    return member(images), (member(images.flip(3)) if hflip else None)


@torch.no_grad()
def face_probabilities(
    member: Member,
    crops: list[np.ndarray],
    device: torch.device,
    batch_size: int = 64,
    amp_dtype: torch.dtype | None = None,
    hflip: bool = False,
) -> np.ndarray:
    """Sigmoid probability of every crop (averaged with its mirror image when `hflip`), NaN where
    the model gives NaN: the crops may be several files', so each file's share is checked on its
    own (`check_finite_scores`).

    On CUDA each batch is copied from pinned memory without waiting, and its results stay on the
    GPU until the end, so the next batch is resized and normalised on the CPU while it runs."""
    results = []
    for start in range(0, len(crops), batch_size):
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits, mirrored = member_logits(member, crops[start : start + batch_size], device, hflip)
            probabilities = torch.sigmoid(logits.float())
            if mirrored is not None:
                probabilities = (probabilities + torch.sigmoid(mirrored.float())) / 2
        results.append(probabilities.view(-1))
    if not results:
        return np.zeros(0, np.float32)
    return torch.cat(results).cpu().numpy()
