"""The PySCF water generator: field terms consistent with the energy, split by structure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location(
        "make_water", ROOT / "data" / "make_water_pyscf.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frames(n: int) -> list[Atoms]:
    frames = []
    for i in range(n):
        atoms = Atoms("OH2", positions=np.eye(3) * (1 + i))
        atoms.info["config_type"] = ("monomer", "dimer", "trimer")[i % 3]
        if i % 5 == 0:
            atoms.info["polarizability"] = np.eye(3)
        atoms.info["index"] = i
        frames.append(atoms)
    return frames


def test_split_is_by_structure_stratified_and_seeded(generator):
    frames = _frames(100)
    train, test = generator.split_train_test(frames, 0.2, seed=0)
    ids_train = {a.info["index"] for a in train}
    ids_test = {a.info["index"] for a in test}
    assert not ids_train & ids_test
    assert len(ids_train | ids_test) == 100
    for kind in ("monomer", "dimer", "trimer"):
        for polar in (True, False):
            n_all = sum(
                a.info["config_type"] == kind and ("polarizability" in a.info) == polar
                for a in frames
            )
            n_test = sum(
                a.info["config_type"] == kind and ("polarizability" in a.info) == polar
                for a in test
            )
            assert n_test == round(0.2 * n_all)
    again = generator.split_train_test(frames, 0.2, seed=0)[1]
    assert [a.info["index"] for a in again] == [a.info["index"] for a in test]
    other = generator.split_train_test(frames, 0.2, seed=1)[1]
    assert [a.info["index"] for a in other] != [a.info["index"] for a in test]


@pytest.mark.slow
def test_field_enters_hamiltonian_nuclei_and_gradient_consistently(generator):
    """dipole = -dE/d𝓔 and forces = -dE/dR by finite differences, in a field, with PySCF."""
    pytest.importorskip("pyscf")
    dipole_err, force_err = generator.self_check(np.random.default_rng(5), n_molecules=1)
    assert dipole_err < 1e-4
    assert force_err < 2e-3
