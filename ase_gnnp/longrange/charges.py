"""Atomic charges from learned electronegativity and hardness (charge equilibration)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ase_gnnp.elements import MAX_Z, PAULING_ELECTRONEGATIVITY


class ChargeEquilibration(nn.Module):
    """Charges that minimise ``Σ_i (χ_i q_i + J_i q_i² / 2)`` at fixed total charge ``Q``.

    ``χ_i`` (eV/e) and ``J_i > 0`` (eV/e²) come from an MLP on the latent invariant
    features of each atom, so they depend on its environment (and, through the network,
    on an applied field), plus a fixed prior ``electronegativity_prior × χ_Pauling(Z_i)``.
    Energies and forces are unchanged when every charge flips sign, so without the prior
    a model trained on them alone can land on the mirrored solution (cations negative);
    the prior starts training in the physical basin, where the more electronegative
    element carries the negative charge. The minimiser is closed-form::

        q_i = (λ - χ_i) / J_i,   λ = (Q + Σ_j χ_j / J_j) / Σ_j 1 / J_j,

    so ``Σ_i q_i = Q`` holds exactly for every structure, whatever the weights.

    Parameters
    ----------
    in_features
        Width ``C`` of the latent features.
    hidden
        Hidden width of the MLP.
    min_hardness
        Lower bound of ``J`` (eV/e²), keeping charges finite.
    electronegativity_prior
        eV/e per Pauling unit of the fixed electronegativity prior (0 disables it).
        Elements without a Pauling value (He, Ne, Ar) get the mean of the table.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int = 32,
        min_hardness: float = 0.5,
        electronegativity_prior: float = 1.0,
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.SiLU(), nn.Linear(hidden, 2))
        self.min_hardness = float(min_hardness)
        known = [x for x in PAULING_ELECTRONEGATIVITY if not math.isnan(x)]
        mean = sum(known) / len(known)
        table = [0.0] + [mean if math.isnan(x) else x for x in PAULING_ELECTRONEGATIVITY]
        table += [mean] * (MAX_Z + 1 - len(table))
        prior = torch.tensor(table, dtype=torch.float64) * float(electronegativity_prior)
        # derived from constants, not learned: kept out of checkpoints
        self.register_buffer("chi_prior", prior, persistent=False)

    def forward(
        self,
        latent: torch.Tensor,
        batch: torch.Tensor,
        total_charge: torch.Tensor,
        numbers: torch.Tensor,
    ) -> torch.Tensor:
        """Charges (N,) in e.

        Parameters
        ----------
        latent : (N, C)
        numbers : (N,) atomic numbers
        batch : (N,) structure index of each atom
        total_charge : (B,) e
        """
        chi, raw = self.mlp(latent).unbind(-1)
        chi = chi + self.chi_prior.to(latent.dtype)[numbers]
        inv_j = 1.0 / (nn.functional.softplus(raw) + self.min_hardness)
        num_graphs = total_charge.shape[0]
        zeros = torch.zeros(num_graphs, dtype=latent.dtype, device=latent.device)
        sum_inv_j = zeros.index_add(0, batch, inv_j)
        sum_chi_j = zeros.index_add(0, batch, chi * inv_j)
        lam = (total_charge.to(latent.dtype) + sum_chi_j) / sum_inv_j
        return (lam[batch] - chi) * inv_j
