"""Checkpoint files as the original solution released them, written under today's numpy.

Its files were saved by torch 1.x under numpy 1: `{"epoch", "state_dict", "bce_best"}`, keys
prefixed `module.` (DDP), and `bce_best` a numpy float whose pickle names the numpy-1 module
`numpy.core.multiarray`. numpy 2 pickles the same value as `numpy._core.multiarray`, so a file
saved here is rewritten to name what the released files name.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

NUMPY2_SCALAR = b"numpy._core.multiarray\nscalar"
NUMPY1_SCALAR = b"numpy.core.multiarray\nscalar"


def original_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"module.{key}": value for key, value in model.state_dict().items()}


def _rewrite_zip_pickle(path: Path, old: bytes, new: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info.filename)) for info in archive.infolist()]
    rewritten = 0
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            if info.filename.endswith("/data.pkl"):
                rewritten += data.count(old)
                data = data.replace(old, new)
            archive.writestr(info, data)
    assert rewritten, f"{path}: no {old!r} in data.pkl to rewrite"


def _rewrite_legacy_pickle(path: Path, old: bytes, new: bytes) -> None:
    # The legacy format is a run of pickles followed by raw storage bytes; a GLOBAL opcode is
    # newline-terminated text, so a name may change length without breaking the stream.
    data = path.read_bytes()
    assert data.count(old) == 1, f"{path}: expected one {old!r} in the legacy pickle"
    path.write_bytes(data.replace(old, new))


def save_numpy1_checkpoint(
    path: Path, state_dict: dict, epoch: int = 20, bce_best: float = 0.2, legacy: bool = False, **extra
) -> Path:
    """Write `path` as the original's checkpoints are: numpy-1 pickle names, zip or legacy format."""
    checkpoint = {"epoch": epoch, "state_dict": state_dict, "bce_best": np.float64(bce_best), **extra}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    (_rewrite_legacy_pickle if legacy else _rewrite_zip_pickle)(Path(path), NUMPY2_SCALAR, NUMPY1_SCALAR)
    return path


def pickle_bytes(path: Path) -> bytes:
    """The pickle part of a checkpoint file (all of it for the legacy format)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return archive.read(next(name for name in archive.namelist() if name.endswith("/data.pkl")))
    return Path(path).read_bytes()


class RunsACommand:
    """A pickle payload that would run a shell command on load: what weights_only exists to refuse."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))
