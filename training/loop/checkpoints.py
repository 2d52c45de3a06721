"""Training checkpoints: everything to deploy the model and to resume the run exactly."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from common.io_utils import atomic_path

FORMAT = "deepfake-detector-checkpoint/1"
# What only --resume needs: left out of _best and kept epochs (a B7's optimizer state doubles its size)
TRAINING_STATE = ("optimizer", "scheduler", "scaler", "rng", "plateau")


def rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))


def weights_only(state: dict) -> dict:
    """A checkpoint's state without what only resuming needs (TRAINING_STATE)."""
    return {key: value for key, value in state.items() if key not in TRAINING_STATE}


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `path` atomically and durably: whole or absent, on the disk (fsynced) before it
    replaces an older one."""
    with atomic_path(path, fsync=True) as temporary:
        torch.save({"format": FORMAT, **state}, temporary)


def save_checkpoints(folder: Path, run: str, epoch: int, state: dict, improved: bool, keep_every: int | None) -> None:
    """_best (weights) when the epoch improved, _last (everything --resume needs), and the weights of
    every `keep_every`-th epoch. _best goes first: a run killed between the two resumes from the
    previous _last, runs the epoch again and writes the same _best."""
    if improved:
        save_checkpoint(folder / f"{run}_best.pt", weights_only(state))
    save_checkpoint(folder / f"{run}_last.pt", state)
    if keep_every and (epoch + 1) % keep_every == 0:
        save_checkpoint(folder / f"{run}_{epoch}.pt", weights_only(state))
