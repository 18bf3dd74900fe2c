"""Element embedding from physical descriptors plus a learned per-element part."""

from __future__ import annotations

import torch
from torch import nn

from ase_gnnp.elements import descriptor_table


class ElementEmbedding(nn.Module):
    """Map atomic numbers to invariant features.

    ``h_Z = MLP(d_Z) + e_Z`` where ``d_Z`` is the standardized descriptor row of
    :func:`ase_gnnp.elements.descriptor_table` (period, group, electronegativity, covalent
    radius, ...) and ``e_Z`` a learned vector initialised to zero. An element never seen in
    training keeps ``e_Z = 0`` and is embedded by its descriptors alone (Ge for a Si model
    lands next to Si, not at a random point).

    Parameters
    ----------
    num_features
        Output channels ``C``.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        table = torch.as_tensor(descriptor_table(), dtype=torch.get_default_dtype())
        self.register_buffer("descriptors", table, persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(table.shape[1], num_features),
            nn.SiLU(),
            nn.Linear(num_features, num_features),
        )
        self.learned = nn.Embedding(table.shape[0], num_features)
        nn.init.zeros_(self.learned.weight)

    def forward(self, numbers: torch.Tensor) -> torch.Tensor:
        """``numbers``: (N,) int64 → (N, C)."""
        desc = self.descriptors.to(self.learned.weight.dtype)[numbers]
        return self.mlp(desc) + self.learned(numbers)


#: field strength (V/Å) that maps to a unit l=1 input; fields of interest are <= ~0.5 V/Å
FIELD_UNIT = 0.5


class FieldEmbedding(nn.Module):
    """l=1 node features ``C x 1o`` from a uniform electric field.

    ``v_{i,c} = w_c(h_i) 𝓔 / FIELD_UNIT``: each channel is the field scaled by a learned
    function of the atom's scalar embedding, so the field enters the network as a polar
    vector that rotates with the structure and the first interaction can couple it to the
    geometry (electronic polarization).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, channels)

    def forward(self, h: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        """(N, C) scalars and (N, 3) field in V/Å -> (N, 3C) in e3nn's ``C x 1o`` layout."""
        return (self.linear(h).unsqueeze(-1) * (field / FIELD_UNIT).unsqueeze(1)).flatten(1)
