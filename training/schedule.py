"""Optimizers and per-iteration learning-rate schedules of the recipe (and common alternatives)."""

from __future__ import annotations

import math

import torch


def create_optimizer(param_groups: list[dict], settings: dict) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (the recipe) or AdamW over `param_groups`."""
    name = settings["name"].lower()
    if name == "sgd":
        return torch.optim.SGD(
            param_groups,
            lr=settings["lr"],
            momentum=settings["momentum"],
            nesterov=settings["nesterov"],
            weight_decay=settings["weight_decay"],
        )
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=settings["lr"], weight_decay=settings["weight_decay"])
    raise ValueError(f"unknown optimizer '{settings['name']}' (sgd or adamw)")


def lr_factor(iteration: int, total: int, name: str, power: float = 0.9, min_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate after `iteration` steps of `total`."""
    progress = min(iteration, total) / max(1, total)
    if name == "poly":
        return (1.0 - progress) ** power
    if name == "cosine":
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "constant":
        return 1.0
    raise ValueError(f"unknown schedule '{name}' (poly, cosine or constant)")
