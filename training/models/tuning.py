"""Which parameters of a classifier train: `model.train_only` = all | head | layernorm | lora.

Large pretrained encoders (CLIP, DINOv2 ViTs) generalise to unseen fakes best when barely moved:
  head       the encoder frozen, only the classifier head trains (a linear probe);
  layernorm  the encoder's LayerNorm weights and biases and the head train, nothing else (as
             GenD tunes CLIP: a few hundred thousand parameters of a ViT-L);
  lora       a low-rank update B @ A (rank `lora_rank`, scaled by `lora_alpha / lora_rank`) is
             added to the attention's linear layers named by `lora_targets` (timm ViT: qkv, proj);
             the layers themselves stay frozen; B starts at zero, so training starts from the
             pretrained encoder exactly;
  all        everything (the recipe).
The head is `fc` for frame classifiers. A checkpoint holds the LoRA factors beside the frozen
weights; inference rebuilds them from the checkpoint's config (`apply_tuning`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from common.cli import InputError

TRAIN_ONLY = ("all", "head", "layernorm", "lora")


class LoRALinear(nn.Module):
    """`base(x) + scale * x @ A.T @ B.T`, with `base` frozen."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if rank < 1:
            raise ValueError(f"model.lora_rank must be at least 1, got {rank}")
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        base.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


def add_lora(module: nn.Module, rank: int, alpha: float, targets: list[str]) -> int:
    """Wrap every nn.Linear whose own name is in `targets` inside an attention block; returns how many."""
    wrapped = 0
    for parent_name, parent in list(module.named_modules()):
        if "attn" not in parent_name.rsplit(".", 1)[-1]:
            continue
        for name, child in list(parent.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(parent, name, LoRALinear(child, rank, alpha))
                wrapped += 1
    return wrapped


def _layernorm_parameters(encoder: nn.Module) -> list[nn.Parameter]:
    return [p for m in encoder.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters(recurse=False)]


def apply_tuning(model: nn.Module, model_config: dict) -> dict:
    """Add LoRA factors if asked and set `requires_grad` for `model_config['train_only']`;
    returns the count of trainable and of all parameters."""
    train_only = model_config.get("train_only", "all")
    if train_only not in TRAIN_ONLY:
        raise InputError(f"model.train_only must be one of {', '.join(TRAIN_ONLY)}, got {train_only!r}")
    encoder = model.encoder
    if train_only == "lora":
        targets = list(model_config.get("lora_targets") or ["qkv"])
        wrapped = add_lora(
            encoder, int(model_config.get("lora_rank", 8)), float(model_config.get("lora_alpha", 8)), targets
        )
        if not wrapped:
            raise InputError(
                f"model.train_only: lora found no linear layer named {targets} in an attention block of "
                f"{model_config.get('encoder')} (LoRA is for transformer encoders)"
            )
    if train_only != "all":
        head_frozen = {id(p) for p in encoder.get_classifier().parameters()}
        encoder.requires_grad_(False)
        if train_only == "layernorm":
            chosen = _layernorm_parameters(encoder)
            if not chosen:
                raise InputError(f"model.train_only: layernorm, but {model_config.get('encoder')} has no LayerNorm")
        elif train_only == "lora":
            chosen = [p for name, p in encoder.named_parameters() if name.rsplit(".", 1)[-1] in ("lora_a", "lora_b")]
        else:
            chosen = []
        for parameter in chosen:
            if id(parameter) not in head_frozen:
                parameter.requires_grad_(True)
    return {
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in model.parameters()),
    }
