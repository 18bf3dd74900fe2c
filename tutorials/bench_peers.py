"""Speed and memory of ase_gnnp next to MACE and CHGNet, measured in one run on one machine.

Rows (all float32; every step computes energy, forces and stress, CHGNet magnetic moments
too):

- ``ase_gnnp 64ch L1``: a randomly initialised ``GNNPModel(ModelConfig(cutoff=5.0,
  channels=64, lmax=1, num_layers=2))``, sized like the MACE row (``--gnnp-config`` changes it);
- ``ase_gnnp sige-small``: the shipped trained model (cutoff 3.5 Å, one layer, 32 channels,
  lmax 2, correlation 3; the README's rows were measured with its earlier 4 Å two-layer
  version);
- ``ase_gnnp <model>`` (with ``--model PATH``): a model you trained, for example the
  ``run/model.pt`` of ``ase-gnnp train --data Si_train.extxyz``, in float32;
- ``MACE 64x0e+64x1o``: a randomly initialised ScaleShiftMACE (hidden irreps 64x0e+64x1o,
  max_ell 3, correlation 3, r_max 5 Å, 2 interactions, 8 Bessel functions) in mace-torch's
  ``MACECalculator``;
- ``CHGNet 0.3.0``: the pretrained model (``CHGNet.load()``) in its ``CHGNetCalculator``.

Each (model, size) is measured in a fresh process (``tutorials/_peer_worker.py``): diamond
Si supercells (default 512 and 4,096 atoms, rattled by 0.02 Å), NVE velocity Verlet at 1 fs
from 300 K, a warm-up step then ``--steps`` timed steps; throughput in atom-steps/s, and the
process's peak resident memory during MD (``VmHWM``, absolute and above the resident set
before MD). All processes use ``--threads`` threads. The ratios ase_gnnp / MACE and
ase_gnnp / CHGNet come from the same run. Accuracy is NOT compared here: the MACE weights
are random, and CHGNet was trained on other data (see bench_mlearn_si.py for accuracy).

MACE (mace-torch pins e3nn 0.4.4) and CHGNet live in their own virtual environment, by
default ``../.venv-peers`` next to the repository, created on first use: ``torch==2.13.0``
(a CPU build; unpinned, pip pulls the CUDA one) first, then mace-torch, chgnet and ase,
with torch held at that version. Never install mace-torch into the project's environment.

Run on an otherwise idle machine (other processes distort timings badly); results are
printed as a table and written to ``--out``/bench_peers.json and bench_peers.png
(``bench_peers_quick.*`` with ``--quick``), replacing earlier files of the same name.

    python tutorials/bench_peers.py                       # 512 and 4,096 atoms, 10 steps
    python tutorials/bench_peers.py --threads 1 --sizes 64 512 --steps 20
    python tutorials/bench_peers.py --peers mace          # MACE only (no CHGNet)
    python tutorials/bench_peers.py --peers mace --model run/model.pt  # + a trained model
    python tutorials/bench_peers.py --peers               # ase_gnnp rows only, no venv
    python tutorials/bench_peers.py --quick --out /tmp/q  # smoke test: 64 atoms, 2 steps
    python tutorials/bench_peers.py --skip-install --venv /path/to/existing/venv
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().with_name("_peer_worker.py")
DEFAULT_VENV = ROOT.parent / ".venv-peers"
DEFAULT_OUT = ROOT / "tutorials" / "figures"
DEFAULT_TORCH = "torch==2.13.0"


def _load_worker():
    """The worker module (standard library only at import), for the constants it owns."""
    spec = importlib.util.spec_from_file_location("_peer_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_WORKER = _load_worker()
RESULT_PREFIX = _WORKER.RESULT_PREFIX

#: peer name -> (module to import, pip requirement)
PEERS = {"mace": ("mace", "mace-torch"), "chgnet": ("chgnet", "chgnet")}
#: row kinds run with the project's own Python (``model`` only with ``--model``)
OWN_KINDS = _WORKER.OWN_KINDS
LABELS = {
    "gnnp": "ase_gnnp 64ch L1",
    "gnnp-mlearn": "ase_gnnp mlearn-F",
    "sige-small": "ase_gnnp sige-small",
    "mace": "MACE 64x0e+64x1o",
    "chgnet": "CHGNet 0.3.0",
}
CUTOFF_NOTE = (
    "Cutoffs differ: ase_gnnp 64ch and MACE 5 Å, sige-small 3.5 Å, CHGNet 6 Å (atom graph) "
    "+ 3 Å (bond graph)."
)


def comparability_note(results: list[dict]) -> str:
    """What differs between the rows besides speed: body order and cutoffs."""
    configs = [r["config"] for r in results if r["kind"] == "gnnp" and "error" not in r]
    note = CUTOFF_NOTE
    if configs and configs[0].get("correlation", 1) == 1:
        note = (
            "The random ase_gnnp row has two-body messages (correlation 1), MACE correlation "
            "3 (up to 4-body features per layer): add --gnnp-config '{\"correlation\": 3}' "
            "for the same body order. " + note
        )
    return note


ACCURACY_NOTE = (
    "Accuracy is not compared by this script: the ase_gnnp 64ch and MACE rows have random "
    "weights, sige-small was trained on SiGe Tersoff data and CHGNet on MPtrj (PBE), so "
    "their errors are not comparable; it measures throughput and memory only. The "
    "mlearn-F row is the architecture of run F of tutorials/bench_mlearn_si.py (32 "
    "channels, lmax 2, correlation 3, last_lmax 1, 5 Å), whose accuracy on mlearn Si was "
    "measured there against a MACE 64x0e+64x1o model trained on the same data."
)


# ------------------------------------------------------------------ input checks
def check_options(peers: list[str], sizes: list[int], steps: int, threads: int) -> None:
    """Raise ValueError for an unknown peer name or a non-positive / non-8n^3 number."""
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; expected some of {sorted(PEERS)}")
    if not sizes:
        raise ValueError("sizes must list at least one number of atoms")
    for natoms in sizes:
        ok = isinstance(natoms, int) and not isinstance(natoms, bool) and natoms >= 8
        if not ok or 8 * round((natoms / 8) ** (1 / 3)) ** 3 != natoms:
            raise ValueError(
                f"sizes must be positive numbers of atoms 8 n^3 (8, 64, 512, 4096, ...), "
                f"got {natoms!r}"
            )
    for name, value in (("steps", steps), ("threads", threads)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


# ------------------------------------------------------------------ the peers' venv
def venv_python(venv: Path) -> Path:
    return Path(venv) / "bin" / "python"


def install_hint(venv: Path, peers: list[str], torch_spec: str = DEFAULT_TORCH) -> str:
    packages = " ".join([PEERS[p][1] for p in peers] + ["ase"])
    return (
        f"create it with `python tutorials/bench_peers.py --venv {venv}` (without "
        f"--skip-install), or by hand: python -m venv {venv} && {venv}/bin/pip install "
        f"'{torch_spec}' && {venv}/bin/pip install {packages} (keeping {torch_spec}); "
        "never install mace-torch into the project's own environment"
    )


def missing_modules(python: Path, modules: list[str]) -> list[str]:
    """The modules among ``modules`` that ``python`` cannot find."""
    code = (
        "import importlib.util, json, sys; "
        "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]))"
    )
    done = subprocess.run(
        [str(python), "-c", code, *modules], capture_output=True, text=True, env=_clean_env()
    )
    if done.returncode != 0:
        raise RuntimeError(f"{python} does not run: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ensure_peer_venv(
    venv: Path, peers: list[str], install: bool = True, torch_spec: str = DEFAULT_TORCH
) -> Path:
    """Python of a virtual environment with ``peers`` importable; create it if allowed.

    Raises
    ------
    ValueError
        Unknown peer name.
    RuntimeError
        The environment is missing or incomplete and ``install`` is False, or pip failed;
        the message says how to install it.
    """
    check_options(peers, [8], 1, 1)
    venv = Path(venv).absolute()
    python = venv_python(venv)
    modules = ["torch", "ase"] + [PEERS[p][0] for p in peers]
    if python.is_file():
        missing = missing_modules(python, modules)
        if not missing:
            print(f"reusing the peer environment {venv}")
            return python
        state = f"lacks {missing}"
    else:
        missing, state = modules, "does not exist"
    if not install:
        raise RuntimeError(
            f"peer environment {venv} {state} (--skip-install was given); "
            + install_hint(venv, peers, torch_spec)
        )
    if not python.is_file():
        _run_step([sys.executable, "-m", "venv", str(venv)], f"creating {venv}", venv, peers)
    pip = [str(python), "-m", "pip", "install"]
    _run_step([*pip, torch_spec], f"installing {torch_spec} (CPU wheel) first", venv, peers)
    constraints = venv / "bench-peers-constraints.txt"
    constraints.write_text(torch_spec + "\n")
    packages = [PEERS[p][1] for p in peers] + ["ase"]
    _run_step(
        [*pip, "-c", str(constraints), *packages],
        f"installing {' '.join(packages)} with {torch_spec} held",
        venv,
        peers,
    )
    still = missing_modules(python, modules)
    if still:
        raise RuntimeError(
            f"after installation {venv} still lacks {still}; " + install_hint(venv, peers)
        )
    return python


def _run_step(command: list[str], what: str, venv: Path, peers: list[str]) -> None:
    print(f"[install] {what}: {' '.join(command)}", flush=True)
    done = subprocess.run(command, env=_clean_env())  # pip's own output goes to the console
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit code {done.returncode}; pip's messages are above); "
            + install_hint(venv, peers)
        )


def _clean_env(threads: int | None = None, extra_path: Path | None = None) -> dict:
    """Environment for child processes: no PYTHONPATH/PYTHONHOME leaking between envs."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    return env


#: glibc malloc settings of every measured process unless --system-malloc: freed memory
#: stays in the process (as ``ase_gnnp.perf.allocator.tune_cpu_allocator``, which the
#: ``ase-gnnp`` MD commands apply), the same for every model
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**31 - 1), "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1),
              "MALLOC_TOP_PAD_": str(2**28)}  # fmt: skip


# ------------------------------------------------------------------ measurements
def run_worker(
    python: Path,
    kind: str,
    natoms: int,
    steps: int,
    threads: int,
    gnnp_config: dict | None = None,
    timeout: float = 3600.0,
    tune_malloc: bool = True,
    model: str | Path | None = None,
) -> dict:
    """One measurement in a fresh process; the worker's result dict, or ``{"error": ...}``.

    ``model`` is the trained model (path or shipped name) of kind ``"model"``."""
    command = [str(python), str(WORKER), kind, "--natoms", str(natoms), "--steps", str(steps)]
    command += ["--threads", str(threads)]
    if gnnp_config and kind == "gnnp":
        command += ["--gnnp-config", json.dumps(gnnp_config)]
    if kind == "model":
        command += ["--model", str(Path(model).absolute()) if Path(model).exists() else model]
    own = kind in OWN_KINDS
    env = _clean_env(threads, extra_path=ROOT if own else None)
    if tune_malloc:
        env.update(MALLOC_ENV)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"kind": kind, "natoms": natoms, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip() or done.stdout.strip())[-1500:]
        return {"kind": kind, "natoms": natoms, "error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def model_label(model: str | Path) -> str:
    """Short row label of a trained model: its run folder and file (``run/model.pt``)."""
    path = Path(model)
    return "/".join(path.parts[-2:]) if path.suffix == ".pt" else str(model)


def ratios(results: list[dict], peers: list[str]) -> list[dict]:
    """Throughput and memory ratios of each ase_gnnp row to each peer row, per size."""
    table = {(r["kind"], r["natoms"]): r for r in results if "error" not in r}
    out = []
    for (kind, natoms), own in sorted(table.items(), key=lambda kv: kv[0][1]):
        if kind not in OWN_KINDS:
            continue
        for peer in peers:
            other = table.get((peer, natoms))
            if other is None:
                continue
            out.append(
                {
                    "natoms": natoms,
                    "ase_gnnp": kind,
                    "peer": peer,
                    "label": own["label"],
                    "peer_label": other["label"],
                    "throughput_ratio": own["atom_steps_per_s"] / other["atom_steps_per_s"],
                    "peak_rss_delta_ratio": own["peak_rss_delta_mb"]
                    / max(other["peak_rss_delta_mb"], 1e-9),
                }
            )
    return out


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform()}


# ------------------------------------------------------------------ report
def format_table(results: list[dict], pairs: list[dict]) -> str:
    w = max([22] + [len(r["label"]) + 2 for r in results])  # label column
    head = f"{'model':<{w}}{'atoms':>7}{'cutoff':>8}{'params':>9}{'atom-steps/s':>14}"
    head += f"{'ms/step':>10}{'peak MB':>10}{'+MB in MD':>11}"
    lines = [head, "-" * len(head)]
    computes = {}
    for r in results:
        label = r["label"]
        if "error" in r:
            lines.append(f"{label:<{w}}{r['natoms']:>7}  FAILED: {r['error'].splitlines()[-1]}")
            continue
        computes[label] = r["computes"]
        lines.append(
            f"{label:<{w}}{r['natoms']:>7}{r['cutoff_A']:>6.1f} Å{r['n_params']:>9}"
            f"{r['atom_steps_per_s']:>14.1f}{1000 * r['s_per_step']:>10.1f}"
            f"{r['peak_rss_mb']:>10.0f}{r['peak_rss_delta_mb']:>11.0f}"
        )
    lines += ["", "computed every step:"]
    lines += [f"  {label:<{w}}{what}" for label, what in computes.items()]
    if pairs:
        lines += ["", "ratios (same run):"]
        for p in pairs:
            lines.append(
                f"  {p['natoms']:>5} atoms  {p['label']:<20} / {p['peer_label']:<18}"
                f" throughput {p['throughput_ratio']:5.2f}x   memory in MD "
                f"{p['peak_rss_delta_ratio']:5.2f}x"
            )
    return "\n".join(lines)


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ok = [r for r in results if "error" not in r]
    kinds = [k for k in LABELS if any(r["kind"] == k for r in ok)]
    labels = {r["kind"]: r["label"] for r in ok}
    sizes = sorted({r["natoms"] for r in ok})
    table = {(r["kind"], r["natoms"]): r for r in ok}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(len(kinds), 1)
    x = np.arange(len(sizes))
    for j, kind in enumerate(kinds):
        for ax, key in zip(axes, ("atom_steps_per_s", "peak_rss_delta_mb")):
            values = [table[(kind, n)][key] if (kind, n) in table else 0.0 for n in sizes]
            ax.bar(x + (j - (len(kinds) - 1) / 2) * width, values, width, label=labels[kind])
    for ax, ylabel in zip(axes, ("throughput (atom-steps/s)", "peak memory above pre-MD RSS (MB)")):
        ax.set_xticks(x, [f"{n} atoms" for n in sizes])
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ main
def run_benchmark(
    peers: list[str],
    sizes: list[int],
    steps: int,
    threads: int,
    venv: Path = DEFAULT_VENV,
    install: bool = True,
    gnnp_config: dict | None = None,
    torch_spec: str = DEFAULT_TORCH,
    timeout: float = 3600.0,
    tune_malloc: bool = True,
    model: str | Path | None = None,
) -> dict:
    """Measure every row at every size; return the report (see the module docstring).

    ``model`` (a checkpoint path or shipped name) adds a row for that trained model."""
    check_options(peers, sizes, steps, threads)
    if model is not None:
        from ase_gnnp.checkpoint import resolve_model_path

        resolve_model_path(model)  # a clear error before anything is measured
    peer_python = ensure_peer_venv(venv, peers, install, torch_spec) if peers else None
    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        print(
            f"warning: load average {load_start[0]:.2f} before starting: other processes "
            "are running, timings will be biased",
            flush=True,
        )
    own = [k for k in OWN_KINDS if k != "model" or model is not None]
    jobs = [(kind, n) for n in sizes for kind in (*own, *peers)]
    results = []
    labels = {**LABELS, "gnnp": "ase_gnnp (custom)"} if gnnp_config else dict(LABELS)
    if model is not None:
        labels["model"] = f"ase_gnnp {model_label(model)}"
    for k, (kind, natoms) in enumerate(jobs, 1):
        python = Path(sys.executable) if kind in OWN_KINDS else peer_python
        print(f"[{k}/{len(jobs)}] {labels[kind]}, {natoms} atoms, {steps} steps ...", flush=True)
        t0 = time.perf_counter()
        result = run_worker(
            python, kind, natoms, steps, threads, gnnp_config, timeout, tune_malloc, model
        )
        result["label"] = labels[kind]
        took = time.perf_counter() - t0
        if "error" in result:
            print(f"    FAILED after {took:.0f} s: {result['error'][-800:]}", flush=True)
        else:
            print(
                f"    {result['atom_steps_per_s']:.1f} atom-steps/s, peak "
                f"{result['peak_rss_mb']:.0f} MB (+{result['peak_rss_delta_mb']:.0f} MB in MD); "
                f"{took:.0f} s in all",
                flush=True,
            )
        results.append(result)
    pairs = ratios(results, peers)
    return {
        "script": "tutorials/bench_peers.py",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "load_average_start": list(load_start),
        "load_average_end": list(os.getloadavg()),
        "threads": threads,
        "timed_steps": steps,
        "sizes": sizes,
        "dtype": "float32 for all models",
        "malloc": MALLOC_ENV if tune_malloc else "glibc defaults",
        "protocol": (
            "diamond Si supercell (a = 5.432 Å) rattled by 0.02 Å, velocities at 300 K, NVE "
            "velocity Verlet at 1 fs; one energy call and one warm-up step, then the timed "
            "steps; each (model, size) in a fresh process; memory from VmHWM (reset after "
            "the model is loaded)"
        ),
        "comparability_note": comparability_note(results),
        "accuracy_note": ACCURACY_NOTE,
        "peer_venv": str(Path(venv).absolute()) if peers else None,
        "results": results,
        "ratios": pairs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Output files in --out with the same names are replaced without asking.",
    )
    parser.add_argument(
        "--peers",
        nargs="*",
        default=list(PEERS),
        metavar="PEER",
        help=f"peers to compare with, some of {list(PEERS)} (default: all; none: "
        "ase_gnnp rows only)",
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[512, 4096], help="atoms, 8 n^3 (default 512 4096)"
    )
    parser.add_argument(
        "--steps", type=int, default=10, help="timed MD steps after a warm-up (default 10)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads of every process (default 2)"
    )
    parser.add_argument(
        "--venv", type=Path, default=DEFAULT_VENV, help=f"peer environment (default {DEFAULT_VENV})"
    )
    parser.add_argument(
        "--skip-install", action="store_true", help="use --venv as it is; never create or install"
    )
    parser.add_argument(
        "--torch",
        default=DEFAULT_TORCH,
        help=f"torch requirement of the venv (default {DEFAULT_TORCH})",
    )
    parser.add_argument(
        "--gnnp-config",
        type=json.loads,
        default=None,
        help="JSON overrides of the random ase_gnnp row's ModelConfig, e.g. '{\"correlation\": 3}'",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="also measure this trained model (a model.pt of ase-gnnp train, or a shipped name)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds per measurement (default 3600)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="folder for bench_peers.json/.png (default tutorials/figures; replaced if present)",
    )
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="glibc's default allocator settings for every model (default: freed memory "
        "stays in each process, as the ase-gnnp MD commands do)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 64 atoms, 2 steps (overrides --sizes, --steps)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.steps = [64], 2
    try:
        report = run_benchmark(
            args.peers,
            args.sizes,
            args.steps,
            args.threads,
            args.venv,
            not args.skip_install,
            args.gnnp_config,
            args.torch,
            args.timeout,
            not args.system_malloc,
            args.model,
        )
    except (ValueError, RuntimeError) as error:
        parser.exit(2, f"error: {error}\n")
    report["quick"] = args.quick
    table = format_table(report["results"], report["ratios"])
    print("\n" + table + "\n")
    print(f"float32 everywhere, {args.threads} thread(s) per process, {args.steps} timed steps.")
    print(report["comparability_note"])
    print(ACCURACY_NOTE)
    versions = {json.dumps(r.get("versions", {}).get("torch")) for r in report["results"]}
    if len(versions) > 1:
        print(f"warning: the rows ran with different torch versions {sorted(versions)}")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "bench_peers_quick" if args.quick else "bench_peers"
    json_path, png_path = args.out / f"{stem}.json", args.out / f"{stem}.png"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    title = f"NVE MD, diamond Si, float32, {args.threads} thread(s), {report['machine']['cpu']}"
    if any("error" not in r for r in report["results"]):
        plot(report["results"], png_path, title)
        print(f"wrote {json_path} and {png_path}")
    else:
        print(f"wrote {json_path} (no successful row: no plot)")
    failed = [f"{r['label']} @ {r['natoms']}" for r in report["results"] if "error" in r]
    if failed:
        print(f"{len(failed)} measurement(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
