"""ase-gnnp elastic."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ase_gnnp.cli._common import DTYPES, add_model_options, read_structure, setup_threads
from ase_gnnp.workflows.elastic import (
    DEFAULT_STRAIN,
    ElasticCalculation,
    plot_strain_sweep,
    strain_sweep,
)

HELP = "elastic constants C_ij (GPa) by stress-strain and energy-strain, with VRH moduli"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument("--structure", default="Si", help="file, or a symbol (default: Si)")
    parser.add_argument("--teacher", choices=("tersoff",), help="use a teacher, not a model")
    parser.add_argument("--method", choices=("stress", "energy", "both"), default="both")
    parser.add_argument("--strain", type=float, help="step (default: stress 5e-3, energy 1e-2)")
    parser.add_argument("--clamped-ions", action="store_true", help="no internal relaxation")
    parser.add_argument("--no-cell-relax", action="store_true", help="keep the given cell")
    parser.add_argument("--fmax", type=float, default=1e-4, help="relaxation threshold, eV/Å")
    parser.add_argument("--sweep", type=Path, help="also sweep the step; PNG written here")
    parser.add_argument("--json", action="store_true", help="print figures as JSON")


def calculator(args: argparse.Namespace):
    if args.teacher == "tersoff":
        from ase_gnnp.teachers import tersoff_sige

        return tersoff_sige()
    from ase_gnnp.calculator import GNNPCalculator

    return GNNPCalculator(args.model, device=args.device, dtype=DTYPES.get(args.dtype))


def run(args: argparse.Namespace) -> int:
    setup_threads(args.threads)
    if args.sweep is not None and args.sweep.exists():
        raise FileExistsError(f"{args.sweep} exists; choose another --sweep path")
    calculation = ElasticCalculation(
        read_structure(args.structure), calculator(args), relax_cell=not args.no_cell_relax,
        relax_ions=not args.clamped_ions, fmax=args.fmax,
    )  # fmt: skip
    methods = ("stress", "energy") if args.method == "both" else (args.method,)
    results = {m: calculation.run(m, args.strain or DEFAULT_STRAIN[m]) for m in methods}
    report = {m: r.to_dict() for m, r in results.items()}
    if args.sweep is not None:
        sweep = strain_sweep(calculation, methods=methods, progress=not args.json)
        source = args.teacher or args.model
        plot_strain_sweep(sweep, args.sweep, title=f"{args.structure}: {source}")
        report["sweep"] = {m: [r.to_dict() for r in rs] for m, rs in sweep.items()}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    source = args.teacher or args.model
    print(f"elastic constants of {args.structure} with {source} (GPa)")
    for method, result in results.items():
        print(f"{method} route, step {result.strain:g}, relaxed ions: {result.relax_ions}")
        with np.printoptions(precision=1, suppress=True, linewidth=100):
            print(result.C)
        m = result.moduli
        print(
            f"  bulk {m['bulk_hill']:.1f}  shear {m['shear_hill']:.1f}  "
            f"Young {m['young_hill']:.1f} GPa (Hill), Poisson {m['poisson_hill']:.3f}"
        )
    if args.sweep is not None:
        print(f"saved {args.sweep}")
    return 0
