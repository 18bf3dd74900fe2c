"""ase-gnnp finetune: ``train --init-from`` with the geometric layers frozen."""

from __future__ import annotations

import argparse

from ase_gnnp.cli import train

HELP = ("fine-tune a pretrained model on new data: its equivariant layers frozen by default "
        "(--freeze equivariant|equivariant-but-last|readout|none), reference energies of new "
        "elements refitted")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="the pretrained checkpoint or shipped model to start from"
    )
    train.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.init_from:
        raise ValueError("finetune starts from --model; --init-from is not used here")
    if not args.resume:
        args.init_from = args.model
        if args.freeze is None:
            args.freeze = "equivariant"
    return train.run(args)
