"""One NVE throughput + peak-memory measurement in a fresh process (worker of bench_peers.py).

Run by ``tutorials/bench_peers.py``: ase_gnnp kinds with the project's own Python, MACE and
CHGNet with the peer virtual environment's Python. Only the standard library at import
time; ase_gnnp is imported only for the ase_gnnp kinds (the peer environment does not have
it). The result is printed as one line ``BENCH_RESULT {json}`` on stdout.

    python tutorials/_peer_worker.py gnnp --natoms 64 --steps 2 --threads 1
    ../.venv-peers/bin/python tutorials/_peer_worker.py mace --natoms 512 --steps 10

Kinds (all float32, forces and stress every step):

- ``gnnp``: a randomly initialised ``GNNPModel`` (default ``ModelConfig(cutoff=5.0,
  channels=64, lmax=1, num_layers=2)``, change with ``--gnnp-config JSON``);
- ``sige-small``: the shipped trained ase_gnnp model (cutoff 3.5 Å, one layer, 32 channels,
  lmax 2, correlation 3);
- ``model``: a trained ase_gnnp model from ``--model PATH`` (a ``model.pt`` written by
  ``ase-gnnp train``, or a shipped name), run in float32;
- ``mace``: a randomly initialised ``mace.modules.ScaleShiftMACE`` as ``mace_run_train``
  builds it by default, with hidden irreps 64x0e+64x1o, max_ell 3, correlation 3,
  r_max 5 Å, 2 interactions, 8 Bessel functions, in ``mace.calculators.MACECalculator``;
- ``chgnet``: the pretrained CHGNet 0.3.0 (``CHGNet.load()``) in its ``CHGNetCalculator``.

Protocol (:func:`nve_throughput`, the same as ``ase_gnnp.md.md_throughput``, which the
ase_gnnp kinds call directly): rattled (0.02 Å) diamond Si supercell, velocities at 300 K,
one energy call, one warm-up VelocityVerlet step (1 fs), then ``--steps`` timed steps.
Memory: the resident-set high-water mark (``VmHWM``) is reset through
``/proc/self/clear_refs`` once the model is loaded, so ``peak_rss_mb`` is the peak during MD
and ``peak_rss_delta_mb`` the part above the resident set before MD.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

KINDS = ("gnnp", "gnnp-mlearn", "sige-small", "model", "mace", "chgnet")
#: the kinds that run ase_gnnp (with the project's own Python)
OWN_KINDS = ("gnnp", "gnnp-mlearn", "sige-small", "model")
RESULT_PREFIX = "BENCH_RESULT "
#: default architecture of the ``gnnp`` kind, comparable in size to the MACE row
GNNP_DEFAULT = {"cutoff": 5.0, "channels": 64, "lmax": 1, "num_layers": 2}
#: architecture of the ``gnnp-mlearn`` kind: run F of tutorials/bench_mlearn_si.py, the
#: setting whose accuracy on mlearn Si is measured there (53 meV/Å; MACE 66 meV/Å)
GNNP_MLEARN = {"cutoff": 5.0, "channels": 32, "lmax": 2, "num_layers": 2, "correlation": 3,
               "last_lmax": 1}  # fmt: skip
#: MACE hyper-parameters (mace_run_train defaults except the ones the benchmark fixes)
MACE_SETTINGS = {
    "r_max": 5.0,
    "num_bessel": 8,
    "num_polynomial_cutoff": 5,
    "max_ell": 3,
    "num_interactions": 2,
    "hidden_irreps": "64x0e+64x1o",
    "MLP_irreps": "16x0e",
    "correlation": 3,
    "radial_MLP": [64, 64, 64],
    "interaction": "RealAgnosticResidualInteractionBlock",
    "interaction_first": "RealAgnosticInteractionBlock",
}
LATTICE_SI = 5.432  # Å, as ase_gnnp.md.diamond_supercell


# ------------------------------------------------------------------ memory
def memory_status() -> dict:
    """``VmRSS`` and ``VmHWM`` of this process in MB (from ``/proc/self/status``)."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024.0  # kB -> MB
    return values


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux ≥ 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


# ------------------------------------------------------------------ MD protocol
def diamond_supercell(natoms: int):
    """Cubic diamond Si supercell with ``natoms = 8 n^3`` atoms (as ase_gnnp.md)."""
    from ase.build import bulk

    n = round((natoms / 8) ** (1 / 3))
    if n < 1 or 8 * n**3 != natoms:
        raise ValueError(f"natoms must be 8 n^3 (8, 64, 512, 4096, ...), got {natoms}")
    return bulk("Si", "diamond", a=LATTICE_SI, cubic=True) * (n, n, n)


def nve_throughput(calc, natoms: int, steps: int, seed: int = 0) -> dict:
    """NVE throughput, step for step the protocol of ``ase_gnnp.md.md_throughput``.

    ``steps`` counts the warm-up step too (``steps - 1`` steps are timed), as there.
    """
    import numpy as np
    from ase import units
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2 (one warm-up step), got {steps!r}")
    atoms = diamond_supercell(natoms)
    atoms.rattle(0.02, seed=seed)
    rng = np.random.default_rng(seed)
    atoms.calc = calc
    thermalize_momenta(atoms, 300.0, rng=rng)
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    e0 = atoms.get_total_energy()
    dyn.run(1)  # warm-up (allocations, first neighbour list)
    t0 = time.perf_counter()
    for _ in range(steps - 1):
        dyn.run(1)
    elapsed = time.perf_counter() - t0
    n = len(atoms)
    return {
        "natoms": n,
        "steps": steps,
        "wall_s": elapsed,
        "atom_steps_per_s": n * (steps - 1) / elapsed,
        "temperature_K": float(atoms.get_temperature()),
        "etot_drift_eV_per_atom": float((atoms.get_total_energy() - e0) / n),
    }


def mean_neighbours(cutoff: float) -> float:
    """Mean number of neighbours within ``cutoff`` in ideal diamond Si."""
    from ase.neighborlist import neighbor_list

    cell = diamond_supercell(8)
    return len(neighbor_list("i", cell, cutoff)) / len(cell)


# ------------------------------------------------------------------ models
def n_parameters(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def build_gnnp(gnnp_config: dict | None) -> tuple:
    import torch

    import ase_gnnp
    from ase_gnnp import GNNPCalculator, GNNPModel, ModelConfig

    config = ModelConfig.from_dict({**GNNP_DEFAULT, **(gnnp_config or {})})
    torch.manual_seed(0)
    model = GNNPModel(config).to(torch.float32).eval()
    model.set_avg_num_neighbors(mean_neighbours(config.cutoff))
    info = {
        "package": f"ase_gnnp {ase_gnnp.__version__}",
        "weights": "random",
        "config": config.to_dict(),
        "cutoff_A": config.cutoff,
        "n_params": n_parameters(model),
        "computes": "energy, forces, stress (one autograd pass)",
    }
    return GNNPCalculator(model), info


def build_sige_small() -> tuple:
    return build_trained("sige-small", "shipped sige-small (trained on SiGe Tersoff data)")


def build_trained(name_or_path: str, weights: str | None = None) -> tuple:
    import torch

    import ase_gnnp
    from ase_gnnp import GNNPCalculator, load_model

    model = load_model(name_or_path)
    info = {
        "package": f"ase_gnnp {ase_gnnp.__version__}",
        "weights": weights or f"trained: {name_or_path}",
        "config": model.config.to_dict(),
        "cutoff_A": model.config.cutoff,
        "n_params": n_parameters(model),
        "computes": "energy, forces, stress (one autograd pass)",
    }
    return GNNPCalculator(model, dtype=torch.float32), info


def build_mace() -> tuple:
    import numpy as np
    import torch

    # isort: off
    # mace before e3nn: mace's __init__ sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, without
    # which e3nn 0.4.4 cannot be imported with torch >= 2.6 (torch.load of its constants)
    import mace
    from mace import modules
    from mace.calculators import MACECalculator
    from e3nn import o3

    # isort: on

    s = MACE_SETTINGS
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    model = modules.ScaleShiftMACE(
        r_max=s["r_max"],
        num_bessel=s["num_bessel"],
        num_polynomial_cutoff=s["num_polynomial_cutoff"],
        max_ell=s["max_ell"],
        interaction_cls=modules.interaction_classes[s["interaction"]],
        interaction_cls_first=modules.interaction_classes[s["interaction_first"]],
        num_interactions=s["num_interactions"],
        num_elements=1,
        hidden_irreps=o3.Irreps(s["hidden_irreps"]),
        MLP_irreps=o3.Irreps(s["MLP_irreps"]),
        atomic_energies=np.array([-4.0]),
        avg_num_neighbors=mean_neighbours(s["r_max"]),
        atomic_numbers=[14],
        correlation=s["correlation"],
        gate=torch.nn.functional.silu,
        radial_MLP=s["radial_MLP"],
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    ).eval()
    info = {
        "package": f"mace-torch {mace.__version__}",
        "weights": "random",
        "config": s,
        "cutoff_A": s["r_max"],
        "n_params": n_parameters(model),
        "computes": "energy, forces, stress (one autograd pass)",
    }
    # models= takes the module itself (mace-torch >= 0.3.10); no model file needed
    calc = MACECalculator(models=model, device="cpu", default_dtype="float32")
    return calc, info


def build_chgnet() -> tuple:
    from chgnet import __version__ as chgnet_version
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    model = CHGNet.load(use_device="cpu", verbose=False)
    info = {
        "package": f"chgnet {chgnet_version}",
        "weights": f"pretrained CHGNet {model.version}",
        "config": {
            "atom_graph_cutoff": model.graph_converter.atom_graph_cutoff,
            "bond_graph_cutoff": model.graph_converter.bond_graph_cutoff,
            "graph_algorithm": model.graph_converter.algorithm,
        },
        "cutoff_A": model.graph_converter.atom_graph_cutoff,
        "n_params": n_parameters(model),
        "computes": "energy, forces, stress, magnetic moments (task 'efsm', one pass)",
    }
    return CHGNetCalculator(model, use_device="cpu"), info


# ------------------------------------------------------------------ driver
def measure(
    kind: str,
    natoms: int,
    steps: int,
    threads: int = 1,
    seed: int = 0,
    gnnp_config: dict | None = None,
    model: str | None = None,
) -> dict:
    """Build model ``kind``, run the NVE protocol with ``steps`` timed steps, return a dict.

    ``model`` (a checkpoint path or shipped name) is the trained model of kind ``model``."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {list(KINDS)}")
    if not isinstance(natoms, int) or natoms < 1:
        raise ValueError(f"natoms must be a positive integer, got {natoms!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if gnnp_config and kind != "gnnp":
        raise ValueError(f"gnnp_config applies to kind 'gnnp' only, got kind {kind!r}")
    if (kind == "model") != (model is not None):
        raise ValueError(f"kind 'model' and only it needs a model path, got kind {kind!r}")
    diamond_supercell(natoms)  # check the size before loading anything heavy
    import torch

    torch.set_num_threads(threads)
    t_load = time.perf_counter()
    if kind == "gnnp":
        calc, info = build_gnnp(gnnp_config)
    elif kind == "gnnp-mlearn":
        calc, info = build_gnnp(GNNP_MLEARN)
    elif kind == "sige-small":
        calc, info = build_sige_small()
    elif kind == "model":
        calc, info = build_trained(model)
    elif kind == "mace":
        calc, info = build_mace()
    else:
        calc, info = build_chgnet()
    load_s = time.perf_counter() - t_load
    load_peak = memory_status()["VmHWM"]

    before = memory_status()["VmRSS"]
    hwm_reset = reset_peak_rss()
    if kind in OWN_KINDS:
        from ase_gnnp.md import md_throughput

        md = md_throughput(calc, natoms, steps=steps + 1, seed=seed)
    else:
        md = nve_throughput(calc, natoms, steps=steps + 1, seed=seed)
    peak = memory_status()["VmHWM"]

    import ase
    import numpy as np

    return {
        "kind": kind,
        **info,
        "dtype": "float32",
        "natoms": md["natoms"],
        "timed_steps": steps,
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "wall_s": md["wall_s"],
        "s_per_step": md["wall_s"] / steps,
        "atom_steps_per_s": md["atom_steps_per_s"],
        "temperature_K": md["temperature_K"],
        "etot_drift_eV_per_atom": md["etot_drift_eV_per_atom"],
        "load_s": load_s,
        "load_peak_rss_mb": load_peak,
        "rss_before_md_mb": before,
        "peak_rss_mb": peak,
        "peak_rss_delta_mb": peak - before,
        "peak_reset": hwm_reset,
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "ase": ase.__version__,
            "numpy": np.__version__,
            "e3nn": _version("e3nn"),
        },
    }


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--natoms", type=int, required=True, help="8 n^3: 64, 512, 4096, ...")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after a warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--gnnp-config", type=json.loads, default=None, help="ModelConfig overrides (JSON)"
    )
    parser.add_argument("--model", default=None, help="trained model of kind 'model'")
    args = parser.parse_args(argv)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(args.threads)  # before torch is imported
    try:
        result = measure(
            args.kind,
            args.natoms,
            args.steps,
            args.threads,
            args.seed,
            args.gnnp_config,
            args.model,
        )
    except ValueError as error:
        parser.error(str(error))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
