"""Figures of merit for uncertainty: AUROC, Spearman, coverage with bootstrap intervals."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata, spearmanr

__all__ = ["auroc", "coverage", "spearman", "structure_scores"]


def structure_scores(values, structure) -> tuple[np.ndarray, np.ndarray]:
    """Per-structure max and mean of per-atom ``values`` (N,); ``structure`` (N,) holds
    each atom's structure index 0..B-1. Returns two arrays of shape (B,)."""
    values, structure = np.asarray(values, float), np.asarray(structure)
    n = int(structure.max()) + 1
    high = np.full(n, -np.inf)
    np.maximum.at(high, structure, values)
    mean = np.bincount(structure, values, n) / np.bincount(structure, minlength=n)
    return high, mean


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve of a score separating ``out`` (positive) from ``in``.

    The Mann–Whitney probability that a random out-of-distribution score exceeds a random
    in-distribution one (ties count one half): 1 is perfect, 0.5 is chance.
    """
    a = np.asarray(in_scores, dtype=np.float64).ravel()
    b = np.asarray(out_scores, dtype=np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError("auroc needs at least one in- and one out-of-distribution score")
    ranks = rankdata(np.concatenate([a, b]))
    return float((ranks[len(a) :].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b)))


def spearman(x, y) -> float:
    """Spearman rank correlation of ``x`` and ``y``."""
    return float(spearmanr(np.ravel(x), np.ravel(y)).statistic)


def coverage(
    errors, radii, structure, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict:
    """Share of atoms with ``error ≤ radius`` and a structure-level bootstrap interval.

    Structures (not atoms) are resampled with replacement, since the atoms of one
    structure are not independent.

    Returns
    -------
    dict
        ``coverage``, ``low``, ``high`` (the ``level`` percentile interval),
        ``n_atoms``, ``n_structures``.
    """
    errors, radii = np.asarray(errors, float), np.asarray(radii, float)
    structure = np.asarray(structure)
    inside = errors <= radii
    ids, index = np.unique(structure, return_inverse=True)
    hits = np.bincount(index, weights=inside.astype(float), minlength=len(ids))
    sizes = np.bincount(index, minlength=len(ids)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(len(ids), size=(n_boot, len(ids)))
    boot = hits[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    tail = 100 * (1 - level) / 2
    return {
        "coverage": float(inside.mean()),
        "low": float(np.percentile(boot, tail)),
        "high": float(np.percentile(boot, 100 - tail)),
        "n_atoms": int(len(errors)),
        "n_structures": int(len(ids)),
    }
