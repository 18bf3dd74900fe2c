"""ase-gnnp phonons."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ase_gnnp.cli._common import DTYPES, add_model_options, read_structure, setup_threads

HELP = "phonons through phonopy: bands, DOS, thermal properties; analytic or finite-difference FCs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument("--structure", default="Si", help="file, or a symbol (default: Si)")
    parser.add_argument("--teacher", choices=("tersoff",), help="use a teacher, not a model")
    parser.add_argument("--supercell", type=int, nargs="+", default=[2],
                        help="1, 3 or 9 integers (default: 2 2 2)")  # fmt: skip
    parser.add_argument(
        "--primitive-matrix", default=None,
        help="P, F, I, A, C, R or 9 numbers (default: F for fcc/diamond and I for bcc "
        "built-in structures, P otherwise)",
    )  # fmt: skip
    parser.add_argument(
        "--force-constants", choices=("displacements", "hessian", "both"), default=None,
        help="finite ± displacements, the model's analytic Hessian, or both compared "
        "(default: hessian for a model, displacements for a teacher)",
    )  # fmt: skip
    parser.add_argument("--distance", type=float, default=0.01, help="displacement, Å")
    parser.add_argument("--no-relax", action="store_true", help="use the structure as given")
    parser.add_argument("--mesh", type=int, nargs=3, default=[20, 20, 20], help="DOS mesh")
    parser.add_argument("--t-max", type=float, default=1000.0, help="thermal properties to T, K")
    parser.add_argument("--born", action="store_true",
                        help="non-analytic correction from the model's Born charges")  # fmt: skip
    parser.add_argument("--epsilon", type=float, nargs="+",
                        help="ε∞: 1 (isotropic) or 9 numbers (default: the model's)")  # fmt: skip
    parser.add_argument("--born-file", type=Path, help="also write phonopy's BORN here")
    parser.add_argument("--plot", type=Path, help="band structure + DOS PNG written here")
    parser.add_argument("--json", action="store_true", help="print figures as JSON")


def _primitive(args: argparse.Namespace):
    spec = args.primitive_matrix
    if spec is None:
        if Path(args.structure).is_file():
            return "P"
        from ase.data import atomic_numbers, reference_states

        state = reference_states[atomic_numbers.get(args.structure, 0)] or {}
        return {"fcc": "F", "diamond": "F", "bcc": "I"}.get(state.get("symmetry"), "P")
    if spec.upper() in ("P", "F", "I", "A", "C", "R"):
        return spec.upper()
    values = [float(v) for v in spec.replace(",", " ").split()]
    if len(values) != 9:
        raise ValueError(f"--primitive-matrix takes a letter or 9 numbers, got {spec!r}")
    return np.array(values).reshape(3, 3)


def _supercell(values: list[int]):
    if len(values) == 1:
        return values[0]
    if len(values) == 3:
        return values
    if len(values) == 9:
        return np.array(values).reshape(3, 3)
    raise ValueError(f"--supercell takes 1, 3 or 9 integers, got {len(values)}")


def _epsilon(values):
    if values is None:
        return None
    if len(values) == 1:
        return np.eye(3) * values[0]
    if len(values) == 9:
        return np.array(values).reshape(3, 3)
    raise ValueError(f"--epsilon takes 1 or 9 numbers, got {len(values)}")


def calculator(args: argparse.Namespace):
    if args.teacher == "tersoff":
        from ase_gnnp.teachers import tersoff_sige

        return tersoff_sige()
    from ase_gnnp.calculator import GNNPCalculator

    # second derivatives need float64 unless asked otherwise
    dtype = DTYPES[args.dtype or "float64"]
    return GNNPCalculator(args.model, device=args.device, dtype=dtype)


def run(args: argparse.Namespace) -> int:
    from ase_gnnp.integrations.phonons import (
        PhononCalculation,
        force_constants_difference,
        plot_phonons,
    )

    setup_threads(args.threads)
    for path in (args.plot, args.born_file):
        if path is not None and path.exists():
            raise FileExistsError(f"{path} exists; choose another path")
    method = args.force_constants or ("displacements" if args.teacher else "hessian")
    if args.teacher and method != "displacements":
        raise ValueError("a teacher has no analytic Hessian: use --force-constants displacements")
    relax = not args.no_relax
    calc = PhononCalculation(
        read_structure(args.structure), calculator(args), _supercell(args.supercell),
        _primitive(args), distance=args.distance, relax_cell=relax, relax_ions=relax,
    )  # fmt: skip
    report: dict = {"supercell_atoms": len(calc.supercell), "force_constants": method}
    if method in ("displacements", "both"):
        fd = calc.finite_displacement_force_constants(progress=not args.json)
    if method in ("hessian", "both"):
        hessian = calc.hessian_force_constants()
    if method == "both":
        report["fc_max_abs_difference_relative"] = force_constants_difference(
            hessian, fd, calc.p2s_map
        )
    if args.epsilon is not None and not args.born:
        raise ValueError("--epsilon is used with --born (the non-analytic correction)")
    if args.born:
        born, epsilon = calc.set_born_charges(None, _epsilon(args.epsilon))
        report["born_charges"] = np.round(born, 6).tolist()
        report["epsilon"] = np.round(epsilon, 6).tolist()
        if args.born_file is not None:
            calc.write_born(args.born_file)
    elif args.born_file is not None:
        raise ValueError("--born-file needs --born (and --epsilon unless the model has ε∞)")
    result = calc.run(mesh=args.mesh, t_max=args.t_max)
    report.update(result.to_dict())
    source = args.teacher or args.model
    if args.plot is not None:
        plot_phonons({source: result}, args.plot, title=f"{args.structure}: {source}")
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"phonons of {args.structure} with {source}: {len(calc.supercell)}-atom supercell, "
          f"force constants from {method}")  # fmt: skip
    if "fc_max_abs_difference_relative" in report:
        print(f"  Hessian vs displacements: max |ΔΦ| / max |Φ| = "
              f"{report['fc_max_abs_difference_relative']:.2e}")  # fmt: skip
    for label, freqs in result.special_frequencies.items():
        print(f"  {label:>3}: " + " ".join(f"{f:7.3f}" for f in freqs) + "  THz")
    k300 = int(np.argmin(abs(result.temperatures - 300.0)))
    print(f"  at {result.temperatures[k300]:.0f} K: F {result.free_energy[k300]:.3f} kJ/mol, "
          f"S {result.entropy[k300]:.3f} J/(K mol), Cv {result.heat_capacity[k300]:.3f} J/(K mol)"
          " per primitive cell")  # fmt: skip
    if result.min_frequency < -0.05:
        print(f"  warning: imaginary modes (lowest {result.min_frequency:.3f} THz)")
    if args.plot is not None:
        print(f"saved {args.plot}")
    return 0
