"""Weighted energy / force / stress loss and error metrics."""

from __future__ import annotations

import torch
from torch_geometric.data import Data

from ase_gnnp import keys as K
from ase_gnnp.graph import batch_index

#: How a loss term's weighted sum is divided (:attr:`TrainConfig.loss_normalization`):
#: ``"labels"`` by the number of labelled structures (atoms for per-atom terms), so a
#: structure weight multiplies that structure's share of the loss; ``"weights"`` by the
#: sum of the batch's weights, so weights only set shares within a batch (a weight ``w``
#: among ``B - 1`` structures of weight 1 raises a share at most ``B``-fold, not ``w``-fold).
NORMALIZATIONS = ("labels", "weights")


#: Penalty applied to each residual component (:attr:`TrainConfig.loss`): ``"mse"``, the
#: square; ``"huber"``, twice the Huber function, ``x²`` for ``|x| <= δ`` and
#: ``2 δ |x| - δ²`` beyond, so small errors weigh as in the MSE and outliers only linearly.
PENALTIES = ("mse", "huber")


def penalty(residual: torch.Tensor, huber_delta: float | None = None) -> torch.Tensor:
    """Elementwise ``residual²``, or with ``huber_delta`` (in the residual's unit) twice the
    Huber function of the residual (see :data:`PENALTIES`)."""
    if huber_delta is None:
        return residual.pow(2)
    return 2.0 * torch.nn.functional.huber_loss(
        residual, torch.zeros_like(residual), reduction="none", delta=huber_delta
    )


def check_normalization(value: str, name: str = "normalization") -> None:
    """``ValueError`` naming ``name`` unless ``value`` is one of :data:`NORMALIZATIONS`."""
    if value not in NORMALIZATIONS:
        raise ValueError(f"{name} must be one of {NORMALIZATIONS}, got {value!r}")


def _masked_mean(
    x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, normalization: str = "labels"
) -> torch.Tensor:
    """``Σ w m x / Σ m`` (``"labels"``) or ``Σ w m x / Σ w m`` (``"weights"``)."""
    w = weight * mask
    # where, not a product: a masked-out inf/nan (no label) must not poison the sum
    masked = torch.where(w > 0, x * w, torch.zeros_like(x))
    total = mask.to(w.dtype).sum() if normalization == "labels" else w.sum()
    return masked.sum() / total if total > 0 else masked.sum()


def grouped(data: Data) -> torch.Tensor:
    """(B,) bool: structures in a relative-energy group that have an energy label."""
    return (data[K.ENERGY_GROUP] >= 0) & data[K.HAS_ENERGY].bool()


def _relative_energy(
    energy: torch.Tensor, data: Data, weight: torch.Tensor, normalization: str
) -> torch.Tensor:
    # float64: total energies of large cells leave float32 a resolution of ~0.2 meV
    residual = energy.to(torch.float64) - data[K.REF_ENERGY].to(torch.float64)
    member = grouped(data)
    # groups renumbered within the batch (ungrouped structures in a slot of their own)
    _, slot = torch.unique(torch.where(member, data[K.ENERGY_GROUP], -1), return_inverse=True)
    count = torch.zeros(int(slot.max()) + 1, dtype=torch.float64).index_add_(
        0, slot, member.to(torch.float64)
    )
    total = torch.zeros_like(count).index_add_(0, slot, torch.where(member, residual, 0.0))
    centred = residual - total[slot] / count[slot].clamp_min(1)
    paired = member & (count[slot] >= 2)
    return _masked_mean(centred.pow(2).to(energy.dtype), weight, paired, normalization)


def loss_terms(
    out: dict, data: Data, normalization: str = "labels", huber_delta: float | None = None
) -> dict[str, torch.Tensor]:
    """Per-term mean squared errors (or mean Huber penalties, :func:`penalty`, with
    ``huber_delta``: eV per atom, eV/Å, eV/Å³, e·Å, ... in each term's unit), weighted
    by the structure weights (:data:`K.WEIGHT`; per-atom terms also by
    :data:`K.ATOM_WEIGHT` where the graphs carry it) over the labelled structures (atoms)
    and divided as ``normalization`` says (:data:`NORMALIZATIONS`).

    Returns
    -------
    dict
        ``energy`` (per-atom energy MSE, eV²), ``forces`` (MSE per component, (eV/Å)²),
        ``stress`` (MSE per component, (eV/Å³)²), and where the model gives them,
        ``dipole`` ((e·Å)²), ``polarizability`` ((e·Å²/V)²), ``charges`` (e²); where the
        graphs carry relative-energy groups (:data:`ase_gnnp.keys.ENERGY_GROUP`),
        ``relative_energy``: the MSE of each grouped structure's total-energy residual
        ``E_model - E_ref`` minus the mean residual of its group's members in the batch
        (eV², over structures whose group has two or more members in the batch), so energy
        differences within a group are fitted whatever the group's common offset.
    """
    check_normalization(normalization)
    natoms = data[K.NUM_ATOMS].to(out[K.ENERGY].dtype)
    weight = data[K.WEIGHT]
    atom_weight = weight[batch_index(data)]
    if K.ATOM_WEIGHT in data:
        atom_weight = atom_weight * data[K.ATOM_WEIGHT]

    def mean(x: torch.Tensor, w: torch.Tensor, mask_key: str) -> torch.Tensor:
        return _masked_mean(x, w, data[mask_key], normalization)

    terms = {}
    e_err = (out[K.ENERGY] - data[K.REF_ENERGY].to(out[K.ENERGY].dtype)) / natoms
    terms["energy"] = mean(penalty(e_err, huber_delta), weight, K.HAS_ENERGY)
    if K.ENERGY_GROUP in data:
        terms["relative_energy"] = _relative_energy(out[K.ENERGY], data, weight, normalization)
    if K.FORCES in out:
        f_err = penalty(out[K.FORCES] - data[K.REF_FORCES], huber_delta).mean(-1)
        terms["forces"] = mean(f_err, atom_weight, K.HAS_FORCES)
    if K.STRESS in out:
        s_err = penalty(out[K.STRESS] - data[K.REF_STRESS], huber_delta).mean((-1, -2))
        terms["stress"] = mean(s_err, weight, K.HAS_STRESS)
    if K.DIPOLE in out and K.REF_DIPOLE in data:
        d_err = penalty(out[K.DIPOLE] - data[K.REF_DIPOLE], huber_delta).mean(-1)
        terms["dipole"] = mean(d_err, weight, K.HAS_DIPOLE)
    if K.POLARIZABILITY in out and K.REF_POLARIZABILITY in data:
        p_err = penalty(out[K.POLARIZABILITY] - data[K.REF_POLARIZABILITY], huber_delta)
        p_err = p_err.mean((-1, -2))
        terms["polarizability"] = mean(p_err, weight, K.HAS_POLARIZABILITY)
    if K.CHARGES in out and K.REF_CHARGES in data:
        q_err = penalty(out[K.CHARGES] - data[K.REF_CHARGES], huber_delta)
        terms["charges"] = mean(q_err, atom_weight, K.HAS_CHARGES)
    return terms


def total_loss(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    return sum(weights[name] * value for name, value in terms.items())
