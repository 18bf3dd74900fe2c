"""``ase-gnnp`` command line: train, cv, eval, md, info, bench, profile, elastic, phonons, ipi,
peierls, uq, adaptive-md, report, finetune."""

from __future__ import annotations

import argparse
import sys
import warnings

from ase_gnnp.cli import (
    adaptive_md,
    bench,
    cv,
    elastic,
    evaluate,
    finetune,
    info,
    ipi,
    md,
    peierls,
    phonons,
    profile,
    report,
    train,
    uq,
)

COMMANDS = {
    "train": train,
    "cv": cv,
    "eval": evaluate,
    "md": md,
    "info": info,
    "bench": bench,
    "profile": profile,
    "elastic": elastic,
    "phonons": phonons,
    "ipi": ipi,
    "peierls": peierls,
    "uq": uq,
    "adaptive-md": adaptive_md,
    "report": report,
    "finetune": finetune,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ase-gnnp", description="Equivariant GNN interatomic potential for ASE."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
    argv = bench.normalise_argv(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command].run(args) or 0)
    except (
        ValueError, TypeError, ImportError, FileNotFoundError, FileExistsError,
        ConnectionError, TimeoutError,
    ) as err:  # fmt: skip
        print(f"ase-gnnp {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
