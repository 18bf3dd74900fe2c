"""Options shared by several subcommands."""

from __future__ import annotations

import argparse

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def add_model_options(parser: argparse.ArgumentParser, default: str | None = "sige-small") -> None:
    parser.add_argument(
        "--model", default=default, required=default is None,
        help=f"checkpoint file or shipped model name (default: {default})",
    )  # fmt: skip
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: model's")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")


def add_key_options(parser: argparse.ArgumentParser) -> None:
    from ase_gnnp.data import LABELS

    for name in LABELS:
        parser.add_argument(
            f"--{name}-key", default=None,
            help=f"where {name} labels live (default: calculator results; '' to ignore)",
        )  # fmt: skip


def setup_threads(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def read_structure(spec: str):
    """A structure file read by ase.io, or a chemical symbol built as its ASE reference
    bulk crystal (conventional cubic cell where one exists), e.g. ``Si`` (diamond)."""
    from pathlib import Path

    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states
    from ase.io import read

    if Path(spec).is_file():
        return read(spec)
    if spec not in atomic_numbers:
        raise ValueError(f"--structure {spec!r} is neither a file nor a chemical symbol")
    state = reference_states[atomic_numbers[spec]] or {}
    cubic = state.get("symmetry") in ("fcc", "bcc", "diamond", "sc")
    return bulk(spec, cubic=cubic)


def add_malloc_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--system-malloc", action="store_true",
        help="keep glibc's default allocator settings (by default freed memory stays in the "
             "process for the next step, see ase_gnnp.perf.allocator)",
    )  # fmt: skip


def setup_malloc(args: argparse.Namespace) -> None:
    if not args.system_malloc:
        from ase_gnnp.perf.allocator import tune_cpu_allocator

        tune_cpu_allocator()
