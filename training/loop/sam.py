"""Sharpness-Aware Minimization (Foret et al., ICLR 2021), the optimiser Self-Blended Images trains with.

Each step takes two gradients: one at the weights w, then one at w + e, where e = rho * g / |g|
climbs to the worst point of a small ball around w; the base optimiser then steps from w with
the second gradient, which favours flat minima. `optimizer.name: sam_sgd` (or sam_adamw) with
`optimizer.sam_rho` picks it; training/loop/engine.py runs the two passes (under fp16 the first
gradient is unscaled by hand, the second by the GradScaler, which skips the step, and the
weights go back to w, when it overflows).
"""

from __future__ import annotations

import torch


class SAM(torch.optim.Optimizer):
    """SAM around `base`, sharing its parameter groups (so learning-rate schedules reach it)."""

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05, adaptive: bool = False):
        if rho <= 0:
            raise ValueError(f"optimizer.sam_rho must be positive, got {rho}")
        self.base = base
        self.rho, self.adaptive = rho, adaptive
        super().__init__(base.param_groups, {})
        self.param_groups = base.param_groups
        self.perturbation: dict[torch.Tensor, torch.Tensor] = {}

    @torch.no_grad()
    def first_step(self, inverse_scale: float = 1.0) -> bool:
        """Move the weights to w + e from the gradients now held (times `inverse_scale`, to undo a
        GradScaler's scale); False, and nothing moved, if those gradients are not finite."""
        grads = [
            (p, p.grad * inverse_scale) for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        if not grads:
            return False
        norms = [((p.abs() if self.adaptive else 1.0) * g).norm(2) for p, g in grads]
        norm = torch.stack([n.to(grads[0][1].device) for n in norms]).norm(2)
        if not torch.isfinite(norm):
            return False
        scale = self.rho / (norm + 1e-12)
        for p, g in grads:
            e = (p.pow(2) if self.adaptive else 1.0) * g * scale.to(p)
            p.add_(e)
            self.perturbation[p] = e
        return True

    @torch.no_grad()
    def restore(self) -> None:
        """Back to w (the weights before `first_step`)."""
        for p, e in self.perturbation.items():
            p.sub_(e)
        self.perturbation = {}

    @torch.no_grad()
    def step(self, closure=None):
        """The second step: back to w, then the base optimiser's step with the gradient taken at w + e."""
        if closure is not None:
            raise ValueError("SAM takes its two passes from the training loop, not a closure")
        self.restore()
        return self.base.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
