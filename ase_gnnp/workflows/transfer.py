"""Transferability: a model trained on one system measured on another, before and after
refitting the new elements' reference energies and fine-tuning on a few target structures.

The building blocks (target split, reference refit, fine-tuning runs that are reused or
resumed) also serve :mod:`ase_gnnp.workflows.sample_efficiency`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from ase_gnnp.checkpoint import load_model, resolve_model_path
from ase_gnnp.data import (
    DataKeys,
    config_types,
    labelled_graph,
    read_structures,
    split_indices,
)
from ase_gnnp.evaluate import evaluate_structures
from ase_gnnp.model import GNNPModel
from ase_gnnp.train import TrainConfig
from ase_gnnp.train.statistics import refit_new_references
from ase_gnnp.workflows.runs import train_run

__all__ = [
    "TargetSplit",
    "elements_of",
    "error_figures",
    "fitted_symbols",
    "plot_transfer",
    "refit_references",
    "split_target",
    "transfer_study",
]


@dataclass(frozen=True)
class TargetSplit:
    """Target structures split once: a fine-tuning pool drawn in random order (its first
    ``n`` structures are the training set of size ``n``, so smaller sets are nested in
    larger ones) and a test set never trained on."""

    pool: list[Atoms]
    test: list[Atoms]


def split_target(frames: Sequence[Atoms], pool_size: int, seed: int = 0) -> TargetSplit:
    """Shuffle ``frames`` with ``seed``; the first ``pool_size`` form the pool, the rest the
    test set (at least one structure)."""
    frames = list(frames)
    if not 1 <= pool_size < len(frames):
        raise ValueError(
            f"the target set has {len(frames)} structures: cannot draw {pool_size} for "
            f"fine-tuning and keep any for testing; use fewer or smaller training sizes"
        )
    order = np.random.default_rng(seed).permutation(len(frames))
    return TargetSplit([frames[i] for i in order[:pool_size]],
                       [frames[i] for i in order[pool_size:]])  # fmt: skip


def error_figures(model: GNNPModel, frames: Sequence[Atoms], keys: DataKeys = DataKeys()) -> dict:
    """Force MAE/RMSE (eV/Å, per component) and energy MAE (eV/atom) on ``frames``."""
    summary = evaluate_structures(model, frames, keys)
    figures = {"n_structures": len(frames), "n_atoms": int(sum(map(len, frames)))}
    for key in ("force_mae", "force_rmse", "energy_mae_per_atom", "energy_rmse_per_atom"):
        if key in summary:
            figures[key] = summary[key]
    figures["per_element"] = {e: m["force_mae"] for e, m in summary["per_element"].items()}
    return figures


def refit_references(
    model: GNNPModel, frames: Sequence[Atoms], keys: DataKeys = DataKeys()
) -> tuple[GNNPModel, dict[str, float]]:
    """A copy of ``model`` whose unseen elements' reference energies are fitted on ``frames``
    (:func:`ase_gnnp.train.statistics.refit_new_references`); nothing else changes.

    Returns the copy and the fitted references (eV) of the new elements by symbol.
    """
    model = copy.deepcopy(model)
    known = fitted_symbols(model)
    graphs = [labelled_graph(a, model.cutoff, keys, model.dtype) for a in frames]
    refs = refit_new_references(model, graphs)
    return model, {chemical_symbols[z]: e for z, e in refs.items()
                   if chemical_symbols[z] not in known}  # fmt: skip


def elements_of(frames: Sequence[Atoms]) -> list[str]:
    """Sorted chemical symbols present in ``frames``."""
    return sorted({s for a in frames for s in a.get_chemical_symbols()})


def fitted_symbols(model: GNNPModel) -> set[str]:
    """Elements whose reference energy ``model`` has fitted (seen in training)."""
    return {chemical_symbols[z] for z in model.fitted_elements.nonzero().flatten().tolist()}


def transfer_study(
    source: str | Path,
    target: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    source_config: TrainConfig | None = None,
    finetune_config: TrainConfig | None = None,
    n_reference: int = 5,
    sizes: Sequence[int] = (5, 10, 25, 50),
    steps: int = 300,
    source_test_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train on ``source``, measure on ``target``, then fine-tune on a few target structures.

    Parameters
    ----------
    source, target
        Labelled extxyz sets (energy and forces), e.g. mlearn Si and Ge.
    out
        Study folder: the source run (``source/``), one run per fine-tuning size
        (``finetune_N/``); finished runs are reused and killed ones resumed.
    model
        A model already trained on the source system; ``source`` is then its in-domain
        test set as a whole. Without it, ``source_config`` trains one on a stratified
        ``1 - source_test_fraction`` share of ``source`` and the rest is the test set.
    finetune_config
        Options of the fine-tuning runs (``freeze``, ``lr``, ``batch_size``, weights, label
        keys ...); each lasts ``steps`` optimizer steps. Default: ``freeze="equivariant"``.
    n_reference
        Target structures (the first of the pool) on which only the new elements'
        reference energies are refitted for the zero-shot energy error.
    sizes
        Fine-tuning set sizes ``N``; the first ``max(sizes)`` shuffled target structures
        form the pool, the rest the target test set.

    Returns
    -------
    dict
        ``in_domain`` and ``zero_shot`` error figures (``force_mae`` eV/Å, ...),
        ``force_growth`` (zero-shot over in-domain force MAE), ``reference_refit``
        (references and target energy MAE after the refit), ``finetune`` (per ``N``: target
        and source figures after fine-tuning), plus the settings.
    """
    out = Path(out)
    ft_config = (finetune_config or TrainConfig(freeze="equivariant")).updated(seed=seed)
    keys = ft_config.keys
    source_frames = read_structures(source, keys, ["energy", "forces"])
    target_frames = read_structures(target, keys, ["energy", "forces"])
    sizes = sorted({int(n) for n in sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"fine-tuning sizes must be positive integers, got {sizes}")
    if not 1 <= n_reference <= max(sizes):
        raise ValueError(
            f"n_reference must be between 1 and the largest fine-tuning size {max(sizes)}, "
            f"got {n_reference}"
        )
    if not 0.0 < source_test_fraction < 1.0:
        raise ValueError(f"source_test_fraction must be in (0, 1), got {source_test_fraction!r}")
    split = split_target(target_frames, max(sizes), seed)
    if model is None:
        train_idx, test_idx = split_indices(config_types(source_frames), source_test_fraction,
                                            seed)  # fmt: skip
        config = (source_config or TrainConfig()).updated(seed=seed)
        model_path = train_run(config, [source_frames[i] for i in train_idx], out / "source",
                               hold_out=True, progress=progress)  # fmt: skip
        source_test = [source_frames[i] for i in test_idx]
    else:
        if source_config is not None:
            raise ValueError("give either a source model or source_config to train one, not both")
        model_path = resolve_model_path(model)
        trained_on = load_model(model_path).metadata.get("train_config", {}).get("data") or []
        trained_on = [trained_on] if isinstance(trained_on, str) else trained_on
        if any(Path(p).is_file() and Path(p).resolve() == Path(source).resolve()
               for p in trained_on):  # fmt: skip
            raise ValueError(
                f"{source} is the training data of {model_path}; pass held-out source "
                f"structures as the in-domain test set"
            )
        source_test = source_frames
    base = load_model(model_path)
    new = sorted(set(elements_of(target_frames)) - fitted_symbols(base))

    in_domain = error_figures(base, source_test, keys)
    zero_shot = error_figures(base, split.test, keys)
    refitted, refs = refit_references(base, split.pool[:n_reference], keys)
    after_refit = error_figures(refitted, split.test, keys)
    report = {
        "source": str(source),
        "target": str(target),
        "model": str(model_path),
        "elements": {
            "source": elements_of(source_test),
            "target": elements_of(target_frames),
            "new": new,
        },  # fmt: skip
        "settings": {
            "n_reference": n_reference,
            "sizes": sizes,
            "steps": steps,
            "seed": seed,
            "n_target_test": len(split.test),
            "n_source_test": len(source_test),
            "freeze": ft_config.freeze,
        },  # fmt: skip
        "in_domain": in_domain,
        "zero_shot": zero_shot,
        "force_growth": zero_shot["force_mae"] / in_domain["force_mae"],
        "reference_refit": {
            "n_structures": n_reference,
            "references": refs,
            "energy_mae_per_atom": after_refit["energy_mae_per_atom"],
            "energy_rmse_per_atom": after_refit["energy_rmse_per_atom"],
        },
        "finetune": [],
    }
    for n in sizes:
        path = train_run(ft_config, split.pool[:n], out / f"finetune_{n}", init_from=model_path,
                         steps=steps, progress=progress)  # fmt: skip
        tuned = load_model(path)
        target_figures = error_figures(tuned, split.test, keys)
        report["finetune"].append({
            "n": n,
            "target": target_figures,
            "source": error_figures(tuned, source_test, keys),
            "force_growth": target_figures["force_mae"] / in_domain["force_mae"],
        })  # fmt: skip
    return report


def plot_transfer(report: dict, path: str | Path) -> Path:
    """Force and energy errors on the target against the fine-tuning size, with the
    in-domain and zero-shot levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    src = "+".join(report["elements"]["source"])
    tgt = "+".join(report["elements"]["target"])
    rows = report["finetune"]
    n = [r["n"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(n, [1000 * r["target"]["force_mae"] for r in rows], "o-", label=f"{tgt}, fine-tuned")
    ax1.plot(n, [1000 * r["source"]["force_mae"] for r in rows], "s--",
             label=f"{src} after fine-tuning")  # fmt: skip
    ax1.axhline(1000 * report["zero_shot"]["force_mae"], color="C3", ls=":",
                label=f"{tgt}, zero-shot (×{report['force_growth']:.2f})")  # fmt: skip
    ax1.axhline(1000 * report["in_domain"]["force_mae"], color="k", ls=":",
                label=f"{src}, in domain")  # fmt: skip
    ax1.set_ylabel("force MAE (meV/Å)")
    ax2.plot(n, [1000 * r["target"]["energy_mae_per_atom"] for r in rows], "o-",
             label=f"{tgt}, fine-tuned")  # fmt: skip
    ax2.axhline(1000 * report["reference_refit"]["energy_mae_per_atom"], color="C3", ls=":",
                label=f"zero-shot, references refitted on "
                      f"{report['reference_refit']['n_structures']}")  # fmt: skip
    ax2.axhline(1000 * report["in_domain"]["energy_mae_per_atom"], color="k", ls=":",
                label=f"{src}, in domain")  # fmt: skip
    ax2.set_ylabel("energy MAE (meV/atom)")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(n, [str(v) for v in n])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("target structures used for fine-tuning")
        ax.legend(fontsize=7)
    fig.suptitle(f"transfer {src} → {tgt} ({report['settings']['n_target_test']} target "
                 f"test structures)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
