"""Peak memory of one training or inference step, its scaling, and gradient checkpointing.

CPU measurements run in a fresh Python process each: build the model and graph, release
freed heap pages (``malloc_trim``), read the resident set size (``VmRSS``), reset the
kernel's high-water mark (``echo 5 > /proc/self/clear_refs``), run one step and read the
high-water mark (``VmHWM``). CUDA measurements run in this process with the caching
allocator's statistics (``torch.cuda.max_memory_allocated``).

Examples
--------
>>> from ase_gnnp.config import ModelConfig
>>> row = peak_memory(ModelConfig(channels=8, lmax=1), 64, "train")  # doctest: +SKIP
>>> row["peak_bytes"] > 0  # doctest: +SKIP
True
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ase_gnnp import keys as K
from ase_gnnp.config import ModelConfig

__all__ = [
    "checkpointing_study", "fit_line", "fit_power_law", "largest_system", "make_case",
    "memory_scan", "peak_memory", "plot_checkpointing", "plot_memory", "run_step",
    "si_supercell",
]  # fmt: skip

MODES = ("train", "infer")
_RESULT = "ASE_GNNP_MEMORY_RESULT "
_OPTION_KEYS = ("gradient_checkpointing", "edge_chunk", "dtype", "device", "threads", "warmup",
                "fresh_process", "mmap_threshold")  # fmt: skip
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ---------------------------------------------------------------- inputs
def si_supercell(natoms: int, rattle: float = 0.05, seed: int = 0):
    """Rattled diamond-Si supercell of about ``natoms`` atoms.

    The 8-atom cubic cell repeated ``a × b × c`` times: the most compact repeats whose
    ``8abc`` is within 2 % of ``natoms`` (else the closest count); ``8 n^3`` is exact.

    Parameters
    ----------
    natoms
        Wanted number of atoms, at least 8.
    rattle
        Standard deviation (Å) of the random displacements.
    """
    from ase.build import bulk

    if isinstance(natoms, bool) or not isinstance(natoms, (int, np.integer)) or natoms < 8:
        raise ValueError(f"natoms must be an integer >= 8 (one cubic Si cell), got {natoms!r}")
    k = max(1, round(natoms / 8))
    best = None
    for a in range(1, int(round(k ** (1 / 3))) + 2):
        for b in range(a, int((k / a) ** 0.5) + 2):
            c = max(b, round(k / (a * b)))
            miss = abs(a * b * c - k)
            key = (miss > 0.02 * k, c / a, miss)  # within 2 %: the most compact
            if best is None or key < best[0]:
                best = (key, (a, b, c))
    atoms = bulk("Si", "diamond", a=5.432, cubic=True) * best[1]
    atoms.rattle(rattle, seed=seed)
    return atoms


def make_case(config: ModelConfig, natoms: int, dtype=torch.float32, device="cpu", seed=0):
    """A random-initialised model, the graph of :func:`si_supercell` and fixed labels.

    ``avg_num_neighbors`` is set to the graph's edges per atom (what training would fit).

    Returns
    -------
    model : GNNPModel
    graph : torch_geometric.data.Data
    labels : dict
        ``energy`` (1,) eV and ``forces`` (N, 3) eV/Å, zeros.
    """
    from ase_gnnp.graph import atoms_to_graph
    from ase_gnnp.model import GNNPModel

    atoms = si_supercell(natoms, seed=seed)
    graph = atoms_to_graph(atoms, config.cutoff, dtype).to(device)
    torch.manual_seed(seed)
    model = GNNPModel(config).to(device=device, dtype=dtype)
    model.set_avg_num_neighbors(graph[K.EDGE_INDEX].shape[1] / len(atoms))
    labels = {
        "energy": torch.zeros(1, dtype=dtype, device=device),
        "forces": torch.zeros(len(atoms), 3, dtype=dtype, device=device),
    }
    return model, graph, labels


def run_step(model, graph, labels: dict, mode: str) -> torch.Tensor:
    """One step. ``"infer"``: energy, forces and stress as the calculator computes them;
    ``"train"``: forces with ``create_graph=True``, per-atom energy plus force MSE loss and
    ``loss.backward()`` (no optimizer step). Returns the energy (infer) or loss, detached."""
    _check_mode(mode)
    if mode == "infer":
        model.eval()
        out = model(graph, forces=True, stress=bool(graph[K.PBC].all()))
        return out[K.ENERGY].detach()
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(graph, forces=True, create_graph=True)
    natoms = graph[K.POSITIONS].shape[0]
    loss = ((out[K.ENERGY] - labels["energy"]) / natoms).pow(2).mean()
    loss = loss + (out[K.FORCES] - labels["forces"]).pow(2).mean()
    loss.backward()
    return loss.detach()


# ---------------------------------------------------------------- one measurement
def _check_mode(mode) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}")


def _status(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap pages back (glibc)
    except (OSError, AttributeError):
        pass


def _heap_allocation() -> None:
    """Serve tensors up to 32 MiB from the heap again and keep freed pages (about what
    glibc's dynamic thresholds converge to) in this (measuring) process."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 * 2**20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _measure(spec: dict) -> dict:
    """Run one measurement in this process (see :func:`peak_memory`)."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    config = ModelConfig.from_dict(spec["config"])
    dtype = _DTYPES[spec["dtype"]]
    model, graph, labels = make_case(config, spec["natoms"], dtype, device, spec["seed"])
    model.set_performance_options(
        gradient_checkpointing=spec["gradient_checkpointing"], edge_chunk=spec["edge_chunk"]
    )
    cuda = device.type == "cuda"

    def step() -> float:
        t0 = time.perf_counter()
        run_step(model, graph, labels, spec["mode"])
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    for _ in range(spec["warmup"]):
        step()
    if cuda:
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        first = step()
        high = torch.cuda.max_memory_allocated(device)
    else:
        _trim_heap()
        before = _status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        first = step()
        high = _status("VmHWM")
    if spec["mmap_threshold"] is not None:
        _heap_allocation()  # mapping every tensor costs time: time as glibc normally runs
    times = [step() for _ in range(spec["repeats"])]
    return {
        "natoms": int(graph[K.POSITIONS].shape[0]),
        "num_edges": int(graph[K.EDGE_INDEX].shape[1]),
        "mode": spec["mode"],
        "peak_bytes": int(high - before),
        "baseline_bytes": int(before),
        "peak_total_bytes": int(high),
        "step_s": statistics.median(times) if times else first,
        "first_step_s": first,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "config": spec["config"],
        "options": {k: spec[k] for k in _OPTION_KEYS},
        "method": "cuda max_memory_allocated" if cuda else "VmHWM - VmRSS",
    }


def _worker_main() -> None:
    """Entry point of the measuring subprocess: JSON spec on stdin, JSON result on stdout."""
    spec = json.loads(sys.stdin.read())
    print(_RESULT + json.dumps(_measure(spec)), flush=True)


def _run_in_subprocess(spec: dict) -> dict:
    threads = str(spec["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if spec["mmap_threshold"] is not None:
        # a fixed threshold (which also stops glibc from raising it dynamically) maps
        # every large tensor on its own pages and unmaps it when freed: RSS then follows
        # the live tensors instead of heap fragmentation (±0.1 % instead of ±15 % here)
        env["MALLOC_MMAP_THRESHOLD_"] = str(spec["mmap_threshold"])
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    code = (
        "import warnings; warnings.filterwarnings('ignore', category=DeprecationWarning); "
        "from ase_gnnp.perf.memory import _worker_main; _worker_main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(spec), env=env,
                          capture_output=True, text=True)  # fmt: skip
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT):
            return json.loads(line[len(_RESULT) :])
    why = "killed (out of memory?)" if proc.returncode < 0 else f"exit code {proc.returncode}"
    raise RuntimeError(
        f"memory measurement of {spec['natoms']} atoms ({spec['mode']}) failed: {why}\n"
        + proc.stderr[-2000:]
    )


def peak_memory(
    config: ModelConfig,
    natoms: int,
    mode: str,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    gradient_checkpointing: bool = False,
    edge_chunk: int | None = None,
    threads: int = 1,
    repeats: int = 3,
    warmup: int = 0,
    seed: int = 0,
    fresh_process: bool = True,
    mmap_threshold: int | None = 65536,
) -> dict:
    """Measured peak memory of one step on a rattled diamond-Si cell of about ``natoms``.

    Parameters
    ----------
    config
        Architecture; the model is random-initialised (memory does not depend on weights).
    natoms
        Wanted number of atoms (>= 8), see :func:`si_supercell`.
    mode
        ``"infer"`` (energy, forces, stress) or ``"train"`` (see :func:`run_step`).
    device
        ``"cpu"`` (measured in a fresh subprocess) or a CUDA device (in this process).
    dtype
        ``torch.float32`` or ``torch.float64``.
    gradient_checkpointing, edge_chunk
        See :meth:`ase_gnnp.model.GNNPModel.set_performance_options`.
    threads
        Torch threads of the measuring process.
    repeats
        Further steps timed after the measured one (their median is ``step_s``).
    warmup
        Steps run before the measured one. 0 (default): the measured step also carries
        one-time allocations (lazy library initialisation, a few MB on CPU).
    fresh_process
        CPU only: ``False`` measures in this process (quicker, noisier: anything freed
        earlier and kept by the allocator can be reused without raising the mark).
    mmap_threshold
        CPU, fresh process: glibc's ``MALLOC_MMAP_THRESHOLD_`` (bytes) in the measuring
        process, so that the mark measures live tensors, reproducibly; ``None`` keeps
        glibc's dynamic default (what an ordinary run sees: higher and noisier peaks,
        from heap fragmentation).

    Returns
    -------
    dict
        ``natoms``, ``num_edges``, ``mode``, ``peak_bytes`` (high-water mark minus the
        memory in use before the step: what the step adds), ``baseline_bytes`` (in use
        before: interpreter, libraries, model and graph on CPU; tensors on CUDA),
        ``peak_total_bytes`` (their sum), ``step_s`` (median wall seconds of the timed
        steps), ``first_step_s``, ``num_parameters``, ``config``, ``options``, ``method``.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    _check_mode(mode)
    si_supercell(natoms)  # validates natoms
    names = {v: k for k, v in _DTYPES.items()}
    if dtype not in names:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    for name, value, low in (("threads", threads, 1), ("repeats", repeats, 0),
                             ("warmup", warmup, 0)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or a CUDA device, got {device!r}")
    if dev.type == "cpu" and not Path("/proc/self/clear_refs").exists():
        raise RuntimeError("CPU memory measurement needs Linux /proc/self/clear_refs")
    spec = {
        "config": config.to_dict(), "natoms": int(natoms), "mode": mode, "device": str(dev),
        "dtype": names[dtype], "gradient_checkpointing": bool(gradient_checkpointing),
        "edge_chunk": edge_chunk, "threads": threads, "repeats": repeats, "warmup": warmup,
        "seed": seed, "fresh_process": bool(fresh_process or dev.type == "cuda"),
        "mmap_threshold": mmap_threshold if dev.type == "cpu" and fresh_process else None,
    }  # fmt: skip
    if dev.type == "cpu" and fresh_process:
        return _run_in_subprocess(spec)
    previous = torch.get_num_threads()
    try:
        return _measure(spec)
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------- fits
def fit_line(x, y) -> dict:
    """Least-squares ``y = intercept + slope · x``; ``max_rel_residual`` = max |fit/y − 1|."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"need two or more (x, y) pairs of equal length, got {x.size}, {y.size}")
    slope, intercept = np.polyfit(x, y, 1)
    fit = intercept + slope * x
    return {"slope": float(slope), "intercept": float(intercept),
            "max_rel_residual": float(np.max(np.abs(fit / y - 1.0)))}  # fmt: skip


def fit_power_law(x, y) -> dict:
    """Least squares in log space of ``y = prefactor · x^exponent`` (x, y > 0)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"need two or more (x, y) pairs of equal length, got {x.size}, {y.size}")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("a power-law fit needs positive x and y")
    exponent, log_a = np.polyfit(np.log(x), np.log(y), 1)
    fit = np.exp(log_a) * x**exponent
    return {"exponent": float(exponent), "prefactor": float(np.exp(log_a)),
            "max_rel_residual": float(np.max(np.abs(fit / y - 1.0)))}  # fmt: skip


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
        :func:`fit_line`: ``slope`` is bytes per layer) and ``vs_lmax[mode]`` (``lmax``,
        ``peak_bytes``, ``fit`` = :func:`fit_power_law` in ``lmax + 1``).
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
        if len(ns) >= 2:
            entry["fit"] = fit_line(ns, peaks)
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

    Returns
    -------
    dict
        ``rows``: per depth ``peak_bytes_off/on``, ``saved_bytes``, ``saved_pct``,
        ``step_s_off/on``, ``time_added_pct``; ``config``, ``natoms``.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
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
def plot_memory(scan: dict, path: str | Path) -> Path:
    """Two panels, peak step memory (MiB) against lmax and against depth, measured points
    and fitted curves for each mode; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

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
            x = np.asarray([min(e["layers"]), max(e["layers"])], float)
            ax2.plot(x, (f["intercept"] + f["slope"] * x) / mib, "-", color=color,
                     label=f"{mode}: {f['slope'] / mib:.1f} MiB/layer")  # fmt: skip
    s = scan["settings"]
    ax1.set(xlabel="lmax", ylabel="peak step memory (MiB)",
            title=f"{s['fixed_layers']} layers, {s['channels']} channels")  # fmt: skip
    ax2.set(xlabel="interaction layers", ylabel="peak step memory (MiB)",
            title=f"lmax {s['fixed_lmax']}, {s['natoms']} atoms")  # fmt: skip
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_checkpointing(result: dict, path: str | Path) -> Path:
    """Training-step peak memory and step time against depth, with and without gradient
    checkpointing; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = result["rows"]
    depth = np.array([r["num_layers"] for r in rows])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for flag, label, marker in (("off", "no checkpointing", "o-"), ("on", "checkpointing", "s--")):
        ax1.plot(depth, [r[f"peak_bytes_{flag}"] / 2**20 for r in rows], marker, label=label)
        ax2.plot(depth, [r[f"step_s_{flag}"] for r in rows], marker, label=label)
    ax1.set(xlabel="interaction layers", ylabel="peak training-step memory (MiB)",
            title=f"{result['natoms']} atoms")  # fmt: skip
    ax2.set(xlabel="interaction layers", ylabel="step time (s)")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
