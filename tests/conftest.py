"""Shared fixtures: a small random float64 model, its calculator and test structures."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from ase_gnnp import GNNPCalculator, GNNPModel, ModelConfig
from ase_gnnp.train import TrainConfig

# one thread: fast for these tiny models and friendly to other jobs on the machine
torch.set_num_threads(1)

SI, GE = 14, 32
CUTOFF = 3.5
SMALL_CONFIG = ModelConfig(cutoff=CUTOFF, channels=8, lmax=2, num_layers=2)


def load_tutorial(name: str):
    """The module ``tutorials/<name>.py`` (the tutorials are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "tutorials" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def _small_model_master() -> GNNPModel:
    torch.manual_seed(0)
    model = GNNPModel(SMALL_CONFIG).to(torch.float64)
    with torch.no_grad():
        model.scale.fill_(0.7)
        model.shift.fill_(0.05)
        model.atomic_reference[SI] = -4.63
        model.atomic_reference[GE] = -3.85
        model.fitted_elements[[SI, GE]] = True
        model.set_avg_num_neighbors(4.0)
    return model.eval()


@pytest.fixture
def small_model(_small_model_master) -> GNNPModel:
    """Randomly initialised float64 model (cutoff 3.5 Å, 8 channels, lmax 2, 2 layers).

    A fresh deep copy per test: calculators convert and freeze the model they are given.
    """
    return copy.deepcopy(_small_model_master)


@pytest.fixture
def calc64(small_model) -> GNNPCalculator:
    return GNNPCalculator(small_model, dtype=torch.float64)


# ---------------------------------------------------------------- structures
def make_bulk(seed: int = 1) -> Atoms:
    """16-atom rattled, slightly strained SiGe diamond supercell (triclinic cell)."""
    atoms = bulk("Si", "diamond", a=5.43) * (2, 2, 2)
    atoms.numbers[[1, 4, 6, 11, 13]] = GE
    rng = np.random.default_rng(seed)
    strain = np.eye(3) + 0.02 * rng.uniform(-1.0, 1.0, size=(3, 3))
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def make_cluster(seed: int = 2) -> Atoms:
    """6-atom Si4Ge2 distorted octahedron (bonds ≈ 2.4 Å), no cell, no PBC."""
    a = 2.4 / np.sqrt(2.0)
    positions = a * np.array(
        [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float
    )
    atoms = Atoms([SI, GE, SI, SI, GE, SI], positions=positions + 5.0, pbc=False)
    atoms.rattle(0.08, seed=seed)
    return atoms


def make_slab(seed: int = 3) -> Atoms:
    """8-atom SiGe diamond slab, periodic in x and y only (pbc = True, True, False)."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.numbers[[2, 5]] = GE
    cell = atoms.cell.array.copy()
    cell[1] += [0.4, 0.0, 0.0]  # non-orthogonal in-plane cell
    atoms.set_cell(cell, scale_atoms=True)
    atoms.pbc = (True, True, False)
    atoms.rattle(0.05, seed=seed)
    return atoms


@pytest.fixture
def bulk_atoms() -> Atoms:
    return make_bulk()


@pytest.fixture
def cluster_atoms() -> Atoms:
    return make_cluster()


@pytest.fixture
def slab_atoms() -> Atoms:
    return make_slab()


STRUCTURES = {"bulk": make_bulk, "cluster": make_cluster, "slab": make_slab}


@pytest.fixture(params=sorted(STRUCTURES))
def any_atoms(request) -> Atoms:
    """Each of the periodic bulk, the cluster and the mixed-PBC slab."""
    return STRUCTURES[request.param]()


# ---------------------------------------------------------------- training
TINY_MODEL = ModelConfig(
    cutoff=3.5, channels=8, lmax=1, num_layers=2, num_radial=6, radial_hidden=16, readout_hidden=8
)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """16 rattled, strained 8-atom SiGe diamond cells with Tersoff energies/forces/stress."""
    pytest.importorskip("matscipy", reason="the Tersoff teacher needs matscipy")
    from ase_gnnp.teachers import tersoff_sige

    rng = np.random.default_rng(0)
    frames = []
    for k in range(16):
        atoms = bulk("Si", "diamond", a=5.43 + 0.1 * rng.uniform(), cubic=True)
        atoms.numbers[rng.random(len(atoms)) < 0.4] = 32
        strain = np.eye(3) + 0.02 * rng.uniform(-1.0, 1.0, size=(3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.rattle(0.08, seed=k)
        atoms.calc = tersoff_sige()
        results = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
        }
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["config_type"] = "rattled" if k % 2 else "strained"
        frames.append(atoms)
    path = tmp_path_factory.mktemp("data") / "tiny.extxyz"
    write(path, frames, format="extxyz")
    return path


def train_config(data, out, **changes) -> TrainConfig:
    values = dict(
        data=str(data),
        out=str(out),
        epochs=3,
        batch_size=4,
        lr=5e-3,
        threads=1,
        val_fraction=0.25,
        seed=0,
        model=TINY_MODEL,
    )
    values.update(changes)
    return TrainConfig(**values)


def final_weights(out) -> dict:
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    return {"model": state["model"], "ema": state["ema"]["shadow"], "epoch": state["epoch"]}
