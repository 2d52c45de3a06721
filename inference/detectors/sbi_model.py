"""Self-Blended Images' classifier: the authors' checkpoint format read safely, mapped onto timm.

The authors' model (mapooon/SelfBlendedImages src/inference/model.py) is efficientnet_pytorch
0.7.1's `EfficientNet.from_pretrained("efficientnet-b4", advprop=True, num_classes=2)` held as
`self.net`; their training saves `{"model": state_dict, "optimizer": SAM's state, "epoch": n}`
(src/train_sbi.py), released as FFraw.tar and FFc23.tar, and their inference loads ["model"]
strictly. Only ["model"] is read here (with `torch.load(weights_only=True)`).

At 380 x 380, the only size SBI runs at, efficientnet_pytorch's static TF-"same" padding
(computed for 380 when the model is built) equals timm's dynamic padding, so the authors' B4 is
timm's `tf_efficientnet_b4` (batch-norm eps 1e-3 as theirs; not timm's `efficientnet_b4`, 1e-5)
once the keys are renamed (`authors_to_timm`). Its input: RGB / 255, no mean or std; p(fake) =
softmax(logits)[:, 1].
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inference.detectors.efficientnet_keys import efficientnet_key, efficientnet_names
from training.models.zoo import (
    CheckpointError,
    load_weights,
    non_finite_tensors,
    state_dict_problem,
    torch_load_problem,
    weights_only_refusal,
)

ENCODER = "tf_efficientnet_b4"
INPUT_SIZE = 380
PREFIX = "net."  # the authors' Detector holds the EfficientNet as `self.net`


def timm_key(key: str) -> str:
    """An efficientnet_pytorch key (without `net.`) as timm's `tf_efficientnet_b4` names it (the
    head `_fc` is timm's `classifier`); KeyError where B4 has no such module."""
    if key.startswith("_fc."):
        return "classifier." + key.removeprefix("_fc.")
    found = efficientnet_key(key)
    if found is None:
        raise KeyError(key)
    return found


def authors_keys(model: nn.Module) -> dict[str, str]:
    """{the authors' key: timm's key} for every tensor of the timm model (the inverse of `timm_key`),
    so that a checkpoint's keys are judged in the authors' own names."""
    inverse = {**efficientnet_names(), "classifier.": "_fc."}
    mapping = {}
    for name in model.state_dict():
        prefix = max((p for p in inverse if name.startswith(p)), key=len)
        mapping[PREFIX + inverse[prefix] + name[len(prefix) :]] = name
    return mapping


def build_model() -> nn.Module:
    """timm's tf_efficientnet_b4 with two classes, no download."""
    import timm

    return timm.create_model(ENCODER, pretrained=False, num_classes=2)


def read_authors_checkpoint(path: str | os.PathLike) -> Mapping[str, torch.Tensor]:
    """The ["model"] state dict of an SBI checkpoint, read with a weights-only load; a
    CheckpointError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {'a folder, not' if path.is_dir() else 'no such'} checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: refused to load: {weights_only_refusal(error)}") from None
    except Exception as error:  # junk bytes meet the unpickler as KeyError, EOFError, struct.error...
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({torch_load_problem(error)})") from None
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint:
        kind = "a dict without" if isinstance(checkpoint, Mapping) else f"a {type(checkpoint).__name__}, no dict with"
        raise CheckpointError(
            f"{path}: {kind} a `model` entry: not a Self-Blended Images checkpoint "
            "(theirs is {'model': ..., 'optimizer': ..., 'epoch': ...})"
        )
    state = checkpoint["model"]
    problem = state_dict_problem(state)
    if problem:
        raise CheckpointError(f"{path}: `model`: {problem.removeprefix('`state_dict` ')}")
    return state


def _listed(keys: list[str], limit: int = 4) -> str:
    return f"{len(keys)} ({', '.join(keys[:limit])}{', ...' if len(keys) > limit else ''})"


def timm_state(state: Mapping[str, torch.Tensor], model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """The authors' state dict in timm's names, once its keys and shapes are B4's with two classes
    and its weights finite floating point numbers (checked in the authors' names: a CheckpointError
    naming `source` says which differ)."""
    names = authors_keys(model)
    expected = model.state_dict()
    missing = sorted(set(names) - set(state))
    unexpected = sorted(set(state) - set(names))
    common = sorted(set(state) & set(names))
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[names[key]].shape)}"
        for key in common
        if state[key].shape != expected[names[key]].shape
    ]
    not_floating = [
        f"{key} {state[key].dtype}"
        for key in common
        if expected[names[key]].is_floating_point() and not state[key].is_floating_point()
    ]
    problems = [
        f"{what} {_listed(keys)}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", mismatched))
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"{source}: not a Self-Blended Images EfficientNet-B4 with two classes: {'; '.join(problems)}"
        )
    if not_floating:
        raise CheckpointError(f"{source}: weights that are not floating point numbers: {_listed(not_floating)}")
    not_finite = non_finite_tensors(state)
    if not_finite:  # a NaN weight gives every face NaN: each file an error, never a verdict
        raise CheckpointError(f"{source}: weights that are NaN or infinite: {_listed(not_finite)}")
    return {names[key]: value for key, value in state.items()}


@dataclass
class SbiModel:
    """One SBI checkpoint, ready to score 380 x 380 RGB crops."""

    name: str
    model: nn.Module
    weight: float = 1.0
    encoder: str = ENCODER
    input_size: int = INPUT_SIZE

    @torch.no_grad()
    def probabilities(
        self,
        crops: list,
        device: torch.device,
        batch_size: int = 64,
        amp_dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """p(fake) of each uint8 RGB crop (H x W x 3 at the input size): RGB / 255, softmax[:, 1]."""
        results = []
        for start in range(0, len(crops), batch_size):
            pixels = torch.from_numpy(_stacked(crops[start : start + batch_size]))
            images = pixels.to(device).permute(0, 3, 1, 2).float() / 255
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = self.model(images)
            results.append(logits.float().softmax(1)[:, 1])
        if not results:
            return torch.zeros(0)
        return torch.cat(results).cpu()


def grad_cam(models: list[SbiModel], crops: list, device: torch.device) -> list[np.ndarray]:
    """Where the models looked: each model's Grad-CAM of its fake logit over its last feature block
    (timm's feature_info), on the crops as it scores them (RGB / 255), averaged by the models'
    weights; a map in [0, 1] per crop, at the crop's size (the input size)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    total = sum(model.weight for model in models)
    maps = [np.zeros(crop.shape[:2], np.float32) for crop in crops]
    images = torch.from_numpy(_stacked(crops)).permute(0, 3, 1, 2).float().div(255).to(device)
    for model in models:
        layer = model.model.get_submodule(model.model.feature_info[-1]["module"])
        with torch.enable_grad(), GradCAM(model=model.model, target_layers=[layer]) as cam:
            canvases = cam(input_tensor=images, targets=[ClassifierOutputTarget(1)] * len(crops))
        for index, canvas in enumerate(canvases):
            maps[index] += model.weight / total * canvas
    return [np.clip(m, 0.0, 1.0) for m in maps]


def _stacked(crops: list) -> np.ndarray:
    return np.ascontiguousarray(np.stack(crops))


def load_model(path: str | os.PathLike, device: torch.device, weight: float = 1.0) -> SbiModel:
    """An SBI checkpoint in the authors' format on `device` (eval; channels-last on CUDA); a
    malformed one (not a checkpoint, wrong keys or shapes, NaN or infinite weights) is one
    CheckpointError line naming the file."""
    state = read_authors_checkpoint(path)
    model = build_model()
    load_weights(model, timm_state(state, model, str(path)), str(path))
    model.to(device).eval()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return SbiModel(Path(path).name, model, float(weight))
