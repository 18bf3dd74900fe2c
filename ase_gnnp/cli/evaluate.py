"""ase-gnnp eval."""

from __future__ import annotations

import argparse
import json

from ase_gnnp.checkpoint import load_model
from ase_gnnp.cli._common import DTYPES, add_key_options, add_model_options, setup_threads
from ase_gnnp.data import LABELS, DataKeys, read_structures
from ase_gnnp.evaluate import evaluate_structures, format_table

HELP = "errors of a model on a labelled extxyz file (overall and per config_type)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument("--data", required=True, help="labelled extxyz file")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--relative-energies",
        action="store_true",
        help="also the energy errors relative to each config_type's lowest-energy "
        "structure, for structures of one composition (a torsion scan, a dissociation "
        "curve): the error of the energy profile, whatever the model's constant offset",
    )
    add_key_options(parser)


def run(args: argparse.Namespace) -> int:
    setup_threads(args.threads)
    model = load_model(args.model, device=args.device, dtype=DTYPES.get(args.dtype))
    keys = DataKeys(**{name: getattr(args, f"{name}_key") for name in LABELS})
    frames = read_structures(args.data, keys, require=())
    summary = evaluate_structures(model, frames, keys, args.batch_size, args.relative_energies)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"model {args.model} on {args.data} ({len(frames)} structures)")
        print(format_table(summary))
    return 0
