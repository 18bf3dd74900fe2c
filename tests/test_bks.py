"""The BKS SiO₂ teacher: exact charges, derivatives, periodic vs molecular use."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.spacegroup import crystal

from ase_gnnp.teachers import BKS_CHARGES, BKSCalculator
from ase_gnnp.testing import assert_forces_match_fd, assert_stress_matches_fd


def quartz(rattle: float = 0.05) -> Atoms:
    atoms = crystal(
        ("Si", "O"), basis=[(0.4697, 0.0, 2 / 3), (0.4135, 0.2669, 0.1191 - 1 / 3)],
        spacegroup=154, cellpar=[5.07, 5.07, 5.58, 90, 90, 120],
    )  # fmt: skip
    atoms.rattle(rattle, seed=3)
    atoms.calc = BKSCalculator()
    return atoms


def test_quartz_charges_forces_and_stress():
    atoms = quartz()
    assert len(atoms) == 9
    np.testing.assert_array_equal(atoms.get_charges(), [BKS_CHARGES[z] for z in atoms.numbers])
    # the ideal crystal is lower in energy than the rattled one, and bound (ionic lattice)
    assert quartz(0.0).get_potential_energy() < atoms.get_potential_energy() < -50.0 * 3
    assert_forces_match_fd(atoms, atol=1e-5, eps=1e-4)
    assert_stress_matches_fd(atoms, atol=1e-6, eps=1e-5)


def test_cluster_uses_a_direct_sum():
    atoms = Atoms("SiO2", positions=[[0, 0, 0], [1.6, 0, 0], [-1.6, 0.1, 0]])
    atoms.calc = BKSCalculator()
    assert_forces_match_fd(atoms, atol=1e-5, eps=1e-4)
    with pytest.raises(ValueError, match="stress"):
        atoms.get_stress()


def test_unknown_element_and_mixed_pbc():
    with pytest.raises(ValueError, match="Si and O"):
        Atoms("SiC", positions=[[0, 0, 0], [1.8, 0, 0]], calculator=BKSCalculator()).get_forces()
    atoms = quartz()
    atoms.pbc = (True, True, False)
    with pytest.raises(ValueError, match="pbc"):
        atoms.get_potential_energy()
