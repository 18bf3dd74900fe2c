"""Loss weights from inverse frequency: of elements (fair element weighting), per structure
(:func:`element_weights`) or per atom (:func:`atom_element_weights`), and of config types
(:func:`config_type_balance`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms

__all__ = [
    "SCOPES",
    "RepeatSampler",
    "atom_element_weights",
    "atom_frequencies",
    "config_type_balance",
    "element_frequencies",
    "element_weights",
    "raw_element_weights",
    "repeat_counts",
]


#: What an element weight acts on (:attr:`TrainConfig.element_weight_scope`): every
#: loss term of a structure holding the element (``"structure"``), the force and charge
#: errors of the element's atoms only (``"atom"``), or how often a structure holding
#: the element is drawn into a batch (``"sampling"``, the structure weight of
#: :func:`element_weights` as its drawing probability, with replacement), or how many
#: times it comes in one epoch (``"repeat"``: every structure once, and a structure of
#: raw weight ``w`` ``w`` times on average, so the epoch grows; :func:`repeat_counts`).
SCOPES = ("structure", "atom", "sampling", "repeat")


def _check(exponent: float, cap: float) -> None:
    if exponent < 0:
        raise ValueError(f"element weight exponent must be >= 0, got {exponent!r}")
    if not cap >= 1:
        raise ValueError(f"element weight cap must be >= 1, got {cap!r}")


def config_type_balance(types: Sequence[str], exponent: float) -> dict[str, float]:
    """Loss weight per config type ``w_t = (n_max / n_t)^exponent``, normalised so that the
    structures of ``types`` weigh 1 on average.

    Parameters
    ----------
    types
        The config type of every training structure (:func:`ase_gnnp.data.config_types`).
    exponent
        0 gives every type weight 1; 1 gives every type the same total weight; between,
        the rare types (a few surfaces among many MD snapshots) gain less.

    Returns
    -------
    dict
        Config type -> weight; a type that ``types`` lacks is not in it.
    """
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) or exponent < 0:
        raise ValueError(f"config_type_balance must be a number >= 0, got {exponent!r}")
    names, counts = np.unique(np.asarray(list(types), dtype=str), return_counts=True)
    if len(names) == 0:
        return {}
    raw = (counts.max() / counts) ** float(exponent)
    scale = (raw * counts).sum() / counts.sum()
    return {str(t): float(w / scale) for t, w in zip(names, raw)}


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
    reference = list(frames if reference is None else reference)
    raw = raw_element_weights(frames, exponent, cap, reference)
    return raw / raw_element_weights(reference, exponent, cap, reference).mean()


def raw_element_weights(
    frames: Sequence[Atoms],
    exponent: float,
    cap: float,
    reference: Sequence[Atoms] | None = None,
) -> np.ndarray:
    """:func:`element_weights` before the normalisation: ``w_s = min(cap, max_{e ∈ s}
    (f_max / f_e)^exponent)``, each in ``[1, cap]`` (1 for structures of the most common
    element alone).

    Returns
    -------
    ndarray (len(frames),)
    """
    _check(exponent, cap)
    freq = element_frequencies(list(frames if reference is None else reference))
    f_max, f_min = max(freq.values()), min(freq.values())
    return np.array([
        min(cap, max((f_max / freq.get(s, f_min)) ** exponent
                     for s in set(a.get_chemical_symbols())))
        for a in frames
    ])  # fmt: skip


def repeat_counts(weights: np.ndarray, generator: np.random.Generator) -> np.ndarray:
    """How often each structure comes in one epoch of scope ``"repeat"``: ``floor(w)``
    times, and once more with probability ``w - floor(w)``, so ``w`` times on average and
    at least once (``w >= 1``, :func:`raw_element_weights`). Unlike drawing with
    replacement (scope ``"sampling"``), no structure is left out of an epoch, so the common
    elements keep all their updates; the price is an epoch of ``sum(w)`` structures
    instead of ``len(w)``.

    Returns
    -------
    ndarray of int (len(weights),)
    """
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 1 or not (weights >= 1).all():
        raise ValueError(f"repeat weights must be a 1-D array of values >= 1, got {weights!r}")
    whole = np.floor(weights)
    return (whole + (generator.random(len(weights)) < weights - whole)).astype(int)


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


class RepeatSampler(torch.utils.data.Sampler):
    """One epoch of scope ``"repeat"``: every index ``i`` :func:`repeat_counts` times, in
    a random order. The counts are drawn when the sampler is made (so ``len`` is known
    before the epoch, as the cosine schedule needs), the order when it is iterated.

    Parameters
    ----------
    weights : array (n,)
        Raw structure weights, each >= 1 (:func:`raw_element_weights`).
    generator : torch.Generator
        Source of both draws; the same seed gives the same epoch.
    """

    def __init__(self, weights: np.ndarray, generator: torch.Generator) -> None:
        self.generator = generator
        seed = int(torch.randint(2**62, (1,), generator=generator))
        counts = repeat_counts(weights, np.random.default_rng(seed))
        self.indices = torch.repeat_interleave(torch.arange(len(counts)), torch.as_tensor(counts))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        order = torch.randperm(len(self.indices), generator=self.generator)
        yield from self.indices[order].tolist()
