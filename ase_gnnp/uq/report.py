"""One report of a model's uncertainty on held-out and shifted structures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from ase import Atoms

from ase_gnnp.model import GNNPModel
from ase_gnnp.uq.metrics import auroc, coverage, spearman, structure_scores
from ase_gnnp.uq.statistics import AtomPredictions, predict_atoms, uq_statistics

__all__ = ["uq_report"]


def uq_report(
    model: GNNPModel,
    frames: Sequence[Atoms],
    shifted: Mapping[str, Sequence[Atoms]] | None = None,
) -> dict:
    """Figures of the model's uncertainty on labelled structures.

    Parameters
    ----------
    model
        A model with Mahalanobis statistics (and, for coverage, a conformal q̂).
    frames
        Held-out structures of the training distribution.
    shifted
        Groups of shifted structures by name (e.g. by ``config_type``).

    Returns
    -------
    dict
        ``in_distribution`` and, per shifted group, ``n_structures``, ``force_mae``
        (eV/Å), ``spearman`` (per-atom score against per-atom force error),
        ``median_score`` and, when calibrated, ``coverage`` (structure bootstrap, see
        :func:`~ase_gnnp.uq.metrics.coverage`) and ``mean_radius_over_mae``; for shifted
        groups also ``auroc_max`` / ``auroc_mean`` (the per-structure max / mean score as
        a detector against the in-distribution structures). ``pooled_spearman`` over all
        atoms, ``alpha`` and ``score`` when calibrated.
    """
    stats = uq_statistics(model)
    if stats.mahalanobis is None:
        raise ValueError("this model has no Mahalanobis statistics (run ase-gnnp uq fit)")

    def figures(pred: AtomPredictions) -> dict:
        row = {
            "n_structures": int(pred.structure.max() + 1),
            "force_mae": float(np.abs(pred.ref_forces - pred.forces).mean()),
            "spearman": spearman(pred.distances, pred.errors),
            "median_score": float(np.median(pred.distances)),
        }
        if stats.conformal is not None:
            radii = stats.conformal.radii(pred.distances)
            row["coverage"] = coverage(pred.errors, radii, pred.structure)
            row["mean_radius_over_mae"] = float(radii.mean() / row["force_mae"])
        return row

    base = predict_atoms(model, frames)
    report = {"in_distribution": figures(base), "shifted": {}}
    if stats.conformal is not None:
        report["alpha"], report["score"] = stats.conformal.alpha, stats.conformal.score
    high_in, mean_in = structure_scores(base.distances, base.structure)
    pooled = [base]
    for group, chosen in (shifted or {}).items():
        pred = predict_atoms(model, chosen)
        pooled.append(pred)
        high, mean = structure_scores(pred.distances, pred.structure)
        report["shifted"][group] = figures(pred) | {
            "auroc_max": auroc(high_in, high),
            "auroc_mean": auroc(mean_in, mean),
        }
    report["pooled_spearman"] = spearman(
        np.concatenate([p.distances for p in pooled]), np.concatenate([p.errors for p in pooled])
    )
    return report
