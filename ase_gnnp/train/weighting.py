"""Loss weights from inverse element frequency (fair element weighting), per structure
(:func:`element_weights`) or per atom (:func:`atom_element_weights`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms

__all__ = [
    "SCOPES",
    "atom_element_weights",
    "atom_frequencies",
    "element_frequencies",
    "element_weights",
]


#: What an element weight acts on (:attr:`TrainConfig.element_weight_scope`): every
#: loss term of a structure holding the element (``"structure"``), the force and charge
#: errors of the element's atoms only (``"atom"``), or how often a structure holding
#: the element is drawn into a batch (``"sampling"``, the structure weight of
#: :func:`element_weights` as its drawing probability, with replacement).
SCOPES = ("structure", "atom", "sampling")


def _check(exponent: float, cap: float) -> None:
    if exponent < 0:
        raise ValueError(f"element weight exponent must be >= 0, got {exponent!r}")
    if not cap >= 1:
        raise ValueError(f"element weight cap must be >= 1, got {cap!r}")


def element_frequencies(frames: Sequence[Atoms]) -> dict[str, float]:
    """Share of structures that hold each element."""
    counts: dict[str, int] = {}
    for atoms in frames:
        for symbol in set(atoms.get_chemical_symbols()):
            counts[symbol] = counts.get(symbol, 0) + 1
    return {s: c / len(frames) for s, c in sorted(counts.items())}


def element_weights(
    frames: Sequence[Atoms],
    exponent: float,
    cap: float,
    reference: Sequence[Atoms] | None = None,
) -> np.ndarray:
    """Weights ``w_s = min(cap, max_{e ∈ s} (f_max / f_e)^exponent)``, normalised to mean 1.

    ``f_e`` is the share of ``reference`` structures (default: ``frames``) that hold
    element ``e`` and ``f_max`` the largest share, so a structure with a rare element
    weighs more, by at most ``cap`` before normalisation; ``exponent = 0`` gives ones.
    The normalisation (mean 1 over ``reference``) keeps the loss scale. Elements absent
    from ``reference`` count as the rarest.

    Returns
    -------
    ndarray (len(frames),)
    """
    _check(exponent, cap)
    reference = list(frames if reference is None else reference)
    freq = element_frequencies(reference)
    f_max, f_min = max(freq.values()), min(freq.values())

    def raw(atoms_list) -> np.ndarray:
        return np.array([
            min(cap, max((f_max / freq.get(s, f_min)) ** exponent
                         for s in set(a.get_chemical_symbols())))
            for a in atoms_list
        ])  # fmt: skip

    return raw(frames) / raw(reference).mean()


def atom_frequencies(frames: Sequence[Atoms]) -> dict[str, float]:
    """Share of atoms that are each element."""
    symbols, counts = np.unique(
        [s for atoms in frames for s in atoms.get_chemical_symbols()], return_counts=True
    )
    return {str(s): float(c) / counts.sum() for s, c in zip(symbols, counts)}


def atom_element_weights(
    frames: Sequence[Atoms],
    exponent: float,
    cap: float,
    reference: Sequence[Atoms] | None = None,
) -> list[np.ndarray]:
    """Per-atom weights ``w_i = min(cap, (f_max / f_{Z_i})^exponent)``, mean 1.

    ``f_e`` is the share of ``reference`` atoms (default: those of ``frames``) that are
    element ``e`` and ``f_max`` the largest share, so the atoms of a rare element weigh
    more, by at most ``cap`` before normalisation (mean 1 over the ``reference`` atoms);
    ``exponent = 0`` gives ones. Unlike :func:`element_weights`, the other atoms of a
    structure holding a rare element keep their weight. Elements absent from
    ``reference`` count as the rarest.

    Returns
    -------
    list of ndarray
        One (len(atoms),) array per structure of ``frames``.
    """
    _check(exponent, cap)
    reference = list(frames if reference is None else reference)
    freq = atom_frequencies(reference)
    f_max, f_min = max(freq.values()), min(freq.values())

    def raw(atoms: Atoms) -> np.ndarray:
        return np.array([min(cap, (f_max / freq.get(s, f_min)) ** exponent)
                         for s in atoms.get_chemical_symbols()])  # fmt: skip

    scale = np.concatenate([raw(a) for a in reference]).mean()
    return [raw(a) / scale for a in frames]
