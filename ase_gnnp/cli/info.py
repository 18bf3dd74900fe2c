"""ase-gnnp info."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import PackageNotFoundError, version

from ase.data import chemical_symbols

from ase_gnnp import __version__
from ase_gnnp.checkpoint import load_model, shipped_models

HELP = "versions, shipped models, and a model's configuration and statistics"
_DEPS = ("torch", "e3nn", "torch-geometric", "ase", "vesin", "numpy", "matscipy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint file or shipped model name")
    parser.add_argument("--json", action="store_true")


def _versions() -> dict:
    out = {"ase_gnnp": __version__}
    for dep in _DEPS:
        try:
            out[dep] = version(dep)
        except PackageNotFoundError:
            out[dep] = "not installed"
    return out


def _uq_info(model) -> dict:
    from ase_gnnp.uq import uq_statistics

    stats = uq_statistics(model)
    out = {"mahalanobis": None, "conformal": None}
    if stats.mahalanobis is not None:
        m = stats.mahalanobis
        out["mahalanobis"] = {
            "elements": [chemical_symbols[z] for z in m.numbers.tolist()],
            "training_atoms": m.counts.tolist(),
            "features": m.num_features,
            "median_training_distance": m.train_median,
        }
    if stats.conformal is not None:
        out["conformal"] = stats.conformal.to_dict()
    return out


def model_info(name: str) -> dict:
    model = load_model(name)
    fitted = model.fitted_elements.nonzero().flatten().tolist()
    return {
        "source": model.source,
        "config": model.config.to_dict(),
        "dtype": str(model.dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
        "elements_fitted": [chemical_symbols[z] for z in fitted],
        "atomic_reference_eV": {
            chemical_symbols[z]: float(model.atomic_reference[z]) for z in fitted
        },
        "scale": float(model.scale),
        "avg_num_neighbors": float(model.layers[0].avg_num_neighbors),
        "metadata": {k: v for k, v in model.metadata.items() if k != "train_config"},
        "uncertainty": _uq_info(model),
    }


def run(args: argparse.Namespace) -> int:
    info = {"versions": _versions(), "shipped_models": shipped_models()}
    if args.model:
        info["model"] = model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for name, ver in info["versions"].items():
        print(f"{name:<16} {ver}")
    print(f"shipped models: {', '.join(info['shipped_models']) or 'none'}")
    if args.model:
        print(json.dumps(info["model"], indent=2))
    return 0
