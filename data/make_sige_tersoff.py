"""Generate the shipped Si–Ge reference set with the Tersoff (1989) teacher.

Writes ``sige_tersoff_train.extxyz`` (seed 0) and ``sige_tersoff_test.extxyz`` (seed 1,
an exchangeable held-out set drawn from the same recipe) next to this script. Every frame
records ``config_type``, ``teacher``, ``seed`` and ``x_ge`` in its header; energy (eV),
forces (eV/Å) and stress (eV/Å^3, ASE sign and Voigt order) are stored as calculator
results, so ``atoms.get_potential_energy()`` etc. work after ``ase.io.read``.

Groups (per seed): rattled and strained (±3 %) crystals over x_Ge in 0..1, Langevin MD
snapshots at 300–1500 K, vacancies, (100)/(110)/(111) surface slabs, and random
Si_{1-x}Ge_x alloys for x = 0, 0.1, ..., 1, and the harmonic regime (±1 % strains of
nearly perfect crystals, single displaced atoms) for elastic constants and phonons.
Run: ``python data/make_sige_tersoff.py`` (about two minutes on 2 cores). Refuses to
overwrite existing files unless ``--force``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _script import generate_sets  # data/_script.py
from ase import Atoms, units
from ase.build import bulk, surface
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from tqdm import tqdm

from ase_gnnp.teachers.tersoff import TEACHER_LABEL, tersoff_sige

A_SI, A_GE = 5.432, 5.657  # Tersoff equilibrium lattice constants (Å)
HERE = Path(__file__).resolve().parent


def lattice_constant(x_ge: float) -> float:
    """Vegard's law between the teacher's Si and Ge lattice constants."""
    return (1 - x_ge) * A_SI + x_ge * A_GE


def crystal(x_ge: float, reps: tuple[int, int, int], rng: np.random.Generator) -> Atoms:
    """Diamond cell with a random Si/Ge occupation at Ge fraction ``x_ge``."""
    atoms = bulk("Si", "diamond", a=lattice_constant(x_ge), cubic=True) * reps
    n_ge = int(round(x_ge * len(atoms)))
    numbers = np.full(len(atoms), 14)
    numbers[rng.choice(len(atoms), n_ge, replace=False)] = 32
    atoms.numbers = numbers
    return atoms


def strain(atoms: Atoms, max_strain: float, rng: np.random.Generator) -> Atoms:
    eps = rng.uniform(-max_strain, max_strain, (3, 3))
    eps = 0.5 * (eps + eps.T)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return atoms


def label(atoms: Atoms, config_type: str, seed: int) -> Atoms:
    """Attach teacher energy/forces/stress as calculator results and header info."""
    atoms = atoms.copy()
    atoms.calc = tersoff_sige()
    results = dict(
        energy=atoms.get_potential_energy(),
        forces=atoms.get_forces(),
        stress=atoms.get_stress(),
    )
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info.update(
        config_type=config_type,
        teacher=TEACHER_LABEL,
        seed=seed,
        x_ge=round(float(np.mean(atoms.numbers == 32)), 4),
    )
    return atoms


def md_snapshots(atoms, temperature, n_snap, every, rng):
    atoms = atoms.copy()
    atoms.calc = tersoff_sige()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, 1.0 * units.fs, temperature_K=temperature, friction=0.02, rng=rng)
    dyn.run(200)  # equilibrate
    snaps = []
    for _ in range(n_snap):
        dyn.run(every)
        snaps.append(atoms.copy())
    return snaps


def generate(seed: int, scale: float = 1.0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    frames: list[Atoms] = []
    n = lambda k: max(1, int(round(k * scale)))  # noqa: E731

    # 1. rattled and strained crystals (8- and 64-atom cells), near equilibrium
    for _ in tqdm(range(n(120)), desc=f"strained (seed {seed})"):
        x = rng.choice([0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
        reps = (1, 1, 1) if rng.random() < 0.6 else (2, 2, 2)
        atoms = strain(crystal(x, reps, rng), 0.03, rng)
        atoms.rattle(stdev=rng.uniform(0.005, 0.05), seed=int(rng.integers(2**31)))
        frames.append(label(atoms, "strained", seed))

    # 2. MD snapshots 300-1500 K (64 atoms)
    for temperature in tqdm([300, 600, 900, 1200, 1500], desc=f"md (seed {seed})"):
        for x in (0.0, 0.5, 1.0):
            for atoms in md_snapshots(crystal(x, (2, 2, 2), rng), temperature, n(6), 40, rng):
                frames.append(label(atoms, f"md{temperature}", seed))

    # 3. vacancies (63 atoms), short MD at 300-900 K
    for _ in tqdm(range(n(8)), desc=f"vacancy (seed {seed})"):
        atoms = crystal(rng.choice([0.0, 0.5, 1.0]), (2, 2, 2), rng)
        del atoms[int(rng.integers(len(atoms)))]
        for snap in md_snapshots(atoms, rng.choice([300, 600, 900]), 3, 30, rng):
            frames.append(label(snap, "vacancy", seed))

    # 4. surfaces: 3-D periodic slabs with 10 Å of vacuum
    for _ in tqdm(range(n(10)), desc=f"surface (seed {seed})"):
        x = rng.choice([0.0, 0.5, 1.0])
        miller = [(1, 0, 0), (1, 1, 0), (1, 1, 1)][int(rng.integers(3))]
        unit = crystal(x, (1, 1, 1), rng)
        slab = surface(unit, miller, layers=4, vacuum=5.0, periodic=True)
        if len(slab) < 24:
            slab = slab * (2, 1, 1)
        for snap in md_snapshots(slab, rng.choice([300, 600]), 2, 30, rng):
            frames.append(label(snap, "surface", seed))

    # 5. random alloys over the whole composition range, rattled (64 atoms)
    for x in tqdm(np.linspace(0, 1, 11), desc=f"alloy (seed {seed})"):
        for _ in range(n(3)):
            atoms = strain(crystal(float(x), (2, 2, 2), rng), 0.01, rng)
            atoms.rattle(stdev=0.05, seed=int(rng.integers(2**31)))
            frames.append(label(atoms, "alloy", seed))

    # 6. the harmonic regime (elastic constants, phonons): small homogeneous strains
    #    (±1 %) of nearly perfect crystals, and single atoms displaced by 0.01-0.04 Å in
    #    64-atom cells; drawn last, so that groups 1-5 stay what they were
    for _ in tqdm(range(n(24)), desc=f"harmonic strain (seed {seed})"):
        x = rng.choice([0.0, 0.0, 0.0, 0.5, 1.0])
        reps = (1, 1, 1) if rng.random() < 0.5 else (2, 2, 2)
        atoms = strain(crystal(float(x), reps, rng), 0.01, rng)
        atoms.rattle(stdev=0.003, seed=int(rng.integers(2**31)))
        frames.append(label(atoms, "harmonic", seed))
    for _ in tqdm(range(n(24)), desc=f"harmonic displacement (seed {seed})"):
        atoms = crystal(float(rng.choice([0.0, 0.0, 0.0, 0.5, 1.0])), (2, 2, 2), rng)
        direction = rng.normal(size=3)
        atoms.positions[int(rng.integers(len(atoms)))] += (
            rng.uniform(0.01, 0.04) * direction / np.linalg.norm(direction)
        )
        frames.append(label(atoms, "harmonic", seed))
    return frames


def main() -> None:
    jobs = [("sige_tersoff_train.extxyz", 0, 1.0), ("sige_tersoff_test.extxyz", 1, 0.25)]
    generate_sets(__doc__.splitlines()[0], HERE, generate, jobs)


if __name__ == "__main__":
    main()
