"""Alloy mixing energies: the model against its teacher, for a seen and an unseen pair.

1. Si–Ge (diamond, 64 atoms): ``sige-small`` against the Tersoff teacher it was trained on.
2. Cu–Au (fcc, 32 atoms), the unseen-pair check: ASE's EMT is the three-metal teacher
   (Tersoff has no Ge–C parameters; EMT defines every pair). ``cuauni-emt`` was trained on
   pure Cu, Au, Ni and the Cu–Ni and Au–Ni binaries only, so the Cu–Au interaction is
   never in its data; ``cuauni-emt-all`` is the same recipe with Cu–Au binaries added
   (``data/make_emt_alloys.py``).

Every calculator relaxes the same random occupations (positions and cell; ``samples``
per composition) and the ordered compounds of the lattice (zincblende; L1₂ and L1₀); the
mixing energy is per atom, relative to the pure phases relaxed in the same lattice.
Printed: the mean curves of the random alloys, the ordered compounds, the largest
deviation from the teacher, the sign agreement at each composition, and the verdicts
(ordering or phase separation, from all points).

    python tutorials/mixing.py                 # figures in tutorials/figures (~10 min)
    python tutorials/mixing.py --quick --out /tmp/mix
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402

from ase_gnnp import GNNPCalculator  # noqa: E402
from ase_gnnp.teachers import tersoff_sige  # noqa: E402
from ase_gnnp.workflows.mixing import mixing_energies, plot_mixing  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def compare(name: str, a: str, b: str, lattice: str, calculators: dict, options: dict,
            out: Path) -> dict:  # fmt: skip
    results = {label: mixing_energies(calc, a, b, lattice, **options)
               for label, calc in calculators.items()}  # fmt: skip
    teacher_label = next(iter(results))
    xs, ref = results[teacher_label].mean_curve()
    report = {"system": name, "lattice": lattice, "curves": {}}
    print(f"{name}: {a}_x {b}_(1-x), {lattice}, {results[teacher_label].natoms} atoms")
    width = max(len(label) for label in results) + 2
    print("  x      " + "".join(f"{label:>{width}}" for label in results) + "   (meV/atom)")
    curves = {label: r.mean_curve()[1] for label, r in results.items()}
    for k, x in enumerate(xs):
        print(f"  {x:.3f}  " + "".join(f"{1000 * c[k]:>{width}.2f}" for c in curves.values()))
    for compound in results[teacher_label].ordered():
        values = [r.ordered()[compound] for r in results.values()]
        print(f"  {compound} (x = {values[0][0]:.2f})\n         "
              + "".join(f"{1000 * e:>{width}.2f}" for _, e in values))  # fmt: skip
    inner = (xs > 0) & (xs < 1)
    for label, r in results.items():
        row = r.to_dict()
        if label != teacher_label:
            diff = curves[label] - ref
            row["max_abs_deviation_meV"] = float(1000 * np.abs(diff).max())
            row["sign_agreement"] = float(np.mean(np.sign(curves[label][inner])
                                                  == np.sign(ref[inner])))  # fmt: skip
            row["verdict_agrees"] = r.verdict == results[teacher_label].verdict
            teacher_ordered = results[teacher_label].ordered()
            row["ordered_deviation_meV"] = {
                compound: float(1000 * (e - teacher_ordered[compound][1]))
                for compound, (_, e) in r.ordered().items()
            }
            print(f"  {label}: verdict {r.verdict!r} (teacher {results[teacher_label].verdict!r}), "
                  f"largest deviation {row['max_abs_deviation_meV']:.2f} meV/atom, sign right "
                  f"at {100 * row['sign_agreement']:.0f} % of compositions")  # fmt: skip
        report["curves"][label] = row
    plot_mixing(results, out, title=f"{name}: model against teacher")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tutorials" / "figures")
    parser.add_argument("--quick", action="store_true", help="unit cells, three compositions")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="'where' used without 'out'")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    options = {"samples": 3, "progress": True}
    if args.quick:
        options = {"x_values": (0.25, 0.5, 0.75), "reps": (1, 1, 1), "samples": 1,
                   "progress": False}  # fmt: skip
    suffix = "_quick" if args.quick else ""

    def model(name: str) -> GNNPCalculator:
        return GNNPCalculator(name, dtype=torch.float64)  # relaxations to 0.01 eV/Å

    report = {
        "sige": compare("Si-Ge", "Si", "Ge", "diamond",
                        {"Tersoff": tersoff_sige(), "sige-small": model("sige-small")},
                        options, args.out / f"mixing_sige{suffix}.png"),
        "cuau": compare("Cu-Au (unseen pair)", "Cu", "Au", "fcc",
                        {"EMT": EMT(), "cuauni-emt (no Cu-Au data)": model("cuauni-emt"),
                         "cuauni-emt-all (with Cu-Au)": model("cuauni-emt-all")},
                        options, args.out / f"mixing_cuau{suffix}.png"),
    }  # fmt: skip
    (args.out / f"mixing{suffix}.json").write_text(json.dumps(report, indent=2))
    print(f"figures in {args.out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
