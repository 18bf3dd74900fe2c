"""Uncertainty: latent Mahalanobis OOD score, conformal force balls, adaptive MD."""

from ase_gnnp.uq.conformal import SCORES, ConformalForces, conformal_quantile
from ase_gnnp.uq.mahalanobis import LatentMahalanobis, ledoit_wolf
from ase_gnnp.uq.metrics import auroc, coverage, spearman, structure_scores
from ase_gnnp.uq.report import uq_report
from ase_gnnp.uq.statistics import (
    AtomPredictions,
    UQStatistics,
    calibrate_forces,
    fit_mahalanobis,
    predict_atoms,
    uq_statistics,
)

__all__ = [
    "SCORES",
    "AtomPredictions",
    "ConformalForces",
    "LatentMahalanobis",
    "UQStatistics",
    "auroc",
    "calibrate_forces",
    "conformal_quantile",
    "coverage",
    "fit_mahalanobis",
    "ledoit_wolf",
    "predict_atoms",
    "spearman",
    "structure_scores",
    "uq_report",
    "uq_statistics",
]
