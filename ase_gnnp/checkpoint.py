"""Saving and loading models: versioned checkpoints and shipped pretrained models."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ase_gnnp import __version__
from ase_gnnp.config import ModelConfig
from ase_gnnp.model import GNNPModel
from ase_gnnp.uq.statistics import UQStatistics, uq_statistics

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "load_model", "save_model", "shipped_models"]

CHECKPOINT_FORMAT = "ase_gnnp-model"
CHECKPOINT_VERSION = 1
MODELS_DIR = Path(__file__).resolve().parent / "models"


def shipped_models() -> list[str]:
    """Names of the pretrained models shipped inside the package."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.pt"))


def model_payload(model: GNNPModel, metadata: dict | None = None) -> dict:
    """Everything needed to rebuild ``model``: config, weights and metadata."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "ase_gnnp_version": __version__,
        "model_config": model.config.to_dict(),
        "dtype": str(model.dtype).removeprefix("torch."),
        "state_dict": model.state_dict(),
        "metadata": dict(metadata or {}),
        # uncertainty statistics (Mahalanobis, conformal q̂), see ase_gnnp.uq
        "uq": uq_statistics(model).to_dict(),
    }


def atomic_save(obj: object, path: str | Path) -> Path:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a file."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(
            f"cannot write {str(path)!r}: the folder {str(path.parent)!r} does not exist "
            f"(create it first)"
        )
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def save_model(model: GNNPModel, path: str | Path, metadata: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (a ``.pt`` file readable by :func:`load_model`)."""
    return atomic_save(model_payload(model, metadata), path)


def resolve_model_path(name_or_path: str | Path) -> Path:
    """Turn a shipped model name or a file path into an existing path."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = MODELS_DIR / f"{name_or_path}.pt"
    if shipped.is_file():
        return shipped
    raise ValueError(
        f"model {str(name_or_path)!r} is neither an existing checkpoint file nor a shipped "
        f"model; shipped models: {shipped_models()}"
    )


def read_torch_file(path: str | Path, what: str = "checkpoint") -> object:
    """``torch.load`` (weights only, on CPU) that turns any failure into a ValueError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's loaders raise many types on garbage input
        raise ValueError(f"{what} {str(path)!r} is corrupt or not a torch file: {err}") from err


def read_checkpoint(path: Path) -> dict:
    """Load and validate a checkpoint dictionary (no model is built)."""
    payload = read_torch_file(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not an ase_gnnp model checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint {str(path)!r} has format version {payload.get('version')!r} "
            f"(written by ase_gnnp {payload.get('ase_gnnp_version')}); this ase_gnnp "
            f"{__version__} reads version {CHECKPOINT_VERSION}"
        )
    return payload


def model_from_payload(payload: dict, source: str = "<payload>") -> GNNPModel:
    model = GNNPModel(ModelConfig.from_dict(payload["model_config"]))
    model.to(getattr(torch, payload.get("dtype", "float32")))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {source!r} does not match its model config: {err}") from err
    model.metadata = payload.get("metadata", {})
    try:
        model.uq = UQStatistics.from_dict(payload.get("uq"))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"checkpoint {source!r} has corrupt uncertainty statistics: {err}"
        ) from err
    return model.eval()


def load_model(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> GNNPModel:
    """Load a model from a checkpoint file or by the name of a shipped model.

    Parameters
    ----------
    name_or_path
        A ``.pt`` file written by :func:`save_model` or the trainer, or a shipped name such
        as ``"sige-small"`` (no network access is needed).
    device, dtype
        Where and in which floating precision to put the model (default: as saved).

    Raises
    ------
    ValueError
        If the file is missing, corrupt, not an ase_gnnp checkpoint or from another
        checkpoint format version.
    """
    path = resolve_model_path(name_or_path)
    model = model_from_payload(read_checkpoint(path), str(path))
    model.source = str(path)
    return model.to(device=device, dtype=dtype) if dtype else model.to(device)
