"""Phonons through phonopy: teacher figures, analytic Hessian vs finite displacements,
non-analytic correction from Born charges, thermal properties, CLI and bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.units import _e, kB, mol

from ase_gnnp import GNNPCalculator, GNNPModel, ModelConfig
from ase_gnnp.cli import main
from ase_gnnp.graph import atoms_to_graph
from ase_gnnp.hessian import hessian_rows
from ase_gnnp.integrations import require
from ase_gnnp.teachers import tersoff_sige
from tests.conftest import make_bulk

phonopy = pytest.importorskip("phonopy")
from ase_gnnp.integrations.phonons import (  # noqa: E402
    PhononCalculation,
    force_constants_difference,
    plot_phonons,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:'where' used without 'out':UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

#: Tersoff (1989) Si through phonopy with a 64-atom supercell, measured independently by
#: the team lead (../shared/NOTES.md): Γ optical and the three X branches, THz
TERSOFF_SI_THZ = {"G": 16.07, "X": (6.90, 12.19, 14.89)}


@pytest.fixture(scope="module")
def tersoff_si():
    calc = PhononCalculation(bulk("Si", cubic=True), tersoff_sige(), 2, "F")
    calc.finite_displacement_force_constants(progress=False)
    return calc, calc.run(mesh=(12, 12, 12))


def test_tersoff_silicon_frequencies(tersoff_si):
    _, result = tersoff_si
    gamma, x = result.special_frequencies["G"], result.special_frequencies["X"]
    np.testing.assert_allclose(gamma[:3], 0.0, atol=1e-3)  # acoustic sum rule
    np.testing.assert_allclose(gamma[3:], TERSOFF_SI_THZ["G"], rtol=2e-3)  # triply degenerate
    np.testing.assert_allclose(x[::2], TERSOFF_SI_THZ["X"], rtol=2e-3)
    np.testing.assert_allclose(x[::2], x[1::2], rtol=1e-6)  # X: pairs of degenerate modes
    assert result.min_frequency > -1e-3  # no imaginary modes in the stable crystal


def test_thermal_properties_reach_the_dulong_petit_limit(tersoff_si):
    _, result = tersoff_si
    dulong_petit = 3 * 2 * kB * mol * _e  # 3 k_B per atom, 2 atoms: J/(K mol) of cells
    cv = dict(zip(result.temperatures, result.heat_capacity))
    assert cv[0.0] == pytest.approx(0.0, abs=1e-6)
    assert 0.9 * dulong_petit < cv[1000.0] < dulong_petit
    assert np.all(np.diff(result.entropy) >= 0)  # S grows with T
    assert np.all(np.diff(result.free_energy[1:]) < 0)  # F = U - TS falls


def test_band_labels_and_plot(tersoff_si, tmp_path):
    calc, result = tersoff_si
    assert result.labels[0] == ("G", "X")
    assert len(result.labels) == len(result.distances) == len(result.frequencies)
    # the diamond/fcc path has a jump (K|U): segments after it start at U
    assert ("U", "X") in result.labels
    plot_phonons({"tersoff": result}, tmp_path / "si.png", title="Si")
    assert (tmp_path / "si.png").stat().st_size > 10_000
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data["frequencies_THz"]) == {"G", "X", "W", "K", "L", "U"}


# ------------------------------------------------------------------ analytic Hessian
def test_hessian_matches_finite_differences_of_forces(calc64):
    atoms = make_bulk()  # rattled, strained, triclinic SiGe: no symmetry helps
    hessian = calc64.get_hessian(atoms)
    n = len(atoms)
    assert hessian.shape == (n, n, 3, 3)
    numeric = np.zeros_like(hessian)
    h = 1e-4
    for i in (0, 7):
        for a in range(3):
            forces = []
            for sign in (1, -1):
                probe = atoms.copy()
                probe.positions[i, a] += sign * h
                probe.calc = calc64
                forces.append(probe.get_forces())
            numeric[i, :, a, :] = -(forces[0] - forces[1]) / (2 * h)
    for i in (0, 7):
        np.testing.assert_allclose(hessian[i], numeric[i], atol=1e-7)
    np.testing.assert_allclose(hessian, hessian.transpose(1, 0, 3, 2), atol=1e-12)  # symmetric
    np.testing.assert_allclose(hessian.sum(axis=1), 0.0, atol=1e-10)  # translation


def test_hessian_rows_and_chunks_agree(small_model):
    atoms = make_bulk(seed=3)
    graph = atoms_to_graph(atoms, small_model.cutoff, torch.float64)
    full = hessian_rows(small_model, graph, chunk=5)
    rows = hessian_rows(small_model, graph, [3, 11], chunk=48)
    torch.testing.assert_close(rows, full[[3, 11]])


def test_hessian_of_a_molecule_with_long_range_charges():
    torch.manual_seed(3)
    config = ModelConfig(cutoff=3.0, channels=4, lmax=1, num_layers=1, long_range="ewald")
    model = GNNPModel(config).to(torch.float64).eval()
    calc = GNNPCalculator(model, dtype=torch.float64)
    atoms = molecule("H2O") + molecule("H2O")
    atoms.positions[3:] += (4.5, 0.3, 0.2)  # beyond the cutoff: Coulomb couples them
    hessian = calc.get_hessian(atoms)
    probe = atoms.copy()
    probe.calc = calc
    h = 1e-4
    probe.positions[4, 1] += h
    plus = probe.get_forces()
    probe.positions[4, 1] -= 2 * h
    minus = probe.get_forces()
    np.testing.assert_allclose(hessian[4, :, 1, :], -(plus - minus) / (2 * h), atol=1e-7)
    assert np.abs(hessian[4, :3]).max() > 1e-6  # the molecules feel each other


def test_hessian_force_constants_agree_with_displacements(calc64):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.numbers[[1, 6]] = 32  # SiGe with lower symmetry
    calc = PhononCalculation(atoms, calc64, 2, "P", relax_cell=False, relax_ions=True)
    fd = calc.finite_displacement_force_constants(progress=False)
    analytic = calc.hessian_force_constants()
    assert analytic.shape == (8, 64, 3, 3)  # compact: rows of the primitive atoms
    # ± displacements of 0.01 Å: a second-order error, far below the 1 % target
    assert force_constants_difference(analytic, fd, calc.p2s_map) < 1e-3


# ------------------------------------------------------------------ Born charges, NAC
@pytest.fixture(scope="module")
def nacl_field_calc():
    torch.manual_seed(1)
    config = ModelConfig(
        cutoff=3.5, channels=8, lmax=1, num_layers=1, long_range="ewald", field=True,
        coulomb_cutoff=6.0,
    )  # fmt: skip
    model = GNNPModel(config).to(torch.float64)
    with torch.no_grad():
        model.set_avg_num_neighbors(6.0)
        model.scale.fill_(0.5)
    return GNNPCalculator(model.eval(), dtype=torch.float64)


def test_born_charges_give_lo_to_splitting_and_a_born_file(nacl_field_calc, tmp_path):
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    calc = PhononCalculation(atoms, nacl_field_calc, 2, "F", relax_cell=False, relax_ions=False)
    calc.hessian_force_constants()
    near_gamma = [[1e-3, 0.0, 0.0]]
    calc.phonon.run_qpoints(near_gamma)
    plain = np.sort(calc.phonon.get_qpoints_dict()["frequencies"][0])
    born, epsilon = calc.set_born_charges(epsilon=2.0 * np.eye(3))
    # acoustic sum rule of the model's Born charges (neutral cell)
    np.testing.assert_allclose(born.sum(axis=0), 0.0, atol=1e-9)
    assert born[0, 0, 0] > 0.1  # Na is the cation (electronegativity prior)
    calc.phonon.run_qpoints(near_gamma)
    corrected = np.sort(calc.phonon.get_qpoints_dict()["frequencies"][0])
    assert plain[5] - plain[3] < 1e-2  # three degenerate optical modes without NAC
    assert corrected[5] - corrected[4] > 0.1  # LO above TO with it
    path = calc.write_born(tmp_path / "BORN")
    text = path.read_text().split("\n")
    assert len(text) == 4  # comment, ε, Z* of the two independent atoms (Na, Cl)
    np.testing.assert_allclose(np.array(text[1].split(), float), epsilon.ravel(), atol=1e-7)
    with pytest.raises(FileExistsError, match="BORN exists"):
        calc.write_born(path)


def test_born_charges_need_a_dielectric_tensor_or_a_field_model(calc64):
    calc = PhononCalculation(bulk("Si", cubic=True), calc64, 2, "F", relax_cell=False)
    with pytest.raises(Exception, match="field"):
        calc.set_born_charges()
    with pytest.raises(ValueError, match="shape"):
        calc.set_born_charges(born=np.zeros((3, 3, 3)), epsilon=np.eye(3))
    with pytest.raises(ValueError, match="no Born charges"):
        calc.write_born("BORN")


# ------------------------------------------------------------------ bad input, CLI
def test_bad_input(calc64):
    si = bulk("Si", cubic=True)
    with pytest.raises(ValueError, match="periodic in all three"):
        PhononCalculation(molecule("H2O"), calc64, 2, "P")
    with pytest.raises(ValueError, match="own periodic images"):
        PhononCalculation(si, calc64, 1, "F")  # 5.43 Å < 2 × 3.5 Å
    with pytest.raises(ValueError, match="'auto' is not accepted"):
        PhononCalculation(si, calc64, 2, "auto")
    with pytest.raises(ValueError, match="supercell must be"):
        PhononCalculation(si, calc64, [2, 2], "F")
    with pytest.raises(ValueError, match="singular"):
        PhononCalculation(si, calc64, [2, 0, 2], "F")
    with pytest.raises(ValueError, match="distance"):
        PhononCalculation(si, calc64, 2, "F", distance=0.5)
    calc = PhononCalculation(si, tersoff_sige(), 2, "F", relax_cell=False)
    with pytest.raises(ValueError, match="no force constants yet"):
        calc.run()
    with pytest.raises(TypeError, match="no analytic Hessian"):
        calc.hessian_force_constants()
    periodic_field = make_bulk()
    periodic_field.info["electric_field"] = [0.0, 0.0, 0.1]
    field_model = GNNPModel(ModelConfig(cutoff=3.0, channels=4, lmax=1, num_layers=1,
                                        long_range="ewald", field=True)).double()  # fmt: skip
    with pytest.raises(ValueError, match="non-conservative"):
        GNNPCalculator(field_model).get_hessian(periodic_field)


def test_missing_engine_names_the_extra():
    with pytest.raises(ImportError, match=re.escape("ase_gnnp[phonons]")):
        require("no_such_module_for_ase_gnnp", "phonons", "phonopy")


def test_cli_json_and_plot(tmp_path, capsys):
    plot = tmp_path / "bands.png"
    code = main(["phonons", "--structure", "Si", "--force-constants", "both", "--mesh",
                 "8", "8", "8", "--plot", str(plot), "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["supercell_atoms"] == 64
    assert report["fc_max_abs_difference_relative"] < 1e-2
    assert len(report["frequencies_THz"]["X"]) == 6
    assert report["frequencies_THz"]["G"][3] > 10.0  # optical Si mode, THz
    assert plot.stat().st_size > 10_000
    assert main(["phonons", "--plot", str(plot)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err
    assert main(["phonons", "--teacher", "tersoff", "--force-constants", "hessian"]) == 2
