"""The E(3)-equivariant potential: energy model plus one-pass forces and stress."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn
from torch_geometric.data import Data

from ase_gnnp import keys as K
from ase_gnnp.config import ModelConfig
from ase_gnnp.elements import MAX_Z
from ase_gnnp.graph import batch_index, edge_vectors
from ase_gnnp.nn import ElementEmbedding, Interaction, RadialEmbedding
from ase_gnnp.nn.interaction import hidden_irreps

__all__ = ["GNNPModel"]


class GNNPModel(nn.Module):
    """Message-passing potential ``E = Σ_i [s · ε(h_i) + μ + E0(Z_i)]``.

    Element embedding → ``num_layers`` equivariant interactions (the last one keeps only
    scalars) → per-atom MLP readout ``ε``, scaled by ``s`` (``scale``) and shifted by
    ``μ`` (``shift``) and by per-element reference energies ``E0`` (least-squares fit on
    the training set, see :func:`ase_gnnp.train.statistics.fit_statistics`).

    Parameters
    ----------
    config
        Architecture, see :class:`ase_gnnp.config.ModelConfig`.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase_gnnp.graph import atoms_to_batch
    >>> model = GNNPModel(ModelConfig(cutoff=4.0))
    >>> out = model(atoms_to_batch([bulk("Si")], 4.0), stress=True)
    >>> out["forces"].shape, out["stress"].shape
    (torch.Size([2, 3]), torch.Size([1, 3, 3]))
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.embedding = ElementEmbedding(c)
        self.radial = RadialEmbedding(config.cutoff, config.num_radial, config.cutoff_p)
        irreps_sh = o3.Irreps.spherical_harmonics(config.lmax)
        self.spherical_harmonics = o3.SphericalHarmonics(
            irreps_sh, normalize=True, normalization="component"
        )
        irreps = o3.Irreps(f"{c}x0e")
        layers = []
        for k in range(config.num_layers):
            last = k == config.num_layers - 1
            irreps_out = o3.Irreps(f"{c}x0e") if last else hidden_irreps(c, config.lmax)
            layers.append(
                Interaction(irreps, irreps_out, irreps_sh, config.num_radial, config.radial_hidden)
            )
            irreps = layers[-1].irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout = nn.Sequential(
            nn.Linear(c, config.readout_hidden), nn.SiLU(), nn.Linear(config.readout_hidden, 1)
        )
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("shift", torch.tensor(0.0))
        self.register_buffer("atomic_reference", torch.zeros(MAX_Z + 1))
        # which elements had their reference energy fitted (seen in training)
        self.register_buffer("fitted_elements", torch.zeros(MAX_Z + 1, dtype=torch.bool))

    @property
    def cutoff(self) -> float:
        return self.config.cutoff

    @property
    def dtype(self) -> torch.dtype:
        return self.scale.dtype

    def set_avg_num_neighbors(self, value: float) -> None:
        for layer in self.layers:
            layer.avg_num_neighbors.fill_(float(value))

    def atomic_energies(
        self, data: Data, pos: torch.Tensor, cell: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom energies (N,) in eV and latent invariant features (N, C)."""
        vectors = edge_vectors(data, pos, cell)
        lengths = torch.linalg.norm(vectors, dim=-1)
        edge_sh = self.spherical_harmonics(vectors)
        edge_radial = self.radial(lengths)
        numbers = data[K.ATOMIC_NUMBERS]
        h = self.embedding(numbers)
        for layer in self.layers:
            h = layer(h, edge_sh, edge_radial, data[K.EDGE_INDEX])
        latent = h
        eps = self.readout(latent).squeeze(-1)
        energies = self.scale * eps + self.shift + self.atomic_reference[numbers]
        return energies, latent

    def forward(
        self,
        data: Data,
        forces: bool = True,
        stress: bool = False,
        create_graph: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energy and, in the same autograd pass, forces and stress.

        Parameters
        ----------
        data
            Graph or batch from :mod:`ase_gnnp.graph`.
        forces
            Compute ``-∂E/∂r`` (N, 3), eV/Å.
        stress
            Compute ``(1/V) ∂E/∂ε`` (B, 3, 3), eV/Å^3 (ASE sign), and the virial
            ``-∂E/∂ε`` (eV). Stress is zero for graphs not periodic in all directions.
        create_graph
            Keep the graph of the derivatives (training on forces/stress).

        Returns
        -------
        dict
            ``energy`` (B,), ``energies`` (N,), ``latent`` (N, C), and ``forces``,
            ``stress``, ``virial`` when asked.
        """
        batch = batch_index(data)
        num_graphs = data[K.CELL].shape[0]
        pos = data[K.POSITIONS]
        cell = data[K.CELL]
        inputs = []
        if forces:
            pos = pos.detach().requires_grad_(True)
            inputs.append(pos)
        if stress:
            strain = torch.zeros_like(cell, requires_grad=True)
            inputs.append(strain)
            sym = 0.5 * (strain + strain.transpose(1, 2))
            pos = pos + torch.einsum("na,nab->nb", pos, sym[batch])
            cell = cell + torch.bmm(cell, sym)
        energies, latent = self.atomic_energies(data, pos, cell)
        energy = torch.zeros(num_graphs, dtype=energies.dtype, device=energies.device)
        energy = energy.index_add(0, batch, energies)
        out = {K.ENERGY: energy, K.ATOMIC_ENERGIES: energies, K.LATENT: latent}
        if inputs:
            grads = torch.autograd.grad(
                energy.sum(), inputs, create_graph=create_graph, allow_unused=True
            )
            grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
            if forces:
                out[K.FORCES] = -grads[0]
            if stress:
                dE_dstrain = grads[-1]
                out[K.VIRIAL] = -dE_dstrain
                # stress is defined for cells periodic in 3-D; other graphs of a batch get 0
                periodic = data[K.PBC].all(dim=1).view(-1, 1, 1)
                volume = torch.linalg.det(data[K.CELL]).abs().view(-1, 1, 1)
                safe = torch.where(periodic, volume, torch.ones_like(volume))
                out[K.STRESS] = torch.where(periodic, dE_dstrain / safe, 0.0)
        return out
