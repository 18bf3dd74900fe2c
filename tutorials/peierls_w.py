"""Peierls barrier of the ½⟨111⟩ screw dislocation in W: the shipped w-eam model next to
its Marinica (2013) EAM teacher, on the same geometry.

The cylinder (radius 25 Å, 367 atoms, one Burgers vector thick, outer 10 Å fixed to the
anisotropic elastic field) is built once with the teacher's lattice constant and elastic
constants (``ase_gnnp.workflows.peierls.build_glide``); each calculator relaxes the two
end points and runs a climbing-image NEB (``ase.mep.NEB``) over one glide step.

Marinica's W has a non-degenerate core and a single-hump profile, as DFT finds, so the
barrier is a well-defined maximum (checked with 11 and 15 images with
``--convergence``), reported per Burgers vector; the Peierls stress is given from the
largest slope and from a sinusoid of the same height. (The Finnis–Sinclair W teacher,
``ase-gnnp peierls --teacher fs-w``, has a degenerate core and a rugged path instead.)

Acceptance target of the workflows issue: model barrier within 10 % of the teacher's.

    python tutorials/peierls_w.py                   # figures in tutorials/figures
    python tutorials/peierls_w.py --quick --out /tmp/w
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch
from ase.build import bulk

from ase_gnnp import GNNPCalculator
from ase_gnnp.teachers.eam_w import MARINICA_W, marinica_w
from ase_gnnp.workflows import elastic_constants
from ase_gnnp.workflows.peierls import build_glide, peierls_barrier, plot_barriers

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="w-eam")
    parser.add_argument("--out", type=Path, default=ROOT / "tutorials" / "figures")
    parser.add_argument("--quick", action="store_true",
                        help="radius 15 Å, 5 images (workflow check: a 5 Å free shell "
                             "squeezes the barrier)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--convergence", action="store_true",
                        help="also the teacher with 11 and 15 images (minutes)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    args.out.mkdir(parents=True, exist_ok=True)
    radius, images = (15.0, 5) if args.quick else (25.0, 7)

    a0 = MARINICA_W["a0"]
    C = elastic_constants(bulk("W", "bcc", a=a0, cubic=True), marinica_w()).C
    setup = build_glide("W", a0, C[0, 0], C[0, 1], C[3, 3], radius=radius)
    calculators = {
        "Marinica EAM": marinica_w(),
        args.model: GNNPCalculator(args.model, dtype=torch.float64),
    }
    results = {name: peierls_barrier(setup, calc, n_images=images)
               for name, calc in calculators.items()}  # fmt: skip
    teacher, model = results["Marinica EAM"], results[args.model]
    report = {
        "atoms": len(setup.initial), "radius_A": radius, "images": images,
        "teacher_constants_GPa": [C[0, 0], C[0, 1], C[3, 3]],
        "results": {name: r.to_dict() for name, r in results.items()},
        "ratio": model.barrier / teacher.barrier if teacher.barrier > 0 else float("nan"),
    }  # fmt: skip
    if args.convergence:  # is the teacher's maximum converged in the number of images?
        report["teacher_images_convergence"] = {
            str(n): peierls_barrier(setup, marinica_w(), n_images=n).barrier for n in (11, 15)
        }
    print(f"\nW ½<111> screw, {len(setup.initial)} atoms (radius {radius:g} Å), {images} images")
    head = ("barrier meV/b", 15), ("shape", 13), ("σ_P slope", 11), ("σ_P sine", 10), ("s", 8)
    print(f"{'':>16}" + "".join(f"{text:>{width}}" for text, width in head))
    for name, r in results.items():
        shape = "single hump" if r.single_hump else "rugged"
        print(f"{name:>16}{r.barrier:>15.2f}{shape:>13}{r.peierls_stress:>11.0f}"
              f"{r.peierls_stress_sinusoidal:>10.0f}{r.seconds:>8.1f}")  # fmt: skip
    print(f"model / teacher barrier = {report['ratio']:.3f} (target within 10 %)")
    if "teacher_images_convergence" in report:
        convergence = report["teacher_images_convergence"].items()
        conv = ", ".join(f"{n} images {v:.2f}" for n, v in convergence)
        print(f"teacher maximum: {images} images {teacher.barrier:.2f}, {conv} meV/b")
    suffix = "_quick" if args.quick else ""
    png = args.out / f"peierls_w{suffix}.png"
    plot_barriers(results, png, title="W ½<111> screw dislocation, one glide step")
    path = args.out / f"peierls_w{suffix}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"saved {png} and {path}")


if __name__ == "__main__":
    main()
