"""ase-gnnp train."""

from __future__ import annotations

import argparse
import json
import typing
from dataclasses import fields

from ase_gnnp.cli._common import add_malloc_option, setup_malloc
from ase_gnnp.config import ModelConfig
from ase_gnnp.train import TrainConfig, Trainer, distributed

HELP = "train a model from an extxyz file (YAML config and/or flags)"


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _weights(text: str) -> dict[str, float]:
    """``"core=10,surface=2"`` -> ``{"core": 10.0, "surface": 2.0}``."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if weight is None or not name.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT[,NAME=WEIGHT...], got {text!r}")
        out[name.strip()] = weight
    return out


def _names(text: str) -> list[str]:
    """``"md300,md600"`` -> ``["md300", "md600"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _flag_type(hint):
    """``int`` for ``int``, ``int | None`` -> ``int``; the first non-None member of a union;
    booleans parse 'true'/'false'; mappings parse ``NAME=VALUE,...``, lists ``A,B``."""
    if typing.get_origin(hint) is dict:
        return _weights
    if typing.get_origin(hint) is list:
        return _names
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    kind = args[0] if args else hint
    return _boolean if kind is bool else kind


def _flags(cls) -> dict[str, type]:
    """Option name → type for every field of a config dataclass, from its annotations."""
    hints = typing.get_type_hints(cls)
    return {f.name: _flag_type(hints[f.name]) for f in fields(cls) if f.name != "model"}


_TRAIN_FLAGS = _flags(TrainConfig)
_MODEL_FLAGS = _flags(ModelConfig)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--recipe`` and a flag per training and model option."""
    parser.add_argument("--config", help="YAML file with training options (flags override it)")
    parser.add_argument(
        "--recipe",
        choices=("auto", "none"),
        default=None,
        help="auto: options neither the YAML nor a flag sets come from the default recipe, "
        "chosen from statistics of the data and the budget (ase_gnnp.train.recipe); none: "
        "from TrainConfig's defaults. Default: auto, none with --config or --init-from",
    )
    train = parser.add_argument_group("training options (see TrainConfig)")
    for name, kind in _TRAIN_FLAGS.items():
        train.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    model = parser.add_argument_group("model options (see ModelConfig)")
    for name, kind in _MODEL_FLAGS.items():
        model.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (only --epochs, --max-minutes, --threads, --patience "
        "may change)",
    )
    parser.add_argument("--overwrite", action="store_true", help="start afresh in a used --out")
    parser.add_argument("--init-from", help="start from this checkpoint or shipped model")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_malloc_option(parser)


def _given(args: argparse.Namespace, names) -> dict:
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def _yaml_options(path: str) -> dict:
    """The options a YAML file sets (``model`` entries as ``model_<name>``)."""
    import yaml

    values = TrainConfig.from_yaml(path)  # validates the file
    raw = yaml.safe_load(open(path)) or {}
    changes = {k: getattr(values, k) for k in raw if k != "model"}
    changes.update({f"model_{k}": v for k, v in (raw.get("model") or {}).items()})
    return changes


def config_from_args(args: argparse.Namespace, announce: bool = True) -> TrainConfig:
    """The training options of a command line: the recipe's (``--recipe auto``), then the
    YAML's, then the flags'; with the recipe, its description is printed."""
    changes = _yaml_options(args.config) if args.config else {}
    changes.update(_given(args, _TRAIN_FLAGS))
    changes.update({f"model_{k}": v for k, v in _given(args, _MODEL_FLAGS).items()})
    data = changes.get("data")
    if not data:
        raise ValueError("no training data: give --data or 'data:' in --config")
    plain = not (args.config or getattr(args, "init_from", None))
    mode = args.recipe or ("auto" if plain else "none")
    if mode == "none":
        return TrainConfig().updated(**changes)
    from ase_gnnp.train.config import read_frames
    from ase_gnnp.train.recipe import DEFAULT_MINUTES, describe, recipe, summarize_data

    probe = TrainConfig().updated(**{k: v for k, v in changes.items() if not k.startswith("model")})
    frames = read_frames(probe)
    summary = summarize_data(frames, probe.keys)
    minutes = changes.get("max_minutes") or DEFAULT_MINUTES
    config = TrainConfig.from_dict(recipe(summary, minutes)).updated(**changes)
    if announce:
        stated = "" if changes.get("max_minutes") else f" (default budget {DEFAULT_MINUTES:g} min)"
        print(f"training recipe{stated}:\n{describe(config, summary)}", flush=True)
    return config


def run(args: argparse.Namespace) -> int:
    """Train; under ``torchrun`` every rank runs this and rank 0 alone writes and prints."""
    with distributed.session(device="cpu"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    progress = not args.no_progress
    setup_malloc(args)
    if args.resume:
        if args.config or args.init_from or _given(args, _MODEL_FLAGS):
            raise ValueError(
                "--resume continues the saved run: no --config, --init-from or model options"
            )
        overrides = _given(args, _TRAIN_FLAGS)
        out = overrides.pop("out", TrainConfig().out)
        trainer = Trainer.resume(out, progress=progress, **overrides)
    else:
        trainer = Trainer(
            config_from_args(args),
            init_from=args.init_from,
            overwrite=args.overwrite,
            progress=progress,
        )
    result = trainer.run()
    if not distributed.is_main_process():
        return 0
    summary = {k: result[k] for k in ("stop_reason", "epochs", "wall_s", "epoch", "val_metrics")}
    print(json.dumps(summary, indent=2))
    print(f"best model: {trainer.out / 'model.pt'}")
    return 0
