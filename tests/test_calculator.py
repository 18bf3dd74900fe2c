"""The ASE calculator contract: properties, shapes, one-pass results and clear errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from conftest import GE, SI, make_bulk, make_cluster

from ase_gnnp import GNNPCalculator
from ase_gnnp.graph import atoms_to_batch, atoms_to_graph


def _attach(atoms: Atoms, calc) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms


def test_implemented_properties():
    assert set(GNNPCalculator.implemented_properties) == {
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "charges",
        "dipole",
        "polarizability",
        "born_effective_charges",
        "dielectric_tensor",
        "mahalanobis",
        "force_uncertainty",
    }
    # names ASE knows keep ASE's meaning; the others are our documented extras
    from ase.outputs import all_outputs

    extra = set(GNNPCalculator.implemented_properties) - set(all_outputs)
    assert extra == {"polarizability", "mahalanobis", "force_uncertainty"}


# ---------------------------------------------------------------- results
def test_one_pass_gives_all_results_bulk(calc64, bulk_atoms):
    atoms = _attach(bulk_atoms, calc64)
    passes = []
    calc64.model.register_forward_hook(lambda *args: passes.append(1))
    energy = atoms.get_potential_energy()
    assert len(passes) == 1
    assert set(calc64.results) == {"energy", "free_energy", "energies", "forces", "stress"}
    n = len(atoms)
    assert isinstance(energy, float)
    assert calc64.results["free_energy"] == energy
    assert calc64.results["energies"].shape == (n,)
    assert calc64.results["forces"].shape == (n, 3)
    assert calc64.results["stress"].shape == (6,)
    assert np.sum(calc64.results["energies"]) == pytest.approx(energy, rel=1e-12)
    # later requests are served from the cache, not recomputed
    results = calc64.results
    assert atoms.get_forces() is not None and calc64.results is results
    assert atoms.get_stress().shape == (6,)
    assert atoms.get_stress(voigt=False).shape == (3, 3)
    assert atoms.get_potential_energies().shape == (n,)
    assert atoms.get_potential_energy(force_consistent=True) == energy
    assert calc64.results is results
    assert len(passes) == 1  # everything came from the first model evaluation


@pytest.mark.parametrize("kind", ["cluster", "slab"])
def test_one_pass_gives_all_results_nonperiodic(calc64, cluster_atoms, slab_atoms, kind):
    atoms = _attach(cluster_atoms if kind == "cluster" else slab_atoms, calc64)
    energy = atoms.get_potential_energy()
    assert set(calc64.results) == {"energy", "free_energy", "energies", "forces"}
    assert atoms.get_forces().shape == (len(atoms), 3)
    assert np.sum(atoms.get_potential_energies()) == pytest.approx(energy, rel=1e-12)
    assert np.all(np.isfinite(atoms.get_forces()))


@pytest.mark.parametrize("pbc", [False, (True, True, False), (True, False, False)])
def test_stress_needs_full_pbc(calc64, pbc):
    atoms = make_bulk()
    atoms.pbc = pbc
    atoms.calc = calc64
    atoms.get_potential_energy()  # energy and forces are fine
    with pytest.raises(ValueError, match="stress"):
        atoms.get_stress()
    with pytest.raises(ValueError, match="stress"):
        calc64.batch_evaluate([atoms], stress=True)


def test_results_follow_changes(calc64, bulk_atoms):
    atoms = _attach(bulk_atoms, calc64)
    e0 = atoms.get_potential_energy()
    atoms.positions[0] += [0.05, 0.0, 0.0]
    assert atoms.get_potential_energy() != e0
    atoms.numbers[0] = GE if atoms.numbers[0] == SI else SI
    e2 = atoms.get_potential_energy()
    assert np.isfinite(e2)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(("number", "match"), [(87, r"Fr \(Z=87\)"), (0, r"Z=0"), (118, r"Z=118")])
def test_unknown_element(calc64, number, match):
    atoms = Atoms([SI, number], positions=[[0, 0, 0], [2.3, 0, 0]])
    atoms.calc = calc64
    with pytest.raises(ValueError, match=match):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="Unsupported element"):
        calc64.batch_evaluate([make_cluster(), atoms])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_positions(calc64, bad):
    atoms = make_cluster()
    atoms.positions[3, 1] = bad
    atoms.calc = calc64
    with pytest.raises(ValueError, match=r"positions must be finite; atoms \[3\]"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="finite"):
        atoms_to_graph(atoms, 3.5)


def test_non_finite_cell(calc64):
    atoms = make_bulk()
    cell = atoms.cell.array.copy()
    cell[0, 0] = np.nan
    atoms.cell = cell
    atoms.calc = calc64
    with pytest.raises(ValueError, match="cell must be finite"):
        atoms.get_potential_energy()


def test_periodic_axis_without_cell(calc64):
    atoms = make_cluster()
    atoms.pbc = (True, False, False)
    atoms.calc = calc64
    with pytest.raises(ValueError, match="pbc is True along axis 0"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("bad", ["Si", None, 3, {"numbers": [14]}])
def test_graph_rejects_non_atoms(bad):
    with pytest.raises(TypeError, match="expected ase.Atoms"):
        atoms_to_graph(bad, 3.5)
    with pytest.raises(TypeError, match="expected ase.Atoms"):
        atoms_to_batch([make_cluster(), bad], 3.5)


@pytest.mark.parametrize("stress", [None, False])
@pytest.mark.parametrize("bad", ["Si", None, 3])
def test_batch_evaluate_rejects_non_atoms(calc64, bad, stress):
    # a fully periodic first frame: the default stress decision must not trip over `bad`
    with pytest.raises(TypeError, match=r"ase\.Atoms"):
        calc64.batch_evaluate([make_bulk(), bad], stress=stress)
    with pytest.raises(TypeError, match=r"ase\.Atoms"):
        calc64.batch_evaluate([bad])


def test_batch_evaluate_accepts_a_single_atoms(calc64, bulk_atoms):
    (result,) = calc64.batch_evaluate(bulk_atoms)
    assert result["forces"].shape == (len(bulk_atoms), 3)
    assert result["stress"].shape == (6,)


@pytest.mark.parametrize("bad", [1.5, object(), torch.nn.Linear(2, 2), ["sige-small"]])
def test_wrong_model_type(bad):
    with pytest.raises(TypeError, match="GNNPModel"):
        GNNPCalculator(bad)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="shipped model"):
        GNNPCalculator("no-such-model-xyz")


@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.int64, "float64", np.float64]
)
def test_invalid_dtype(small_model, dtype):
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64"):
        GNNPCalculator(small_model, dtype=dtype)


# ---------------------------------------------------------------- precision
def test_float32_and_float64_agree(small_model, bulk_atoms):
    calc32 = GNNPCalculator(copy.deepcopy(small_model), dtype=torch.float32)
    calc64 = GNNPCalculator(copy.deepcopy(small_model), dtype=torch.float64)
    assert calc32.model.dtype == torch.float32 and calc64.model.dtype == torch.float64
    a32, a64 = _attach(bulk_atoms, calc32), _attach(bulk_atoms, calc64)
    assert a32.get_potential_energy() == pytest.approx(a64.get_potential_energy(), rel=1e-5)
    np.testing.assert_allclose(a32.get_forces(), a64.get_forces(), atol=1e-4)
    np.testing.assert_allclose(a32.get_stress(), a64.get_stress(), atol=1e-5)
    assert a64.get_forces().dtype == np.float64


def test_default_dtype_is_the_models(small_model, cluster_atoms):
    calc = GNNPCalculator(small_model)
    assert calc.dtype == torch.float64
    assert np.isfinite(_attach(cluster_atoms, calc).get_potential_energy())


def test_calculators_sharing_a_model_are_independent(small_model, bulk_atoms):
    calc64 = GNNPCalculator(small_model, dtype=torch.float64)
    calc32 = GNNPCalculator(small_model, dtype=torch.float32)
    """Building a float32 calculator must not convert the caller's (shared) model."""
    a64, a32 = _attach(bulk_atoms, calc64), _attach(bulk_atoms, calc32)
    assert a64.get_potential_energy() == pytest.approx(a32.get_potential_energy(), rel=1e-5)
    assert small_model.dtype == torch.float64
    assert calc64.model.dtype == torch.float64 and calc32.model.dtype == torch.float32


def test_global_default_dtype_unchanged(small_model, bulk_atoms):
    before = torch.get_default_dtype()
    calc = GNNPCalculator(small_model, dtype=torch.float64)
    atoms = _attach(bulk_atoms, calc)
    atoms.get_stress()
    calc.batch_evaluate([bulk_atoms, make_cluster()])
    assert torch.get_default_dtype() == before == torch.float32


def test_empty_structure(calc64):
    result = calc64.batch_evaluate([Atoms()])[0]
    assert result["energy"] == 0.0
    assert result["forces"].shape == (0, 3)


def test_ge_bulk_energy_differs_from_si(calc64):
    si = _attach(bulk("Si", "diamond", a=5.43), calc64).get_potential_energy()
    ge = _attach(bulk("Ge", "diamond", a=5.43), calc64).get_potential_energy()
    assert si != pytest.approx(ge)


def test_teacher_without_matscipy_names_the_extra(monkeypatch):
    """A missing optional engine gives an ImportError naming the extra to install."""
    import sys

    from ase_gnnp.teachers import tersoff_sige

    monkeypatch.setitem(sys.modules, "matscipy.calculators.manybody", None)
    with pytest.raises(ImportError, match=r"ase_gnnp\[teacher\]"):
        tersoff_sige()


def test_warns_once_about_an_element_absent_from_training(calc64):
    """Ge-for-a-Si-model style transfer works, but the user is told E0 is not fitted."""
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.numbers[1] = 6  # carbon: the fixture model has only Si and Ge fitted
    atoms.calc = calc64
    with pytest.warns(UserWarning, match=r"element\(s\) C were not in"):
        energy = atoms.get_potential_energy()
    assert np.isfinite(energy)
    atoms.rattle(0.01, seed=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms.get_potential_energy()  # said once per calculator
