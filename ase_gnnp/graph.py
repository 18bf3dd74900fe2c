"""ASE ``Atoms`` → PyG ``Data``/``Batch`` with periodic edges from vesin.

Edges store integer lattice shifts, not vectors: the model rebuilds each edge vector as
``r_j - r_i + S @ cell`` so that autograd reaches both positions and the cell (forces and
stress in one pass).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from torch_geometric.data import Batch, Data
from vesin import NeighborList

from ase_gnnp import keys as K
from ase_gnnp.elements import check_atomic_numbers

__all__ = [
    "atoms_to_batch", "atoms_to_graph", "batch_index", "check_atoms", "edge_vectors",
    "neighbor_list",
]  # fmt: skip

#: distance (Å) below which two atoms (or an atom and its image) count as overlapping
MIN_DISTANCE = 1e-4


def check_atoms(atoms: Atoms) -> None:
    """Raise a clear error for input no model can handle.

    Raises
    ------
    TypeError
        If ``atoms`` is not an ``ase.Atoms``.
    ValueError
        For an element outside the descriptor table, non-finite positions or cell, or a
        periodic direction whose cell vector is zero.
    """
    if not isinstance(atoms, Atoms):
        raise TypeError(f"expected ase.Atoms, got {type(atoms).__name__}")
    check_atomic_numbers(atoms.numbers)
    pos = atoms.positions
    if not np.all(np.isfinite(pos)):
        bad = np.unique(np.nonzero(~np.isfinite(pos))[0])
        raise ValueError(f"positions must be finite; atoms {bad[:10].tolist()} have NaN or inf")
    cell = atoms.cell.array
    if not np.all(np.isfinite(cell)):
        raise ValueError(f"cell must be finite, got {cell.tolist()}")
    for axis in np.nonzero(atoms.pbc)[0]:
        if np.linalg.norm(cell[axis]) < 1e-8:
            raise ValueError(
                f"pbc is True along axis {axis} but cell vector {axis} is zero: "
                f"set a cell or pbc=False there"
            )


def periodic_box(atoms: Atoms) -> np.ndarray:
    """Cell (3, 3) in Å with the rows of non-periodic directions set to zero."""
    return np.where(np.asarray(atoms.pbc, dtype=bool)[:, None], atoms.cell.array, 0.0)


def neighbor_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Full neighbour list within ``cutoff`` (Å) from vesin.

    Raises
    ------
    ValueError
        If two atoms (or an atom and a periodic image) are closer than :data:`MIN_DISTANCE`.

    Returns
    -------
    edge_index : numpy.ndarray, shape (2, E), int64
        Centre atom ``i`` in row 0 and neighbour ``j`` in row 1, both directions stored.
    shifts : numpy.ndarray, shape (E, 3), int64
        Lattice shifts ``S`` with ``r_ij = r_j - r_i + S @ cell``.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    box = periodic_box(atoms)
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts, dist = nl.compute(atoms.positions, box, pbc.tolist(), quantities="ijSd")
    close = np.nonzero(dist < MIN_DISTANCE)[0]
    if close.size:
        k = close[0]
        raise ValueError(
            f"atoms {int(i[k])} and {int(j[k])} (image shift {shifts[k].tolist()}) are "
            f"{dist[k]:.2e} Å apart: overlapping atoms have no defined energy"
        )
    edge_index = np.stack([i.astype(np.int64), j.astype(np.int64)])
    return edge_index, shifts.astype(np.int64)


def total_charge(atoms: Atoms) -> float:
    """``atoms.info["charge"]`` (e, default 0), checked to be an integer the atoms can carry."""
    value = atoms.info.get("charge", 0)
    try:
        charge = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"atoms.info['charge'] must be a number (e), got {value!r}") from None
    if not np.isfinite(charge) or abs(charge - round(charge)) > 1e-6:
        raise ValueError(f"atoms.info['charge'] must be an integer number of e, got {value!r}")
    electrons = int(atoms.numbers.sum()) - round(charge)
    if electrons < 0:
        raise ValueError(
            f"atoms.info['charge'] = {value!r} does not fit the elements: "
            f"{atoms.get_chemical_formula()} has only {int(atoms.numbers.sum())} electrons"
        )
    return charge


def electric_field(atoms: Atoms, field=None) -> np.ndarray:
    """Uniform field (3,) in V/Å: ``field`` if given, else ``atoms.info["electric_field"]``."""
    source = "field" if field is not None else "atoms.info['electric_field']"
    value = field if field is not None else atoms.info.get("electric_field", (0.0, 0.0, 0.0))
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{source} must be 3 numbers (V/Å), got {value!r}") from None
    if array.shape != (3,):
        raise ValueError(f"{source} must have shape (3,) (V/Å), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{source} must be finite, got {array.tolist()}")
    return array


def atoms_to_graph(
    atoms: Atoms,
    cutoff: float,
    dtype: torch.dtype = torch.float32,
    targets: dict[str, object] | None = None,
    field=None,
) -> Data:
    """Build a graph for one structure.

    Parameters
    ----------
    atoms
        Molecule (no cell), slab, wire or bulk; mixed PBC and cells smaller than the
        cutoff are handled (vesin includes all periodic images).
    cutoff
        Radial cutoff in Å.
    dtype
        Floating dtype of positions and cell.
    targets
        Optional reference labels (keys from :mod:`ase_gnnp.keys`), already tensors.
    field
        Uniform electric field (3,) in V/Å overriding ``atoms.info["electric_field"]``.

    The total charge (``atoms.info["charge"]``, default 0) and the field are stored as
    :data:`~ase_gnnp.keys.TOTAL_CHARGE` and :data:`~ase_gnnp.keys.FIELD`.
    """
    check_atoms(atoms)
    charge = total_charge(atoms)
    efield = electric_field(atoms, field)
    edge_index, shifts = neighbor_list(atoms, cutoff)
    pbc = torch.as_tensor(np.asarray(atoms.pbc, dtype=bool)).view(1, 3)
    cell = periodic_box(atoms)
    data = Data(
        pos=torch.as_tensor(atoms.positions, dtype=dtype),
        numbers=torch.as_tensor(atoms.numbers, dtype=torch.long),
        cell=torch.as_tensor(cell, dtype=dtype).view(1, 3, 3),
        pbc=pbc,
        edge_index=torch.as_tensor(edge_index),
        shifts=torch.as_tensor(shifts, dtype=dtype),
        natoms=torch.tensor([len(atoms)]),
        total_charge=torch.tensor([charge], dtype=dtype),
        electric_field=torch.as_tensor(efield, dtype=dtype).view(1, 3),
    )
    data.num_nodes = len(atoms)
    for key, value in (targets or {}).items():
        data[key] = value
    return data


def atoms_to_batch(
    atoms_list: Sequence[Atoms], cutoff: float, dtype: torch.dtype = torch.float32
) -> Batch:
    """Batch several structures into one disconnected graph (see :func:`atoms_to_graph`)."""
    if isinstance(atoms_list, Atoms):
        atoms_list = [atoms_list]
    return Batch.from_data_list([atoms_to_graph(a, cutoff, dtype) for a in atoms_list])


def batch_index(data: Data) -> torch.Tensor:
    """Structure index of each atom (N,): ``data.batch`` of a Batch, zeros for one graph."""
    batch = getattr(data, K.BATCH, None)
    return torch.zeros_like(data[K.ATOMIC_NUMBERS]) if batch is None else batch


def edge_vectors(data: Data, pos: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """Edge vectors ``r_j - r_i + S @ cell`` (E, 3) in Å, differentiable in pos and cell."""
    i, j = data[K.EDGE_INDEX]
    edge_cell = cell[batch_index(data)[i]]  # (E, 3, 3)
    offsets = torch.einsum("ea,eab->eb", data[K.EDGE_SHIFTS], edge_cell)
    return pos[j] - pos[i] + offsets
