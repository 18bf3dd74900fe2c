"""Mixed precision study: speed, force and energy error against float64, NVE energy drift.

Precisions (model dtype, autocast dtype): ``fp64`` (float64, the reference), ``fp32``
(float32), ``bf16`` (float32 under ``torch.autocast(bfloat16)``), ``fp16`` (float32 under
``torch.autocast(float16)``); see :meth:`ase_gnnp.model.GNNPModel.set_performance_options`.

Examples
--------
>>> report = precision_study("sige-small", md_steps=100)  # doctest: +SKIP
>>> report["precisions"]["fp32"]["errors"]["force_max_meV_A"] < 1.0  # doctest: +SKIP
True
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.calculators.calculator import all_changes
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from tqdm.auto import tqdm

from ase_gnnp.perf.memory import si_supercell

__all__ = ["PRECISIONS", "plot_precision", "precision_calculator", "precision_study"]

#: name -> (model dtype, autocast dtype or None)
PRECISIONS = {
    "fp64": (torch.float64, None),
    "fp32": (torch.float32, None),
    "bf16": (torch.float32, torch.bfloat16),
    "fp16": (torch.float32, torch.float16),
}
TEST_DATA = Path(__file__).resolve().parents[2] / "data" / "sige_tersoff_test.extxyz"
_PROPERTIES = ["energy", "forces", "stress"]


def precision_calculator(model, precision: str, device: str = "cpu"):
    """A :class:`~ase_gnnp.calculator.GNNPCalculator` running ``model`` (a GNNPModel, a
    checkpoint path or a shipped name; never modified) in ``precision``."""
    from ase_gnnp.calculator import GNNPCalculator
    from ase_gnnp.checkpoint import load_model
    from ase_gnnp.model import GNNPModel

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if isinstance(model, (str, Path)):
        model = load_model(model)
    elif not isinstance(model, GNNPModel):
        raise TypeError(f"model must be a GNNPModel, a checkpoint path or a shipped name, "
                        f"got {type(model).__name__}")  # fmt: skip
    dtype, autocast = PRECISIONS[precision]
    calc = GNNPCalculator(copy.deepcopy(model), device=device, dtype=dtype)
    calc.model.set_performance_options(autocast_dtype=autocast)
    return calc


def _evaluate(calc, atoms) -> tuple[float, np.ndarray]:
    calc.calculate(atoms, _PROPERTIES if atoms.pbc.all() else _PROPERTIES[:2], all_changes)
    return calc.results["energy"], calc.results["forces"]


def _compare(calc, frames, ref) -> dict:
    """Energy and force errors against the reference ``[(energy, forces), ...]``."""
    got = [_evaluate(calc, a) for a in frames]
    if not all(np.isfinite(e) and np.all(np.isfinite(f)) for e, f in got):
        return {"status": "unsupported: non-finite energies or forces"}
    df = np.concatenate([np.abs(f - fr).ravel() for (_, f), (_, fr) in zip(got, ref)])
    de = np.array([abs(e - er) / len(a) for (e, _), (er, _), a in zip(got, ref, frames)])
    return {"status": "ok", "errors": {
        "force_mae_meV_A": 1000 * float(df.mean()), "force_max_meV_A": 1000 * float(df.max()),
        "energy_mae_meV_atom": 1000 * float(de.mean()),
        "energy_max_meV_atom": 1000 * float(de.max()),
    }}  # fmt: skip


def _speed(calc, natoms: int, warmup: int, repeats: int, seed: int) -> dict:
    """Energy + forces + stress calls (neighbour list included) on a Si cell."""
    atoms = si_supercell(natoms, seed=seed)
    for _ in range(warmup):
        _evaluate(calc, atoms)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _evaluate(calc, atoms)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"natoms": len(atoms), "repeats": repeats, "median_s": median, "times_s": times,
            "atom_steps_per_s": len(atoms) / median}  # fmt: skip


def _nve(calc, natoms, steps, temperature_K, timestep_fs, interval, seed, progress, label):
    """Velocity-Verlet NVE from a rattled Si cell with Maxwell–Boltzmann velocities."""
    atoms = si_supercell(natoms, rattle=0.02, seed=seed)
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep_fs * units.fs)
    n = len(atoms)
    e0 = atoms.get_potential_energy() + atoms.get_kinetic_energy()
    t, e = [0.0], [0.0]
    done = 0
    with tqdm(total=steps, desc=f"NVE {label}", disable=not progress) as bar:
        while done < steps:
            chunk = min(interval, steps - done)
            dyn.run(chunk)
            done += chunk
            bar.update(chunk)
            t.append(done * timestep_fs / 1000.0)
            etot = atoms.get_potential_energy() + atoms.get_kinetic_energy()
            e.append(float((etot - e0) / n))
            if not np.isfinite(e[-1]):
                break
    t_ps, e_atom = np.asarray(t), np.asarray(e)
    finite = bool(np.all(np.isfinite(e_atom)))
    slope = float(np.polyfit(t_ps, e_atom, 1)[0]) if finite else float("nan")
    return {
        "natoms": n, "steps": done, "timestep_fs": timestep_fs,
        "temperature_K": temperature_K, "final_temperature_K": float(atoms.get_temperature()),
        "drift_meV_per_atom_per_ps": 1000.0 * slope,
        "max_abs_deviation_meV_per_atom": 1000.0 * float(np.max(np.abs(e_atom))),
        "time_ps": t_ps.tolist(), "etot_minus_e0_meV_per_atom": (1000.0 * e_atom).tolist(),
    }  # fmt: skip


def precision_study(
    model="sige-small",
    precisions=("fp64", "fp32", "bf16", "fp16"),
    data: str | Path = TEST_DATA,
    n_frames: int = 8,
    speed_atoms: int = 512,
    warmup: int = 2,
    repeats: int = 5,
    md_atoms: int = 64,
    md_steps: int = 10_000,
    temperature_K: float = 300.0,
    timestep_fs: float = 1.0,
    interval: int = 10,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Compare the precisions of :data:`PRECISIONS` on one model.

    Parameters
    ----------
    model
        A GNNPModel, checkpoint path or shipped name.
    precisions
        Which to run; float64 forces and energies are the reference of the errors in any
        case. A precision that fails on ``device`` is reported as ``unsupported``.
    data, n_frames
        Error frames: ``n_frames`` evenly spaced structures of an extxyz file.
    speed_atoms, warmup, repeats
        Speed: energy + forces + stress on a rattled Si cell of about ``speed_atoms``;
        median of ``repeats`` timed calls after ``warmup`` untimed ones.
    md_atoms, md_steps, temperature_K, timestep_fs, interval
        NVE (velocity Verlet) from a Si cell of about ``md_atoms``, velocities drawn at
        ``temperature_K``; the total energy is recorded every ``interval`` steps.

    Returns
    -------
    dict
        ``settings`` and ``precisions[name]``: ``status`` (``"ok"`` or ``"unsupported:
        ..."``), ``speed`` (``atom_steps_per_s``, ``median_s`` ...), ``errors``
        (``force_mae_meV_A``, ``force_max_meV_A`` over force components,
        ``energy_mae_meV_atom``, ``energy_max_meV_atom``) and ``nve``
        (``drift_meV_per_atom_per_ps``: slope of a linear fit of ``(E_tot − E0)/N``
        against time; ``max_abs_deviation_meV_per_atom``; the curve).
    """
    from ase.io import read

    precisions = list(dict.fromkeys(precisions))
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise ValueError(f"precisions must be some of {list(PRECISIONS)}, got {precisions}")
    for name, value in (("n_frames", n_frames), ("repeats", repeats), ("md_steps", md_steps),
                        ("interval", interval)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    if not Path(data).is_file():
        raise ValueError(f"data file {str(data)!r} does not exist")
    si_supercell(speed_atoms), si_supercell(md_atoms)  # validate sizes early
    frames = read(data, ":")
    frames = [frames[k] for k in np.unique(np.linspace(0, len(frames) - 1, n_frames).round())
              .astype(int)]  # fmt: skip
    label = model if isinstance(model, (str, Path)) else "<GNNPModel>"
    reference = precision_calculator(model, "fp64", device)
    ref = [_evaluate(reference, a) for a in frames]
    ref = [(e, f.copy()) for e, f in ref]
    results = {}
    for name in precisions:
        calc = precision_calculator(reference.model, name, device)
        try:
            results[name] = _compare(calc, frames, ref)
            if results[name]["status"] == "ok":
                results[name]["speed"] = _speed(calc, speed_atoms, warmup, repeats, seed)
                results[name]["nve"] = _nve(
                    calc, md_atoms, md_steps, temperature_K, timestep_fs, interval, seed,
                    progress, name,
                )  # fmt: skip
        except (RuntimeError, NotImplementedError) as err:
            results[name] = {"status": f"unsupported: {str(err).splitlines()[0][:200]}"}
    return {
        "model": str(label),
        "settings": {
            "device": str(reference.device), "threads": torch.get_num_threads(),
            "data": str(data), "n_frames": len(frames), "speed_atoms": speed_atoms,
            "warmup": warmup, "repeats": repeats, "md_atoms": md_atoms, "md_steps": md_steps,
            "temperature_K": temperature_K, "timestep_fs": timestep_fs, "interval": interval,
            "seed": seed,
        },
        "precisions": results,
    }  # fmt: skip


def plot_precision(report: dict, path: str | Path) -> Path:
    """Three panels: speed bars, force error bars (MAE and max against float64, log
    scale) and ``E_tot(t) − E0`` per atom of the NVE runs; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = {k: v for k, v in report["precisions"].items() if v["status"] == "ok"}
    names = list(ok)
    x = np.arange(len(names))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 4))
    ax1.bar(x, [ok[k]["speed"]["atom_steps_per_s"] for k in names],
            color=[f"C{i}" for i in range(len(names))])  # fmt: skip
    speed_atoms = ok[names[0]]["speed"]["natoms"] if names else ""
    ax1.set(xticks=x, xticklabels=names, ylabel="atom-steps/s",
            title=f"energy+forces+stress, {speed_atoms} atoms")  # fmt: skip
    floor = 1e-6  # fp64 has zero error against itself: draw it at the floor
    for shift, key, label in ((-0.2, "force_mae_meV_A", "MAE"), (0.2, "force_max_meV_A", "max")):
        ax2.bar(x + shift, [max(ok[k]["errors"][key], floor) for k in names], width=0.4,
                label=label)  # fmt: skip
    ax2.set(xticks=x, xticklabels=names, yscale="log", ylabel="force error vs fp64 (meV/Å)",
            title="on the error frames (fp64: reference, at 1e-6)")  # fmt: skip
    ax2.legend(fontsize=8)
    for i, k in enumerate(names):
        nve = ok[k]["nve"]
        ax3.plot(nve["time_ps"], nve["etot_minus_e0_meV_per_atom"], color=f"C{i}",
                 label=f"{k}: {nve['drift_meV_per_atom_per_ps']:+.3f} meV/atom/ps")  # fmt: skip
    md = report["settings"]
    ax3.set(xlabel="time (ps)", ylabel="E_tot − E0 (meV/atom)",
            title=f"NVE, {md['md_atoms']} atoms, {md['timestep_fs']} fs")  # fmt: skip
    ax3.legend(fontsize=8)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
