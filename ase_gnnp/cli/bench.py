"""ase-gnnp bench: MD throughput (default) and the performance studies.

``ase-gnnp bench [--model M] [--sizes ...]`` is ``ase-gnnp bench md``; the other studies
are subcommands, each in its own module ``ase_gnnp.cli.bench_<name>`` with ``HELP``,
``add_arguments`` and ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import json

import torch

from ase_gnnp.calculator import GNNPCalculator
from ase_gnnp.cli._common import (
    DTYPES,
    add_malloc_option,
    add_model_options,
    setup_malloc,
    setup_threads,
)
from ase_gnnp.md import md_throughput

HELP = "benchmarks: MD throughput (default), memory, checkpointing, precision, large systems"
MD_HELP = "MD throughput (forces + stress) on diamond Si supercells; no other heavy job may run"

#: study name -> module under ase_gnnp.cli (the "md" study lives here)
STUDIES = {
    "md": None,
    "memory": "bench_memory",
    "checkpointing": "bench_memory",
    "precision": "bench_precision",
    "large": "bench_large",
}


def _study_module(name: str):
    return importlib.import_module(f"ase_gnnp.cli.{STUDIES[name]}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study", metavar="{" + ",".join(STUDIES) + "}")
    add_md_arguments(sub.add_parser("md", help=MD_HELP, description=MD_HELP))
    for name, module in STUDIES.items():
        if module is not None:
            mod = _study_module(name)
            helps = getattr(mod, "HELPS", {name: mod.HELP})
            add = getattr(mod, "add_arguments_" + name.replace("-", "_"), None) or mod.add_arguments
            add(sub.add_parser(name, help=helps[name], description=helps[name]))


def normalise_argv(argv: list[str]) -> list[str]:
    """``bench [options]`` without a study name means ``bench md [options]``."""
    if argv and argv[0] == "bench":
        rest = argv[1:]
        if not rest or (rest[0].startswith("-") and rest[0] not in ("-h", "--help")):
            return ["bench", "md", *rest]
    return argv


def run(args: argparse.Namespace) -> int:
    if args.study in (None, "md"):
        return run_md(args)
    mod = _study_module(args.study)
    return (getattr(mod, "run_" + args.study.replace("-", "_"), None) or mod.run)(args)


def add_md_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    add_malloc_option(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096])
    parser.add_argument("--steps", type=int, default=10, help="MD steps per size (after warm-up)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the inference (the warm-up step compiles)")  # fmt: skip
    parser.add_argument("--autocast", choices=("bfloat16", "float16"), default=None,
                        help="mixed precision of the feature layers")  # fmt: skip
    parser.add_argument("--edge-chunk", type=int, default=None, help="edges per chunk")
    parser.add_argument("--json", action="store_true")


def run_md(args: argparse.Namespace) -> int:
    setup_threads(args.threads)
    setup_malloc(args)
    calc = GNNPCalculator(args.model, device=args.device, dtype=DTYPES.get(args.dtype),
                          compile=args.compile, autocast=args.autocast,
                          edge_chunk=args.edge_chunk)  # fmt: skip
    rows = []
    for n in args.sizes:
        res = md_throughput(calc, n, steps=args.steps + 1)
        rows.append({k: res[k] for k in ("natoms", "wall_s", "atom_steps_per_s")})
        rows[-1]["steps"] = args.steps  # timed steps, after one warm-up step
    meta = {"model": args.model, "dtype": str(calc.dtype), "threads": torch.get_num_threads(),
            "compile": args.compile, "autocast": args.autocast,
            "edge_chunk": args.edge_chunk}  # fmt: skip
    if args.json:
        print(json.dumps({**meta, "throughput": rows}, indent=2))
        return 0
    extras = [k for k in ("compile", "autocast", "edge_chunk") if meta[k]]
    extra = "".join(f", {k} {meta[k]}" for k in extras)
    print(
        f"model {args.model}, {meta['dtype']}, {meta['threads']} threads{extra}, NVE forces+stress"
    )
    print(f"{'atoms':>8}{'steps':>8}{'wall s':>10}{'atom-steps/s':>16}")
    for r in rows:
        print(f"{r['natoms']:>8}{r['steps']:>8}{r['wall_s']:>10.2f}{r['atom_steps_per_s']:>16.0f}")
    return 0
