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
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from inference.runtime import OpenVinoClassifier, default_cache_dir
from preprocess.cli import InputError
from training.augment import isotropically_resize_image
from training.dataset import to_tensor
from training.tuning import apply_tuning
from training.zoo import DeepFakeClassifier, create_model, encoder_spec, load_weights, normalization, read_checkpoint


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
    clip: tuple[int, int] | None = None  # a temporal model's clip length and frame step (inference/clips.py)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of normalised faces."""
        return (self.compiled or self.model)(images)


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
    the latter in `precision`, "f32" or "bf16")."""
    checkpoint = read_checkpoint(path)
    encoder = checkpoint.get("encoder") or encoder
    if not encoder:
        raise ValueError(
            f"{path}: a bare checkpoint does not say its encoder; pass --encoder NAME (e.g. "
            "tf_efficientnet_b7_ns) or `encoder:` in the ensemble file"
        )
    size = int(checkpoint.get("input_size") or input_size or encoder_spec(encoder).input_size)
    default_mean, default_std = normalization(encoder)
    clip = None
    if checkpoint.get("kind") == "temporal":
        from training.temporal import create_temporal_model

        settings = checkpoint["temporal"]
        model = create_temporal_model(
            {"encoder": encoder, "pretrained": False}, {**settings, "encoder_checkpoint": None}
        )
        clip = (int(settings["clip_length"]), int(settings.get("frame_step", 10)))
        runtime = "torch"  # the sequence heads are not exported; PyTorch runs temporal members
    else:
        model_config = (checkpoint.get("config") or {}).get("model") or {}
        model = create_model(encoder, input_size=size, encoder_args=model_config.get("encoder_args"))
        apply_tuning(model, model_config)  # rebuilds LoRA factors, if the model was trained with them
    load_weights(model, checkpoint["state_dict"], str(path))
    prepare_for_inference(model, device)
    compiled = None
    if runtime == "openvino":
        compiled = OpenVinoClassifier(model, Path(path), encoder, size, cache_dir or default_cache_dir(), precision)
    return Member(
        Path(path).name,
        model,
        encoder,
        size,
        tuple(checkpoint.get("mean", default_mean)),
        tuple(checkpoint.get("std", default_std)),
        float(weight),
        runtime,
        compiled,
        clip,
    )


def refuse_temporal(members: list[Member], command: str) -> None:
    """Stop `command`, which scores faces one by one, on a temporal member (inference.predict scores them)."""
    for member in members:
        if member.clip:
            raise InputError(
                f"{member.name}: a temporal model (clips of {member.clip[0]} crops); {command} scores frame models "
                "only for now: use inference.predict for temporal models"
            )


def read_ensemble_file(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the ensemble file ({error})") from error
    members = (spec or {}).get("members")
    if not members:
        raise ValueError(f"{path}: expected a `members:` list of checkpoints")
    entries = []
    for index, member in enumerate(members):
        if "checkpoint" not in member:
            raise ValueError(f"{path}: member {index} has no `checkpoint`")
        checkpoint = Path(member["checkpoint"])
        entries.append(
            {
                "path": checkpoint if checkpoint.is_absolute() else path.parent / checkpoint,
                "encoder": member.get("encoder"),
                "input_size": member.get("input_size"),
                "weight": float(member.get("weight", 1.0)),
            }
        )
    return entries


def ensemble_members(spec: str | os.PathLike) -> list[dict]:
    """The members of `spec`: a named ensemble of released checkpoints (`original`; see
    inference/weights.py, files in its weights folder) or an ensemble YAML file."""
    from inference.weights import ENSEMBLES, ensemble_entries

    if str(spec) in ENSEMBLES and not Path(spec).exists():
        return ensemble_entries(str(spec))
    return read_ensemble_file(spec)


def put_to_center(image: np.ndarray, size: int) -> np.ndarray:
    """The image on a black size x size canvas, centred (cut to size first if larger)."""
    image = image[:size, :size]
    canvas = np.zeros((size, size, 3), np.uint8)
    top, left = (size - image.shape[0]) // 2, (size - image.shape[1]) // 2
    canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    return canvas


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


@torch.no_grad()
def face_probabilities(
    member: Member,
    crops: list[np.ndarray],
    device: torch.device,
    batch_size: int = 64,
    amp_dtype: torch.dtype | None = None,
    hflip: bool = False,
) -> np.ndarray:
    """Sigmoid probability of every crop (averaged with its mirror image when `hflip`).

    On CUDA each batch is copied from pinned memory without waiting, and its results stay on the
    GPU until the end, so the next batch is resized and normalised on the CPU while it runs."""
    results = []
    for start in range(0, len(crops), batch_size):
        images = face_batch(crops[start : start + batch_size], member)
        if device.type == "cuda":
            images = images.pin_memory().to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        else:
            images = images.to(device)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            probabilities = torch.sigmoid(member(images).float())
            if hflip:
                probabilities = (probabilities + torch.sigmoid(member(images.flip(3)).float())) / 2
        results.append(probabilities.view(-1))
    if not results:
        return np.zeros(0, np.float32)
    return torch.cat(results).cpu().numpy()
