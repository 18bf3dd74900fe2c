"""Generate the shipped SiO₂ reference sets with the BKS teacher (exact Ewald, known charges).

Writes ``sio2_bks_train.extxyz`` (seed 0) and ``sio2_bks_test.extxyz`` (seed 1) next to
this script. The teacher is :class:`ase_gnnp.teachers.BKSCalculator` (BKS Buckingham
switched off between 5.0 and 5.5 Å, plus a repulsive (σ/r)^24 wall, plus the full Ewald sum of the
fixed charges Si +2.4 e, O -1.2 e). Every frame stores energy (eV), forces (eV/Å),
stress (eV/Å³, 3-D periodic cells) and the exact charges (e) as calculator results, and
``config_type``, ``teacher``, ``seed`` in ``info``.

Groups, built from α-quartz relaxed with the teacher:

- ``strained``: 9-, 36- and 72-atom cells, random strain up to ±3 %, rattled by 0.05 Å;
- ``md300`` … ``md1200``: Langevin snapshots of the 72-atom cell;
- ``slab``: a (001) slab of 2×2×3 cells with 10 Å of vacuum, as a 3-D periodic cell
  (the 1/r tail across the vacuum is in the labels), rattled;
- ``large`` (test set only): rattled 162-atom 3×3×2 cells, larger than any training cell.

About five minutes on 2 cores. Refuses to overwrite existing files unless ``--force``.

    python data/make_sio2_bks.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.filters import FrechetCellFilter
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.optimize import FIRE
from ase.spacegroup import crystal
from tqdm import tqdm

from ase_gnnp.teachers import BKSCalculator

HERE = Path(__file__).resolve().parent
TEACHER = "BKS (PRL 64, 1955) switched 5.0-5.5 A + eps(sigma/r)^24 wall + Ewald, q_Si=2.4"


def alpha_quartz() -> Atoms:
    """Experimental α-quartz (P3₂21), relaxed (cell and positions) with the teacher."""
    atoms = crystal(
        ("Si", "O"),
        basis=[(0.4697, 0.0, 2 / 3), (0.4135, 0.2669, 0.1191 - 1 / 3)],
        spacegroup=154,
        cellpar=[4.916, 4.916, 5.405, 90, 90, 120],
    )
    atoms.calc = BKSCalculator()
    FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-3, steps=2000)
    atoms.calc = None
    return atoms


def strained(base: Atoms, reps, rng: np.random.Generator) -> Atoms:
    atoms = base * reps
    eps = rng.uniform(-0.03, 0.03, (3, 3))
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
    atoms.rattle(0.05, seed=int(rng.integers(2**31)))
    return atoms


def slab(base: Atoms, rng: np.random.Generator) -> Atoms:
    atoms = base * (2, 2, 3)
    atoms.center(vacuum=5.0, axis=2)  # 10 Å of vacuum between periodic images
    atoms.pbc = True
    atoms.rattle(0.05, seed=int(rng.integers(2**31)))
    return atoms


def label(atoms: Atoms, config_type: str, seed: int) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = BKSCalculator()
    results = {
        "energy": atoms.get_potential_energy(),
        "forces": atoms.get_forces(),
        "charges": atoms.calc.results["charges"],
    }
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info.update(config_type=config_type, teacher=TEACHER, seed=seed)
    return atoms


def md_snapshots(base: Atoms, temperature: float, count: int, rng, seed: int) -> list[Atoms]:
    atoms = base * (2, 2, 2)
    atoms.calc = BKSCalculator()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, 1.0 * units.fs, temperature_K=temperature, friction=0.02, rng=rng)
    frames = []
    dyn.run(100)  # equilibrate
    for _ in range(count):
        dyn.run(20)
        frames.append(label(atoms, f"md{int(temperature)}", seed))
    return frames


def build(base: Atoms, seed: int, test: bool) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    scale = 1 if test else 3
    frames = []
    jobs = [((1, 1, 1), 6), ((2, 2, 1), 6), ((2, 2, 2), 8)]
    for reps, count in tqdm(jobs, desc=f"strained (seed {seed})"):
        frames += [label(strained(base, reps, rng), "strained", seed) for _ in range(count * scale)]
    for temperature in tqdm((300.0, 600.0, 900.0, 1200.0), desc=f"md (seed {seed})"):
        frames += md_snapshots(base, temperature, 3 * scale, rng, seed)
    frames += [label(slab(base, rng), "slab", seed) for _ in range(3 * scale)]
    if test:
        frames += [label(strained(base, (3, 3, 2), rng), "large", seed) for _ in range(4)]
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args()
    paths = {0: args.out / "sio2_bks_train.extxyz", 1: args.out / "sio2_bks_test.extxyz"}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not args.force:
        raise SystemExit(f"{', '.join(existing)} exist; pass --force to overwrite")
    args.out.mkdir(parents=True, exist_ok=True)
    base = alpha_quartz()
    a, c = base.cell.cellpar()[[0, 2]]
    print(f"BKS α-quartz: a = {a:.4f} Å, c = {c:.4f} Å")
    for seed, path in paths.items():
        frames = build(base, seed, test=seed == 1)
        write(path, frames, format="extxyz")
        print(f"wrote {len(frames)} structures ({sum(len(f) for f in frames)} atoms) to {path}")


if __name__ == "__main__":
    main()
