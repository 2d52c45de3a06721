"""Training checkpoints: everything to deploy the model and to resume the run exactly."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from preprocess.io_utils import atomic_path

FORMAT = "deepfake-detector-checkpoint/1"


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


def save_checkpoint(path: Path, state: dict, copies: tuple[Path, ...] = ()) -> None:
    """Write `path` and its `copies` (e.g. _last, _best) atomically and durably: each is whole or
    absent, on the disk (fsynced) before it replaces an older one."""
    with atomic_path(path, fsync=True) as temporary:
        torch.save({"format": FORMAT, **state}, temporary)
    for copy in copies:
        with atomic_path(copy, fsync=True) as temporary:
            shutil.copyfile(path, temporary)
