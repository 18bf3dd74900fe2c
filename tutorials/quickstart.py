"""Quickstart: the shipped ``sige-small`` model next to its Tersoff teacher.

Energies, forces and stress of a rattled SiGe alloy cell from both, many structures in one
batched call, a short MD run, and the equation of state of diamond Si. Saves
``quickstart_eos.png`` in ``--out``.

    python tutorials/quickstart.py --out /tmp/quickstart
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.io import read

from ase_gnnp import GNNPCalculator
from ase_gnnp.md import run_md
from ase_gnnp.teachers import tersoff_sige

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--md-steps", type=int, default=50)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    model = GNNPCalculator("sige-small")
    teacher = tersoff_sige()

    # 1. one structure, model vs teacher
    atoms = bulk("Si", "diamond", a=5.5, cubic=True) * (2, 2, 2)
    atoms.numbers[np.random.default_rng(0).random(len(atoms)) < 0.3] = 32
    atoms.rattle(0.05, seed=0)
    results = {}
    for name, calc in (("model", model), ("teacher", teacher)):
        atoms.calc = calc
        results[name] = (
            atoms.get_potential_energy() / len(atoms),
            atoms.get_forces(),
            atoms.get_stress() / units.GPa,  # eV/Å^3 -> GPa
        )
    (em, fm, sm), (et, ft, st) = results["model"], results["teacher"]
    print(f"Si{np.sum(atoms.numbers == 14)}Ge{np.sum(atoms.numbers == 32)}, rattled:")
    print(f"  energy  model {em:.4f}  teacher {et:.4f} eV/atom")
    print(f"  forces  MAE {1000 * np.abs(fm - ft).mean():.1f} meV/Å")
    print(f"  stress  model {np.round(sm[:3], 2)}  teacher {np.round(st[:3], 2)} GPa")

    # 2. many structures in one batched call
    frames = read(ROOT / "data" / "sige_tersoff_test.extxyz", ":20")
    batch = model.batch_evaluate(frames, batch_size=10)
    err = [abs(r["energy"] - a.get_potential_energy()) / len(a) for r, a in zip(batch, frames)]
    print(
        f"batch_evaluate on {len(frames)} held-out frames: E MAE {1000 * np.mean(err):.2f} meV/atom"
    )

    # 3. MD
    md_atoms = bulk("Si", "diamond", a=5.432, cubic=True) * (2, 2, 2)
    res = run_md(md_atoms, model, "langevin", 600.0, 1.0, args.md_steps, progress=False)
    print(f"Langevin MD at 600 K: {res['atom_steps_per_s']:.0f} atom-steps/s")

    # 4. equation of state of diamond Si
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lattice = np.linspace(5.25, 5.65, 17)
    curves = {}
    for name, calc in (("sige-small", model), ("Tersoff teacher", teacher)):
        energies = []
        for a in lattice:
            cell = bulk("Si", "diamond", a=a, cubic=True)
            cell.calc = calc
            energies.append(cell.get_potential_energy() / len(cell))
        curves[name] = energies
        fit = np.polyfit(lattice, energies, 3)
        roots = np.roots(np.polyder(fit)).real
        a0 = roots[np.argmin(np.abs(roots - 5.43))]
        print(f"{name:>16}: a0 = {a0:.4f} Å")
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, energies in curves.items():
        ax.plot(lattice, energies, "o-" if name == "sige-small" else "k--", label=name)
    ax.set_xlabel("lattice constant (Å)")
    ax.set_ylabel("energy (eV/atom)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "quickstart_eos.png", dpi=120)
    print(f"saved {args.out / 'quickstart_eos.png'}")


if __name__ == "__main__":
    main()
