"""Workflow acceptance targets of the shipped sige-small against its Tersoff teacher,
run through the same code (elastic constants within 3 %, phonons within 2 %)."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk

from ase_gnnp import GNNPCalculator
from ase_gnnp.checkpoint import shipped_models
from ase_gnnp.teachers import tersoff_sige
from ase_gnnp.workflows import ElasticCalculation

pytestmark = [
    pytest.mark.skipif("sige-small" not in shipped_models(), reason="sige-small is not shipped"),
    pytest.mark.filterwarnings("ignore:'where' used without 'out':UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _si():
    return bulk("Si", "diamond", a=5.43, cubic=True)


@pytest.fixture(scope="module")
def model():
    return GNNPCalculator("sige-small", dtype=torch.float64)


@pytest.mark.slow
def test_elastic_constants_within_three_percent_and_routes_within_two(model):
    teacher = ElasticCalculation(_si(), tersoff_sige()).run("stress", 5e-3).C
    calculation = ElasticCalculation(_si(), model)
    by_stress = calculation.run("stress", 5e-3).C
    by_energy = calculation.run("energy", 1e-2).C
    for i, j in ((0, 0), (0, 1), (3, 3)):
        assert by_stress[i, j] == pytest.approx(teacher[i, j], rel=0.03), (i, j)
        assert by_energy[i, j] == pytest.approx(by_stress[i, j], rel=0.02), (i, j)


@pytest.fixture(scope="module")
def frequencies(model):
    phonopy = pytest.importorskip("phonopy")  # noqa: F841
    from ase_gnnp.integrations.phonons import PhononCalculation

    out = {}
    for name, calc in (("teacher", tersoff_sige()), ("model", model)):
        phonons = PhononCalculation(_si(), calc, 2, "F")
        phonons.finite_displacement_force_constants(progress=False)
        out[name] = phonons.run(mesh=(4, 4, 4)).special_frequencies
    return out


@pytest.mark.parametrize("point, index", [("G", 3), ("X", 0), ("X", 2), ("X", 4)])
def test_phonons_within_two_percent(frequencies, point, index):
    model, teacher = frequencies["model"], frequencies["teacher"]
    assert model[point][index] == pytest.approx(teacher[point][index], rel=0.02)
