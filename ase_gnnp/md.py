"""Molecular dynamics driver and throughput measurement."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.io.trajectory import Trajectory
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from tqdm.auto import tqdm

__all__ = ["diamond_supercell", "fresh_path", "run_md", "md_throughput"]


def fresh_path(path: Path) -> Path:
    """``path`` if it does not exist, else ``stem-1.suffix``, ``stem-2.suffix``, ..."""
    candidate, k = path, 0
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.stem}-{k}{path.suffix}")
    return candidate


def diamond_supercell(natoms: int, symbol: str = "Si", a: float = 5.432) -> Atoms:
    """Cubic diamond supercell with ``natoms = 8 n^3`` atoms (64, 512, 4096, ...)."""
    n = round((natoms / 8) ** (1 / 3))
    if 8 * n**3 != natoms:
        raise ValueError(f"natoms must be 8 n^3 (8, 64, 512, 4096, ...), got {natoms}")
    return bulk(symbol, "diamond", a=a, cubic=True) * (n, n, n)


def run_md(
    atoms: Atoms,
    calc: Calculator,
    ensemble: str = "langevin",
    temperature_K: float = 300.0,
    timestep_fs: float = 1.0,
    steps: int = 100,
    friction: float = 0.01,
    trajectory: str | Path | None = None,
    interval: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run Langevin (NVT) or NVE (velocity Verlet) MD.

    Parameters
    ----------
    atoms
        Initial structure (modified in place); velocities drawn at ``temperature_K``.
    ensemble
        ``"langevin"`` or ``"nve"``.
    friction
        Langevin friction in 1/fs.
    trajectory
        ASE ``.traj`` file written every ``interval`` steps (must not exist yet).

    Returns
    -------
    dict
        ``atom_steps_per_s`` (excluding the first, warm-up step), ``steps``, ``natoms``,
        final ``temperature_K``, ``etot_drift_eV_per_atom`` (NVE: last − first total energy).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if ensemble not in ("langevin", "nve"):
        raise ValueError(f"ensemble must be 'langevin' or 'nve', got {ensemble!r}")
    rng = np.random.default_rng(seed)
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K, rng=rng)
    Stationary(atoms)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        dyn = VelocityVerlet(atoms, dt)
    else:
        dyn = Langevin(
            atoms,
            dt,
            temperature_K=temperature_K,
            friction=friction / units.fs,
            fixcm=False,
            rng=rng,
        )
    traj = None
    if trajectory is not None:
        if Path(trajectory).exists():
            raise ValueError(f"trajectory {str(trajectory)!r} exists; choose another name")
        traj = Trajectory(str(trajectory), "w", atoms)
        dyn.attach(traj.write, interval=interval)
    e0 = atoms.get_total_energy()
    dyn.run(1)  # warm-up (allocations, first neighbour list)
    t0 = time.perf_counter()
    for _ in tqdm(range(steps - 1), desc="md", disable=not progress):
        dyn.run(1)
    elapsed = time.perf_counter() - t0
    if traj is not None:
        traj.close()
    n = len(atoms)
    return {
        "natoms": n,
        "steps": steps,
        "wall_s": elapsed,
        "atom_steps_per_s": n * (steps - 1) / elapsed if steps > 1 else float("nan"),
        "temperature_K": float(atoms.get_temperature()),
        "etot_drift_eV_per_atom": float((atoms.get_total_energy() - e0) / n),
    }


def md_throughput(calc: Calculator, natoms: int, steps: int = 10, seed: int = 0) -> dict:
    """NVE throughput (forces + stress each step) on a diamond Si supercell of ``natoms``."""
    atoms = diamond_supercell(natoms)
    atoms.rattle(0.02, seed=seed)
    return run_md(atoms, calc, "nve", 300.0, 1.0, steps, seed=seed, progress=False)
