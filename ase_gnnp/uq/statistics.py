"""UQ statistics of a model: collect latent features and errors, fit, calibrate, store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from torch_geometric.data import Batch

from ase_gnnp import keys as K
from ase_gnnp.data import DataKeys, labelled_graph
from ase_gnnp.model import GNNPModel
from ase_gnnp.uq.conformal import SCORES, ConformalForces
from ase_gnnp.uq.mahalanobis import LatentMahalanobis

__all__ = [
    "AtomPredictions",
    "UQStatistics",
    "calibrate_forces",
    "fit_mahalanobis",
    "predict_atoms",
    "uq_statistics",
]


@dataclass
class UQStatistics:
    """What a checkpoint stores for uncertainty: Mahalanobis statistics and conformal q̂."""

    mahalanobis: LatentMahalanobis | None = None
    conformal: ConformalForces | None = None

    def to_dict(self) -> dict:
        return {
            "mahalanobis": None if self.mahalanobis is None else self.mahalanobis.to_dict(),
            "conformal": None if self.conformal is None else self.conformal.to_dict(),
        }

    @classmethod
    def from_dict(cls, values: dict | None) -> UQStatistics:
        values = values or {}
        m, c = values.get("mahalanobis"), values.get("conformal")
        return cls(
            None if m is None else LatentMahalanobis.from_dict(m),
            None if c is None else ConformalForces.from_dict(c),
        )


def uq_statistics(model: GNNPModel) -> UQStatistics:
    """The model's UQ statistics (an empty record if it has none)."""
    stats = getattr(model, "uq", None)
    return stats if isinstance(stats, UQStatistics) else UQStatistics()


@dataclass
class AtomPredictions:
    """Per-atom model outputs on a set of structures (N atoms in all).

    Attributes
    ----------
    latent : (N, C) latent invariant features.
    numbers : (N,) atomic numbers.
    forces : (N, 3) predicted forces, eV/Å.
    ref_forces : (N, 3) reference forces, eV/Å (NaN where a structure has none).
    structure : (N,) index of each atom's structure.
    distances : (N,) Mahalanobis distances (NaN without statistics).
    """

    latent: np.ndarray
    numbers: np.ndarray
    forces: np.ndarray
    ref_forces: np.ndarray
    structure: np.ndarray
    distances: np.ndarray

    @property
    def errors(self) -> np.ndarray:
        """Force-error norms ``|F_ref − F_pred|`` (N,) in eV/Å."""
        return np.linalg.norm(self.ref_forces - self.forces, axis=1)


def predict_atoms(
    model: GNNPModel,
    frames: Sequence[Atoms],
    keys: DataKeys = DataKeys(),
    batch_size: int = 8,
    progress: bool = False,
) -> AtomPredictions:
    """Evaluate ``model`` on ``frames`` and gather per-atom latents, forces and labels."""
    from tqdm import tqdm

    frames = list(frames)
    if not frames:
        raise ValueError("no structures to evaluate")
    stats = uq_statistics(model).mahalanobis
    rows = {n: [] for n in ("latent", "numbers", "forces", "ref", "distances")}
    device = model.scale.device
    chunks = range(0, len(frames), batch_size)
    for start in tqdm(chunks, desc="evaluating", disable=not progress):
        graphs = [labelled_graph(a, model.cutoff, keys, model.dtype)
                  for a in frames[start : start + batch_size]]  # fmt: skip
        data = Batch.from_data_list(graphs).to(device)
        out = model(data, forces=True)
        latent = out[K.LATENT].detach()
        rows["latent"].append(latent.double().cpu().numpy())
        rows["numbers"].append(data[K.ATOMIC_NUMBERS].cpu().numpy())
        rows["forces"].append(out[K.FORCES].detach().double().cpu().numpy())
        ref = data[K.REF_FORCES].double().cpu().numpy()
        ref[~data[K.HAS_FORCES].cpu().numpy()] = np.nan
        rows["ref"].append(ref)
        if stats is not None:
            rows["distances"].append(stats.torch_distances(latent, data[K.ATOMIC_NUMBERS]).cpu())
    numbers = np.concatenate(rows["numbers"])
    counts = [len(a) for a in frames]
    return AtomPredictions(
        latent=np.concatenate(rows["latent"]),
        numbers=numbers,
        forces=np.concatenate(rows["forces"]),
        ref_forces=np.concatenate(rows["ref"]),
        structure=np.repeat(np.arange(len(frames)), counts),
        distances=(
            np.concatenate(rows["distances"]).astype(np.float64)
            if rows["distances"]
            else np.full(len(numbers), np.nan)
        ),  # fmt: skip
    )


def fit_mahalanobis(
    model: GNNPModel, frames: Sequence[Atoms], batch_size: int = 8, progress: bool = False
) -> LatentMahalanobis:
    """Fit the Mahalanobis statistics on the model's training ``frames`` and store them
    on ``model`` (a conformal calibration made with older statistics is dropped)."""
    pred = predict_atoms(model, frames, DataKeys(energy="", forces="", stress=""),
                         batch_size, progress)  # fmt: skip
    stats = LatentMahalanobis.fit(pred.latent, pred.numbers)
    model.uq = UQStatistics(mahalanobis=stats)
    return stats


def calibrate_forces(
    model: GNNPModel,
    frames: Sequence[Atoms],
    alpha: float = 0.01,
    score: str = "mahalanobis",
    keys: DataKeys = DataKeys(),
    batch_size: int = 8,
    progress: bool = False,
) -> ConformalForces:
    """Split-conformal calibration on held-out labelled ``frames`` (never trained on).

    Stores q̂ on ``model`` and returns it. Every frame needs reference forces.

    Raises
    ------
    ValueError
        Without Mahalanobis statistics (needed for either score: the calculator reports
        both), for a calibration set too small for ``alpha``, or for frames without
        reference forces.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    stats = uq_statistics(model)
    if stats.mahalanobis is None:
        raise ValueError(
            "this model has no Mahalanobis statistics; fit them on its training data first "
            "(ase-gnnp uq fit, or ase_gnnp.uq.fit_mahalanobis)"
        )
    pred = predict_atoms(model, frames, keys, batch_size, progress)
    missing = sorted(set(pred.structure[np.isnan(pred.ref_forces).any(axis=1)].tolist()))
    if missing:
        raise ValueError(f"calibration frames {missing[:10]} have no reference forces")
    conformal = ConformalForces.calibrate(
        pred.errors, pred.distances, alpha, score, stats.mahalanobis.train_median, len(frames)
    )
    model.uq = UQStatistics(stats.mahalanobis, conformal)
    return conformal
