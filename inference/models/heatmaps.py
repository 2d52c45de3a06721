"""Grad-CAM heatmaps of faces for the project's models (ensemble members): where each model looked.

Grad-CAM (the pytorch-grad-cam package) weighs the last feature block of each model's encoder by
the gradient of the model's fake logit: the warm areas of a heatmap are those whose features
raised the probability that the face is fake the most, relative to the rest of that face (each
map is scaled to its own range). It shows where the models looked, not that a region was
manipulated; a real face also has warm areas. With several models, the maps are averaged by
the models' weights. A detector gives its heatmaps through `Detector.heatmaps`
(inference/pipeline/detector.py); the winner's recipe gives these.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from inference.models.ensemble import Member, face_batch


def placement(crop_shape: tuple[int, ...], input_size: int) -> tuple[int, int, int, int]:
    """Where a crop lies on the model's input canvas (top, left, height, width): resized so that its
    longer side is `input_size` (sizes truncated), centred, as `face_batch` places it."""
    height, width = crop_shape[:2]
    scale = input_size / max(height, width)
    new_height, new_width = (input_size, int(width * scale)) if height >= width else (int(height * scale), input_size)
    if max(height, width) == input_size:
        new_height, new_width = height, width
    return (input_size - new_height) // 2, (input_size - new_width) // 2, new_height, new_width


def cam_on_crop(cam: np.ndarray, crop_shape: tuple[int, ...]) -> np.ndarray:
    """A heatmap over the model's input canvas cut to the crop's place and resized to the crop."""
    top, left, height, width = placement(crop_shape, cam.shape[0])
    region = cam[top : top + max(height, 1), left : left + max(width, 1)]
    return cv2.resize(region.astype(np.float32), (crop_shape[1], crop_shape[0]), interpolation=cv2.INTER_LINEAR)


def last_feature_block(member: Member) -> torch.nn.Module:
    """The encoder's last feature block (timm's feature_info names it: blocks.6, layer4, act4...);
    for a transformer, the input norm of its last block: that block's output patch tokens no longer
    reach a class-token head, its input tokens do (through the last attention)."""
    encoder = member.model.encoder
    blocks = getattr(encoder, "blocks", None)
    if getattr(encoder, "num_prefix_tokens", None) is not None and blocks is not None and hasattr(blocks[-1], "norm1"):
        return blocks[-1].norm1
    info = getattr(encoder, "feature_info", None)
    if not info:
        raise ValueError(f"{member.name}: encoder {member.encoder} does not name its feature blocks")
    return encoder.get_submodule(info[-1]["module"])


def token_grid(encoder: torch.nn.Module):
    """For a transformer, a function from a block's tokens (B, N, C) to a map (B, C, H, W) of its
    patch tokens (class and register tokens dropped), as Grad-CAM needs; None for a CNN."""
    prefix = getattr(encoder, "num_prefix_tokens", None)
    if prefix is None:
        return None

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, prefix:]
        side = int(round(patches.shape[1] ** 0.5))
        return patches.reshape(tokens.shape[0], side, side, tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


def face_heatmaps(members: list[Member], crops: list[np.ndarray], device: torch.device) -> list[np.ndarray]:
    """A heatmap in [0, 1] per crop, at the crop's size: each model's Grad-CAM toward "fake",
    averaged by the models' weights."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    total = sum(member.weight for member in members)
    maps = [np.zeros(crop.shape[:2], np.float32) for crop in crops]
    for member in members:
        images = face_batch(crops, member).to(device)
        layers, reshape = [last_feature_block(member)], token_grid(member.model.encoder)
        with torch.enable_grad(), GradCAM(model=member.model, target_layers=layers, reshape_transform=reshape) as cam:
            canvases = cam(input_tensor=images, targets=[BinaryClassifierOutputTarget(1)] * len(crops))
        for index, (canvas, crop) in enumerate(zip(canvases, crops, strict=True)):
            maps[index] += member.weight / total * cam_on_crop(canvas, crop.shape)
    return [np.clip(m, 0.0, 1.0) for m in maps]
