"""Memory studies: scaling with lmax and depth, the largest system in a budget, and what
per-layer gradient checkpointing saves and costs; plots. Measurements by
:func:`ase_gnnp.perf.memory.peak_memory`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ase_gnnp.config import ModelConfig
from ase_gnnp.perf.memory import (
    MODES,
    _check_mode,
    fit_line,
    fit_power_law,
    peak_memory,
    si_supercell,
)

__all__ = [
    "checkpointing_study", "largest_system", "memory_scan", "plot_checkpointing", "plot_memory",
]  # fmt: skip


# ---------------------------------------------------------------- studies
def memory_scan(
    lmaxs=(0, 1, 2, 3),
    layers=(1, 2, 3, 4, 5, 6),
    natoms: int = 512,
    modes=MODES,
    channels: int = 32,
    fixed_lmax: int = 2,
    fixed_layers: int = 2,
    cutoff: float = 5.0,
    grid: bool = False,
    progress: bool = True,
    **options,
) -> dict:
    """Peak step memory against ``lmax`` (at ``fixed_layers``) and depth (at ``fixed_lmax``).

    ``grid=True`` measures every (lmax, layers) pair instead. ``options`` go to
    :func:`peak_memory` (device, dtype, threads, gradient_checkpointing, edge_chunk ...).

    Returns
    -------
    dict
        ``settings``, ``points`` (one :func:`peak_memory` row each, plus ``lmax`` and
        ``num_layers``), ``vs_layers[mode]`` (``layers``, ``peak_bytes``, ``fit`` =
        :func:`fit_line` over the depths from ``fit_from`` on: ``slope`` is bytes per
        layer) and ``vs_lmax[mode]`` (``lmax``, ``peak_bytes``, ``fit`` =
        :func:`fit_power_law` in ``lmax + 1``).

    Notes
    -----
    The last interaction layer outputs scalars only and the first one takes the scalar
    embedding, so the memory of a model grows linearly only from three layers on, where
    another identical interior layer is added: the depth fit starts there (at the
    smallest depth if fewer than two depths >= 3 were measured).
    """
    modes = list(modes)
    for mode in modes:
        _check_mode(mode)
    base = ModelConfig(cutoff=cutoff, channels=channels, lmax=fixed_lmax, num_layers=fixed_layers)
    pairs = [(lm, nl) for lm in lmaxs for nl in layers] if grid else (
        [(lm, fixed_layers) for lm in lmaxs] + [(fixed_lmax, nl) for nl in layers])  # fmt: skip
    pairs = list(dict.fromkeys(pairs))
    configs = {p: replace(base, lmax=p[0], num_layers=p[1]) for p in pairs}  # validates all
    si_supercell(natoms)
    rows = {}
    todo = [(p, m) for p in pairs for m in modes]
    for pair, mode in tqdm(todo, desc="memory", disable=not progress):
        row = peak_memory(configs[pair], natoms, mode, **options)
        rows[pair, mode] = {"lmax": pair[0], "num_layers": pair[1], **row}
    result = {"settings": {"natoms": natoms, "channels": channels, "cutoff": cutoff,
                           "fixed_lmax": fixed_lmax, "fixed_layers": fixed_layers,
                           "modes": modes, "grid": grid,
                           **{k: str(v) for k, v in options.items()}},
              "points": list(rows.values()), "vs_lmax": {}, "vs_layers": {}}  # fmt: skip
    for mode in modes:
        ls = [lm for lm in dict.fromkeys(lmaxs) if ((lm, fixed_layers), mode) in rows]
        peaks = [rows[(lm, fixed_layers), mode]["peak_bytes"] for lm in ls]
        entry = {"lmax": ls, "peak_bytes": peaks}
        if len(ls) >= 2:
            entry["fit"] = fit_power_law(np.asarray(ls) + 1, peaks)
        result["vs_lmax"][mode] = entry
        ns = [nl for nl in dict.fromkeys(layers) if ((fixed_lmax, nl), mode) in rows]
        peaks = [rows[(fixed_lmax, nl), mode]["peak_bytes"] for nl in ns]
        entry = {"layers": ns, "peak_bytes": peaks}
        interior = [(n, p) for n, p in zip(ns, peaks) if n >= 3]
        if len(interior) < 2:
            interior = list(zip(ns, peaks))
        if len(interior) >= 2:
            entry["fit"] = fit_line(*zip(*interior))
            entry["fit_from"] = min(n for n, _ in interior)
        result["vs_layers"][mode] = entry
    return result


def largest_system(
    config: ModelConfig,
    budget_bytes: float,
    mode: str,
    sizes=(216, 512, 1000),
    verify: bool = False,
    progress: bool = True,
    **options,
) -> dict:
    """Largest Si cell whose step fits in ``budget_bytes``, from ``peak = a + b·N``.

    The fit is on ``peak_total_bytes`` (everything in use at the high-water mark:
    interpreter, libraries, model, graph and the step on CPU; tensors on CUDA, where the
    CUDA context, ~0.5 GB, comes on top). ``b`` is the memory per atom.

    Returns
    -------
    dict
        ``measured`` rows, ``bytes_per_atom`` (b), ``intercept_bytes`` (a), ``fit``,
        ``step_bytes_per_atom`` (slope of ``peak_bytes``, the step alone), ``natoms_max``
        (predicted) and with ``verify``: ``verification`` (the row measured at the
        largest cell not above ``natoms_max``, ``fits`` and ``prediction_error``).
    """
    _check_mode(mode)
    if not budget_bytes > 0:
        raise ValueError(f"budget_bytes must be positive, got {budget_bytes!r}")
    sizes = sorted(set(sizes))
    if len(sizes) < 2:
        raise ValueError(f"need at least two different sizes to fit, got {sizes}")
    rows = [peak_memory(config, n, mode, **options)
            for n in tqdm(sizes, desc="sizes", disable=not progress)]  # fmt: skip
    ns = [r["natoms"] for r in rows]
    fit = fit_line(ns, [r["peak_total_bytes"] for r in rows])
    step_fit = fit_line(ns, [r["peak_bytes"] for r in rows])
    a, b = fit["intercept"], fit["slope"]
    natoms_max = int((budget_bytes - a) // b) if b > 0 and budget_bytes > a else 0
    result = {"mode": mode, "budget_bytes": float(budget_bytes), "config": config.to_dict(),
              "measured": rows, "fit": fit, "bytes_per_atom": b, "intercept_bytes": a,
              "step_bytes_per_atom": step_fit["slope"], "natoms_max": natoms_max}  # fmt: skip
    if verify and natoms_max >= 8:
        n = natoms_max
        while si_supercell(n, rattle=0.0).get_global_number_of_atoms() > natoms_max and n > 8:
            n -= 8
        try:
            row = peak_memory(config, n, mode, **{**options, "repeats": 0})
        except RuntimeError as err:
            result["verification"] = {"natoms": n, "fits": False, "error": str(err)[:300]}
        else:
            predicted = a + b * row["natoms"]
            result["verification"] = {
                **row, "predicted_total_bytes": predicted,
                "fits": row["peak_total_bytes"] <= budget_bytes,
                "prediction_error": row["peak_total_bytes"] / predicted - 1.0,
            }  # fmt: skip
    return result


def checkpointing_study(
    config: ModelConfig,
    natoms: int = 512,
    depths=(2, 4, 6),
    progress: bool = True,
    **options,
) -> dict:
    """Training-step memory and time with and without per-layer gradient checkpointing.

    Each point is measured after one warm-up step (``warmup=1`` unless ``options`` say
    otherwise): the first step's one-time allocations differ between the two paths and, on
    small systems, outweigh the activations that checkpointing saves.

    Parameters
    ----------
    config
        Architecture; ``num_layers`` is replaced by each of ``depths``.
    natoms
        Wanted number of atoms (see :func:`ase_gnnp.perf.memory.si_supercell`).
    depths
        Numbers of message-passing layers to compare.
    options
        Further keywords of :func:`ase_gnnp.perf.memory.peak_memory`.

    Returns
    -------
    dict
        ``rows``: per depth ``peak_bytes_off/on``, ``saved_bytes``, ``saved_pct``,
        ``step_s_off/on``, ``time_added_pct``; ``config``, ``natoms``.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    options.setdefault("warmup", 1)
    configs = [replace(config, num_layers=d) for d in depths]
    todo = [(c, flag) for c in configs for flag in (False, True)]
    measured = {}
    for c, flag in tqdm(todo, desc="checkpointing", disable=not progress):
        measured[c.num_layers, flag] = peak_memory(
            c, natoms, "train", gradient_checkpointing=flag, **options
        )
    rows = []
    for d in depths:
        off, on = measured[d, False], measured[d, True]
        saved = off["peak_bytes"] - on["peak_bytes"]
        rows.append({
            "num_layers": d, "natoms": off["natoms"],
            "peak_bytes_off": off["peak_bytes"], "peak_bytes_on": on["peak_bytes"],
            "saved_bytes": saved, "saved_pct": 100.0 * saved / off["peak_bytes"],
            "step_s_off": off["step_s"], "step_s_on": on["step_s"],
            "time_added_pct": 100.0 * (on["step_s"] / off["step_s"] - 1.0),
        })  # fmt: skip
    return {"config": config.to_dict(), "natoms": rows[0]["natoms"] if rows else natoms,
            "options": {k: str(v) for k, v in options.items()}, "rows": rows}  # fmt: skip


# ---------------------------------------------------------------- plots
def _finish(fig, axes, path: str | Path) -> Path:
    """Integer x ticks, legends and grids on ``axes``; save ``fig`` to ``path`` (PNG)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_memory(scan: dict, path: str | Path) -> Path:
    """Two panels, peak step memory (MiB) against lmax and against depth, measured points
    and fitted curves for each mode; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mib = 2.0**20
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for k, mode in enumerate(scan["vs_lmax"]):
        color = f"C{k}"
        e = scan["vs_lmax"][mode]
        ax1.plot(e["lmax"], np.asarray(e["peak_bytes"]) / mib, "o", color=color, label=mode)
        if "fit" in e:
            f = e["fit"]
            x = np.linspace(min(e["lmax"]), max(e["lmax"]), 50)
            ax1.plot(x, f["prefactor"] * (x + 1) ** f["exponent"] / mib, "-", color=color,
                     label=f"{mode}: ∝ (lmax+1)^{f['exponent']:.2f}")  # fmt: skip
        e = scan["vs_layers"][mode]
        ax2.plot(e["layers"], np.asarray(e["peak_bytes"]) / mib, "o", color=color, label=mode)
        if "fit" in e:
            f = e["fit"]
            x = np.asarray([e.get("fit_from", min(e["layers"])), max(e["layers"])], float)
            ax2.plot(x, (f["intercept"] + f["slope"] * x) / mib, "-", color=color,
                     label=f"{mode}: {f['slope'] / mib:.1f} MiB/layer")  # fmt: skip
    s = scan["settings"]
    ax1.set(xlabel="lmax", ylabel="peak step memory (MiB)",
            title=f"{s['fixed_layers']} layers, {s['channels']} channels")  # fmt: skip
    ax2.set(xlabel="interaction layers", ylabel="peak step memory (MiB)",
            title=f"lmax {s['fixed_lmax']}, {s['natoms']} atoms")  # fmt: skip
    return _finish(fig, (ax1, ax2), path)


def plot_checkpointing(result: dict, path: str | Path) -> Path:
    """Training-step peak memory and step time against depth, with and without gradient
    checkpointing; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    depth = np.array([r["num_layers"] for r in rows])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for flag, label, marker in (("off", "no checkpointing", "o-"), ("on", "checkpointing", "s--")):
        ax1.plot(depth, [r[f"peak_bytes_{flag}"] / 2**20 for r in rows], marker, label=label)
        ax2.plot(depth, [r[f"step_s_{flag}"] for r in rows], marker, label=label)
    ax1.set(xlabel="interaction layers", ylabel="peak training-step memory (MiB)",
            title=f"{result['natoms']} atoms")  # fmt: skip
    ax2.set(xlabel="interaction layers", ylabel="step time (s)")
    return _finish(fig, (ax1, ax2), path)
