"""One training epoch and one validation pass, kept apart as in timm."""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict

import torch
from torch import nn
from tqdm import tqdm

from training.loop.distributed import all_gather_objects, is_main_process
from training.loop.losses import fake_real_bce
from training.loop.metrics import balanced_video_log_loss, video_means
from training.loop.sam import SAM

logger = logging.getLogger(__name__)


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images = batch["image"].to(device, non_blocking=True)
    if channels_last and images.dim() == 4:  # a temporal model's clips (5-d) are made channels-last per frame
        images = images.contiguous(memory_format=torch.channels_last)
    return images, batch["label"].to(device, non_blocking=True)


def batch_loss(model, images, labels, device: torch.device, amp_dtype, ohem_samples) -> torch.Tensor:
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        logits = model(images)
    return fake_real_bce(logits, labels, ohem_samples)


@contextlib.contextmanager
def running_stats_kept(model: nn.Module):
    """Batch-norm running statistics left as they are (SAM's second pass sees the same batch)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    settings: dict,
    amp_dtype: torch.dtype | None,
    epoch: int,
    max_batches: int | None = None,
    encoder_frozen: bool = False,
) -> dict:
    model.train()
    if encoder_frozen:  # fine-tuning warm-up: batch-norm statistics of the encoder stay as loaded
        getattr(model, "module", model).encoder.eval()
    total = min(len(loader), max_batches) if max_batches else len(loader)
    losses, replaced, started = [], 0, time.time()
    progress = tqdm(
        loader, total=total, desc=f"epoch {epoch}", disable=None if is_main_process() else True, leave=False
    )
    for step, batch in enumerate(progress):
        if step >= total:
            break
        images, labels = _to_device(batch, device, settings["channels_last"])
        loss_args = (model, images, labels, device, amp_dtype, settings.get("ohem_samples"))
        loss = batch_loss(*loss_args)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        inverse_scale = 1.0 / scaler.get_scale() if scaler.is_enabled() else 1.0
        if isinstance(optimizer, SAM) and optimizer.first_step(inverse_scale):  # SAM: a second pass at w + e
            optimizer.zero_grad(set_to_none=True)
            with running_stats_kept(model):
                scaler.scale(batch_loss(*loss_args)).backward()
        if settings["clip_grad_norm"]:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), settings["clip_grad_norm"])
        scaler.step(optimizer)
        if isinstance(optimizer, SAM):
            optimizer.restore()  # where the scaler skipped the step on an overflow
        scaler.update()
        scheduler.step()
        losses.append(loss.item())
        replaced += int(torch.as_tensor(batch["replaced"]).gt(0).sum())
        progress.set_postfix(
            loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", lr=f"{optimizer.param_groups[-1]['lr']:.2e}"
        )
    return {
        "train_loss": sum(losses) / max(1, len(losses)),
        "lr": optimizer.param_groups[-1]["lr"],
        "batches": len(losses),
        "replaced_crops": replaced,
        "train_seconds": time.time() - started,
    }


@torch.no_grad()
def validate(
    model: nn.Module, loader, device: torch.device, channels_last: bool, amp_dtype: torch.dtype | None
) -> dict:
    """The recipe's video-level score over the validation crops (gathered from every rank)."""
    model.eval()
    rows: dict[str, list] = defaultdict(list)
    for batch in tqdm(loader, desc="validate", disable=None if is_main_process() else True, leave=False):
        images, labels = _to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            probabilities = torch.sigmoid(model(images).float()).view(-1)
        rows["videos"] += list(batch["video"])
        rows["probabilities"] += probabilities.cpu().tolist()
        rows["labels"] += labels.view(-1).cpu().tolist()
    merged: dict[str, list] = defaultdict(list)
    for part in all_gather_objects(dict(rows)):
        for key, values in part.items():
            merged[key] += values
    per_video = video_means(merged["videos"], merged["probabilities"], merged["labels"])
    return {**balanced_video_log_loss(per_video), "per_video": per_video}
