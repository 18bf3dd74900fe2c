"""ase-gnnp adaptive-md."""

from __future__ import annotations

import argparse
import json

from ase_gnnp.cli._common import DTYPES, add_model_options, read_structure, setup_threads
from ase_gnnp.cli.uq import add_selection, read_data, read_selected

HELP = ("Langevin MD that pauses when the model's force balls exceed --r-thr, labels the "
        "structure with a reference, learns from it, recalibrates and resumes")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ase_gnnp.uq.adaptive import REFERENCES

    add_model_options(parser, default=None)
    parser.add_argument(
        "--reference",
        choices=REFERENCES,
        required=True,
        help="reference calculator (a teacher of this package)",
    )
    parser.add_argument(
        "--structure", required=True, help="structure file, or an element symbol (its bulk crystal)"
    )
    parser.add_argument("--supercell", type=int, nargs=3, metavar=("NA", "NB", "NC"))
    parser.add_argument("--steps", type=int, required=True, help="MD steps in all")
    parser.add_argument(
        "--r-thr",
        type=float,
        required=True,
        help="threshold on the largest force ball radius, eV/Å",
    )
    parser.add_argument(
        "--train-data",
        help="the model's training data (extxyz), kept in every update (default: the data "
        "and selection its checkpoint records)",
    )
    parser.add_argument(
        "--calibration-data",
        help="the model's held-out calibration data (extxyz; default: the data and selection "
        "of its last ase-gnnp uq calibrate)",
    )
    add_selection(parser)  # applies to --train-data and --calibration-data
    parser.add_argument("--out", default="adaptive-md", help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--temperature", type=float, default=1500.0, help="K")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs")
    parser.add_argument("--friction", type=float, default=0.01, help="1/fs")
    parser.add_argument("--train-steps", type=int, default=30, help="optimizer steps per event")
    parser.add_argument(
        "--calibration-every",
        type=int,
        default=4,
        help="every n-th new label goes to calibration (0: none)",
    )
    parser.add_argument("--cooldown", type=int, default=5, help="steps between events")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--audit-every",
        type=int,
        default=0,
        help="also call the reference every n steps, for the log only",
    )
    parser.add_argument(
        "--trajectory-every",
        type=int,
        default=10,
        help="steps between frames of trajectory.extxyz (0: none)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")


def _recorded_data(args: argparse.Namespace, model) -> tuple[list, list]:
    """Training and calibration structures: given, or as ``model`` (the original
    checkpoint, also when resuming) records them."""
    from pathlib import Path

    from ase_gnnp.data import LABELS
    from ase_gnnp.uq import uq_statistics

    given = {"train": args.train_data, "calibration": args.calibration_data}
    if all(given.values()):
        return read_selected(args.train_data, args), read_selected(args.calibration_data, args)
    config = (getattr(model, "metadata", None) or {}).get("train_config") or {}
    conformal = uq_statistics(model).conformal
    recorded = {
        "train": config and {
            "data": config.get("data"),
            "config_types": config.get("config_types"),
            "elements": config.get("elements"),
            "keys": {n: config[f"{n}_key"] for n in LABELS if config.get(f"{n}_key") is not None},
        },
        "calibration": None if conformal is None else conformal.source,
    }  # fmt: skip
    out = []
    for name in ("train", "calibration"):
        if given[name]:
            out.append(read_selected(given[name], args))
            continue
        source = recorded[name] or {}
        path = source.get("data")
        paths = [path] if isinstance(path, str) else list(path or [])
        if not paths or not all(Path(p).is_file() for p in paths):
            raise ValueError(
                f"--{name}-data is needed: the checkpoint records "
                f"{'no' if not path else 'a missing file ' + repr(path) + ' as its'} "
                f"{name} data"
            )
        out.append(read_data(path, source))
    return out[0], out[1]


def run(args: argparse.Namespace) -> int:
    import sys

    from ase_gnnp.uq.adaptive import AdaptiveMD, ReferenceCalculatorError, reference_calculator

    setup_threads(args.threads)
    from ase_gnnp.checkpoint import load_model

    # loaded once: its records name the data; a resumed run continues from its own model.pt
    model = load_model(args.model, dtype=DTYPES.get(args.dtype))
    atoms = read_structure(args.structure)
    if args.supercell:
        atoms = atoms * tuple(args.supercell)
    driver = AdaptiveMD(
        model, reference_calculator(args.reference), atoms,
        *_recorded_data(args, model),
        args.out, args.r_thr, temperature_K=args.temperature, timestep_fs=args.timestep,
        friction=args.friction, calibration_every=args.calibration_every,
        train_steps=args.train_steps, lr=args.lr, cooldown=args.cooldown,
        audit_every=args.audit_every, trajectory_every=args.trajectory_every, seed=args.seed,
        progress=not args.json, resume=args.resume, device=args.device,
    )  # fmt: skip
    try:
        result = driver.run(args.steps)
    except ReferenceCalculatorError as err:  # the run folder keeps everything up to here
        print(f"ase-gnnp adaptive-md: error: {err} (resume with --resume)", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['steps']} steps, {result['events']} reference calls "
              f"({result['train_added']} trained on, {result['calibration_added']} to "
              f"calibration); run folder {args.out}")  # fmt: skip
    return 0
