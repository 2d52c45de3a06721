"""Optimizers and per-iteration learning-rate schedules of the recipe (and common alternatives)."""

from __future__ import annotations

import math

import torch


def create_optimizer(param_groups: list[dict], settings: dict) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (the recipe) or AdamW over `param_groups`; `sam_sgd` and
    `sam_adamw` wrap them in Sharpness-Aware Minimization (training/loop/sam.py)."""
    name = settings["name"].lower()
    if name.startswith("sam_"):
        from training.loop.sam import SAM

        base = create_optimizer(param_groups, {**settings, "name": name.removeprefix("sam_")})
        return SAM(base, settings.get("sam_rho", 0.05), settings.get("sam_adaptive", False))
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
    raise ValueError(f"unknown optimizer '{settings['name']}' (sgd, adamw, sam_sgd or sam_adamw)")


def lr_factor(
    iteration: int, total: int, name: str, power: float = 0.9, min_factor: float = 0.0, decay_start: float = 0.75
) -> float:
    """Multiplier of the base learning rate after `iteration` steps of `total`; `linear` holds it
    until `decay_start` of the way, then decays it linearly to 0 (Self-Blended Images' schedule)."""
    progress = min(iteration, total) / max(1, total)
    if name == "linear":
        return 1.0 if progress <= decay_start else (1.0 - progress) / max(1e-12, 1.0 - decay_start)
    if name == "poly":
        return (1.0 - progress) ** power
    if name == "cosine":
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "constant":
        return 1.0
    raise ValueError(f"unknown schedule '{name}' (poly, cosine, linear or constant)")


AUTO = "auto"


def resolve_max_iter(max_iter, planned: int) -> int:
    """Iterations over which the schedule decays: `auto` (or null) is the run's own length, epochs x
    batches actually run; a number is taken as given (the original configs fix 100500 and 75100)."""
    if max_iter is None or max_iter == AUTO:
        return planned
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter <= 0:
        raise ValueError(f"schedule.max_iter must be a positive whole number or '{AUTO}', got {max_iter!r}")
    return max_iter


def schedule_mismatch(schedule: dict, planned: int, base_lr: float) -> str | None:
    """Why a decaying schedule and a run of `planned` iterations do not end together, or None.

    A fixed max_iter made for the full DFDC (2500 batches an epoch) leaves the learning rate
    almost undecayed on smaller data; one shorter than the run holds the rate at its floor.
    """
    name = schedule["name"]
    total = resolve_max_iter(schedule["max_iter"], planned)
    if name == "constant" or total == planned:
        return None
    hint = f"set schedule.max_iter: {AUTO} to decay over the run's own {planned} iterations"
    if planned < 0.9 * total:
        min_factor = schedule.get("min_lr", 0.0) / base_lr if base_lr else 0.0
        final = lr_factor(planned, total, name, schedule["power"], min_factor, schedule.get("decay_start", 0.75))
        return (
            f"the run stops after {planned} iterations but its {name} schedule decays over {total}: "
            f"the learning rate ends at {final:.0%} of its start; {hint}"
        )
    if planned > total:
        return (
            f"the {name} schedule ends at iteration {total} but the run goes on to {planned}: its last "
            f"{planned - total} iterations train at the final learning rate; {hint}"
        )
    return None


def schedule_lambdas(config: dict, iterations_per_epoch: int, plateau: dict):
    """Per-iteration lr factors for the encoder and the head: schedule x plateau cuts, encoder
    held at 0 during the freeze epochs."""
    training, schedule = config["training"], config["schedule"]
    total = resolve_max_iter(schedule["max_iter"], training["epochs"] * iterations_per_epoch)
    base = config["optimizer"]["lr"]
    min_factor = schedule["min_lr"] / base if base else 0.0
    freeze_steps = training["freeze_epochs"] * iterations_per_epoch

    decay_start = schedule.get("decay_start", 0.75)

    def head(step: int) -> float:
        factor = lr_factor(step, total, schedule["name"], schedule["power"], min_factor, decay_start)
        return factor * plateau["scale"]

    def encoder(step: int) -> float:
        return 0.0 if step < freeze_steps else head(step)

    return [encoder, head]
