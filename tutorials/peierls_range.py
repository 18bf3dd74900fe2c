"""What a W model needs to get the Peierls barrier: the Marinica teacher truncated at
several ranges, and models, along the held-out glide path, with their elastic constants.

The frames are the teacher's own climbing-image NEB images of one glide step in the
18 Å cylinder of ``data/w_marinica_test.extxyz`` (``core_path``, never trained on). At
these fixed geometries the script prints each calculator's energy profile relative to
the first image (meV per Burgers vector, the cell is one b thick) and the largest image
energy, next to the calculator's cubic elastic constants at the teacher's lattice
constant (GPa). The truncated teachers (``marinica_w(truncate=r)``: pair and density
tapered to zero over the last 0.3 Å before ``r``) show which interactions carry the
teacher's barrier; cutting them also changes the elastic constants, and the barrier of a
cylinder with a fixed shell depends on both the core and the elastic field around it.

    python tutorials/peierls_range.py                       # figures in tutorials/figures
    python tutorials/peierls_range.py --quick --out /tmp/w  # two ranges, one model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from ase.io import read

from ase_gnnp import GNNPCalculator
from ase_gnnp.teachers.eam_w import MARINICA_W, marinica_w
from ase_gnnp.workflows import elastic_constants

ROOT = Path(__file__).resolve().parents[1]


def path_images(path: Path) -> list:
    """The NEB images (not their rattled copies) of the held-out glide path."""
    frames = [a for a in read(path, ":") if a.info["config_type"] == "core_path"]
    return frames[::2]  # each image is followed by one rattled copy in the test set


def profile(frames: list, calc) -> np.ndarray:
    """Energies (meV) relative to the first frame, at the frames' own positions."""
    energies = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    return 1e3 * (np.array(energies) - energies[0])


def cubic_constants(calc) -> tuple[float, float, float]:
    """C11, C12, C44 (GPa) of BCC W at the teacher's lattice constant."""
    C = elastic_constants(bulk("W", "bcc", a=MARINICA_W["a0"], cubic=True), calc).C
    return float(C[0, 0]), float(C[0, 1]), float(C[3, 3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "w_marinica_test.extxyz")
    parser.add_argument("--ranges", type=float, nargs="+", default=[4.5, 5.0, 5.25, 5.5])
    parser.add_argument("--models", nargs="*", default=["w-eam"])
    parser.add_argument("--out", type=Path, default=ROOT / "tutorials" / "figures")
    parser.add_argument("--quick", action="store_true", help="ranges 4.5 and 5.5 only")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ranges = [4.5, 5.5] if args.quick else args.ranges
    frames = path_images(args.data)

    calculators = {"teacher (5.46 Å)": marinica_w()}
    for r in ranges:
        calculators[f"teacher cut at {r:g} Å"] = marinica_w(truncate=r)
    for name in args.models:
        calc = GNNPCalculator(name, dtype=torch.float64)
        calculators[f"{Path(name).stem} ({calc.model.cutoff:g} Å)"] = calc
    rows = {name: profile(frames, calc) for name, calc in calculators.items()}
    elastic = {name: cubic_constants(calc) for name, calc in calculators.items()}

    print(f"{len(frames)} NEB images of the held-out 18 Å cylinder ({len(frames[0])} atoms)")
    print(f"{'calculator':30s} {'C11':>6s} {'C12':>6s} {'C44':>6s} {'max':>6s}  profile, meV/b")
    for name, e in rows.items():
        c = " ".join(f"{x:6.1f}" for x in elastic[name])
        print(f"{name:30s} {c} {e.max():6.1f}  " + " ".join(f"{x:6.1f}" for x in e))

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peierls_range.json").write_text(json.dumps({
        name: {"profile_meV_per_b": rows[name].round(2).tolist(),
               "C11_C12_C44_GPa": [round(x, 1) for x in elastic[name]]}
        for name in rows
    }, indent=1))  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, e in rows.items():
        style = "-o" if name.startswith("teacher (") else ("--" if "cut" in name else "-s")
        ax.plot(np.linspace(0, 1, len(e)), e, style, label=name, ms=4)
    ax.set_xlabel("reaction coordinate (teacher's NEB images)")
    ax.set_ylabel("E - E(first image) (meV/b)")
    ax.set_title("W screw glide path, held-out 18 Å cylinder")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "peierls_range.png", dpi=120)
    print(f"wrote {args.out / 'peierls_range.png'} and peierls_range.json")


if __name__ == "__main__":
    main()
