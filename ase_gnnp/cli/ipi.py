"""ase-gnnp ipi."""

from __future__ import annotations

import argparse
import sys
import time

from ase_gnnp.cli._common import (
    DTYPES,
    add_malloc_option,
    add_model_options,
    read_structure,
    setup_malloc,
    setup_threads,
)

HELP = "serve the model to a running i-PI as a socket client (PIMD and any i-PI dynamics)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    add_malloc_option(parser)
    parser.set_defaults(threads=1)  # several clients share a machine: one thread each
    parser.add_argument("--structure", required=True,
                        help="i-PI's initial structure (species and their order)")  # fmt: skip
    parser.add_argument("--teacher", choices=("tersoff",), help="serve a teacher, not a model")
    address = parser.add_mutually_exclusive_group(required=True)
    address.add_argument("--unix", metavar="NAME", help="UNIX socket /tmp/ipi_NAME")
    address.add_argument("--port", type=int, help="TCP port (with --host)")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="give up when i-PI is silent this long, s (default 600)")  # fmt: skip
    parser.add_argument("--wait", type=float, default=60.0,
                        help="keep trying to connect this long, s (default 60)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from ase_gnnp.integrations.ipi import serve

    setup_threads(args.threads)
    setup_malloc(args)
    if args.teacher == "tersoff":
        from ase_gnnp.teachers import tersoff_sige

        calc, source = tersoff_sige(), "tersoff"
    else:
        from ase_gnnp.calculator import GNNPCalculator

        calc = GNNPCalculator(args.model, device=args.device, dtype=DTYPES.get(args.dtype))
        source = args.model
    atoms = read_structure(args.structure)
    where = f"/tmp/ipi_{args.unix}" if args.unix else f"{args.host}:{args.port}"
    print(f"serving {source} for {len(atoms)} atoms to i-PI at {where}", file=sys.stderr)
    start = time.perf_counter()
    count = serve(calc, atoms, unix=args.unix, host=args.host, port=args.port,
                  timeout=args.timeout, wait=args.wait)  # fmt: skip
    seconds = time.perf_counter() - start
    print(f"i-PI sent EXIT: {count} evaluations in {seconds:.1f} s")
    return 0
