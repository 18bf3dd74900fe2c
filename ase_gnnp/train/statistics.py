"""Data statistics that set the model's normalisation before training."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from ase_gnnp import keys as K
from ase_gnnp.elements import MAX_Z
from ase_gnnp.model import GNNPModel


def fit_atomic_reference(
    graphs: Sequence[Data],
    fixed: dict[int, float] | None = None,
    offsets: Sequence[float] | None = None,
) -> dict[int, float]:
    """Least-squares per-element reference energies ``E ≈ Σ_Z n_Z E0_Z``.

    Parameters
    ----------
    graphs
        Labelled graphs (those without an energy label are skipped).
    fixed
        Known reference energies (eV) kept as they are; only the other elements are fitted
        to the residual ``E - Σ n_Z E0_Z(fixed)``.
    offsets
        Energies (eV, one per graph) subtracted from the labels first, e.g. a pretrained
        model's predictions, so the fit absorbs only what the model misses.

    Returns
    -------
    dict
        Atomic number → reference energy in eV for every element in ``graphs``.
    """
    fixed = dict(fixed or {})
    counts, energies = [], []
    for k, g in enumerate(graphs):
        if not bool(g[K.HAS_ENERGY].all()):
            continue
        counts.append(np.bincount(g[K.ATOMIC_NUMBERS].numpy(), minlength=MAX_Z + 1))
        energies.append(float(g[K.REF_ENERGY].sum()) - (0.0 if offsets is None else offsets[k]))
    if not counts:
        return fixed
    counts_arr = np.array(counts, dtype=float)
    target = np.array(energies) - counts_arr @ np.array(
        [fixed.get(z, 0.0) for z in range(MAX_Z + 1)]
    )
    free = [z for z in np.nonzero(counts_arr.sum(0))[0] if int(z) not in fixed]
    result = dict(fixed)
    if free:
        solution, *_ = np.linalg.lstsq(counts_arr[:, free], target, rcond=None)
        result.update({int(z): float(e) for z, e in zip(free, solution)})
    return result


def fit_statistics(model: GNNPModel, graphs: Sequence[Data], refit_known: bool = True) -> dict:
    """Set ``avg_num_neighbors``, ``atomic_reference`` and ``scale`` of ``model`` from data.

    The scale is the RMS of the reference force components (NequIP's choice), or the std
    of the per-atom energy residual when no forces are given. The global ``shift`` stays 0:
    the least-squares reference energies already absorb the mean energy per atom.

    Parameters
    ----------
    refit_known
        If False, keep reference energies of elements the model already has fitted
        (continuing training on new data) and fit only new elements, to what the model's
        prediction misses (:func:`refit_new_references`); the neighbour count and scale are
        kept as well.
    """
    graphs = list(graphs)
    if not refit_known:
        e0 = refit_new_references(model, graphs)
        return {"atomic_reference": e0}
    e0 = fit_atomic_reference(graphs)
    stats = {"atomic_reference": e0}
    with torch.no_grad():
        for z, e in e0.items():
            model.atomic_reference[z] = e
            model.fitted_elements[z] = True
        if refit_known:
            n_edges = sum(g[K.EDGE_INDEX].shape[1] for g in graphs)
            n_atoms = sum(g.num_nodes for g in graphs)
            avg = max(n_edges / max(n_atoms, 1), 1.0)
            model.set_avg_num_neighbors(avg)
            forces = [g[K.REF_FORCES][g[K.HAS_FORCES]] for g in graphs]
            forces = torch.cat(forces) if forces else torch.zeros(0, 3)
            if forces.numel():
                scale = float(forces.double().pow(2).mean().sqrt())
            else:
                e0_table = np.array([e0.get(z, 0.0) for z in range(MAX_Z + 1)])
                residual = [
                    (float(g[K.REF_ENERGY].sum()) - e0_table[g[K.ATOMIC_NUMBERS].numpy()].sum())
                    / g.num_nodes
                    for g in graphs
                    if bool(g[K.HAS_ENERGY].all())
                ]
                scale = float(np.std(residual)) if len(residual) > 1 else 1.0
            model.scale.fill_(scale if scale > 0 else 1.0)
            stats.update(avg_num_neighbors=avg, scale=float(model.scale))
    return stats


def predicted_energies(
    model: GNNPModel, graphs: Sequence[Data], batch_size: int = 8
) -> list[float]:
    """Total energies (eV) ``model`` predicts for ``graphs``, without forces."""
    result: list[float] = []
    device = model.scale.device
    with torch.no_grad():
        for i in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(list(graphs[i : i + batch_size])).to(device)
            result += model(batch, forces=False)[K.ENERGY].double().cpu().tolist()
    return result


def refit_new_references(model: GNNPModel, graphs: Sequence[Data]) -> dict[int, float]:
    """Fit the reference energies of elements ``model`` has not seen, in place.

    Elements already fitted keep their values. The new elements' references (starting
    from 0) are the least-squares fit of what the model misses, ``E_label - E_model``, so
    a pretrained network's own contribution is kept, not counted twice.

    Returns
    -------
    dict
        Atomic number → reference energy (eV) of every fitted element in ``graphs`` (a new
        element found only in structures without an energy label stays unfitted).
    """
    graphs = list(graphs)
    ref = model.atomic_reference.detach().cpu()
    known = {int(z): float(ref[z]) for z in torch.nonzero(model.fitted_elements.cpu()).flatten()}
    present = {int(z) for g in graphs for z in g[K.ATOMIC_NUMBERS].unique().tolist()}
    new = sorted(present - set(known))
    if not new:
        return {z: known[z] for z in sorted(present)}
    with torch.no_grad():
        model.atomic_reference[new] = 0.0
    offsets = predicted_energies(model, graphs)
    delta = fit_atomic_reference(graphs, dict.fromkeys(known, 0.0), offsets)
    with torch.no_grad():
        for z in new:
            if z in delta:  # elements only in structures without energies stay unfitted
                model.atomic_reference[z] = delta[z]
                model.fitted_elements[z] = True
    fitted = set(known) | (set(new) & set(delta))
    return {z: float(model.atomic_reference[z]) for z in sorted(present & fitted)}
