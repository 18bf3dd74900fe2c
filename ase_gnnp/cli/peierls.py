"""ase-gnnp peierls."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase_gnnp.cli._common import DTYPES, add_model_options, setup_threads

HELP = "Peierls barrier of a 1/2<111> screw dislocation (BCC) by climbing-image NEB"
TEACHERS = ("marinica-w", "fs-w")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser, default="w-eam")
    parser.add_argument("--structure", default="W", help="BCC element symbol (default: W)")
    parser.add_argument("--teacher", choices=TEACHERS,
                        help="an EAM teacher instead of a model: Marinica (2013) W "
                             "(w-eam's teacher) or Finnis-Sinclair (1984) W")  # fmt: skip
    parser.add_argument("--lattice", type=float, help="lattice constant, Å (default: relaxed)")
    parser.add_argument("--elastic", type=float, nargs=3, metavar=("C11", "C12", "C44"),
                        help="GPa, for the displacement field (default: computed)")  # fmt: skip
    parser.add_argument("--radius", type=float, default=25.0, help="cylinder radius, Å")
    parser.add_argument("--images", type=int, default=7, help="NEB images incl. end points")
    parser.add_argument("--fmax", type=float, default=0.01, help="NEB force threshold, eV/Å")
    parser.add_argument("--plot", type=Path, help="energy profile PNG written here")
    parser.add_argument("--json", action="store_true", help="print figures as JSON")


def calculator(args: argparse.Namespace):
    if args.teacher is not None:
        from ase_gnnp.teachers.eam_w import finnis_sinclair_w, marinica_w

        return {"marinica-w": marinica_w, "fs-w": finnis_sinclair_w}[args.teacher]()
    from ase_gnnp.calculator import GNNPCalculator

    # energy differences of ~0.1 meV/atom: float64 unless asked otherwise
    return GNNPCalculator(args.model, device=args.device, dtype=DTYPES[args.dtype or "float64"])


def geometry(symbol: str, calc, lattice: float | None, elastic) -> tuple[float, list[float]]:
    """Lattice constant and cubic elastic constants: given, or from ``calc`` itself."""
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states

    z = atomic_numbers.get(symbol)
    state = reference_states[z] if z else None
    if not state or state.get("symmetry") != "bcc":
        raise ValueError(f"--structure must be a BCC element (W, Mo, Fe, Ta, ...), got {symbol!r}")
    if lattice is None or elastic is None:
        from ase_gnnp.workflows.elastic import ElasticCalculation

        crystal = bulk(symbol, "bcc", a=lattice or state["a"], cubic=True)
        calculation = ElasticCalculation(crystal, calc, relax_cell=lattice is None)
        lattice = lattice or float(calculation.reference.cell[0, 0])
        if elastic is None:
            C = calculation.run("stress", 5e-3).C
            elastic = [float(C[0, 0]), float(C[0, 1]), float(C[3, 3])]
    return lattice, list(elastic)


def run(args: argparse.Namespace) -> int:
    from ase_gnnp.workflows.peierls import build_glide, peierls_barrier, plot_barriers

    setup_threads(args.threads)
    if args.plot is not None and args.plot.exists():
        raise FileExistsError(f"{args.plot} exists; choose another --plot path")
    calc = calculator(args)
    lattice, (c11, c12, c44) = geometry(args.structure, calc, args.lattice, args.elastic)
    setup = build_glide(args.structure, lattice, c11, c12, c44, radius=args.radius)
    result = peierls_barrier(setup, calc, n_images=args.images, fmax=args.fmax)
    source = args.teacher or args.model
    report = {"lattice_A": lattice, "elastic_GPa": [c11, c12, c44],
              "atoms": len(setup.initial), **result.to_dict()}  # fmt: skip
    if args.plot is not None:
        plot_barriers({source: result}, args.plot, title=f"{args.structure} screw, {source}")
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.structure} 1/2<111> screw dislocation, {len(setup.initial)} atoms, "
          f"{args.images} images, {source}")  # fmt: skip
    shape = "single hump" if result.single_hump else "rugged path"
    print(f"  barrier {result.barrier:.2f} meV/b ({shape})")
    print(f"  Peierls stress {result.peierls_stress:.0f} MPa (max slope), "
          f"{result.peierls_stress_sinusoidal:.0f} MPa (sinusoidal estimate)")  # fmt: skip
    print(f"  {result.seconds:.1f} s, {result.neb_steps} NEB steps")
    if args.plot is not None:
        print(f"saved {args.plot}")
    return 0
