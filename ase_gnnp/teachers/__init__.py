"""Analytic reference ("teacher") potentials used to generate training data and to
compare workflows side by side with the learned model."""

from ase_gnnp.teachers.bks import BKS_CHARGES, BKSCalculator
from ase_gnnp.teachers.eam_w import (
    FINNIS_SINCLAIR_W,
    MARINICA_W,
    finnis_sinclair_w,
    marinica_w,
)
from ase_gnnp.teachers.tersoff import TERSOFF_SIGE_1989, tersoff_sige

__all__ = [
    "BKS_CHARGES",
    "FINNIS_SINCLAIR_W",
    "TERSOFF_SIGE_1989",
    "BKSCalculator",
    "MARINICA_W",
    "finnis_sinclair_w",
    "marinica_w",
    "tersoff_sige",
]
