"""Large systems: inference memory and time with edge chunks, and Ewald against PME.

:func:`large_inference` measures one energy + forces + stress evaluation of a shipped or
given architecture on diamond-Si cells up to 10⁵ atoms and beyond, with and without edge
chunks (:meth:`ase_gnnp.model.GNNPModel.set_performance_options`), peak memory from
:func:`ase_gnnp.perf.memory.peak_memory` (a fresh process per point). :func:`coulomb_scaling`
times the periodic Coulomb term (energy and its gradient) of
:class:`ase_gnnp.longrange.Coulomb` with Ewald and with PME on growing rock-salt cells and
fits the power of ``N`` each grows with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from tqdm.auto import tqdm

from ase_gnnp.config import ModelConfig
from ase_gnnp.perf.memory import fit_line, fit_power_law, peak_memory

__all__ = ["large_inference", "coulomb_scaling", "plot_large"]


def large_inference(
    config: ModelConfig,
    sizes: Sequence[int] = (4096, 32768, 110592),
    edge_chunk: int = 262144,
    unchunked_max: int = 32768,
    dtype: torch.dtype = torch.float32,
    threads: int = 1,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Peak memory and time of inference (energy, forces, stress) against the system size.

    Parameters
    ----------
    config
        Architecture (weights are random: memory and time do not depend on them).
    sizes
        Numbers of Si atoms (``8 n³`` are exact diamond supercells).
    edge_chunk
        Edges per chunk of the chunked runs.
    unchunked_max
        Largest size also run without chunks (their memory grows fastest).

    Returns
    -------
    dict
        ``runs``: per size and variant (``"chunked"`` / ``"all edges"``) the
        :func:`~ase_gnnp.perf.memory.peak_memory` result; ``fits``: per variant the line
        ``peak_total = a + b N`` (``b``: bytes per atom); ``largest``: the largest measured
        size of the chunked runs, its peak (GB) and time per step (s).
    """
    if not sizes or min(sizes) < 8:
        raise ValueError(f"sizes must be numbers of atoms >= 8, got {list(sizes)!r}")
    if isinstance(edge_chunk, bool) or not isinstance(edge_chunk, int) or edge_chunk < 1:
        raise ValueError(f"edge_chunk must be a positive integer, got {edge_chunk!r}")
    jobs = [(n, "chunked", edge_chunk) for n in sizes]
    jobs += [(n, "all edges", None) for n in sizes if n <= unchunked_max]
    runs = []
    for n, variant, chunk in tqdm(jobs, desc="large inference", disable=not progress):
        result = peak_memory(config, n, "infer", device=device, dtype=dtype, edge_chunk=chunk,
                             threads=threads, repeats=1, mmap_threshold=None)  # fmt: skip
        runs.append(result | {"variant": variant})
    fits = {}
    for variant in ("chunked", "all edges"):
        rows = [r for r in runs if r["variant"] == variant]
        if len(rows) >= 2:
            fits[variant] = fit_line([r["natoms"] for r in rows],
                                     [r["peak_total_bytes"] for r in rows])  # fmt: skip
    big = max((r for r in runs if r["variant"] == "chunked"), key=lambda r: r["natoms"])
    return {
        "config": config.to_dict(),
        "edge_chunk": edge_chunk,
        "dtype": str(dtype).replace("torch.", ""),
        "threads": threads,
        "runs": runs,
        "fits": fits,
        "largest": {
            "natoms": big["natoms"],
            "peak_total_gb": big["peak_total_bytes"] / 1e9,
            "bytes_per_atom": big["peak_total_bytes"] / big["natoms"],
            "step_s": big["step_s"],
        },  # fmt: skip
    }


def _rocksalt(natoms: int, rng: np.random.Generator):
    n = max(1, round((natoms / 8) ** (1 / 3)))
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (n, n, n)
    atoms.rattle(0.05, seed=int(rng.integers(2**31)))
    return atoms


def coulomb_scaling(
    sizes: Sequence[int] = (64, 216, 512, 1000, 1728),
    methods: Sequence[str] = ("ewald", "pme"),
    repeats: int = 3,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> dict:
    """Time of the periodic Coulomb energy and forces, Ewald against PME.

    Rock-salt cells of about each size (±1 e charges, rattled 0.05 Å), the package's
    default accuracy (1e-6) and real-space cutoff (8 Å), through
    :meth:`ase_gnnp.longrange.Coulomb.bare_energies`; median of ``repeats`` calls after a
    warm-up. Also the largest energy difference between the methods (eV/atom).

    Returns
    -------
    dict
        ``rows`` (natoms, method, time_s, energy_per_atom), ``exponent`` per method (power
        law fitted to time against N over the sizes from 512 on), ``crossover`` (the
        smallest size where PME is faster, or None), ``max_energy_difference``.
    """
    from ase_gnnp.longrange import Coulomb

    unknown = sorted(set(methods) - {"ewald", "pme"})
    if unknown:
        raise ValueError(f"methods must be 'ewald' and/or 'pme', got {unknown}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    rng = np.random.default_rng(0)
    rows = []
    for natoms in tqdm(sizes, desc="Ewald vs PME", disable=not progress):
        atoms = _rocksalt(natoms, rng)
        pos = torch.tensor(atoms.positions, dtype=dtype)
        cell = torch.tensor(atoms.cell.array, dtype=dtype)
        charges = torch.tensor(np.where(atoms.numbers == 11, 1.0, -1.0), dtype=dtype)
        pbc = torch.ones(3, dtype=torch.bool)
        for method in methods:
            term = Coulomb(4.0, method=method)

            def call(term=term, pos=pos, cell=cell, charges=charges, pbc=pbc):
                p = pos.clone().requires_grad_(True)
                energy = term.bare_energies(charges, p, cell, pbc).sum()
                torch.autograd.grad(energy, p)
                return float(energy.detach())

            energy = call()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                call()
                times.append(time.perf_counter() - t0)
            rows.append({"natoms": len(atoms), "method": method, "time_s": float(np.median(times)),
                         "energy_per_atom": energy / len(atoms)})  # fmt: skip
    exponent = {}
    for method in methods:
        pts = [(r["natoms"], r["time_s"]) for r in rows if r["method"] == method
               and r["natoms"] >= 512]  # fmt: skip
        if len(pts) >= 2:
            exponent[method] = fit_power_law(*zip(*pts))["exponent"]
    crossover, diff = None, 0.0
    if set(methods) >= {"ewald", "pme"}:
        by = {(r["natoms"], r["method"]): r for r in rows}
        for n in sorted({r["natoms"] for r in rows}):
            e, p = by[(n, "ewald")], by[(n, "pme")]
            diff = max(diff, abs(e["energy_per_atom"] - p["energy_per_atom"]))
            if crossover is None and p["time_s"] < e["time_s"]:
                crossover = n
    return {"rows": rows, "exponent": exponent, "crossover": crossover,
            "max_energy_difference": diff}  # fmt: skip


def plot_large(report: dict, path: str | Path) -> Path:
    """Peak memory and step time against atoms (inference), and Ewald/PME times; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if report.get("coulomb") else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    inference = report["inference"]
    for k, variant in enumerate(("chunked", "all edges")):
        rows = sorted((r for r in inference["runs"] if r["variant"] == variant),
                      key=lambda r: r["natoms"])  # fmt: skip
        if not rows:
            continue
        n = [r["natoms"] for r in rows]
        axes[0].loglog(n, [r["peak_total_bytes"] / 1e9 for r in rows], "os"[k] + "-",
                       label=variant)  # fmt: skip
        axes[1].loglog(n, [r["step_s"] for r in rows], "os"[k] + "-", label=variant)
    axes[0].set_ylabel("peak resident memory (GB)")
    axes[1].set_ylabel("energy + forces + stress (s)")
    for ax in axes[:2]:
        ax.set_xlabel("atoms")
        ax.legend(fontsize=8)
    axes[0].set_title(f"edge chunk {inference['edge_chunk']}", fontsize=9)
    if panels == 3:
        coulomb = report["coulomb"]
        for k, method in enumerate(("ewald", "pme")):
            rows = [r for r in coulomb["rows"] if r["method"] == method]
            if rows:
                exp = coulomb["exponent"].get(method)
                label = method + ("" if exp is None else f" (∝ N^{exp:.2f})")
                axes[2].loglog([r["natoms"] for r in rows], [r["time_s"] for r in rows],
                               "os"[k] + "-", label=label)  # fmt: skip
        axes[2].set_xlabel("atoms (rock salt)")
        axes[2].set_ylabel("Coulomb energy + forces (s)")
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
