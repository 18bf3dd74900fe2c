"""Peak memory of one training or inference step (the studies built on it are in
:mod:`ase_gnnp.perf.memory_studies`).

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
from pathlib import Path

import numpy as np
import torch

from ase_gnnp import keys as K
from ase_gnnp.config import ModelConfig

__all__ = ["fit_line", "fit_power_law", "make_case", "peak_memory", "run_step", "si_supercell"]

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
