"""Split conformal prediction of per-atom force-error balls."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["SCORES", "ConformalForces", "conformal_quantile", "difficulty"]

#: difficulty scores s_i: ``"constant"`` (s = 1, the plain method) or ``"mahalanobis"``
#: (s = d_i + d_median: larger balls for atoms far from the training data)
SCORES = ("constant", "mahalanobis")


def min_calibration_size(alpha: float) -> int:
    """Fewest calibration atoms for which the ``(1 − α)`` quantile is finite."""
    return math.ceil((1 - alpha) / alpha - 1e-9)


def conformal_quantile(ratios, alpha: float) -> float:
    """The ``⌈(n+1)(1−α)⌉``-th smallest of the ``n`` calibration ratios ``|ΔF| / s``.

    With exchangeable calibration and test points, ``|ΔF| ≤ q̂ s`` holds for a new point
    with probability in ``[1 − α, 1 − α + 1/(n+1))``.

    Raises
    ------
    ValueError
        For ``α`` outside (0, 1) or fewer than ``(1 − α)/α`` ratios (the quantile would
        be infinite).
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    ratios = np.sort(np.asarray(ratios, dtype=np.float64).ravel())
    if not np.all(np.isfinite(ratios)):
        raise ValueError("calibration ratios must be finite")
    n = len(ratios)
    k = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    if k > n:
        raise ValueError(
            f"a calibration set of {n} atoms is too small for alpha={alpha:g}: the "
            f"{1 - alpha:.4g} quantile needs at least {min_calibration_size(alpha)} atoms"
        )
    return float(ratios[k - 1])


def difficulty(distances, score: str, offset: float) -> np.ndarray:
    """Difficulty ``s_i`` (N,) of each atom from its Mahalanobis distance (see SCORES)."""
    distances = np.asarray(distances, dtype=np.float64)
    if score == "constant":
        return np.ones_like(distances)
    if score == "mahalanobis":
        return distances + offset
    raise ValueError(f"score must be one of {SCORES}, got {score!r}")


@dataclass
class ConformalForces:
    """Calibrated per-atom force-error balls ``R_i = q̂ s_i`` (eV/Å).

    Attributes
    ----------
    alpha : float
        Miscoverage: ``P(|F_true − F_pred| ≤ R_i) ≥ 1 − α`` for atoms exchangeable with
        the calibration atoms.
    qhat : float
        Calibrated quantile (eV/Å for the constant score).
    score : str
        Difficulty score, see :data:`SCORES`.
    offset : float
        ``d_median`` of the Mahalanobis score (the training atoms' median distance).
    n_atoms, n_structures : int
        Size of the calibration set.
    source : dict or None
        Where the calibration structures came from (``data``: extxyz path,
        ``config_types``, ``elements``: the selection), as the command line records it.
    """

    alpha: float
    qhat: float
    score: str
    offset: float
    n_atoms: int
    n_structures: int
    source: dict | None = None

    @classmethod
    def calibrate(
        cls,
        errors,
        distances,
        alpha: float,
        score: str = "mahalanobis",
        offset: float = 0.0,
        n_structures: int = 0,
    ) -> ConformalForces:
        """Calibrate on per-atom force-error norms (eV/Å) and Mahalanobis distances."""
        errors = np.asarray(errors, dtype=np.float64)
        s = difficulty(distances, score, offset)
        if errors.shape != s.shape:
            raise ValueError(f"errors {errors.shape} and distances {s.shape} differ in shape")
        qhat = conformal_quantile(errors / s, alpha)
        return cls(float(alpha), qhat, score, float(offset), len(errors), int(n_structures))

    def radii(self, distances) -> np.ndarray:
        """Ball radii (N,) in eV/Å for atoms with Mahalanobis ``distances`` (N,)."""
        return self.qhat * difficulty(distances, self.score, self.offset)

    def to_dict(self) -> dict:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, values: dict) -> ConformalForces:
        return cls(**values)
