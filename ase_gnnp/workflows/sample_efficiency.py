"""Sample efficiency of pretraining: target error against the number of target structures,
fine-tuned from a pretrained model against trained from scratch, and the data reduction
factor at equal error."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ase_gnnp.checkpoint import load_model, resolve_model_path
from ase_gnnp.data import read_structures
from ase_gnnp.train import TrainConfig
from ase_gnnp.workflows.runs import train_run
from ase_gnnp.workflows.transfer import (
    elements_of,
    error_figures,
    fitted_symbols,
    split_target,
)

__all__ = ["plot_sample_efficiency", "reduction_factors", "sample_efficiency_study"]


#: the extrapolated size may lie at most this factor beyond the measured range
MAX_EXTRAPOLATION = 4.0
#: a scratch curve flatter than err ∝ N^-MIN_SLOPE gives no extrapolation
MIN_SLOPE = 0.05


def reduction_factors(
    sizes: Sequence[int], scratch: Sequence[float], tuned: Sequence[float]
) -> list[dict]:
    """Data reduction factor at equal error, for each fine-tuned point.

    For the fine-tuned error ``e`` at ``n`` structures, ``n_scratch`` is the size at which
    the from-scratch learning curve reaches ``e``, interpolated linearly in log-log
    between measured points of its running minimum (the best error reached with at most
    that many structures, so a noisy, non-decreasing curve is not crossed twice).
    Outside the measured range the curve is continued from its end point with the slope
    ``b`` of a power law ``err ∝ N^-b`` fitted to that running minimum
    (``"extrapolated": True``), but only up to ``MAX_EXTRAPOLATION`` times beyond the
    range and for ``b >= MIN_SLOPE``; otherwise ``n_scratch`` is ``None`` and
    ``"at_least"`` gives the bound ``max(sizes) / n`` when the fine-tuned error is below
    every scratch error. ``factor = n_scratch / n``.

    Raises
    ------
    ValueError
        If the lists differ in length, or an error or size is not finite and positive.
    """
    n = np.asarray(sizes, dtype=float)
    s = np.asarray(scratch, dtype=float)
    e_all = np.asarray(tuned, dtype=float)
    if not len(n) == len(s) == len(e_all) or len(n) == 0:
        raise ValueError(
            f"sizes, scratch and tuned errors must have one entry per size, got "
            f"{len(n)}, {len(s)} and {len(e_all)}"
        )
    for name, values in (("sizes", n), ("scratch errors", s), ("fine-tuned errors", e_all)):
        if not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError(f"{name} must be finite and positive, got {values.tolist()}")
    order = np.argsort(n)
    ln, ls = np.log(n[order]), np.log(np.minimum.accumulate(s[order]))
    slope = -np.polyfit(ln, ls, 1)[0] if len(ln) > 1 else 0.0
    rows = []
    for size, e in zip(n, e_all):
        le = np.log(e)
        n_star, extrapolated = None, False
        for k in range(len(ln) - 1):  # a crossing between two measured points
            lo, hi = sorted((ls[k], ls[k + 1]))
            if lo <= le <= hi and ls[k] != ls[k + 1]:
                w = (le - ls[k]) / (ls[k + 1] - ls[k])
                n_star = float(np.exp(ln[k] + w * (ln[k + 1] - ln[k])))
                break
        if n_star is None and slope >= MIN_SLOPE and len(ln) > 1:
            end = -1 if le < ls[-1] else 0  # continue from the nearer end of the curve
            guess = float(np.exp(ln[end] + (ls[end] - le) / slope))
            lo_n, hi_n = np.exp(ln[0]) / MAX_EXTRAPOLATION, np.exp(ln[-1]) * MAX_EXTRAPOLATION
            if lo_n <= guess <= hi_n:
                n_star, extrapolated = guess, True
        at_least = float(n.max() / size) if le < ls.min() else None
        rows.append({"n": int(size), "error": float(e), "n_scratch": n_star,
                     "factor": None if n_star is None else n_star / size,
                     "extrapolated": extrapolated, "at_least": at_least})  # fmt: skip
    return rows


def sample_efficiency_study(
    pretrained: str | Path,
    target: str | Path,
    out: str | Path,
    sizes: Sequence[int] = (10, 25, 50, 100, 200),
    finetune_config: TrainConfig | None = None,
    scratch_config: TrainConfig | None = None,
    steps: int = 300,
    seed: int = 0,
    pool_size: int | None = None,
    min_epochs: int = 0,
    kinds: Sequence[str] = ("finetune", "scratch"),
    progress: bool = True,
) -> dict:
    """Fine-tune ``pretrained`` and train its architecture from scratch on the first ``N``
    of the shuffled ``target`` structures, for each ``N`` in ``sizes``, with the same
    number of optimizer steps (``steps``, or ``min_epochs`` passes over the set if that
    is more); measure both on the same held-out target structures.

    Runs live in ``out/finetune_N`` and ``out/scratch_N`` and are reused or resumed. The
    first ``pool_size`` (default ``max(sizes)``) shuffled structures are the training pool,
    the rest the test set: studies of subsets of ``sizes`` with the same ``pool_size`` and
    ``seed`` share their split, so they can run side by side and be gathered afterwards;
    ``kinds`` (``"finetune"``, ``"scratch"``) restricts a call to one kind of run (the
    reduction factors need both).

    Returns
    -------
    dict
        ``sizes``; ``finetune`` and ``scratch``: per ``N`` error figures on the target test
        set (``force_mae`` eV/Å, ``energy_mae_per_atom`` eV/atom ...);
        ``reduction_force`` / ``reduction_energy``: :func:`reduction_factors` rows;
        ``relative_difference_force`` / ``_energy``: fine-tuned over scratch error − 1 at
        each ``N``; ``scratch_decreasing_force`` / ``_energy``: whether the scratch curve
        falls at every step (if not, the reduction factors are not meaningful);
        ``target_in_source``: target elements the pretrained model had fitted (a
        sample-efficiency claim needs them absent); settings.
    """
    out = Path(out)
    bad = sorted(set(kinds) - {"finetune", "scratch"})
    if bad or not kinds:
        raise ValueError(f"kinds must be 'finetune' and/or 'scratch', got {list(kinds)}")
    ft = (finetune_config or TrainConfig(freeze="equivariant")).updated(seed=seed)
    frames = read_structures(target, ft.keys, ["energy", "forces"])
    sizes = sorted({int(n) for n in sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"training sizes must be positive integers, got {sizes}")
    pool_size = max(sizes) if pool_size is None else int(pool_size)
    if pool_size < max(sizes):
        raise ValueError(f"pool_size {pool_size} is smaller than the largest size {max(sizes)}")
    split = split_target(frames, pool_size, seed)
    model_path = resolve_model_path(pretrained)
    base = load_model(model_path)
    scratch = (scratch_config or ft.updated(freeze="none")).updated(
        model=base.config, seed=seed, freeze="none"
    )
    fitted = fitted_symbols(base)
    elements = elements_of(frames)
    report = {
        "pretrained": str(model_path),
        "target": str(target),
        "elements": elements,
        "target_in_source": sorted(set(elements) & fitted),
        "sizes": sizes,
        "settings": {
            "steps": steps,
            "seed": seed,
            "freeze": ft.freeze,
            "lr_finetune": ft.lr,
            "lr_scratch": scratch.lr,
            "pool_size": pool_size,
            "min_epochs": min_epochs,
            "n_test": len(split.test),
        },  # fmt: skip
        "finetune": [],
        "scratch": [],
    }
    for n in sizes:
        for label, config, init in (("finetune", ft, model_path), ("scratch", scratch, None)):
            if label not in kinds:
                continue
            path = train_run(config, split.pool[:n], out / f"{label}_{n}", init_from=init,
                             steps=steps, min_epochs=min_epochs,
                             progress=progress)  # fmt: skip
            run = json.loads((path.parent / "run.json").read_text())
            steps_done = run["epochs"] * math.ceil(n / config.batch_size)
            figures = error_figures(load_model(path), split.test, ft.keys)
            report[label].append({"n": n, "epochs": run["epochs"],
                                  "optimizer_steps": steps_done, **figures})  # fmt: skip
    for key, name in (
        ("force_mae", "reduction_force"),
        ("energy_mae_per_atom", "reduction_energy"),
    ):
        if not (report["scratch"] and report["finetune"]):
            report[name] = []
            continue
        label = name.split("_")[1]
        scratch_curve = np.array([r[key] for r in report["scratch"]])
        # a learning curve that does not fall leaves the data factor ill-defined
        report[f"scratch_decreasing_{label}"] = bool(np.all(np.diff(scratch_curve) < 0))
        report[f"relative_difference_{label}"] = [
            f[key] / s[key] - 1 for f, s in zip(report["finetune"], report["scratch"])
        ]
        report[name] = reduction_factors(sizes, [r[key] for r in report["scratch"]],
                                         [r[key] for r in report["finetune"]])  # fmt: skip
    return report


def plot_sample_efficiency(report: dict, path: str | Path) -> Path:
    """Learning curves (force and energy error against N, log N axis), fine-tuned and
    from scratch, with the reduction factors where the scratch curve falls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, unit, name in (
        (axes[0], "force_mae", "force MAE (meV/Å)", "reduction_force"),
        (axes[1], "energy_mae_per_atom", "energy MAE (meV/atom)", "reduction_energy"),
    ):
        for label, style in (("finetune", "o-"), ("scratch", "s--")):
            rows = report[label]
            if not rows:
                continue
            text = "fine-tuned from pretrained" if label == "finetune" else "from scratch"
            ax.plot([r["n"] for r in rows], [1000 * r[key] for r in rows], style, label=text)
        meaningful = report.get(f"scratch_decreasing_{name.split('_')[1]}", True)
        if not meaningful:
            ax.set_title("scratch curve does not fall: no reduction factor", fontsize=8)
        for r in report[name] if meaningful else []:
            if r["factor"] is not None:
                ax.annotate(f"×{r['factor']:.2g}{'*' if r['extrapolated'] else ''}",
                            (r["n"], 1000 * r["error"]), textcoords="offset points",
                            xytext=(4, -12), fontsize=7)  # fmt: skip
            elif r["at_least"] is not None:
                ax.annotate(f"≥×{r['at_least']:.2g}", (r["n"], 1000 * r["error"]),
                            textcoords="offset points", xytext=(4, -12), fontsize=7)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(report["sizes"], [str(v) for v in report["sizes"]])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("target training structures N")
        ax.set_ylabel(unit)
        ax.legend(fontsize=8)
    fig.suptitle(f"sample efficiency on {'+'.join(report['elements'])} "
                 f"({report['settings']['n_test']} test structures; ×: data reduction at "
                 f"equal error, *: extrapolated)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
