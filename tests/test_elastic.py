"""Elastic constants: both routes, relaxed and clamped ions, moduli, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.units import GPa

from ase_gnnp.teachers import tersoff_sige
from ase_gnnp.workflows import ElasticCalculation, elastic_constants, voigt_reuss_hill
from ase_gnnp.workflows.elastic import voigt_strain_matrix

pytestmark = pytest.mark.filterwarnings("ignore:'where' used without 'out':UserWarning")

#: Tersoff, Phys. Rev. B 38, 9902 (1988), Table I, silicon (T3; the 1989 Si parameters)
TERSOFF_SI_GPA = {"C11": 142.5, "C12": 75.4, "C44": 69.0, "C44_clamped": 118.8}


@pytest.fixture(scope="module")
def tersoff_si():
    return ElasticCalculation(bulk("Si", "diamond", a=5.43, cubic=True), tersoff_sige())


@pytest.mark.parametrize("method", ["stress", "energy"])
def test_tersoff_silicon_matches_the_published_constants(tersoff_si, method):
    C = tersoff_si.run(method, 5e-3).C
    assert C[0, 0] == pytest.approx(TERSOFF_SI_GPA["C11"], rel=2e-3)
    assert C[0, 1] == pytest.approx(TERSOFF_SI_GPA["C12"], rel=2e-3)
    assert C[3, 3] == pytest.approx(TERSOFF_SI_GPA["C44"], rel=2e-3)
    # cubic symmetry: equal diagonal blocks, no normal-shear coupling
    np.testing.assert_allclose(np.diag(C)[:3], C[0, 0], rtol=1e-6)
    np.testing.assert_allclose(np.diag(C)[3:], C[3, 3], rtol=1e-6)
    np.testing.assert_allclose(C[:3, 3:], 0.0, atol=1e-3)


def test_clamped_ions_give_the_unrelaxed_c44():
    calc = ElasticCalculation(bulk("Si", "diamond", a=5.43, cubic=True), tersoff_sige(),
                              relax_ions=False)  # fmt: skip
    C = calc.run("stress", 5e-3).C
    assert C[3, 3] == pytest.approx(TERSOFF_SI_GPA["C44_clamped"], rel=2e-3)


def test_routes_agree_and_bulk_modulus_matches_equation_of_state():
    atoms = bulk("Cu", "fcc", a=3.6)
    calc = ElasticCalculation(atoms, EMT())
    by_stress, by_energy = calc.run("stress", 5e-3), calc.run("energy", 1e-2)
    np.testing.assert_allclose(by_energy.C, by_stress.C, rtol=5e-3, atol=0.2)
    # independent check: B from an E(V) fit of the relaxed cell
    ref = calc.reference
    volumes, energies = [], []
    for s in np.linspace(0.99, 1.01, 7):
        probe = ref.copy()
        probe.calc = EMT()
        probe.set_cell(ref.cell * s, scale_atoms=True)
        volumes.append(probe.get_volume())
        energies.append(probe.get_potential_energy())
    _, _, bulk_eos = EquationOfState(volumes, energies).fit()
    assert by_stress.moduli["bulk_hill"] == pytest.approx(bulk_eos / GPa, rel=5e-3)


def test_voigt_reuss_hill_of_an_isotropic_tensor():
    lam, mu = 60.0, 30.0
    C = np.zeros((6, 6))
    C[:3, :3] = lam
    C[np.arange(3), np.arange(3)] = lam + 2 * mu
    C[np.arange(3, 6), np.arange(3, 6)] = mu
    moduli = voigt_reuss_hill(C)
    for kind in ("voigt", "reuss", "hill"):
        assert moduli[f"bulk_{kind}"] == pytest.approx(lam + 2 * mu / 3)
        assert moduli[f"shear_{kind}"] == pytest.approx(mu)
    assert moduli["young_hill"] == pytest.approx(mu * (3 * lam + 2 * mu) / (lam + mu))
    assert moduli["poisson_hill"] == pytest.approx(lam / (2 * (lam + mu)))


def test_voigt_reuss_hill_of_a_singular_tensor_leaves_reuss_undefined():
    C = np.zeros((6, 6))
    C[:3, :3] = 50.0  # a step below round-off: only the normal block survives, singular
    moduli = voigt_reuss_hill(C)
    assert moduli["bulk_voigt"] == pytest.approx(50.0)
    assert np.isnan(moduli["bulk_reuss"]) and np.isnan(moduli["shear_hill"])


def test_engineering_shear_strain():
    eps = voigt_strain_matrix([0, 0, 0, 0.02, 0, 0])
    assert eps[1, 2] == eps[2, 1] == pytest.approx(0.01)


def test_bad_input():
    with pytest.raises(ValueError, match="periodic in all three"):
        ElasticCalculation(molecule("H2O"), EMT())
    with pytest.raises(ValueError, match="method"):
        elastic_constants(bulk("Cu"), EMT(), method="curvature")
    with pytest.raises(ValueError, match="strain step"):
        elastic_constants(bulk("Cu"), EMT(), strain=0.5)
    with pytest.raises(TypeError, match="ase.Atoms"):
        ElasticCalculation("Cu", EMT())
    with pytest.raises(ValueError, match="6 components"):
        voigt_strain_matrix([0.1, 0.2])


def test_cli_prints_c_as_json_and_refuses_to_overwrite_a_plot(capsys, tmp_path):
    import json

    from ase_gnnp.cli import main

    assert main(["elastic", "--teacher", "tersoff", "--method", "stress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    C = np.array(report["stress"]["C_GPa"])
    assert C.shape == (6, 6)
    assert C[0, 0] == pytest.approx(TERSOFF_SI_GPA["C11"], rel=2e-3)
    png = tmp_path / "sweep.png"
    png.write_bytes(b"user file")
    assert main(["elastic", "--teacher", "tersoff", "--sweep", str(png)]) == 2
    assert png.read_bytes() == b"user file"
    assert main(["elastic", "--teacher", "tersoff", "--structure", "Xx"]) == 2
