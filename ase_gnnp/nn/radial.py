"""Radial basis: Bessel functions times a smooth polynomial cutoff envelope."""

from __future__ import annotations

import math

import torch
from torch import nn


class PolynomialCutoff(nn.Module):
    """Envelope ``u(r / r_c)`` of Klicpera et al. (DimeNet) with ``p`` as in NequIP.

    ``u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` for ``x < 1`` and 0
    beyond, so the energy and its first two derivatives go to zero at the cutoff.
    """

    def __init__(self, cutoff: float, p: int = 6) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = r / self.cutoff
        out = (
            1.0
            - 0.5 * (p + 1) * (p + 2) * x.pow(p)
            + p * (p + 2) * x.pow(p + 1)
            - 0.5 * p * (p + 1) * x.pow(p + 2)
        )
        return out * (x < 1.0)


class BesselBasis(nn.Module):
    """``sqrt(2 / r_c) sin(n π r / r_c) / r`` for ``n = 1..num_basis`` (trainable frequencies)."""

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = True) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        freqs = math.pi * torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype())
        self.freqs = nn.Parameter(freqs, requires_grad=trainable)
        self.prefactor = math.sqrt(2.0 / self.cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r``: (E,) Å → (E, num_basis)."""
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.freqs * r / self.cutoff) / r


class RadialEmbedding(nn.Module):
    """Bessel basis times cutoff envelope: (E,) distances → (E, num_basis) features."""

    def __init__(self, cutoff: float, num_basis: int = 8, p: int = 6) -> None:
        super().__init__()
        self.basis = BesselBasis(cutoff, num_basis)
        self.envelope = PolynomialCutoff(cutoff, p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.basis(r) * self.envelope(r).unsqueeze(-1)
