"""The range of every size and count of a training config, checked once it is resolved (file,
flags and --set) and before anything is built: a typo such as model.input_size=30000 (2.7 GB a
crop, each unreadable crop replaced by another, on and on) stops in one line naming the setting,
its value and its range."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass

from preprocess.media_limits import MAX_FRAMES
from training.schedule import AUTO
from training.temporal import MAX_CLIP_LENGTH, MAX_HIDDEN, MAX_LAYERS
from training.zoo import INPUT_SIZES


@dataclass(frozen=True)
class Bound:
    """A whole-number setting ("section.key", or "section.key.sub" inside a mapping that may be
    null) and its inclusive range; `also` are other values it may take (null, 'auto')."""

    setting: str
    low: int
    high: int
    unit: str
    also: tuple = ()
    flag: str | None = None


NULL = (None,)
# The ranges are far from any config we ship (their values in brackets) and near what a machine
# can hold; the model's sizes are those a checkpoint may carry, so that inference loads what
# training writes.
BOUNDS = [
    Bound("model.input_size", *INPUT_SIZES, "pixels a side", NULL),  # [96, 380]; null: the encoder's size
    Bound("model.lora_rank", 1, 1024, "ranks"),  # [8, 16]; a ViT-L's layers are 1024 wide
    Bound("temporal.clip_length", 1, MAX_CLIP_LENGTH, "crops a clip"),  # [8]
    Bound("temporal.hidden", 1, MAX_HIDDEN, "units"),  # [64, 256]
    Bound("temporal.layers", 1, MAX_LAYERS, "layers"),  # [1]
    Bound("data.batch_size", 1, 1024, "crops or clips a process", flag="--batch-size"),  # [4, 64]
    Bound("data.val_batch_size", 1, 1024, "crops or clips a process"),  # [32, 128]
    Bound("data.num_workers", 0, 64, "loader processes a process", flag="--workers"),  # [0, 8]
    Bound("data.val_frame_modulo", 1, MAX_FRAMES, "frames"),  # [20]
    Bound("data.frame_limit", 1, MAX_FRAMES, "frames", NULL),  # [320]
    Bound("data.faces_per_frame", 1, 64, "faces", NULL),  # [2]
    Bound("data.frames_per_video", 1, MAX_FRAMES, "crops a video", NULL),  # [8]
    Bound("data.min_class_crops", 1, 10**6, "crops"),  # [10]
    Bound("training.epochs", 1, 10_000, "epochs", flag="--epochs"),  # [1, 100]
    Bound("training.batches_per_epoch", 1, 10**6, "batches", NULL, "--batches-per-epoch"),  # [2500]
    Bound("training.freeze_epochs", 0, 10_000, "epochs", flag="--freeze-epochs"),  # [0, 2]
    Bound("training.ohem_samples", 1, 1024, "hardest crops of each class a batch", NULL),
    Bound("training.early_stopping_patience", 1, 10_000, "epochs", NULL),
    Bound("training.keep_every", 1, 10_000, "epochs", NULL, "--keep-every"),
    Bound("training.reduce_on_plateau.patience", 1, 10_000, "epochs"),  # where reduce_on_plateau is set
    Bound("schedule.max_iter", 1, 10**9, "iterations", (AUTO, None)),  # [auto, 100500]
]


def _lookup(config: dict, setting: str):
    """(in use, value): not in use where the mapping holding a "section.key.sub" setting is null."""
    section, key, *sub = setting.split(".")
    value = config[section][key]
    if not sub:
        return True, value
    return value is not None, value.get(sub[0]) if isinstance(value, dict) else None


def bound_problem(bound: Bound, value) -> str | None:
    """Why `value` is not in `bound`'s range, or None."""
    if value in bound.also:
        return None
    whole = isinstance(value, int) and not isinstance(value, bool)
    if whole and bound.low <= value <= bound.high:
        return None
    others = " or ".join("null" if other is None else repr(other) for other in bound.also)
    flag = f" ({bound.flag})" if bound.flag else ""
    return (
        f"{bound.setting}{flag} must be {others + ' or ' if others else ''}a whole number from {bound.low} to "
        f"{bound.high} ({bound.unit}), got {reprlib.repr(value)}"
    )


def settings_problem(config: dict, bounds: list[Bound] = BOUNDS) -> str | None:
    """The first size or count of a resolved config that is out of its range, or None."""
    for bound in bounds:
        found, value = _lookup(config, bound.setting)
        problem = bound_problem(bound, value) if found else None
        if problem:
            return problem
    return None
