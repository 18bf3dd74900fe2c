"""ase-gnnp bench."""

from __future__ import annotations

import argparse
import json

import torch

from ase_gnnp.calculator import GNNPCalculator
from ase_gnnp.cli._common import DTYPES, add_model_options, setup_threads
from ase_gnnp.md import md_throughput

HELP = "MD throughput (forces + stress) on diamond Si supercells; no other heavy job may run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096])
    parser.add_argument("--steps", type=int, default=10, help="MD steps per size (after warm-up)")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    setup_threads(args.threads)
    calc = GNNPCalculator(args.model, device=args.device, dtype=DTYPES.get(args.dtype))
    rows = []
    for n in args.sizes:
        res = md_throughput(calc, n, steps=args.steps + 1)
        rows.append({k: res[k] for k in ("natoms", "wall_s", "atom_steps_per_s")})
        rows[-1]["steps"] = args.steps  # timed steps, after one warm-up step
    meta = {"model": args.model, "dtype": str(calc.dtype), "threads": torch.get_num_threads()}
    if args.json:
        print(json.dumps({**meta, "throughput": rows}, indent=2))
        return 0
    print(f"model {args.model}, {meta['dtype']}, {meta['threads']} threads, NVE forces+stress")
    print(f"{'atoms':>8}{'steps':>8}{'wall s':>10}{'atom-steps/s':>16}")
    for r in rows:
        print(f"{r['natoms']:>8}{r['steps']:>8}{r['wall_s']:>10.2f}{r['atom_steps_per_s']:>16.0f}")
    return 0
