"""SAM: two gradients per step, the second at w + rho * g / |g|; under a GradScaler too."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.loop.engine import train_one_epoch
from training.loop.sam import SAM
from training.loop.schedule import create_optimizer

SETTINGS = {"name": "sam_sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "sam_rho": 0.05}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        return self.fc(self.norm(self.conv(x)).relu().mean((2, 3)))


def batches(count: int = 2):
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randn(4, 3, 8, 8, generator=generator),
            "label": torch.tensor([[0.99], [0.01], [0.99], [0.01]]),
            "replaced": [0, 0, 0, 0],
        }
        for _ in range(count)
    ]


def expected_step(model: Tiny, batch: dict, lr: float, rho: float) -> dict:
    """One SAM step by hand: gradient at w, climb to w + e, gradient there, step from w."""
    from training.loop.losses import fake_real_bce

    reference = Tiny()
    reference.load_state_dict(model.state_dict())
    params = [p for p in reference.parameters()]
    loss = fake_real_bce(reference(batch["image"]), batch["label"])
    grads = torch.autograd.grad(loss, params)
    norm = torch.stack([g.norm() for g in grads]).norm()
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p.add_(rho * g / norm)
    reference.norm.momentum = 0.0
    second = torch.autograd.grad(fake_real_bce(reference(batch["image"]), batch["label"]), params)
    with torch.no_grad():
        for p, g, e in zip(params, second, grads, strict=True):
            p.sub_(rho * e / norm).sub_(lr * g)
    return {name: p.detach() for name, p in reference.named_parameters()}


@pytest.mark.parametrize("scaled", [False, True])
def test_a_sam_step_is_sgd_from_w_with_the_gradient_at_w_plus_e(scaled):
    torch.manual_seed(0)
    model = Tiny()
    batch = batches(1)[0]
    expected = expected_step(model, batch, SETTINGS["lr"], SETTINGS["sam_rho"])
    with torch.no_grad():  # batch-norm statistics after one pass of the batch at w
        once = model.norm.running_mean * 0.9 + 0.1 * model.conv(batch["image"]).mean((0, 2, 3))
    optimizer = create_optimizer([{"params": list(model.parameters())}], SETTINGS)
    assert isinstance(optimizer, SAM)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=scaled, init_scale=1024.0)
    settings = {"channels_last": False, "clip_grad_norm": None}
    train_one_epoch(model, [batch], optimizer, scheduler, scaler, torch.device("cpu"), settings, None, 0)
    for name, value in model.named_parameters():
        assert torch.allclose(value, expected[name], atol=1e-5), name
    # the second pass leaves batch-norm statistics alone: they moved once, by the first pass
    assert torch.allclose(model.norm.running_mean, once, atol=1e-5)


def test_restore_undoes_the_climb_and_state_is_the_base_optimizers():
    torch.manual_seed(1)
    model = Tiny()
    optimizer = create_optimizer([{"params": list(model.parameters())}], {**SETTINGS, "momentum": 0.9})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    from training.loop.losses import fake_real_bce

    batch = batches(1)[0]
    fake_real_bce(model(batch["image"]), batch["label"]).backward()
    assert optimizer.first_step()
    assert not torch.equal(model.conv.weight, before["conv.weight"])
    optimizer.restore()
    assert all(torch.allclose(p, before[k], atol=1e-7) for k, p in model.named_parameters())
    for p in model.parameters():
        p.grad = torch.full_like(p, float("inf"))
    assert optimizer.first_step() is False and not optimizer.perturbation  # an overflow moves nothing
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    with pytest.raises(ValueError, match="sam_rho must be positive"):
        create_optimizer([{"params": list(model.parameters())}], {**SETTINGS, "sam_rho": 0})


def _sam_step(model: Tiny, optimizer: SAM, gradient: float) -> None:
    """One SAM step with every gradient set by hand (at w and at w + e alike)."""
    for p in model.parameters():
        p.grad = torch.full_like(p, gradient)
    assert optimizer.first_step()
    for p in model.parameters():
        p.grad = torch.full_like(p, gradient)
    optimizer.step()


def test_a_checkpointed_sam_continues_as_if_never_stopped():
    """The base optimiser's momentum and learning rate survive state_dict -> torch.save -> load_state_dict,
    and a scheduler made after loading still reaches the base optimiser."""
    import io

    settings = {**SETTINGS, "momentum": 0.9}
    torch.manual_seed(2)
    running = Tiny()
    optimizer = create_optimizer([{"params": list(running.parameters())}], settings)
    _sam_step(running, optimizer, 1.0)
    _sam_step(running, optimizer, 0.5)
    for group in optimizer.param_groups:
        group["lr"] = 0.05  # where a schedule had brought it
    saved = io.BytesIO()
    torch.save(optimizer.state_dict(), saved)

    restored = Tiny()
    restored.load_state_dict(running.state_dict())
    reloaded = create_optimizer([{"params": list(restored.parameters())}], settings)
    saved.seek(0)
    reloaded.load_state_dict(torch.load(saved, weights_only=True))
    _sam_step(running, optimizer, 0.25)
    _sam_step(restored, reloaded, 0.25)
    for (name, p), q in zip(running.named_parameters(), restored.parameters(), strict=True):
        assert torch.equal(p, q), f"{name}: the momentum or the learning rate was lost in the checkpoint"

    frozen = {name: p.clone() for name, p in restored.named_parameters()}
    torch.optim.lr_scheduler.LambdaLR(reloaded, lambda step: 0.0)
    _sam_step(restored, reloaded, 0.25)
    for name, p in restored.named_parameters():
        assert torch.allclose(p, frozen[name], rtol=0, atol=1e-6), f"{name}: a scheduler's lr 0 did not reach it"
