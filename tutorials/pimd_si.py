"""Path-integral MD of diamond Si at 100 K through i-PI: beads convergence and model error.

i-PI runs PIMD in the NVT ensemble (PILE-L thermostat) on an 8-atom diamond Si cell; the
forces come from ``ase-gnnp ipi`` socket clients, once with the shipped model and once
with its Tersoff teacher through the very same client path. For P = 1 … 32 beads it
records the centroid-virial kinetic energy per atom and a structural observable, the
mean radius of gyration of the ring polymers (the quantum spread of each nucleus), with
block-averaged statistical errors. Both converge as O(P) = O(∞) + a/P²; the fit over
P ≥ 4 gives the converged value and the discretisation error O(P) − O(∞) at each P,
while the model's own (curvature) error is the difference of the two converged values.

    python tutorials/pimd_si.py                      # P = 1 … 32, figures in tutorials/figures
    python tutorials/pimd_si.py --quick --out /tmp/p # P <= 4, a few steps (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.units import kB  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ase_gnnp.checkpoint import resolve_model_path  # noqa: E402
from ase_gnnp.integrations.ipi import IPIServer, read_properties, write_pimd_input  # noqa: E402
from ase_gnnp.workflows.runs import fingerprint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OBSERVABLES = {
    "kinetic_cv": "centroid-virial K per atom (meV)",
    "r_gyration": "ring-polymer R_g (Å)",
}


def block_mean(x: np.ndarray, blocks: int = 10) -> tuple[float, float]:
    """Mean and its standard error from ``blocks`` contiguous blocks (correlated data)."""
    parts = np.array_split(np.asarray(x, dtype=float), blocks)
    means = np.array([p.mean() for p in parts])
    return float(np.mean(x)), float(means.std(ddof=1) / np.sqrt(blocks))


def checkpoint_digest(source: list[str]) -> str | None:
    """SHA-256 of the model file a ``--model`` source names (None for a teacher)."""
    if source[0] != "--model":
        return None
    return fingerprint(resolve_model_path(source[1]))


def run_pimd(source: list[str], nbeads: int, args, workdir: Path) -> dict:
    """One i-PI run served by ``args.clients`` clients; block averages after equilibration.

    A finished run leaves ``result.json`` and ``series.npz`` in ``workdir`` and is not
    repeated when the script runs again with the same settings and the same model file
    (resume after a kill; a re-trained model under the same name runs afresh)."""
    settings = {"source": source, "checkpoint_sha256": checkpoint_digest(source),
                "nbeads": nbeads, "steps": args.steps,
                "temperature": args.temperature, "seed": args.seed}  # fmt: skip
    done = workdir / "result.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("settings") == settings and saved.get("equilibration") == args.equilibration:
            saved["series"] = dict(np.load(workdir / "series.npz"))
            return saved
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "sim.out").unlink(missing_ok=True)
    name = f"pimd_si_{uuid.uuid4().hex[:8]}"
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    xml = write_pimd_input(workdir / "input.xml", atoms, nbeads=nbeads,
                           temperature=args.temperature, steps=args.steps, unix=name,
                           seed=args.seed, timestep=1.0, tau=100.0)  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    with IPIServer(xml, unix=name) as server:
        cmd = [sys.executable, "-m", "ase_gnnp.cli", "ipi", *source, "--structure",
               str(workdir / "sim_init.extxyz"), "--unix", name]  # fmt: skip
        clients = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env) for _ in range(args.clients)]  # fmt: skip
        server.join(clients=clients)
        for c in clients:
            c.communicate(timeout=60)
    seconds = time.perf_counter() - start
    props = read_properties(workdir / "sim.out")
    keep = props["step"] >= args.equilibration
    n = len(atoms)
    out = {"nbeads": nbeads, "seconds": seconds, "steps": int(args.steps),
           "settings": settings, "equilibration": args.equilibration}  # fmt: skip
    series = {}
    for key in OBSERVABLES:
        series[key] = props[key][keep] * (1000.0 / n if key == "kinetic_cv" else 1.0)
        out[key] = block_mean(series[key])
    out["temperature_K"] = block_mean(props["temperature"][keep])
    done.write_text(json.dumps(out))
    np.savez(workdir / "series.npz", **series)
    out["series"] = series
    return out


def extrapolate(beads, values, errors) -> tuple[float, float, float]:
    """Weighted fit O(P) = O∞ + a/P² over P >= 4 (over all P > 1 when fewer than two)."""
    beads, values, errors = map(np.asarray, (beads, values, errors))
    use = beads >= 4 if np.sum(beads >= 4) >= 2 else beads > 1
    x = 1.0 / beads[use] ** 2
    w = 1.0 / np.maximum(errors[use], 1e-12)
    design = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    coef, *_ = np.linalg.lstsq(design, values[use] * w, rcond=None)
    cov = np.linalg.pinv(design.T @ design)
    return float(coef[0]), float(np.sqrt(cov[0, 0])), float(coef[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sige-small")
    parser.add_argument("--out", type=Path, default=ROOT / "tutorials" / "figures")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="i-PI run folders (default runs/pimd_si; finished runs reused)",
    )
    parser.add_argument("--quick", action="store_true", help="P = 1, 2, 4; 20 steps")
    parser.add_argument("--beads", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--equilibration", type=int, default=400, help="steps discarded")
    parser.add_argument("--temperature", type=float, default=100.0)
    parser.add_argument("--clients", type=int, default=1, help="clients sharing the beads")
    parser.add_argument("--seed", type=int, default=31415)
    parser.add_argument("--only", choices=("model", "teacher"), help="run one side (and stop)")
    args = parser.parse_args()
    if args.quick:
        args.beads, args.steps, args.equilibration = [1, 2, 4], 20, 5
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or (args.out / "pimd_runs_quick" if args.quick else ROOT / "runs" / "pimd_si")
    sources = {args.model: ["--model", args.model], "tersoff": ["--teacher", "tersoff"]}

    if args.only:
        keep = args.model if args.only == "model" else "tersoff"
        sources = {keep: sources[keep]}
    results: dict = {name: [] for name in sources}
    jobs = [(name, p) for p in args.beads for name in sources]
    for name, p in tqdm(jobs, desc="i-PI runs"):
        results[name].append(run_pimd(sources[name], p, args, work / f"{name}_P{p}"))
    if args.only:
        print(f"ran the {args.only} side only; run again without --only for the report")
        return

    classical = 1.5 * kB * args.temperature * 1000.0
    print(f"\ndiamond Si, 8 atoms, {args.temperature:g} K, {args.steps} steps "
          f"({args.equilibration} discarded); classical K = {classical:.2f} meV/atom")  # fmt: skip
    runs = {name: [{k: v for k, v in r.items() if k != "series"} for r in rs]
            for name, rs in results.items()}  # fmt: skip
    report: dict = {"temperature_K": args.temperature, "steps": args.steps,
                    "equilibration": args.equilibration, "runs": runs, "limits": {}}  # fmt: skip
    header = "".join(f"{f'{name} {key}':>28}" for key in OBSERVABLES for name in sources)
    print(f"{'P':>3}{header}{'s/run':>8}")
    for k, p in enumerate(args.beads):
        row = "".join(f"{results[name][k][key][0]:>19.4f} ± {results[name][k][key][1]:<6.4f}"
                      for key in OBSERVABLES for name in sources)  # fmt: skip
        print(f"{p:>3}{row}{results[args.model][k]['seconds']:>8.1f}")
    paired = {}
    for key in OBSERVABLES:
        paired[key] = []
        for a, b in zip(results[args.model], results["tersoff"]):
            m = min(len(a["series"][key]), len(b["series"][key]))
            paired[key].append(block_mean(a["series"][key][:m] - b["series"][key][:m]))
    report["paired_difference"] = paired
    for key, label in OBSERVABLES.items():
        limits = {}
        for name in sources:
            values = [r[key][0] for r in results[name]]
            errors = [r[key][1] for r in results[name]]
            inf, err, slope = extrapolate(args.beads, values, errors)
            discretisation = {str(p): v - inf for p, v in zip(args.beads, values)}
            limits[name] = {"P_inf": inf, "P_inf_error": err, "slope_1_over_P2": slope,
                            "discretisation_error": discretisation}  # fmt: skip
        # the potential's error from the paired (same-seed) differences, extrapolated too
        diff, diff_err = zip(*paired[key])
        model_error, combined, _ = extrapolate(args.beads, diff, diff_err)
        limits["model_minus_teacher"] = {"value": model_error, "error": combined,
                                         "by_P": dict(zip(map(str, args.beads), diff))}  # fmt: skip
        report["limits"][key] = limits
        p_max = args.beads[-1]
        disc = limits["tersoff"]["discretisation_error"][str(p_max)]
        print(f"{label}: P→∞ Tersoff {limits['tersoff']['P_inf']:.4f} ± "
              f"{limits['tersoff']['P_inf_error']:.4f}, {args.model} "
              f"{limits[args.model]['P_inf']:.4f} ± {limits[args.model]['P_inf_error']:.4f}; "
              f"potential error {model_error:+.4f} ± {combined:.4f}; "
              f"discretisation error at P={p_max}: {disc:+.4f}")  # fmt: skip

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex="col")
    x = 1.0 / np.asarray(args.beads, dtype=float) ** 2
    grid = np.linspace(0, 1.0 / 16, 50)  # the fitted range, P >= 4
    for col, (key, label) in enumerate(OBSERVABLES.items()):
        ax, ax_diff = axes[0, col], axes[1, col]
        for (name, style), color in zip(((args.model, "o"), ("tersoff", "s")), ("C0", "C1")):
            values = [r[key][0] for r in results[name]]
            errors = [r[key][1] for r in results[name]]
            lim = report["limits"][key][name]
            ax.errorbar(x, values, yerr=errors, fmt=style, color=color, capsize=3, label=name,
                        mfc="none" if name == "tersoff" else None)  # fmt: skip
            ax.plot(grid, lim["P_inf"] + lim["slope_1_over_P2"] * grid, "-", color=color, lw=0.8)
        ax.set(ylabel=label, title="discretisation: the trend in 1/P² (fit over P ≥ 4)")
        diff, diff_err = zip(*paired[key])
        lim = report["limits"][key]["model_minus_teacher"]
        ax_diff.errorbar(x, diff, yerr=diff_err, fmt="o", color="C2", capsize=3)
        inf = f"P→∞: {lim['value']:+.3g} ± {lim['error']:.1g}"
        ax_diff.errorbar([0], [lim["value"]], yerr=[lim["error"]], fmt="*", color="C3", ms=12,
                         capsize=3, label=inf)  # fmt: skip
        ax_diff.axhline(0, color="0.6", lw=0.6)
        ax_diff.set(xlabel="1 / P²", ylabel=f"{args.model} − Tersoff",
                    title="potential error: paired (same-seed) difference")  # fmt: skip
        ax_diff.legend(fontsize=8)
        for a in (ax, ax_diff):
            a.set_xscale("symlog", linthresh=1e-3)
            a.set_xlim(-3e-4, 1.5)
            a.title.set_fontsize(9)
    axes[0, 0].axhline(classical, color="0.5", ls=":", label="classical 3/2 k_B T")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"PIMD diamond Si, {args.temperature:g} K (i-PI, PILE-L), error bars: "
                 "block averages")  # fmt: skip
    fig.tight_layout()
    suffix = "_quick" if args.quick else ""
    png = args.out / f"pimd_si{suffix}.png"
    fig.savefig(png, dpi=120)
    path = args.out / f"pimd_si{suffix}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"saved {png} and {path}")


if __name__ == "__main__":
    main()
