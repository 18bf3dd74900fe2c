"""Shipped models against their teachers on alloy mixing (small cells; the tutorial
tutorials/mixing.py runs the 32- and 64-atom supercells)."""

from __future__ import annotations

import pytest
import torch
from ase.calculators.emt import EMT

from ase_gnnp import GNNPCalculator
from ase_gnnp.checkpoint import shipped_models
from ase_gnnp.teachers import tersoff_sige
from ase_gnnp.workflows.mixing import mixing_energies

pytestmark = pytest.mark.filterwarnings("ignore:'where' used without 'out':UserWarning")


def _ordered(calc, a, b, lattice):
    result = mixing_energies(calc, a, b, lattice, x_values=(0.5,), reps=(1, 1, 1), samples=1,
                             progress=False)  # fmt: skip
    return result.ordered(), result.verdict


@pytest.mark.skipif("sige-small" not in shipped_models(), reason="sige-small is not shipped")
def test_sige_small_zincblende_mixing_matches_tersoff():
    model, _ = _ordered(GNNPCalculator("sige-small", dtype=torch.float64), "Si", "Ge", "diamond")
    teacher, _ = _ordered(tersoff_sige(), "Si", "Ge", "diamond")
    assert teacher["zincblende AB"][1] > 0  # Tersoff's SiGe mixes endothermically
    assert model["zincblende AB"][1] == pytest.approx(teacher["zincblende AB"][1], abs=1e-3)


@pytest.mark.skipif("cuauni-emt-all" not in shipped_models(), reason="not shipped")
def test_cuauni_emt_all_orders_cu_au_like_emt():
    model, verdict = _ordered(GNNPCalculator("cuauni-emt-all", dtype=torch.float64),
                              "Cu", "Au", "fcc")  # fmt: skip
    teacher, teacher_verdict = _ordered(EMT(), "Cu", "Au", "fcc")
    assert verdict == teacher_verdict == "ordering"
    for name in ("L1_0 AB", "L1_2 A3B"):
        assert model[name][1] < 0 and teacher[name][1] < 0
    assert model["L1_2 A3B"][1] == pytest.approx(teacher["L1_2 A3B"][1], abs=3e-3)
