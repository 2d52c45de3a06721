"""The range of every size, count and rate of a training config, checked once it is resolved (file,
flags and --set) and before anything is built: a typo such as model.input_size=30000 (2.7 GB a
crop, each unreadable crop replaced by another, on and on) or optimizer.lr=.nan stops in one line
naming where the value came from (the flag, the --set or the config file), the setting, its value
and its range."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass

from common.bounded_numbers import number_within, shown
from common.media_limits import MAX_FRAMES
from training.loop.schedule import AUTO
from training.models.checkpoint_model import lora_problem, model_config_problem
from training.models.temporal import MAX_CLIP_LENGTH, MAX_HIDDEN, MAX_LAYERS
from training.models.zoo import INPUT_SIZES


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


@dataclass(frozen=True)
class Span:
    """A setting that may be fractional (an int is taken too), finite, from `low` to `high`; an
    open end is excluded (`(0, 10]`); `also` are other values it may take (null)."""

    setting: str
    low: float
    high: float
    what: str
    also: tuple = ()
    flag: str | None = None
    low_open: bool = False
    high_open: bool = False

    def interval(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


# Wide of the shipped values (in brackets), narrow enough that a nan, an inf or a slip of a
# power of ten stops before a run trains on it.
SPANS = [
    Span("model.dropout", 0, 1, "a probability", high_open=True),  # [0, 0.2]
    Span("model.drop_path_rate", 0, 1, "a probability", NULL, high_open=True),  # [null, 0.5]
    Span("model.lora_alpha", 0, 10_000, "the LoRA scale's numerator", low_open=True),  # [8]
    Span("temporal.dropout", 0, 1, "a probability", high_open=True),  # [0, 0.1]
    Span("temporal.frame_noise", 0, 10, "standard deviations of the normalised crop"),  # [0, 0.02]
    Span("data.label_smoothing", 0, 0.5, "of each label's 0 to 1", high_open=True),  # [0.01]
    Span("data.augment_strength", 0, 1 / 0.7, "times the recipe's probabilities"),  # [0.5, 1]
    Span("data.blend_share", 0, 1, "of the fake draws"),  # [0.25, 0.5]
    Span("data.max_class_ratio", 1, 10**6, "to 1"),  # [10]
    Span("optimizer.lr", 0, 10, "the learning rate", flag="--lr", low_open=True),  # [1e-4, 0.01]
    Span("optimizer.momentum", 0, 1, "SGD's momentum", high_open=True),  # [0.9]
    Span("optimizer.weight_decay", 0, 1, "the weight decay"),  # [0, 0.01]
    Span("optimizer.clip_grad_norm", 0, 10**6, "the gradient norm; 0 or null: no clipping", NULL),  # [null, 1]
    Span("optimizer.sam_rho", 0, 10, "SAM's radius", low_open=True),  # [0.05]
    Span("schedule.power", 0, 100, "the poly schedule's exponent", low_open=True),  # [0.9]
    Span("schedule.min_lr", 0, 10, "the cosine floor"),  # [0, 1e-6]
    Span("schedule.decay_start", 0, 1, "of the schedule", high_open=True),  # [0.75]
    Span("training.reduce_on_plateau.factor", 0, 1, "the lr cut", low_open=True),  # where reduce_on_plateau is set
]


def span_problem(span: Span, value) -> str | None:
    """Why `value` is not in `span`'s range, or None."""
    if value in span.also:
        return None
    if number_within(value, span.low, span.high, span.low_open, span.high_open) is not None:  # 10**400: no
        return None
    others = " or ".join("null" if other is None else repr(other) for other in span.also)
    flag = f" ({span.flag})" if span.flag else ""
    return (
        f"{span.setting}{flag} must be {others + ' or ' if others else ''}a number in {span.interval()} "
        f"({span.what}), got {shown(value)}"
    )


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


def _origin(setting: str, origins: dict[str, str], default: str | None) -> str | None:
    """Where the value of `setting` came from: the flag or --set that gave it (or the mapping
    holding it), else `default` (the config file)."""
    section, key, *_ = setting.split(".")
    return origins.get(setting) or origins.get(f"{section}.{key}") or default


def settings_problem(
    config: dict,
    bounds: list[Bound] = BOUNDS,
    spans: list[Span] = SPANS,
    origins: dict[str, str] | None = None,
    source: str | None = None,
) -> str | None:
    """The first size, count or rate of a resolved config that is out of its range, or None; the
    problem is prefixed with where the value came from: `origins` ("section.key" -> "--epochs" or
    "--set section.key"), else `source` (the config file), if either is given."""
    checks = [(bound, bound_problem) for bound in bounds] + [(span, span_problem) for span in spans]
    for limit, problem_of in checks:
        found, value = _lookup(config, limit.setting)
        problem = problem_of(limit, value) if found else None
        if problem:
            origin = _origin(limit.setting, origins or {}, source)
            if origin and origin == limit.flag:
                problem = problem.replace(f" ({limit.flag})", "", 1)
            return f"{origin}: {problem}" if origin else problem
    found = _model_problem(config["model"])
    if found:  # what inference would refuse of a frame model, named as the settings above are
        setting, problem = found
        origin = _origin(setting, origins or {}, source)
        problem = f"{problem}: inference would refuse the checkpoint"
        return f"{origin}: {problem}" if origin else problem
    return None


def _model_problem(model: dict) -> tuple[str, str] | None:
    """(the setting, why) where inference would refuse a frame model's `encoder_args` or LoRA
    settings (training/models/checkpoint_model.py), or None."""
    if model.get("kind", "frame") != "frame":
        return None
    problem = model_config_problem({"encoder_args": model.get("encoder_args")})
    if problem:
        return "model.encoder_args", problem
    problem = lora_problem(model)
    if problem:
        keys = ("lora_rank", "lora_alpha", "lora_targets")
        return next((f"model.{key}" for key in keys if f"model.{key}`" in problem), "model.train_only"), problem
    return None
