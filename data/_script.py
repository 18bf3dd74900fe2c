"""Command line shared by the data generators: write train/test sets, never overwrite."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from ase.io import write


def generate_sets(
    description: str,
    default_out: Path,
    generate: Callable[[int, float], list],
    jobs: Sequence[tuple[str, int, float]],
) -> None:
    """Parse ``--out``/``--force`` and write ``generate(seed, scale)`` for each
    ``(file name, seed, scale)`` job as extxyz, refusing to overwrite without ``--force``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args()
    for name, _, _ in jobs:
        if (args.out / name).exists() and not args.force:
            raise SystemExit(f"{args.out / name} exists; pass --force to overwrite it")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, seed, scale in jobs:
        frames = generate(seed, scale)
        write(args.out / name, frames, format="extxyz")
        print(f"wrote {len(frames)} frames, {sum(map(len, frames))} atoms to {args.out / name}")
