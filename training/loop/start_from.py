"""Where a run starts: from other weights (`--init-from`), or from its own last state (`--resume`).

Fine-tuning starts a fresh run (epoch 0, no best score, a new optimizer and schedule) from the
weights of any of:

- a checkpoint of this project (a frame or a temporal model; `_best`, `_last` or an epoch's),
- a file of the original release (`{"epoch", "state_dict", "bce_best"}` with DDP's `module.` keys),
- a plain encoder state dict with timm's names (`conv_stem.weight`, ...), as timm or a hub saves it.

Every tensor whose name and shape fit the new model is loaded, the classifier head included; the
rest keep the model's fresh initialisation and are listed. This is the original's
`--resume X --from-zero --zero-score` (weights loaded with strict=False, epoch and best reset).

`--resume` continues a run exactly where its `_last` checkpoint left it (weights, optimizer,
schedule, scaler, random state, history): only a checkpoint of the same run, fold, config and data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from training.loop.checkpoints import FORMAT, restore_rng_state
from training.models.zoo import CheckpointError, load_weights, overflowing_tensors, read_checkpoint

logger = logging.getLogger("training.loop.start_from")

# Config keys a resumed run may change: they alter neither the model, the data nor the optimisation
# (the weights a run started from are replaced by its checkpoint's when it resumes).
RESUMABLE_CHANGES = {
    ("training", "epochs"),
    ("training", "keep_every"),
    ("data", "num_workers"),
    ("data", "val_batch_size"),
    ("model", "init_from"),
    ("model", "pretrained"),
    ("model", "pretrained_file"),
    ("temporal", "encoder_checkpoint"),
}


@dataclass
class WeightMatch:
    """How the tensors of a file map onto a model: by name, then by shape."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # name, file's shape, model's shape
    new: list[str] = field(default_factory=list)  # the model's tensors the file does not have
    unused: list[str] = field(default_factory=list)  # the file's tensors the model does not have

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.skipped:
            shapes = ", ".join(f"{name} {list(file)} vs {list(model)}" for name, file, model in self.skipped[:5])
            more = ", ..." if len(self.skipped) > 5 else ""
            parts.append(f"skipped {len(self.skipped)} of layers whose shape differs ({shapes}{more})")
        fresh = [name for name in self.new if name not in {s[0] for s in self.skipped}]
        if fresh:
            parts.append(f"newly initialised {len(fresh)} ({', '.join(fresh[:5])}{', ...' if len(fresh) > 5 else ''})")
        if self.unused:
            parts.append(f"{len(self.unused)} of the file's tensors have no place in the model")
        return "; ".join(parts)


def checkpoint_format(checkpoint: dict) -> str:
    """Which of the three formats a checkpoint read by `read_checkpoint` is in, in words."""
    if checkpoint.get("format") == FORMAT or "encoder" in checkpoint:
        return "a checkpoint of this project"
    names = [key.removeprefix("module.") for key in checkpoint["state_dict"]]
    if any(name.startswith("encoder.") for name in names):
        return "a classifier checkpoint in the original release's format"
    return "an encoder state dict"


def model_state_names(state_dict: dict) -> dict[str, torch.Tensor]:
    """The file's tensors under the names our classifiers use: DDP's `module.` dropped, and a bare
    encoder's (timm) names put under `encoder.`."""
    state = {key.removeprefix("module."): value for key, value in state_dict.items()}
    if any(name.startswith("encoder.") for name in state):
        return state
    return {f"encoder.{name}": value for name, value in state.items()}


def _layer(name: str) -> str:
    return name.rsplit(".", 1)[0]


def lora_names(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`source` with a LoRA-wrapped layer's weights under the wrapper's names: the file's
    `blocks.0.attn.qkv.weight` is the model's frozen `blocks.0.attn.qkv.base.weight`."""
    renamed = dict(source)
    for name in target:
        plain = name.replace(".base.", ".", 1)
        if ".base." in name and name not in source and plain in source:
            renamed[name] = renamed.pop(plain)
    return renamed


def match_weights(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> WeightMatch:
    """Which of `source`'s tensors go into `target` (a model's state dict): same name and shape, and
    a layer whole: where one tensor of a layer differs in shape (another head's weight), its
    siblings (the bias) are skipped with it rather than loaded half."""
    differs = {_layer(name) for name, tensor in target.items() if name in source and source[name].shape != tensor.shape}
    match = WeightMatch()
    for name, tensor in target.items():
        if name not in source:
            match.new.append(name)
        elif _layer(name) in differs:
            match.skipped.append((name, tuple(source[name].shape), tuple(tensor.shape)))
            match.new.append(name)
        else:
            match.loaded.append(name)
    match.unused = [name for name in source if name not in target]
    return match


def _non_finite(state: dict[str, torch.Tensor], names: list[str]) -> list[str]:
    return [name for name in names if state[name].is_floating_point() and not torch.isfinite(state[name]).all()]


def init_from(model: torch.nn.Module, path: str | Path, encoder: str | None = None) -> WeightMatch:
    """Load what fits of `path` into `model` (in place) and log what was loaded, skipped and left
    new. A file of which nothing fits, or whose weights are not finite, is a CheckpointError."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    kind = checkpoint_format(checkpoint)
    trained_on = checkpoint.get("encoder")
    if encoder and trained_on and trained_on != encoder:  # names would fit in part: a network of two
        raise CheckpointError(
            f"{path}: its encoder is {trained_on}, this run's is {encoder}: give --encoder {trained_on} (or a "
            "config of that encoder)"
        )
    target = model.state_dict()
    source = lora_names(model_state_names(checkpoint["state_dict"]), target)
    match = match_weights(source, target)
    if not match.loaded:
        raise CheckpointError(
            f"{path}: none of its {len(source)} tensors fits the model ({kind}; first names "
            f"{', '.join(list(source)[:3])}; the model's {', '.join(list(target)[:3])}): wrong --encoder?"
        )
    broken = _non_finite(source, match.loaded)
    if broken:
        raise CheckpointError(f"{path}: {len(broken)} tensors hold NaN or infinite values ({', '.join(broken[:3])})")
    overflowing = overflowing_tensors({name: source[name] for name in match.loaded}, target)
    if overflowing:  # finite as stored (1e300 in float64), infinite in the model's float32
        raise CheckpointError(
            f"{path}: {len(overflowing)} tensors too large for the model's number type, infinite once cast "
            f"({', '.join(overflowing[:3])})"
        )
    not_floating = [n for n in match.loaded if target[n].is_floating_point() and not source[n].is_floating_point()]
    if not_floating:
        raise CheckpointError(f"{path}: weights that are not floating point numbers ({', '.join(not_floating[:3])})")
    model.load_state_dict({**target, **{name: source[name] for name in match.loaded}}, strict=True)
    origin = f", run {checkpoint['run']} epoch {checkpoint['epoch']}" if "run" in checkpoint else ""
    logger.info("init from %s (%s%s): %s", path, kind, origin, match.summary())
    return match


def _flat(config: dict) -> dict[tuple[str, str], object]:
    return {(section, key): value for section, values in config.items() for key, value in values.items()}


def resume_problem(checkpoint: dict, run: str, fold: int, config: dict, data: dict) -> str | None:
    """Why `checkpoint` cannot be resumed by this run, or None: it must be the `_last` checkpoint
    of the same run, fold, config (but RESUMABLE_CHANGES) and data."""
    if "optimizer" not in checkpoint or "config" not in checkpoint:
        return f"it holds no training state ({checkpoint_format(checkpoint)}, not a run's _last checkpoint)"
    if checkpoint.get("run") != run:
        return f"it is a checkpoint of run {checkpoint.get('run')}, not of {run}"
    if checkpoint.get("fold") != fold:
        return f"it validated on fold {checkpoint.get('fold')}, this run on fold {fold}"
    stored, current = _flat(checkpoint["config"]), _flat(config)
    changed = sorted(
        f"{section}.{key}: {stored.get((section, key))!r} -> {current.get((section, key))!r}"
        for section, key in set(stored) | set(current)
        if (section, key) not in RESUMABLE_CHANGES and stored.get((section, key)) != current.get((section, key))
    )
    if changed:
        return f"its config differs ({'; '.join(changed[:4])}{'; ...' if len(changed) > 4 else ''})"
    stored_data = checkpoint.get("data")
    if stored_data and stored_data != data:
        differs = [key for key in sorted(set(stored_data) | set(data)) if stored_data.get(key) != data.get(key)]
        return f"it was trained on other data ({', '.join(differs)} differ: {stored_data} vs {data})"
    return None


def data_identity(folds_csv: Path) -> dict:
    """What names a run's data in its checkpoints: the folds file's SHA-256 (its videos, labels and
    folds) and its number of rows."""
    import hashlib

    content = folds_csv.read_bytes()
    return {"folds_sha256": hashlib.sha256(content).hexdigest(), "folds_rows": max(content.count(b"\n") - 1, 0)}


def resume_training(path: Path, checks: dict, model, optimizer, scheduler, scaler, progress) -> None:
    """Restore everything a checkpoint holds so that the run continues as if never stopped; a
    checkpoint of another run (`checks`: run, fold, config, data) is an InputError pointing to
    --init-from."""
    checkpoint = read_checkpoint(path)
    problem = resume_problem(checkpoint, **checks)
    if problem:
        raise CheckpointError(
            f"--resume {path}: {problem}. To start a new run from its weights, use --init-from {path}"
        )
    load_weights(model, checkpoint["state_dict"], str(path))
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    progress.plateau.update(checkpoint["plateau"])
    progress.next_epoch = checkpoint["epoch"] + 1
    progress.best, progress.best_epoch = checkpoint["best_score"], checkpoint["best_epoch"]
    progress.history = checkpoint["history"]
    restore_rng_state(checkpoint["rng"])
    logger.info(
        "resumed %s at epoch %d (best %.4f at epoch %d)", path, progress.next_epoch, progress.best, progress.best_epoch
    )
