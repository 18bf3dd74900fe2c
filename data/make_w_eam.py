"""Generate the W reference set with the Marinica (2013) EAM teacher.

Writes ``w_marinica_train.extxyz`` (seed 0) and ``w_marinica_test.extxyz`` (seed 1, the
same recipe at a quarter of the size) next to this script. Labels (energy, forces,
stress) are ASE calculator results; every frame records ``config_type``, ``teacher`` and
``seed``; the dislocation frames also record ``cylinder`` (``"r15"``, ``"r18"``, ``"r20"``,
``"r25"``: the cylinder radius in Å). Frames of one cylinder share its atoms and fixed
outer shell, so their energy differences are meaningful: train with
``relative_energy_key: cylinder`` to fit them (see ``ase_gnnp/models/w-eam.yaml``).

Groups: ``strained`` (rattled 2-, 16- and 54-atom BCC cells, random ±3 % strains),
``md300`` / ``md1000`` / ``md2000`` (Langevin snapshots, 54 atoms), ``vacancy`` (53
atoms, MD at 600 K), ``surface`` ((110) and (100) slabs with vacuum), and the screw
dislocation: ``core`` (the relaxed cores at the two neighbouring Peierls valleys and
Langevin snapshots of the 25 Å cylinder at 100–600 K around them, outer shell fixed)
``core_interp`` (rattled linear interpolations between the two relaxed cores) and
``core_path`` (the teacher's climbing-image NEB images of one glide step in cylinders of
radius 15 and 20 Å, as they are and rattled by 0.01 Å; the test set uses 18 Å). The
path of the 25 Å cylinder used for the barrier benchmark is never in the data. Every
frame is checked to keep atoms more than 2 Å apart, where the teacher is defined.

Run: ``python data/make_w_eam.py`` (about ten minutes on 2 cores; refuses to overwrite
existing files unless ``--force``).
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
from ase.optimize import FIRE
from tqdm import tqdm

from ase_gnnp.teachers.eam_w import (
    MARINICA_W,
    TEACHER_LABEL_MARINICA_W,
    check_min_distance,
    marinica_w,
)
from ase_gnnp.workflows.peierls import build_glide, peierls_barrier

HERE = Path(__file__).resolve().parent
A0 = MARINICA_W["a0"]
#: the teacher's own elastic constants (GPa, ase_gnnp.workflows.elastic_constants), for
#: the dislocation's anisotropic displacement field
C11, C12, C44 = 523.0, 202.2, 160.9


def label(atoms: Atoms, config_type: str, seed: int, calc, cylinder: str | None = None) -> Atoms:
    atoms = atoms.copy()
    atoms.set_constraint()
    check_min_distance(atoms)
    atoms.calc = calc
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if np.all(atoms.pbc):
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info.update(config_type=config_type, teacher=TEACHER_LABEL_MARINICA_W, seed=seed)
    if cylinder is not None:  # one cylinder's frames share its fixed shell: an energy group
        atoms.info["cylinder"] = cylinder
    return atoms


def strained(atoms: Atoms, max_strain: float, rng: np.random.Generator) -> Atoms:
    eps = rng.uniform(-max_strain, max_strain, (3, 3))
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
    return atoms


def md_snapshots(atoms, calc, temperature, n_snap, every, rng, equilibrate=200):
    atoms = atoms.copy()
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, 2.0 * units.fs, temperature_K=temperature, friction=0.02, rng=rng)
    dyn.run(equilibrate)
    snaps = []
    for _ in range(n_snap):
        dyn.run(every)
        snaps.append(atoms.copy())
    return snaps


def generate(seed: int, scale: float = 1.0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    calc = marinica_w()
    frames: list[Atoms] = []
    n = lambda k: max(1, int(round(k * scale)))  # noqa: E731

    for _ in tqdm(range(n(60)), desc=f"strained (seed {seed})"):
        reps = [(1, 1, 1), (2, 2, 2), (3, 3, 3)][int(rng.integers(3))]
        atoms = strained(bulk("W", "bcc", a=A0, cubic=True) * reps, 0.03, rng)
        atoms.rattle(stdev=rng.uniform(0.005, 0.08), seed=int(rng.integers(2**31)))
        frames.append(label(atoms, "strained", seed, calc))

    for temperature in tqdm((300, 1000, 2000), desc=f"md (seed {seed})"):
        cell = bulk("W", "bcc", a=A0, cubic=True) * (3, 3, 3)
        for snap in md_snapshots(cell, calc, temperature, n(10), 25, rng):
            frames.append(label(snap, f"md{temperature}", seed, calc))

    for _ in tqdm(range(n(3)), desc=f"vacancy (seed {seed})"):
        cell = bulk("W", "bcc", a=A0, cubic=True) * (3, 3, 3)
        del cell[int(rng.integers(len(cell)))]
        for snap in md_snapshots(cell, calc, 600, 3, 25, rng):
            frames.append(label(snap, "vacancy", seed, calc))

    for miller in tqdm(((1, 1, 0), (1, 0, 0)), desc=f"surface (seed {seed})"):
        slab = surface(bulk("W", "bcc", a=A0, cubic=True), miller, layers=6, vacuum=5.0,
                       periodic=True) * (2, 2, 1)  # fmt: skip
        for snap in md_snapshots(slab, calc, 600, n(4), 25, rng):
            frames.append(label(snap, "surface", seed, calc))

    setup = build_glide("W", A0, C11, C12, C44, radius=25.0)
    cores = []
    for atoms in (setup.initial, setup.final):
        atoms = atoms.copy()
        atoms.calc = calc
        FIRE(atoms, logfile=None).run(fmax=0.005, steps=1000)
        cores.append(atoms)
        frames.append(label(atoms, "core", seed, calc, "r25"))
    for _ in tqdm(range(n(4)), desc=f"core md (seed {seed})"):
        start = cores[int(rng.integers(2))]
        temperature = float(rng.choice([100, 300, 600]))
        # the FixAtoms constraint of the outer shell stays on during MD
        for snap in md_snapshots(start, calc, temperature, 3, 20, rng, equilibrate=50):
            frames.append(label(snap, "core", seed, calc, "r25"))
    for _ in tqdm(range(n(12)), desc=f"core interpolation (seed {seed})"):
        t = rng.uniform(0.05, 0.95)
        atoms = cores[0].copy()
        atoms.positions = (1 - t) * cores[0].positions + t * cores[1].positions
        atoms.rattle(stdev=0.02, seed=int(rng.integers(2**31)))
        frames.append(label(atoms, "core_interp", seed, calc, "r25"))

    # glide paths of smaller cylinders (never the 25 Å one of the barrier benchmark):
    # the teacher's climbing-image NEB images, as they are and rattled
    radii = (15.0, 20.0) if seed == 0 else (18.0,)
    for radius in tqdm(radii, desc=f"core glide paths (seed {seed})"):
        small = build_glide("W", A0, C11, C12, C44, radius=radius)
        path = peierls_barrier(small, calc, n_images=9)
        for image in path.images:
            frames.append(label(image, "core_path", seed, calc, f"r{radius:g}"))
            for _ in range(n(2)):
                rattled = image.copy()
                rattled.rattle(stdev=0.01, seed=int(rng.integers(2**31)))
                frames.append(label(rattled, "core_path", seed, calc, f"r{radius:g}"))
    return frames


def main() -> None:
    jobs = [("w_marinica_train.extxyz", 0, 1.0), ("w_marinica_test.extxyz", 1, 0.25)]
    generate_sets(__doc__.splitlines()[0], HERE, generate, jobs)


if __name__ == "__main__":
    main()
