"""Self-Blended Images' own face finder, where the user has placed it: RetinaFace R50
(ternaus/retinaface, `get_model("resnet50_2020-07-20", max_size=2048)`, its weights the release
zip `retinaface_resnet50_2020-07-20-f168fae3c.zip`) run by its own package, `retinaface_pytorch`
0.0.8. Its metadata pins torch 1.9 and albumentations 1.0.0, so it installs only with
`pip install --no-deps retinaface_pytorch==0.0.8` (it then runs on this stack); it is not a
requirement of the project. Its `predict_jsons` (frame resized to 2048 on the long side,
score > 0.7, NMS 0.4, boxes unclipped and rounded to 0.01) gives the boxes SBI's rules take.

The zip holds one file, a state dict, which torch hub's `load_url` unpacks; here it is read from
the zip with a weights-only load instead (the `.pth` alone works too)."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import torch

from common.cli import InputError, describe
from training.models.zoo import CheckpointError, load_weights, state_dict_problem

MAX_SIZE = 2048  # their inference_video.py / inference_dataset.py
PACKAGE_HINT = "pip install --no-deps retinaface_pytorch==0.0.8"
# the names the user may place it under, beside SBI's checkpoints: the release zip, or its state dict
FILE_NAMES = ("retinaface_resnet50_2020-07-20-f168fae3c.zip", "retinaface_resnet50_2020-07-20.pth")

_loaded: dict = {}
_lock = threading.Lock()


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of the release zip (one file inside: torch hub's legacy zip) or of a `.pth`,
    read with a weights-only load; a CheckpointError naming the file otherwise."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such RetinaFace weights file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
                if len(members) == 1 and not members[0].is_dir():  # torch hub's legacy zip, not torch's own format
                    data = io.BytesIO(archive.read(members[0]))
                    state = torch.load(data, map_location="cpu", weights_only=True)
                else:
                    state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: no RetinaFace weights a weights-only load reads ({describe(error)})") from None
    problem = state_dict_problem(state)
    if problem:
        raise CheckpointError(f"{path}: not a RetinaFace state dict: {problem}")
    return state


def retinaface(path: str | Path, device: torch.device, max_size: int = MAX_SIZE):
    """Their `get_model("resnet50_2020-07-20", max_size, device)` with the weights at `path`, loaded
    once per (file, device, size) and shared; an InputError where the package is missing or the file
    is not its weights."""
    key = (str(path), str(device), max_size)
    with _lock:
        if key not in _loaded:
            try:
                from retinaface.predict_single import Model
            except ImportError:
                raise InputError(
                    f"{path}: RetinaFace for SBI needs its package, which its metadata keeps from installing "
                    f"with today's torch: {PACKAGE_HINT}"
                ) from None
            model = Model(max_size=max_size, device=str(device))
            load_weights(model.model, read_weights(Path(path)), str(path))
            model.eval()
            _loaded[key] = model
        return _loaded[key]


def finder_boxes(model, frame: np.ndarray) -> list[list[float]]:
    """The boxes of one RGB frame as their `predict_jsons` returns them (its empty answer, a box
    of `[]`, is no box)."""
    return [face["bbox"] for face in model.predict_jsons(frame) if len(face["bbox"]) == 4]


def forget() -> None:
    """Let go of the finders loaded so far (their memory)."""
    with _lock:
        _loaded.clear()
