"""Per-element Gaussian density of the model's latent features: Mahalanobis OOD score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase.data import chemical_symbols

__all__ = ["LatentMahalanobis", "ledoit_wolf"]


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, Ledoit–Wolf shrunk covariance and shrinkage of samples ``x`` (n, p).

    The covariance is ``(1 − δ) S + δ μ I`` with ``S`` the (1/n) sample covariance,
    ``μ = tr S / p`` and ``δ ∈ [0, 1]`` the Ledoit–Wolf (2004) estimate of the optimal
    shrinkage; it is positive definite whenever ``δ > 0``, even for ``n < p``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 samples of shape (n, p), got shape {x.shape}")
    n, p = x.shape
    mean = x.mean(axis=0)
    xc = x - mean
    sample = xc.T @ xc / n
    mu = np.trace(sample) / p
    if not mu > 0:
        raise ValueError("the samples do not vary (zero covariance): no density to fit")
    target = mu * np.eye(p)
    delta = np.sum((sample - target) ** 2) / p
    # (1/n²) Σ_k ‖x_k x_kᵀ − S‖²_F / p, with ‖x xᵀ‖²_F = ‖x‖⁴
    beta = (np.sum(np.sum(xc**2, axis=1) ** 2) - n * np.sum(sample**2)) / (n**2 * p)
    shrinkage = 1.0 if delta == 0 else float(np.clip(beta / delta, 0.0, 1.0))
    return mean, (1 - shrinkage) * sample + shrinkage * target, shrinkage


@dataclass
class LatentMahalanobis:
    """Mahalanobis distance of each atom's latent features to its element's training density.

    ``d_i = sqrt((h_i − m_Z)ᵀ Σ_Z⁻¹ (h_i − m_Z))`` with the mean ``m_Z`` and the Ledoit–Wolf
    shrunk covariance ``Σ_Z`` of the latent features (last-layer invariants, shape (C,))
    of every training atom of element ``Z``. An atom of an element without statistics
    (one the model was not fitted on) gets its smallest distance to any fitted element: a
    detector, not a guarantee; conformal balls say nothing about such atoms.
    Dimensionless; for in-distribution atoms ``d² ≈ C`` on average.

    Attributes
    ----------
    numbers : ndarray (E,)
        Atomic numbers with statistics.
    mean : ndarray (E, C)
    precision : ndarray (E, C, C)
        Inverse shrunk covariances.
    shrinkage : ndarray (E,)
    counts : ndarray (E,)
        Training atoms per element.
    train_median : float
        Median distance over the training atoms (the scale of in-distribution scores).
    """

    numbers: np.ndarray
    mean: np.ndarray
    precision: np.ndarray
    shrinkage: np.ndarray
    counts: np.ndarray
    train_median: float

    @classmethod
    def fit(cls, latent: np.ndarray, numbers: np.ndarray, min_atoms: int = 10):
        """Fit per-element statistics on training atoms.

        Parameters
        ----------
        latent : (N, C) latent features of the training atoms.
        numbers : (N,) their atomic numbers.
        min_atoms : fewest atoms an element needs (raises ``ValueError`` otherwise).
        """
        latent = np.asarray(latent, dtype=np.float64)
        numbers = np.asarray(numbers)
        if latent.ndim != 2 or len(latent) != len(numbers):
            raise ValueError(
                f"latent must be (N, C) with N = len(numbers), got {latent.shape} and "
                f"{numbers.shape}"
            )
        rows = {z: cls._fit_one(latent[numbers == z], z, min_atoms) for z in np.unique(numbers)}
        zs = np.array(sorted(rows), dtype=np.int64)
        stats = cls(
            numbers=zs,
            mean=np.stack([rows[z][0] for z in zs]),
            precision=np.stack([rows[z][1] for z in zs]),
            shrinkage=np.array([rows[z][2] for z in zs]),
            counts=np.array([int(np.sum(numbers == z)) for z in zs]),
            train_median=0.0,
        )
        stats.train_median = float(np.median(stats.distances(latent, numbers)))
        return stats

    @staticmethod
    def _fit_one(x: np.ndarray, z: int, min_atoms: int):
        if len(x) < min_atoms:
            raise ValueError(
                f"{chemical_symbols[z]} has {len(x)} training atoms; Mahalanobis statistics "
                f"need at least {min_atoms}"
            )
        mean, cov, shrinkage = ledoit_wolf(x)
        return mean, np.linalg.inv(cov), shrinkage

    def distances(self, latent, numbers) -> np.ndarray:
        """Per-atom distances (N,) for numpy inputs (see :meth:`torch_distances`)."""
        d = self.torch_distances(torch.as_tensor(np.asarray(latent, dtype=np.float64)),
                                 torch.as_tensor(np.asarray(numbers)))  # fmt: skip
        return d.numpy()

    def torch_distances(
        self, latent: torch.Tensor, numbers: torch.Tensor, chunk: int = 65536
    ) -> torch.Tensor:
        """Per-atom distances (N,), computed in float64 on ``latent``'s device, ``chunk``
        atoms at a time (memory ∝ chunk × elements × features)."""
        latent = latent.detach().to(torch.float64)
        numbers = numbers.to(latent.device)
        mean = torch.as_tensor(self.mean, device=latent.device)
        precision = torch.as_tensor(self.precision, device=latent.device)
        known = torch.as_tensor(self.numbers, device=latent.device)
        parts = []
        for start in range(0, len(latent), chunk):
            diff = latent[start : start + chunk, None, :] - mean[None]  # (n, E, C)
            d2 = torch.einsum("nec,ecd,ned->ne", diff, precision, diff).clamp_min(0.0)
            match = numbers[start : start + chunk, None] == known[None]  # (n, E)
            own = torch.where(match, d2, torch.inf).min(dim=1).values
            parts.append(torch.where(match.any(dim=1), own, d2.min(dim=1).values))
        if not parts:
            return latent.new_zeros(0)
        return torch.cat(parts).sqrt()

    @property
    def num_features(self) -> int:
        return int(self.mean.shape[1])

    def to_dict(self) -> dict:
        return {
            "numbers": torch.as_tensor(self.numbers),
            "mean": torch.as_tensor(self.mean),
            "precision": torch.as_tensor(self.precision),
            "shrinkage": torch.as_tensor(self.shrinkage),
            "counts": torch.as_tensor(self.counts),
            "train_median": float(self.train_median),
        }

    @classmethod
    def from_dict(cls, values: dict) -> LatentMahalanobis:
        arrays = {k: np.asarray(values[k]) for k in ("numbers", "mean", "precision",
                                                        "shrinkage", "counts")}  # fmt: skip
        return cls(**arrays, train_median=float(values["train_median"]))
