"""Generate Cu–Au–Ni fcc alloy data with ASE's EMT teacher (every pair is defined).

Writes next to this script:

- ``emt_cuauni_train.extxyz`` (seed 0): pure Cu, Au and Ni and the Cu–Ni and Au–Ni
  binaries only: no structure holds both Cu and Au. The unseen-pair study trains on it
  and predicts Cu–Au mixing.
- ``emt_cuau_train.extxyz`` (seed 1): Cu–Au binaries drawn by the same recipe, added to
  the first set for the comparison model that has seen the pair.
- ``emt_cuauni_test.extxyz`` (seed 2): held-out structures of all three binaries and the
  pure metals.

Groups (``config_type``, per system): ``strained`` (random occupations of 32-atom fcc
cells at a random composition, Vegard lattice constant, ±3 % strain, rattled), ``ordered``
(4-atom L1₂/L1₀ cells, strained ±3 %), ``md600`` (Langevin snapshots at 600 K) and
``relaxing`` (snapshots along an EMT relaxation of a random alloy, positions and cell).
Energies, forces and stress are stored as calculator results; every frame records
``config_type``, ``system``, ``teacher`` and ``seed``.

Run: ``python data/make_emt_alloys.py`` (a few minutes). Refuses to overwrite existing
files unless ``--force``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _script import generate_sets  # data/_script.py
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers
from ase.filters import FrechetCellFilter
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from ase.optimize import FIRE
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
A = {"Cu": 3.61, "Au": 4.08, "Ni": 3.52}  # fcc lattice constants (Å), starting guesses
TEACHER = "ASE EMT (Jacobsen, Stoltze, Norskov 1996 parameters)"


def alloy(a: str, b: str, x: float, reps, rng: np.random.Generator) -> Atoms:
    """fcc cell with a fraction ``x`` of ``a`` on random sites, Vegard lattice constant."""
    atoms = bulk(b, "fcc", a=x * A[a] + (1 - x) * A[b], cubic=True) * reps
    n_a = int(round(x * len(atoms)))
    numbers = atoms.numbers.copy()
    numbers[rng.choice(len(atoms), n_a, replace=False)] = atomic_numbers[a]
    atoms.numbers = numbers
    return atoms


def strain(atoms: Atoms, amount: float, rng: np.random.Generator) -> Atoms:
    eps = rng.uniform(-amount, amount, (3, 3))
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
    return atoms


def label(atoms: Atoms, config_type: str, system: str, seed: int) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
               "stress": atoms.get_stress()}  # fmt: skip
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info.update(config_type=config_type, system=system, teacher=TEACHER, seed=seed)
    return atoms


def system_frames(system: str, seed: int, rng: np.random.Generator, scale: float) -> list:
    pair = [system[:2], system[2:]] if len(system) == 4 else [system, system]
    a, b = pair
    n = lambda k: max(1, int(round(k * scale)))  # noqa: E731
    binary = a != b
    frames = []
    for _ in range(n(30 if binary else 10)):
        x = rng.uniform(0.05, 0.95) if binary else 1.0
        atoms = strain(alloy(a, b, x, (2, 2, 2), rng), 0.03, rng)
        atoms.rattle(rng.uniform(0.02, 0.08), seed=int(rng.integers(2**31)))
        frames.append(label(atoms, "strained", system, seed))
    for _ in range(n(10)):
        atoms = bulk(b, "fcc", a=A[b], cubic=True)
        if binary:  # L1_2 (1 or 3 sites of a) or L1_0 (2 sites)
            k = int(rng.integers(1, 4))
            atoms.set_cell(atoms.cell * ((k * A[a] + (4 - k) * A[b]) / 4 / A[b]),
                           scale_atoms=True)  # fmt: skip
            numbers = atoms.numbers.copy()
            numbers[:k] = atomic_numbers[a]
            atoms.numbers = numbers
        atoms = strain(atoms, 0.03, rng)
        atoms.rattle(0.02, seed=int(rng.integers(2**31)))
        frames.append(label(atoms, "ordered", system, seed))
    for _ in range(n(2)):
        atoms = alloy(a, b, rng.uniform(0.1, 0.9) if binary else 1.0, (2, 2, 2), rng)
        atoms.calc = EMT()
        thermalize_momenta(atoms, 600, rng=rng)
        dyn = Langevin(atoms, 2 * units.fs, temperature_K=600, friction=0.02, rng=rng)
        dyn.run(100)
        for _ in range(5):
            dyn.run(20)
            frames.append(label(atoms, "md600", system, seed))
    if binary:
        for _ in range(n(4)):
            atoms = alloy(a, b, rng.uniform(0.1, 0.9), (2, 2, 2), rng)
            atoms.rattle(0.05, seed=int(rng.integers(2**31)))
            atoms.calc = EMT()
            opt = FIRE(FrechetCellFilter(atoms), logfile=None)
            for k, _ in enumerate(opt.irun(fmax=0.01, steps=60)):
                if k % 15 == 0:
                    frames.append(label(atoms, "relaxing", system, seed))
    return frames


def generate(seed: int, scale: float, systems) -> list:
    rng = np.random.default_rng(seed)
    frames = []
    for system in tqdm(systems, desc=f"EMT alloys (seed {seed})"):
        frames += system_frames(system, seed, rng, scale)
    return frames


def _sets(seed: int, scale: float) -> list:
    systems = {
        0: ["Cu", "Au", "Ni", "CuNi", "AuNi"],
        1: ["CuAu"],
        2: ["Cu", "Au", "Ni", "CuNi", "AuNi", "CuAu"],
    }[seed]
    return generate(seed, scale, systems)


def main() -> None:
    jobs = [
        ("emt_cuauni_train.extxyz", 0, 1.0),
        ("emt_cuau_train.extxyz", 1, 1.0),
        ("emt_cuauni_test.extxyz", 2, 0.3),
    ]
    generate_sets(__doc__.splitlines()[0], HERE, _sets, jobs)


if __name__ == "__main__":
    main()
