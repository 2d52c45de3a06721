"""What each registered file must be, by its format (`WeightFile.file_format`): how its first bytes
start (checked by the download before any byte is written) and, for `verify` of the detectors whose
code reads them elsewhere (inference/detectors/), whether it holds its authors' layout, read weights
only: SBI's {"model": {"net.*"}} checkpoint, DeepfakeBench's {"backbone.*"} state dicts, GenD's
safetensors of the hub's layout, a JSON config. The winner's checkpoints are checked by loading them
into their encoder (inference/models/named_weights.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from inference.models.download_checks import checkpoint_start_problem, json_start_problem, safetensors_start_problem

# The tensors that say a file is in its authors' layout, with their shapes (None: any shape).
_SBI_KEYS = {"net._conv_stem.weight": (48, 3, 3, 3), "net._fc.weight": (2, 1792), "net._fc.bias": (2,)}
_XCEPTION_KEYS = {"backbone.conv1.weight": (32, 3, 3, 3), "backbone.last_linear.weight": (2, 2048)}
_EFFNB4_KEYS = {"backbone.efficientnet._conv_stem.weight": (48, 3, 3, 3), "backbone.last_layer.weight": (2, 1792)}
_GEND_KEYS = {"model.linear.weight": None, "model.linear.bias": (2,)}


def first_bytes_check(file_format: str) -> Callable[[bytes], str | None]:
    """The check of a file's first bytes for its format."""
    if file_format.endswith("safetensors"):
        return safetensors_start_problem
    if file_format == "json":
        return json_start_problem
    return checkpoint_start_problem


def is_text(file_format: str) -> bool:
    return file_format == "json"


def _layout_problem(tensors: Mapping, wanted: dict, prefix: str, shape_of=lambda t: tuple(t.shape)) -> str | None:
    strays = [k for k in tensors if not (isinstance(k, str) and k.startswith(prefix))]
    if strays:
        return f"{len(strays)} keys do not start with {prefix!r} (e.g. {strays[0]!r})"
    for key, shape in wanted.items():
        if key not in tensors:
            return f"no {key!r}"
        if shape is not None and shape_of(tensors[key]) != shape:
            return f"{key!r} has shape {shape_of(tensors[key])}, not {shape}"
    return None


def _torch_problem(path: Path, file_format: str) -> str | None:
    import pickle

    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as error:
        return f"not a checkpoint that loads weights-only ({' '.join(str(error).split())[:160]})"
    if file_format == "sbi-checkpoint":
        if not (isinstance(loaded, dict) and isinstance(loaded.get("model"), dict)):
            return "not SBI's checkpoint layout (a dict whose 'model' holds the state dict)"
        return _layout_problem(loaded["model"], _SBI_KEYS, "net.")
    if not isinstance(loaded, dict):
        return "not a state dict"
    wanted = _XCEPTION_KEYS if file_format == "deepfakebench-xception" else _EFFNB4_KEYS
    return _layout_problem(loaded, wanted, "backbone.")


def _safetensors_problem(path: Path) -> str | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            shapes = {key: tuple(file.get_slice(key).get_shape()) for key in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        return f"not a readable safetensors file ({' '.join(str(error).split())[:160]})"
    layout = {k: v for k, v in shapes.items() if not k.startswith("feature_extractor.")}
    if not any(k.startswith("feature_extractor.vision_model.") for k in shapes):
        return "no 'feature_extractor.vision_model.*' tensors (not GenD's layout)"
    problem = _layout_problem(layout, _GEND_KEYS, "model.", shape_of=lambda shape: shape)
    if problem is None and shapes["model.linear.weight"][0] != 2:
        return f"'model.linear.weight' has shape {shapes['model.linear.weight']}, not (2, width)"
    return problem


def format_problem(path: Path, file_format: str) -> str | None:
    """Why `path` is not a file of `file_format` in its authors' layout (None when it is)."""
    if file_format == "json":
        try:
            document = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            return f"not readable JSON ({error})"
        return None if isinstance(document, dict) else "not a JSON object"
    if file_format == "gend-safetensors":
        return _safetensors_problem(path)
    if file_format in ("sbi-checkpoint", "deepfakebench-xception", "deepfakebench-effnb4"):
        return _torch_problem(path, file_format)
    raise ValueError(f"no check for file format {file_format!r}")
