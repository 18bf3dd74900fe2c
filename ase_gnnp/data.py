"""Reading labelled structures from extxyz and turning them into training graphs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.io import read
from ase.stress import voigt_6_to_full_3x3_stress
from torch_geometric.data import Data

from ase_gnnp import keys as K
from ase_gnnp.graph import atoms_to_graph

__all__ = [
    "LABELS",
    "DataKeys",
    "config_types",
    "labelled_graph",
    "read_structures",
    "split_indices",
]


@dataclass(frozen=True)
class DataKeys:
    """Where reference labels live in an extxyz file.

    ``None`` (default) means the ASE calculator results stored in the file
    (``atoms.get_potential_energy()``, ``get_forces()``, ``get_stress()``,
    ``get_dipole_moment()``, ``get_charges()``; for the polarizability, which ASE has no
    name for, ``info["polarizability"]``); a string names an ``atoms.info`` key (energy,
    stress, dipole, polarizability) or ``atoms.arrays`` key (forces, charges). Set a key to
    ``""`` to train without that label. Dipoles are used for molecules only (a periodic
    cell has none).
    """

    energy: str | None = None
    forces: str | None = None
    stress: str | None = None
    dipole: str | None = None
    polarizability: str | None = None
    charges: str | None = None


LABELS = ("energy", "forces", "stress", "dipole", "polarizability", "charges")
_PER_ATOM = ("forces", "charges")


def _calc_result(atoms: Atoms, name: str):
    calc = atoms.calc
    return None if calc is None else calc.results.get(name)


def _label(atoms: Atoms, key: str | None, default: str, where: str):
    if key == "":
        return None
    if key is None:
        value = _calc_result(atoms, default)
        if value is None and default == "polarizability":
            value = atoms.info.get(default)
        return value
    store = atoms.arrays if where == "arrays" else atoms.info
    if key in store:
        return store[key]
    return _calc_result(atoms, key)


def read_structures(
    path: str | Path, keys: DataKeys = DataKeys(), require: Sequence[str] = ("energy",)
) -> list[Atoms]:
    """Read an extxyz file and check that every frame has the required labels.

    Parameters
    ----------
    path
        extxyz file.
    keys
        Label locations, see :class:`DataKeys`.
    require
        Labels (names in :data:`LABELS`) that every frame must have.
        A label whose key is named explicitly in ``keys`` is always required: asking for
        a key the file does not hold is an error, never a silently empty label.

    Raises
    ------
    ValueError
        If the file is missing or a frame lacks a required label; the message names the
        file, frame and key.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    frames = read(path, index=":", format="extxyz")
    named = [n for n in LABELS if getattr(keys, n)]
    required = list(dict.fromkeys([*require, *named]))
    for idx, atoms in enumerate(frames):
        labels = reference_labels(atoms, keys)
        for name in required:
            if labels[name] is None:
                key = getattr(keys, name)
                where = "calculator results" if key is None else f"key {key!r}"
                raise ValueError(
                    f"{path}: frame {idx} has no {name} label ({where}); set the "
                    f"{name} key to the name used in the file or leave {name} out"
                )
    return frames


def config_types(frames: Sequence[Atoms]) -> list[str]:
    """``info["config_type"]`` of each frame (``"all"`` where absent)."""
    return [str(a.info.get("config_type", "all")) for a in frames]


def select_frames(
    frames: Sequence[Atoms],
    types: Sequence[str] = (),
    elements: Sequence[str] = (),
    source: str = "the data",
) -> list[Atoms]:
    """Frames whose ``config_type`` is in ``types`` and whose elements are all in
    ``elements`` (an empty selector keeps everything).

    Raises
    ------
    ValueError
        If nothing is left; the message lists the config types found.
    """
    types, elements = set(types), set(elements)
    kept = [
        a for a, t in zip(frames, config_types(frames))
        if (not types or t in types)
        and (not elements or set(a.get_chemical_symbols()) <= elements)
    ]  # fmt: skip
    if not kept:
        raise ValueError(
            f"no structure in {source} has config_type in {sorted(types) or 'any'} and "
            f"only elements {sorted(elements) or 'any'}; config types there: "
            f"{sorted(set(config_types(frames)))}"
        )
    return kept


def with_calculator_labels(frames: Sequence[Atoms], keys: DataKeys = DataKeys()) -> list[Atoms]:
    """Copies of ``frames`` whose labels (found through ``keys``) are stored as ASE
    calculator results (the polarizability in ``info["polarizability"]``), so that the
    default :class:`DataKeys` reads them; labels a frame lacks stay absent."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for atoms in frames:
        labels = reference_labels(atoms, keys)
        copy = atoms.copy()
        polar = labels.pop("polarizability", None)
        if polar is not None:
            copy.info["polarizability"] = np.asarray(polar)
        results = {k: v for k, v in labels.items() if v is not None}
        copy.calc = SinglePointCalculator(copy, **results) if results else None
        out.append(copy)
    return out


def reference_labels(atoms: Atoms, keys: DataKeys = DataKeys()) -> dict:
    """Labels of a frame, ``None`` where absent: energy (eV), forces (n, 3) eV/Å, 3×3
    stress eV/Å^3, dipole (3,) e·Å, 3×3 polarizability e·Å²/V, charges (n,) e."""
    raw = {
        name: _label(atoms, getattr(keys, name), name, "arrays" if name in _PER_ATOM else "info")
        for name in LABELS
    }
    stress = raw["stress"]
    if stress is not None:
        stress = np.asarray(stress, dtype=float)
        stress = (
            voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress.reshape(3, 3)
        )
    shapes = {"dipole": (3,), "polarizability": (3, 3), "charges": (len(atoms),)}
    out = {
        "energy": None if raw["energy"] is None else float(raw["energy"]),
        "forces": None if raw["forces"] is None else np.asarray(raw["forces"], dtype=float),
        "stress": stress,
    }
    for name, shape in shapes.items():
        value = raw[name]
        if value is not None:
            value = np.asarray(value, dtype=float)
            if value.size != np.prod(shape):
                raise ValueError(f"{name} label must have shape {shape}, got {value.shape}")
            value = value.reshape(shape)
        out[name] = value
    return out


def labelled_graph(
    atoms: Atoms,
    cutoff: float,
    keys: DataKeys = DataKeys(),
    dtype: torch.dtype = torch.float32,
    weight: float = 1.0,
    atom_weight: np.ndarray | None = None,
) -> Data:
    """Graph with reference labels and masks (see :mod:`ase_gnnp.keys`).

    ``weight`` multiplies every loss term of the structure; ``atom_weight`` ((n,), default
    ones) multiplies, on top of it, each atom's force and charge error.
    """
    labels = reference_labels(atoms, keys)
    n = len(atoms)
    if atom_weight is None:
        atom_weight = np.ones(n)
    atom_weight = np.asarray(atom_weight, dtype=float)
    if atom_weight.shape != (n,) or not np.all(np.isfinite(atom_weight) & (atom_weight >= 0)):
        raise ValueError(
            f"atom_weight must hold {n} finite non-negative numbers, got shape {atom_weight.shape}"
        )
    energy, forces, stress = labels["energy"], labels["forces"], labels["stress"]
    dipole, polar, charges = labels["dipole"], labels["polarizability"], labels["charges"]
    molecule = not bool(np.any(atoms.pbc))
    targets = {
        K.REF_ENERGY: torch.tensor([0.0 if energy is None else energy], dtype=torch.float64),
        K.HAS_ENERGY: torch.tensor([energy is not None]),
        K.REF_FORCES: torch.as_tensor(np.zeros((n, 3)) if forces is None else forces, dtype=dtype),
        K.HAS_FORCES: torch.full((n,), forces is not None),
        K.REF_STRESS: torch.as_tensor(
            np.zeros((3, 3)) if stress is None else stress, dtype=dtype
        ).view(1, 3, 3),
        K.HAS_STRESS: torch.tensor([stress is not None and bool(np.all(atoms.pbc))]),
        K.WEIGHT: torch.tensor([float(weight)], dtype=dtype),
        K.ATOM_WEIGHT: torch.as_tensor(atom_weight, dtype=dtype),
        K.REF_DIPOLE: torch.as_tensor(np.zeros(3) if dipole is None else dipole, dtype=dtype).view(
            1, 3
        ),
        K.HAS_DIPOLE: torch.tensor([dipole is not None and molecule]),
        K.REF_POLARIZABILITY: torch.as_tensor(
            np.zeros((3, 3)) if polar is None else polar, dtype=dtype
        ).view(1, 3, 3),
        K.HAS_POLARIZABILITY: torch.tensor([polar is not None and molecule]),
        K.REF_CHARGES: torch.as_tensor(np.zeros(n) if charges is None else charges, dtype=dtype),
        K.HAS_CHARGES: torch.full((n,), charges is not None),
    }
    return atoms_to_graph(atoms, cutoff, dtype, targets)


def split_indices(
    groups: Sequence[str], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation split stratified by group (e.g. ``config_type``).

    Each group contributes ``round(val_fraction * size)`` structures to validation (at
    least one and at most ``size - 1`` for groups with two or more members when
    ``val_fraction > 0``), drawn with
    ``numpy.random.default_rng(seed)``.

    Returns
    -------
    train, val : numpy.ndarray of int
        Sorted indices into ``groups``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = defaultdict(list)
    for idx, group in enumerate(groups):
        members[str(group)].append(idx)
    val: list[int] = []
    for group in sorted(members):
        idx = np.array(members[group])
        k = int(round(val_fraction * len(idx)))
        if val_fraction > 0 and len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)  # each group keeps a training example
        val += rng.choice(idx, size=k, replace=False).tolist()
    val_arr = np.array(sorted(val), dtype=int)
    train_arr = np.setdiff1d(np.arange(len(groups)), val_arr)
    return train_arr, val_arr
