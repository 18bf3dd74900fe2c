"""Learning-curve plot from the metrics CSV."""

from __future__ import annotations

import csv
from pathlib import Path


def plot_learning_curve(metrics_csv: str | Path, png: str | Path) -> Path:
    """Plot training loss and validation errors per epoch (log scale) to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv) as fh:
        rows = list(csv.DictReader(fh))
    epochs = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].semilogy(epochs, [float(r["train_loss"]) for r in rows], label="train loss")
    axes[0].semilogy(epochs, [float(r["val_loss"]) for r in rows], label="validation loss")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    plotted = False
    for key, label in (
        ("val_energy_mae_per_atom", "energy MAE (meV/atom)"),
        ("val_force_mae", "force MAE (meV/Å)"),
        ("val_stress_mae", "stress MAE (meV/Å³)"),
        ("val_dipole_mae", "dipole MAE (me·Å)"),
        ("val_polarizability_mae", "polarizability MAE (me·Å²/V)"),
    ):
        values = [r.get(key, "") for r in rows]
        if any(values):
            axes[1].semilogy(
                epochs, [1000 * float(v) if v else float("nan") for v in values], label=label
            )
            plotted = True
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation error")
    if plotted:
        axes[1].legend()
    else:
        axes[1].text(0.5, 0.5, "no validation split", ha="center", transform=axes[1].transAxes)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return Path(png)
