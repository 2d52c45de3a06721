"""The recipe's loss: mean of the BCE over the batch's fakes and the BCE over its reals."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _part_loss(losses: torch.Tensor, ohem_samples: int | None) -> torch.Tensor:
    if ohem_samples:
        losses = torch.topk(losses, k=min(ohem_samples, losses.numel()), sorted=False)[0]
    return losses.mean()


def fake_real_bce(logits: torch.Tensor, labels: torch.Tensor, ohem_samples: int | None = None) -> torch.Tensor:
    """(BCE over fakes + BCE over reals) / 2; a side absent from the batch counts as 0.

    With `ohem_samples`, each side keeps only its k hardest samples (online hard example mining).
    """
    losses = F.binary_cross_entropy_with_logits(logits.float().view(-1), labels.float().view(-1), reduction="none")
    fake = labels.view(-1) > 0.5
    zero = logits.sum() * 0.0  # keeps the graph when a side is missing
    fake_loss = _part_loss(losses[fake], ohem_samples) if fake.any() else zero
    real_loss = _part_loss(losses[~fake], ohem_samples) if (~fake).any() else zero
    return (fake_loss + real_loss) / 2
