"""Analytic reference ("teacher") potentials used to generate training data and to
compare workflows side by side with the learned model."""

from ase_gnnp.teachers.tersoff import TERSOFF_SIGE_1989, tersoff_sige

__all__ = ["TERSOFF_SIGE_1989", "tersoff_sige"]
