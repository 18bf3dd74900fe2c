"""The default training recipe: every option chosen from generic statistics of the data and
the time budget, never from names of files or data sets.

``ase-gnnp train --data X.extxyz [--max-minutes M]`` with no other option trains
:func:`recipe`'s choice; :func:`describe` prints it at the start. The choices, and the
cross-validated figures they rest on, are listed in ``tutorials/training.rst``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms

from ase_gnnp.data import LABELS, DataKeys, reference_labels
from ase_gnnp.train.config import TrainConfig

__all__ = [
    "DEFAULT_MINUTES",
    "DataSummary",
    "describe",
    "energy_weight",
    "recipe",
    "summarize_data",
]

#: training budget (wall-clock minutes) when none is given
DEFAULT_MINUTES = 20.0

#: energy spread (eV/atom, :attr:`DataSummary.energy_spread`) below which the recipe weighs
#: forces first: sets whose per-atom energies vary little around the per-element reference
#: energies (one molecule's conformations: 3BPA, 6 meV/atom) learn forces better with a
#: small energy weight, while sets of phases, defects and surfaces (the mlearn solids, 50
#: to 430 meV/atom) need the energy weighted. No set between 6 and 50 meV/atom was measured.
LOW_ENERGY_SPREAD = 0.02
#: per-atom energy loss weight (forces 1) above and below :data:`LOW_ENERGY_SPREAD`
ENERGY_WEIGHT = 10.0
ENERGY_WEIGHT_LOW_SPREAD = 0.3
#: stress loss weight (eV/Å³ components, forces 1) where every structure carries a stress:
#: on mlearn Si at the 20-minute budget, 100 instead of 1000 lowered the force error on
#: every fold measured, energies no worse, stresses 30 % worse (tutorials/training.rst)
STRESS_WEIGHT = 100.0


@dataclass(frozen=True)
class DataSummary:
    """Generic statistics of a training set, all a recipe may depend on.

    Attributes
    ----------
    n_structures, n_atoms : int
        Number of structures and of atoms in all.
    elements : tuple of str
        Chemical symbols present, sorted.
    periodic : float
        Share of structures periodic in all three directions.
    labels : tuple of str
        Labels every structure of the set carries (``energy``, ``forces``, ``stress``,
        ``dipole``, ``polarizability``, ``charges``).
    max_abs_energy : float
        Largest absolute total energy (eV) of a structure.
    energy_spread : float
        Standard deviation (eV/atom) of the per-atom energy left after a least-squares
        fit of one reference energy per element: what the network has to learn.
    """

    n_structures: int
    n_atoms: int
    elements: tuple[str, ...]
    periodic: float
    labels: tuple[str, ...]
    max_abs_energy: float
    energy_spread: float

    @property
    def mean_atoms(self) -> float:
        return self.n_atoms / max(self.n_structures, 1)

    def to_dict(self) -> dict:
        return asdict(self) | {"mean_atoms": self.mean_atoms}


def summarize_data(frames: Sequence[Atoms], keys: DataKeys = DataKeys()) -> DataSummary:
    """:class:`DataSummary` of labelled ``frames`` (labels found as the trainer finds them)."""
    frames = list(frames)
    if not frames:
        raise ValueError("no structures to summarize")
    found = [reference_labels(a, keys) for a in frames]
    labels = tuple(n for n in LABELS if all(f[n] is not None for f in found))
    symbols = sorted({s for a in frames for s in a.get_chemical_symbols()})
    spread, max_abs = 0.0, 0.0
    if "energy" in labels:
        energies = np.array([f["energy"] for f in found])
        counts = np.array([[a.get_chemical_symbols().count(s) for s in symbols] for a in frames])
        e0, *_ = np.linalg.lstsq(counts.astype(float), energies, rcond=None)
        natoms = np.array([len(a) for a in frames], dtype=float)
        residual = (energies - counts @ e0) / natoms
        spread = float(residual.std())
        max_abs = float(np.abs(energies).max())
    return DataSummary(
        n_structures=len(frames),
        n_atoms=sum(len(a) for a in frames),
        elements=tuple(symbols),
        periodic=float(np.mean([bool(a.pbc.all()) for a in frames])),
        labels=labels,
        max_abs_energy=max_abs,
        energy_spread=spread,
    )


def recipe(summary: DataSummary, minutes: float = DEFAULT_MINUTES) -> dict:
    """Training options (a :meth:`TrainConfig.from_dict` mapping, ``model`` included) for a
    training set described by ``summary`` and a budget of ``minutes``.

    The budget ends the run (``max_minutes``); the learning rate anneals over it.
    """
    if not minutes > 0:
        raise ValueError(f"the recipe needs a time budget in minutes > 0, got {minutes!r}")
    model = {
        "cutoff": 5.0,
        "channels": 32,
        "lmax": 2,
        "num_layers": 2,
        "correlation": 3,
        "last_lmax": 1,
    }
    return {
        "model": model,
        "max_minutes": float(minutes),
        "epochs": 100_000,  # the budget ends the run
        "patience": 100_000,
        "val_fraction": 0.1,
        "batch_size": 4,
        "lr": 2e-2,  # the largest lever of the screens (tutorials/training.rst)
        "min_lr": 1e-5,
        "scheduler": "cosine",
        "energy_weight": energy_weight(summary),
        "forces_weight": 1.0,
        "stress_weight": STRESS_WEIGHT if "stress" in summary.labels else 0.0,
        "ema_decay": 0.99,
        "dtype": "float32",
    }


def energy_weight(summary: DataSummary) -> float:
    """Per-atom energy loss weight (forces 1) for a training set: forces first where its
    energies spread less than :data:`LOW_ENERGY_SPREAD` (see ``tutorials/training.rst``)."""
    if "energy" in summary.labels and summary.energy_spread < LOW_ENERGY_SPREAD:
        return ENERGY_WEIGHT_LOW_SPREAD
    return ENERGY_WEIGHT


def describe(config: TrainConfig, summary: DataSummary | None = None) -> str:
    """What a run will train, in a few lines (printed by ``ase-gnnp train``)."""
    m = config.model
    lines = []
    if summary is not None:
        lines.append(
            f"data: {summary.n_structures} structures, {summary.n_atoms} atoms "
            f"({summary.mean_atoms:.1f} per structure), elements {', '.join(summary.elements)}, "
            f"{100 * summary.periodic:.0f} % periodic, labels {', '.join(summary.labels)}, "
            f"energy spread {1000 * summary.energy_spread:.1f} meV/atom"
        )
    lines.append(
        f"model: cutoff {m.cutoff:g} Å, {m.num_layers} layers, {m.channels} channels, "
        f"lmax {m.lmax}, correlation {m.correlation}"
        + (f", last-layer lmax {m.last_lmax}" if m.last_lmax is not None else "")
        + f", {config.dtype} (energies summed in float64)"
    )
    budget = f"{config.max_minutes:g} minutes" if config.max_minutes else "no time limit"
    lines.append(
        f"budget: {budget}, at most {config.epochs} epochs; batch {config.batch_size}, AdamW "
        f"lr {config.lr:g} ({config.scheduler} to {config.min_lr:g}"
        + (f", {100 * config.warmup_fraction:.0f} % warm-up" if config.warmup_fraction else "")
        + f"), EMA {config.ema_decay:g}"
    )
    weights = f"energy {config.energy_weight:g} / forces {config.forces_weight:g}"
    weights += f" / stress {config.stress_weight:g}" if config.stress_weight else " / no stress"
    loss = "MSE" if config.loss == "mse" else f"Huber (δ = {config.huber_delta:g})"
    weights += " (per-atom energy)"
    if summary is not None and config.energy_weight == energy_weight(summary) < ENERGY_WEIGHT:
        weights += (
            f"; forces first, as the energies spread less than "
            f"{1000 * LOW_ENERGY_SPREAD:g} meV/atom"
        )
    if config.config_type_balance:
        weights += f"; config types balanced (exponent {config.config_type_balance:g})"
    lines.append(f"loss: {loss}, weights {weights}")
    if config.final_fraction:
        final = ", ".join(
            f"{name} {value:g}"
            for name, value in (
                ("energy weight", config.final_energy_weight),
                ("force weight", config.final_forces_weight),
                ("stress weight", config.final_stress_weight),
                ("lr", config.final_lr),
            )
            if value is not None
        )
        lines.append(
            f"final stage: last {100 * config.final_fraction:.0f} % of the run, {final}, "
            f"{config.final_average} weight average"
        )
    validation = (
        f"{100 * config.val_fraction:.0f} % held out for model selection"
        if config.val_fraction > 0 or config.val_data
        else "none (every structure trains; the last model is kept)"
    )
    lines.append(f"validation: {config.val_data or validation}")
    lines.append("reference energies: least-squares fit per element on the training structures")
    return "\n".join(lines)
