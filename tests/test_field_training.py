"""Training and evaluation with dipole, polarizability and charge labels in a field."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from ase_gnnp import GNNPCalculator, GNNPModel, ModelConfig
from ase_gnnp.data import DataKeys, labelled_graph, read_structures
from ase_gnnp.evaluate import evaluate_structures, format_table
from ase_gnnp.train import TrainConfig, Trainer

MODEL = ModelConfig(
    cutoff=3.5, channels=8, lmax=1, num_layers=2, num_radial=6, radial_hidden=16,
    readout_hidden=8, long_range="ewald", field=True,
)  # fmt: skip


def _teacher() -> GNNPCalculator:
    torch.manual_seed(3)
    model = GNNPModel(MODEL).to(torch.float64)
    with torch.no_grad():
        model.set_avg_num_neighbors(2.0)
        model.field_embedding.linear.weight.mul_(5.0)
    return GNNPCalculator(model, dtype=torch.float64)


@pytest.fixture(scope="module")
def water_set(tmp_path_factory):
    """12 rattled waters in random fields labelled by a random field model (the teacher)."""
    teacher = _teacher()
    rng = np.random.default_rng(0)
    frames = []
    for k in range(12):
        atoms = molecule("H2O")
        atoms.rattle(0.05, seed=k)
        atoms.info["electric_field"] = (rng.normal(size=3) * 0.2).tolist()
        atoms.info["config_type"] = "monomer"
        props = ["energy", "forces", "dipole", "charges"]
        if k % 2 == 0:
            props.append("polarizability")
        res = {p: teacher.get_property(p, atoms) for p in props}
        polar = res.pop("polarizability", None)
        atoms.calc = SinglePointCalculator(atoms, **res)
        if polar is not None:
            atoms.info["polarizability"] = polar
        frames.append(atoms)
    path = tmp_path_factory.mktemp("water") / "water.extxyz"
    write(path, frames, format="extxyz")
    return path


def test_labels_survive_extxyz(water_set):
    frames = read_structures(water_set, require=("energy", "forces", "dipole"))
    graph = labelled_graph(frames[0], 3.5)
    assert bool(graph.has_dipole.all()) and bool(graph.has_polarizability.all())
    assert bool(graph.has_charges.all())
    np.testing.assert_allclose(graph.ref_dipole.numpy()[0], frames[0].calc.results["dipole"],
                               rtol=1e-6)  # fmt: skip
    assert not bool(labelled_graph(frames[1], 3.5).has_polarizability.any())


def test_named_missing_label_is_an_error(water_set):
    with pytest.raises(ValueError, match="no dipole label"):
        read_structures(water_set, DataKeys(dipole="mu_dft"))


def test_periodic_dipole_label_is_not_used():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], cell=[5, 5, 5], pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=0.0, dipole=[0.1, 0.0, 0.0])
    assert not bool(labelled_graph(atoms, 3.0).has_dipole.any())


def test_evaluate_reports_dipole_polarizability_and_charges(water_set):
    teacher = _teacher().model
    frames = read_structures(water_set)
    summary = evaluate_structures(teacher, frames)
    assert summary["dipole_mae"] < 1e-6
    assert summary["polarizability_mae"] < 1e-6
    assert summary["charge_mae"] < 1e-6
    assert summary["polarizability_iso_rel_mae"] < 1e-6
    assert "dipole MAE" in format_table(summary)
    assert "isotropic polarizability" in format_table(summary)
    for atoms in frames:  # labels 20 % smaller: predictions are 25 % too large
        if "polarizability" in atoms.info:
            atoms.info["polarizability"] = np.asarray(atoms.info["polarizability"]) * 0.8
    scaled = evaluate_structures(teacher, frames)
    assert scaled["polarizability_iso_rel_mae"] == pytest.approx(0.25, rel=1e-6)
    assert scaled["polarizability_iso_rel_max"] == pytest.approx(0.25, rel=1e-6)
    other = copy.deepcopy(teacher)
    with torch.no_grad():
        other.field_embedding.linear.weight.mul_(0.0)
    assert evaluate_structures(other, frames)["dipole_mae"] > 1e-3


def test_training_on_dipoles_learns(water_set, tmp_path):
    config = TrainConfig(
        data=str(water_set), out=str(tmp_path / "run"), epochs=8, batch_size=4, lr=1e-2,
        threads=1, val_fraction=0.25, seed=0, dtype="float64", model=MODEL, ema_decay=0.0,
        energy_weight=1.0, dipole_weight=100.0, polarizability_weight=10.0, charges_weight=1.0,
    )  # fmt: skip
    trainer = Trainer(config, progress=False)
    before = evaluate_structures(trainer.model, read_structures(water_set))
    trainer.run()
    with open(tmp_path / "run" / "metrics.csv") as fh:
        assert "val_dipole_mae" in fh.readline()
    after = evaluate_structures(trainer.model, read_structures(water_set))
    assert after["dipole_mae"] < 0.7 * before["dipole_mae"]
