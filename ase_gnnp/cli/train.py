"""ase-gnnp train."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase_gnnp.cli._common import add_key_options
from ase_gnnp.train import TrainConfig, Trainer

HELP = "train a model from an extxyz file (YAML config and/or flags)"

_TRAIN_FLAGS = {
    "data": str, "out": str, "val_data": str, "val_fraction": float, "seed": int,
    "epochs": int, "batch_size": int, "lr": float, "weight_decay": float,
    "energy_weight": float, "forces_weight": float, "stress_weight": float,
    "ema_decay": float, "grad_clip": float, "scheduler": str, "patience": int,
    "max_minutes": float, "threads": int, "dtype": str,
}  # fmt: skip
_MODEL_FLAGS = {
    "cutoff": float, "channels": int, "lmax": int, "num_layers": int, "num_radial": int,
    "radial_hidden": int, "readout_hidden": int,
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file with training options (flags override it)")
    for name, kind in _TRAIN_FLAGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    for name, kind in _MODEL_FLAGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                            help="model option")  # fmt: skip
    add_key_options(parser)
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the run in --out (only --epochs, --max-minutes, --threads, --patience "
        "may change)",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="start afresh in a used --out")
    parser.add_argument("--init-from", help="start from this checkpoint or shipped model")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.config:
        config = TrainConfig.from_yaml(args.config)
    elif args.resume and args.out and (Path(args.out) / "config.yaml").is_file():
        config = TrainConfig.from_yaml(Path(args.out) / "config.yaml")
    else:
        config = TrainConfig()
    changes = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    changes.update(
        {f"model_{k}": getattr(args, k) for k in _MODEL_FLAGS if getattr(args, k) is not None}
    )
    for name in ("energy_key", "forces_key", "stress_key"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    config = config.updated(**changes)
    if not config.data and not args.resume:
        raise ValueError("no training data: give --data or 'data:' in --config")
    return config


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    trainer = Trainer(
        config,
        init_from=args.init_from,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    result = trainer.run()
    summary = {k: result[k] for k in ("stop_reason", "epochs", "wall_s", "epoch", "val_metrics")}
    print(json.dumps(summary, indent=2))
    print(f"best model: {trainer.out / 'model.pt'}")
    return 0
