"""Long-range physics terms: learned charges and their Coulomb energy."""

from ase_gnnp.longrange.charges import ChargeEquilibration
from ase_gnnp.longrange.coulomb import COULOMB_EV_A, EPSILON0, Coulomb, ewald_parameters

__all__ = ["COULOMB_EV_A", "EPSILON0", "ChargeEquilibration", "Coulomb", "ewald_parameters"]
