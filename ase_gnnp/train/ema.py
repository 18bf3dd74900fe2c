"""Exponential moving average of model weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * weights`` after each step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
    averages are not dominated by the random initial weights. Buffers (statistics) are
    taken from the model when the EMA is created (data statistics are fitted before
    training) and not averaged. ``decay = 0`` makes the shadow a copy.

    :meth:`restart_uniform` turns it into a running mean of the weights from then on
    (stochastic weight averaging).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay!r}")
        self.decay = decay
        self.num_updates = 0
        #: running mean since :meth:`restart_uniform` (None: exponential average)
        self.uniform_count: int | None = None
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    def restart_uniform(self) -> None:
        """From the next :meth:`update` on, keep the plain mean of the weights passed to
        :meth:`update` (the first one replaces the shadow)."""
        self.uniform_count = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        decay = min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))
        if self.uniform_count is not None:
            self.uniform_count += 1
            decay = 1.0 - 1.0 / self.uniform_count
        for s, p in zip(self.shadow.parameters(), model.parameters()):
            s.lerp_(p.detach(), 1.0 - decay)

    def state_dict(self) -> dict:
        return {
            "num_updates": self.num_updates,
            "uniform_count": self.uniform_count,
            "shadow": self.shadow.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.num_updates = int(state["num_updates"])
        self.uniform_count = state.get("uniform_count")
        self.shadow.load_state_dict(state["shadow"])
