"""ase-gnnp md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase.io import read

from ase_gnnp.calculator import GNNPCalculator
from ase_gnnp.cli._common import (
    DTYPES,
    add_malloc_option,
    add_model_options,
    setup_malloc,
    setup_threads,
)
from ase_gnnp.md import diamond_supercell, fresh_path, run_md

HELP = "run Langevin or NVE MD, write a trajectory and print throughput (atom-steps/s)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    add_malloc_option(parser)
    parser.add_argument(
        "--structure", help="structure file read by ase.io (default: 64-atom diamond Si)"
    )
    parser.add_argument("--supercell", type=int, nargs=3, metavar=("NA", "NB", "NC"))
    parser.add_argument("--ensemble", choices=("langevin", "nve"), default="langevin")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument(
        "--traj",
        help="output trajectory (.traj); must not exist (default: md.traj, or md-1.traj, ... "
        "if that exists)",
    )
    parser.add_argument("--interval", type=int, default=10, help="trajectory interval (steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    setup_threads(args.threads)
    setup_malloc(args)
    atoms = read(args.structure) if args.structure else diamond_supercell(64)
    if args.supercell:
        atoms = atoms * tuple(args.supercell)
    calc = GNNPCalculator(args.model, device=args.device, dtype=DTYPES.get(args.dtype))
    args.traj = args.traj or str(fresh_path(Path("md.traj")))
    result = run_md(
        atoms, calc, args.ensemble, args.temperature, args.timestep, args.steps,
        args.friction, args.traj, args.interval, args.seed, progress=not args.json,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.ensemble} MD, {result['natoms']} atoms, {args.steps} steps of "
            f"{args.timestep} fs: {result['atom_steps_per_s']:.0f} atom-steps/s, "
            f"final T = {result['temperature_K']:.0f} K" + f", trajectory {args.traj}"
        )
    return 0
