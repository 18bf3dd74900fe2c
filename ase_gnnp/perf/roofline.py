"""Roofline profile of the model: FLOPs, bytes and time per layer against the machine's roofs.

:func:`machine_peaks` measures the peak FLOP/s (large matrix products) and the memory
bandwidth (large copies and triads) of the device by micro-benchmarks;
:func:`profile_model` runs the model's forward pass stage by stage on one structure (the
same operations as :meth:`ase_gnnp.model.GNNPModel.forward`, checked by reproducing its
energy), counts each stage's FLOPs and bytes with :class:`ase_gnnp.perf.counting.OpCounter`,
times it, and places it on the roofline: arithmetic intensity ``I = FLOPs / bytes``, the
attainable time ``max(FLOPs / peak, bytes / bandwidth)`` and the verdict compute-bound
(``I`` above the ridge point ``peak / bandwidth``) or memory-bound. The backward pass
(forces and stress by autograd) is one more stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from ase_gnnp import keys as K
from ase_gnnp.graph import atoms_to_graph, batch_index, edge_vectors
from ase_gnnp.perf.counting import OpCounter

__all__ = ["machine_peaks", "profile_model", "plot_roofline", "timed"]

# measured time above this multiple of the attainable time: launch and framework overhead,
# not the roofs, limits the stage
OVERHEAD_FACTOR = 20.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 5) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` calls after one warm-up call."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def machine_peaks(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    matmul_size: int | None = None,
    stream_bytes: int = 256 * 2**20,
    repeats: int = 5,
) -> dict:
    """Peak FLOP/s and memory bandwidth of ``device`` measured by micro-benchmarks.

    Parameters
    ----------
    device, dtype
        Where and in which precision the model runs.
    matmul_size
        Side ``n`` of the square matrix product (``2 n³`` FLOPs); default 2048 on CPU,
        8192 on GPU. The best of several sizes up to it is kept.
    stream_bytes
        Size of each array of the bandwidth benchmarks (well beyond the caches).

    Returns
    -------
    dict
        ``peak_flops`` (FLOP/s), ``bandwidth`` (bytes/s, the best of copy ``b = a`` and
        triad ``c = a + s·b``), ``ridge`` (FLOP/byte), the individual measurements,
        ``device``, ``dtype``, ``threads``.
    """
    device = torch.device(device)
    n_max = matmul_size or (8192 if device.type == "cuda" else 2048)
    gemm = {}
    for n in sorted({min(512, n_max), min(1024, n_max), n_max}):
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        gemm[n] = 2.0 * n**3 / timed(lambda: a @ b, device, repeats)  # noqa: B023
    numel = max(1, stream_bytes // torch.tensor([], dtype=dtype).element_size())
    a = torch.rand(numel, dtype=dtype, device=device)
    b = torch.rand(numel, dtype=dtype, device=device)
    c = torch.empty_like(a)
    nbytes = a.numel() * a.element_size()
    copy = 2 * nbytes / timed(lambda: c.copy_(a), device, repeats)
    triad = 3 * nbytes / timed(lambda: torch.add(a, b, alpha=0.5, out=c), device, repeats)
    peak, bandwidth = max(gemm.values()), max(copy, triad)
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "peak_flops": peak,
        "bandwidth": bandwidth,
        "ridge": peak / bandwidth,
        "gemm_flops": {str(n): f for n, f in gemm.items()},
        "copy_bandwidth": copy,
        "triad_bandwidth": triad,
    }


def _stage(name: str, fn: Callable[[], object], device: torch.device, repeats: int) -> dict:
    with OpCounter() as count:
        fn()
    return {
        "name": name,
        "counted": True,
        "flops": count.flops,
        "matmul_flops": count.matmul_flops,
        "bytes": count.bytes,
        "kernels": count.kernels,
        "time_s": timed(fn, device, repeats),
    }


def profile_model(
    model,
    atoms: Atoms,
    peaks: dict | None = None,
    stress: bool = True,
    repeats: int = 5,
) -> dict:
    """Per-stage FLOPs, bytes, time and roofline verdict of one energy + forces evaluation.

    Parameters
    ----------
    model : ase_gnnp.model.GNNPModel
        In evaluation mode on its device and dtype.
    atoms
        The structure (periodic or not).
    peaks
        From :func:`machine_peaks` on the same device and dtype (measured if ``None``).
    stress
        Include the strain derivative in the backward stage (periodic cells).
    repeats
        Timed repetitions per stage (median).

    Returns
    -------
    dict
        ``machine`` (the peaks), ``system`` (atoms, edges), ``stages``: a list of
        ``{name, flops, matmul_flops, bytes, kernels, time_s, intensity (FLOP/byte),
        achieved_flops (FLOP/s), attainable_s, bound ("compute" | "memory"),
        efficiency (attainable / measured), overhead (True if measured >
        OVERHEAD_FACTOR × attainable)}``; ``total`` (sums over stages) and ``measured``
        (one whole ``model(...)`` call with forces and stress, s), ``energy_check``
        (|stage-wise energy − model energy|, eV).
    """
    device, dtype = model.scale.device, model.dtype
    model.eval()
    peaks = peaks or machine_peaks(device, dtype)
    stages: list[dict] = []
    # vesin and numpy work, invisible to the operation counter: timed only
    graph = _stage("graph (vesin)", lambda: atoms_to_graph(atoms, model.cutoff, dtype).to(device),
                   device, repeats)  # fmt: skip
    stages.append(graph | {"flops": 0, "matmul_flops": 0, "bytes": 0, "kernels": 0,
                           "counted": False})  # fmt: skip
    data = atoms_to_graph(atoms, model.cutoff, dtype).to(device)
    stress = stress and bool(atoms.pbc.all())
    pos, cell = data[K.POSITIONS], data[K.CELL]
    numbers, edge_index = data[K.ATOMIC_NUMBERS], data[K.EDGE_INDEX]
    centre, neighbour = edge_index
    add = stages.append
    with torch.no_grad():
        vectors = edge_vectors(data, pos, cell)
        lengths = torch.linalg.norm(vectors, dim=-1)

        def geometry():
            return torch.linalg.norm(edge_vectors(data, pos, cell), dim=-1)

        add(_stage("edge geometry", geometry, device, repeats))
        edge_sh = model.spherical_harmonics(vectors)
        add(_stage("spherical harmonics", lambda: model.spherical_harmonics(vectors), device,
                   repeats))  # fmt: skip
        edge_radial = model.radial(lengths)
        add(_stage("radial basis", lambda: model.radial(lengths), device, repeats))
        field = torch.zeros(1, 3, dtype=dtype, device=device)

        def embed():
            h = model.embedding(numbers)
            if model.field_embedding is not None:
                h = torch.cat([h, model.field_embedding(h, field[batch_index(data)])], dim=-1)
            return h

        h = embed()
        add(_stage("embedding", embed, device, repeats))
        for k, layer in enumerate(model.layers):
            tag = f" [{k + 1}]"
            weights = layer.radial(edge_radial)
            add(_stage("radial MLP" + tag, lambda: layer.radial(edge_radial), device, repeats))  # noqa: B023
            x = layer.linear_up(h)
            messages = layer.tp(x[neighbour], edge_sh, weights).to(dtype)
            add(_stage("tensor product" + tag,
                       lambda: layer.tp(x[neighbour], edge_sh, weights),  # noqa: B023
                       device, repeats))  # fmt: skip
            empty = torch.zeros(h.shape[0], messages.shape[1], dtype=dtype, device=device)

            def scatter():
                return empty.index_add(0, centre, messages) / layer.avg_num_neighbors  # noqa: B023

            agg = scatter()
            add(_stage("scatter" + tag, scatter, device, repeats))

            def node(h=h, agg=agg, layer=layer):
                layer.linear_up(h)  # the input map of the layer, counted with its update
                return layer.update(h, agg)

            h = node()
            add(_stage("node update" + tag, node, device, repeats))

        def readout():
            eps = model.readout(h).squeeze(-1)
            return model.site_energies(eps, numbers)

        energies = readout()
        add(_stage("readout", readout, device, repeats))
        if model.charge_head is not None:
            total = torch.zeros(1, dtype=dtype, device=device)
            batch = batch_index(data)
            charges = model.charge_head(h, batch, total, numbers)
            add(_stage("charges", lambda: model.charge_head(h, batch, total, numbers), device,
                       repeats))  # fmt: skip
            ptr = torch.tensor([0, len(atoms)], device=device)

            def ewald():
                return model.coulomb(charges, pos, cell, data[K.PBC], ptr, edge_index, lengths)

            energies = energies + ewald()
            add(_stage("Ewald", ewald, device, repeats))
    stage_energy = float(energies.sum())

    # backward: autograd through the whole network, counted alone
    def forward():
        return model(data, forces=False, stress=False)

    def forward_backward():
        return model(data, forces=True, stress=stress)

    holder = {}

    def prepare():
        p = data[K.POSITIONS].detach().requires_grad_(True)
        inputs = [p]
        d = data.clone()
        d[K.POSITIONS] = p
        if stress:
            strain = torch.zeros_like(cell, requires_grad=True)
            sym = 0.5 * (strain + strain.transpose(1, 2))
            d[K.POSITIONS] = p + torch.einsum("na,nab->nb", p, sym[batch_index(data)])
            d[K.CELL] = cell + torch.bmm(cell, sym)
            inputs.append(strain)
        with torch.enable_grad():
            holder["energy"] = model(d, forces=False)[K.ENERGY].sum()
        holder["inputs"] = inputs

    def backward():
        torch.autograd.grad(holder["energy"], holder["inputs"], retain_graph=True)

    prepare()
    with OpCounter() as count:
        backward()
    t_backward = timed(backward, device, repeats)
    stages.append({"name": "backward", "counted": True, "flops": count.flops,
                   "matmul_flops": count.matmul_flops, "bytes": count.bytes,
                   "kernels": count.kernels, "time_s": t_backward})  # fmt: skip
    with torch.enable_grad():
        out = forward_backward()
        t_whole = timed(forward_backward, device, repeats)
        t_forward = timed(forward, device, repeats)
    check = abs(stage_energy - float(out[K.ENERGY].detach().sum()))
    for s in stages:
        _place(s, peaks)
    total = {key: sum(s[key] for s in stages) for key in ("flops", "bytes", "time_s", "kernels")}
    _place(total, peaks)
    return {
        "machine": peaks,
        "system": {
            "atoms": len(atoms),
            "edges": int(centre.shape[0]),
            "formula": atoms.get_chemical_formula(),
            "stress": stress,
            "model": model.config.to_dict(),
        },  # fmt: skip
        "stages": stages,
        "total": total,
        "measured": {"forward_s": t_forward, "forward_backward_s": t_whole},
        "energy_check": check,
    }


def _place(stage: dict, peaks: dict) -> None:
    """Add intensity, attainable time, bound, efficiency and overhead flag to a stage."""
    flops, nbytes, t = stage["flops"], stage["bytes"], stage["time_s"]
    stage["intensity"] = flops / nbytes if nbytes else float("nan")
    stage["achieved_flops"] = flops / t if t > 0 else float("nan")
    stage["attainable_s"] = max(flops / peaks["peak_flops"], nbytes / peaks["bandwidth"])
    stage["bound"] = "compute" if nbytes and stage["intensity"] >= peaks["ridge"] else "memory"
    if not stage.get("counted", True):
        stage["bound"] = "not counted"
    stage["efficiency"] = stage["attainable_s"] / t if t > 0 else float("nan")
    stage["overhead"] = bool(stage.get("counted", True) and
                             t > OVERHEAD_FACTOR * stage["attainable_s"])  # fmt: skip


def plot_roofline(report: dict, path: str | Path) -> Path:
    """Roofline (achieved FLOP/s against intensity, one point per stage) and measured
    against attainable time per stage; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = report["machine"]
    stages = [s for s in report["stages"] if s["counted"] and s["flops"] > 0 and s["bytes"] > 0]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1, 1.2]})
    xs = [s["intensity"] for s in stages]
    lo, hi = min(xs + [m["ridge"]]) / 4, max(xs + [m["ridge"]]) * 4
    grid = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.loglog(grid, np.minimum(m["peak_flops"], m["bandwidth"] * grid), "k-", lw=2,
              label=f"roof: {m['peak_flops'] / 1e9:.0f} GFLOP/s, "
                    f"{m['bandwidth'] / 1e9:.1f} GB/s")  # fmt: skip
    ax.axvline(m["ridge"], color="0.6", ls=":", lw=1)
    for k, s in enumerate(stages):
        ax.loglog(s["intensity"], s["achieved_flops"], "osD^v"[k // 10 % 5],
                  color=f"C{k % 10}", label=s["name"])  # fmt: skip
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved FLOP/s")
    sysinfo = report["system"]
    ax.set_title(f"{sysinfo['formula']}: {sysinfo['atoms']} atoms, {sysinfo['edges']} edges, "
                 f"{m['device_name']}, {m['threads']} thr.", fontsize=9)  # fmt: skip
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    names = [s["name"] for s in report["stages"]]
    y = np.arange(len(names))
    bx.barh(y - 0.2, [1e3 * s["time_s"] for s in report["stages"]], 0.4, label="measured")
    bx.barh(y + 0.2, [1e3 * s["attainable_s"] for s in report["stages"]], 0.4,
            label="attainable max(FLOPs/peak, bytes/BW)")  # fmt: skip
    bx.set_yticks(y, [f"{n} ({s['bound'][0]})" if s["counted"] else n
                      for n, s in zip(names, report["stages"])],
                  fontsize=7)  # fmt: skip
    bx.invert_yaxis()
    bx.set_xscale("log")
    bx.set_xlabel("time (ms); (c) compute-bound, (m) memory-bound")
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
