"""Coulomb energy of point charges through torch-pme, damped inside the short-range cutoff.

``E = k_e Σ_{i<j} q_i q_j [1 - u(r_ij / r_s)] / r_ij`` over all pairs and periodic images,
where ``u`` is the polynomial envelope of :class:`ase_gnnp.nn.radial.PolynomialCutoff`
(``u(0) = 1``, ``u(1) = 0``, smooth): beyond ``r_s`` (the model's ``coulomb_damping``,
by default the network's cutoff, never beyond it) it is the bare Coulomb energy, inside it
fades to zero, so the network and the Coulomb term do not both describe the short range.
The full ``1/r`` sum comes from torch-pme (Ewald or PME for cells periodic in three
directions, a direct sum for molecules); the damping is a pair sum over the network's own
edges.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchpme
from torch import nn
from vesin import NeighborList

from ase_gnnp.nn.radial import PolynomialCutoff

#: Coulomb constant e²/(4πε0) in eV·Å
COULOMB_EV_A = 14.399645478425668
#: vacuum permittivity ε0 = 1 / (4π k_e) in e/(V·Å) (= e²/(eV·Å))
EPSILON0 = 1.0 / (4.0 * math.pi * COULOMB_EV_A)


def ewald_parameters(real_cutoff: float, accuracy: float) -> tuple[float, float]:
    """Smearing σ (Å) and torch-pme's ``lr_wavelength`` (Å) for a sum of given accuracy.

    The real-space sum is truncated where ``erfc(r_c / (√2 σ)) = accuracy`` and the
    reciprocal sum where the Gaussian ``exp(-σ² k² / 2) = accuracy``. Both truncation
    errors are then of relative order ``accuracy`` (checked against the NaCl Madelung
    constant in the tests, since an automatic tuner can miss its target).
    """
    if not 0.0 < accuracy < 1.0:
        raise ValueError(f"accuracy must be in (0, 1), got {accuracy!r}")
    if not real_cutoff > 0.0:
        raise ValueError(f"real_cutoff must be positive (Å), got {real_cutoff!r}")
    x = float(torch.special.erfinv(torch.tensor(1.0 - accuracy, dtype=torch.float64)))
    smearing = real_cutoff / (math.sqrt(2.0) * x)
    k_max = math.sqrt(2.0 * math.log(1.0 / accuracy)) / smearing
    # torch-pme's Ewald sums k-vectors with integer indices up to ns/2 along each reciprocal
    # direction, ns = ceil(2 |a_i| / lr_wavelength): the sphere it covers has radius
    # pi / lr_wavelength (not 2 pi / lr_wavelength), hence pi here
    return smearing, math.pi / k_max


class Coulomb(nn.Module):
    """Damped Coulomb energy of atomic charges (a physics term of :class:`GNNPModel`).

    Parameters
    ----------
    short_range_cutoff
        ``r_s`` (Å) inside which the Coulomb interaction fades out; at most the network's
        cutoff, since the damping is summed over the network's edges.
    method
        ``"ewald"`` or ``"pme"`` for periodic cells (PME scales better beyond a few
        hundred atoms).
    accuracy
        Target relative accuracy of the periodic sum.
    real_cutoff
        Real-space cutoff (Å) of the periodic sum; the smearing follows from it and
        ``accuracy`` (:func:`ewald_parameters`).
    damping_p
        Exponent of the polynomial damping envelope.
    """

    def __init__(
        self,
        short_range_cutoff: float,
        method: str = "ewald",
        accuracy: float = 1e-6,
        real_cutoff: float = 8.0,
        damping_p: int = 6,
    ) -> None:
        super().__init__()
        if method not in ("ewald", "pme"):
            raise ValueError(f"method must be 'ewald' or 'pme', got {method!r}")
        self.method = method
        self.accuracy = accuracy
        self.real_cutoff = real_cutoff
        self.short_range_cutoff = short_range_cutoff
        self.smearing, self.lr_wavelength = ewald_parameters(real_cutoff, accuracy)
        self.damping = PolynomialCutoff(short_range_cutoff, damping_p)
        # torch-pme calculators per (kind, device, dtype), built once; not module state, so
        # they stay out of checkpoints and deep copies rebuild them lazily
        self._calculators: dict[tuple, torchpme.Calculator] = {}

    def set_method(self, method: str) -> None:
        """Switch the periodic sum between ``"ewald"`` and ``"pme"`` (same accuracy target;
        PME is faster beyond a few hundred atoms, see ``ase-gnnp bench large``)."""
        if method not in ("ewald", "pme"):
            raise ValueError(f"method must be 'ewald' or 'pme', got {method!r}")
        self.method = method
        self._calculators = {}

    def _calculator(self, periodic: bool, like: torch.Tensor) -> torchpme.Calculator:
        key = (periodic, like.device, like.dtype)
        if key not in self._calculators:
            if not periodic:
                calc = torchpme.Calculator(torchpme.CoulombPotential(prefactor=COULOMB_EV_A))
            else:
                potential = torchpme.CoulombPotential(
                    smearing=self.smearing, prefactor=COULOMB_EV_A
                )
                if self.method == "ewald":
                    calc = torchpme.EwaldCalculator(potential, lr_wavelength=self.lr_wavelength)
                else:  # mesh Nyquist wavenumber >= 4 k_max
                    calc = torchpme.PMECalculator(potential, mesh_spacing=self.lr_wavelength / 2)
            self._calculators[key] = calc.to(device=like.device, dtype=like.dtype)
        return self._calculators[key]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_calculators"] = {}
        return state

    def bare_energies(self, charges: torch.Tensor, pos: torch.Tensor, cell: torch.Tensor,
                      pbc: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """Undamped Coulomb energy per atom, ``q_i φ_i / 2`` (N,) in eV, of one structure.

        Parameters
        ----------
        charges : (N,) e
        pos : (N, 3) Å
        cell : (3, 3) Å, rows are lattice vectors
        pbc : (3,) bool; all True (Ewald/PME) or all False (direct sum)
        """
        n = pos.shape[0]
        if n < 2 and not bool(pbc.any()):
            return charges * 0.0
        if bool(pbc.all()):
            calculator = self._calculator(True, pos)
            nl = NeighborList(cutoff=self.real_cutoff, full_list=False)
            i, j, shifts = nl.compute(
                pos.detach().cpu().numpy().astype(np.float64),
                cell.detach().cpu().numpy().astype(np.float64),
                True,
                quantities="ijS",
            )
            pairs = torch.as_tensor(np.stack([i, j], axis=1).astype(np.int64), device=pos.device)
            shifts = torch.as_tensor(shifts, dtype=pos.dtype, device=pos.device)
            vectors = pos[pairs[:, 1]] - pos[pairs[:, 0]] + shifts @ cell
        elif not bool(pbc.any()):
            calculator = self._calculator(False, pos)
            pairs = torch.triu_indices(n, n, offset=1, device=pos.device).T
            vectors = pos[pairs[:, 1]] - pos[pairs[:, 0]]
            cell = torch.zeros_like(cell)
        else:
            raise ValueError(
                f"the Coulomb term needs a cell periodic in all three directions or in none, "
                f"got pbc={pbc.tolist()}; model a slab as a 3-D periodic cell with vacuum"
            )
        distances = torch.linalg.norm(vectors, dim=-1)
        potential = calculator(charges.unsqueeze(-1), cell, pos, pairs, distances)
        return charges * potential.squeeze(-1)  # torch-pme's potential already holds the 1/2

    def damping_energy(self, charges: torch.Tensor, edge_index: torch.Tensor,
                       lengths: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """Per-edge-sum ``-k_e/2 Σ q_i q_j u(r/r_s)/r`` over a full edge list, (N,) eV.

        Returned per centre atom so that batches can be summed per structure.
        """
        centre, neighbour = edge_index
        pair = charges[centre] * charges[neighbour] * self.damping(lengths) / lengths
        out = torch.zeros_like(charges)
        return out.index_add(0, centre, -0.5 * COULOMB_EV_A * pair)

    def forward(self, charges: torch.Tensor, pos: torch.Tensor, cell: torch.Tensor,
                pbc: torch.Tensor, ptr: torch.Tensor, edge_index: torch.Tensor,
                lengths: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """Damped Coulomb energy per atom, (N,) eV (sum per structure for its energy).

        Parameters
        ----------
        charges : (N,) e
        pos : (N, 3) Å
        cell : (B, 3, 3) Å
        pbc : (B, 3) bool
        ptr : (B + 1,) first atom of each structure
        edge_index, lengths : the network's full edge list (2, E) and edge lengths (E,) Å;
            every pair closer than ``short_range_cutoff`` must be in it.
        """
        bare = torch.cat(
            [
                self.bare_energies(
                    charges[ptr[g] : ptr[g + 1]], pos[ptr[g] : ptr[g + 1]], cell[g], pbc[g]
                )
                for g in range(cell.shape[0])
            ]
        )
        return bare + self.damping_energy(charges, edge_index, lengths)
