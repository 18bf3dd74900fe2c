"""Adaptive MD: a 300 K silicon model in 1500 K MD, plain versus uncertainty-driven.

``si-md300`` is ``sige-small``'s architecture trained on the six 300 K silicon cells of
the shipped set (``ase_gnnp/models/si-md300.yaml``), with Mahalanobis statistics and a
conformal q̂ (α = 0.01) from held-out 300 K cells. Both runs start from the same 64-atom
crystal with the same seed at 1500 K (Langevin, 1 fs):

- plain MD: the model alone (``r_thr = ∞``);
- adaptive MD (:class:`ase_gnnp.uq.adaptive.AdaptiveMD`, ``r_thr = 1 eV/Å``): when the
  largest conformal force ball exceeds the threshold the run pauses, the Tersoff teacher
  labels the structure, every 4th label goes to the calibration pool and the others to the
  training pool, the model trains 30 steps, its statistics are refitted and q̂ is
  recalibrated, and the run goes on.

Every 10 steps the teacher also audits both runs (true largest force error and teacher
energy; never learned from). The control is the teacher's own MD with the same protocol.
Printed: reference calls, force errors along the trajectory, and whether each run stays
physical (its teacher energy per atom against the teacher's own MD, closest distance).

    python tutorials/adaptive_md_si.py                # figures in tutorials/figures (~5 min)
    python tutorials/adaptive_md_si.py --quick --out /tmp/amd
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase import units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.io import read  # noqa: E402
from ase.md.langevin import Langevin  # noqa: E402
from ase.md.velocitydistribution import Stationary, thermalize_momenta  # noqa: E402
from ase.neighborlist import neighbor_list  # noqa: E402

from ase_gnnp.data import select_frames  # noqa: E402
from ase_gnnp.teachers import tersoff_sige  # noqa: E402
from ase_gnnp.uq.adaptive import AdaptiveMD  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
R_THR = 1.0  # eV/Å


def si300_pools() -> tuple[list, list]:
    """si-md300's training cells and its calibration cells (300 K Si of the shipped sets)."""
    train = select_frames(read(DATA / "sige_tersoff_train.extxyz", ":"), ["md300"], ["Si"])
    calib = select_frames(read(DATA / "sige_tersoff_calib.extxyz", ":"), ["md300"], ["Si"])
    return train, calib


def teacher_md(steps: int, seed: int = 0, every: int = 10) -> dict:
    """The control: the teacher's own Langevin MD with the same protocol (1500 K, 1 fs,
    friction 0.01/fs, 64 atoms); energy per atom and closest distance every ``every`` steps."""
    atoms = bulk("Si", "diamond", a=5.432, cubic=True) * (2, 2, 2)
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, 1500.0, rng=rng)
    Stationary(atoms)
    atoms.calc = tersoff_sige()
    dyn = Langevin(atoms, units.fs, temperature_K=1500.0, friction=0.01 / units.fs,
                   fixcm=False, rng=rng)  # fmt: skip
    step, energy, dmin = [], [], []
    for k in range(1, steps // every + 1):
        dyn.run(every)
        step.append(k * every)
        energy.append(atoms.get_potential_energy() / len(atoms))
        dmin.append(neighbor_list("d", atoms, 3.0).min())
    step, energy = np.array(step), np.array(energy)
    half = step >= step.max() / 2
    return {"step": step, "energy": energy, "dmin": np.array(dmin),
            "mean_second_half": float(energy[half].mean()),
            "std_second_half": float(energy[half].std())}  # fmt: skip


def run(name: str, r_thr: float, steps: int, out: Path, train, calib) -> dict:
    folder = out / f"adaptive_md_si_{name}"
    shutil.rmtree(folder, ignore_errors=True)  # this script's own scratch folder
    atoms = bulk("Si", "diamond", a=5.432, cubic=True) * (2, 2, 2)
    driver = AdaptiveMD("si-md300", tersoff_sige(), atoms, train, calib, folder, r_thr,
                        temperature_K=1500.0, audit_every=10, trajectory_every=10, seed=0,
                        progress=True)  # fmt: skip
    summary = driver.run(steps)
    log = np.genfromtxt(folder / "steps.csv", delimiter=",", names=True)
    audited = log[~np.isnan(log["audit_max_error"])]
    dmin = np.array([neighbor_list("d", a, 3.0).min()
                     for a in read(folder / "trajectory.extxyz", ":")])  # fmt: skip
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    return {"summary": summary, "log": log, "audited": audited, "dmin": dmin,
            "natoms": len(atoms), "events": events}  # fmt: skip


def figures(result: dict, teacher: dict) -> dict:
    a, n = result["audited"], result["natoms"]
    half = a["step"] >= a["step"].max() / 2
    e_ref = a["audit_epot_eV"] / n
    return {
        "steps": int(result["summary"]["steps"]),
        "reference_calls": int(result["summary"]["events"]),
        "median_max_force_error": float(np.median(a["audit_max_error"])),
        "median_max_force_error_second_half": float(np.median(a["audit_max_error"][half])),
        "teacher_energy_per_atom_second_half": float(np.mean(e_ref[half])),
        "teacher_energy_excess_per_atom": float(np.mean(e_ref[half]) - teacher["mean_second_half"]),
        "model_minus_teacher_energy_per_atom": float(
            np.mean((a["epot_eV"][half] - a["audit_epot_eV"][half]) / n)
        ),
        "min_distance": float(result["dmin"].min()),
        # physical: the same energy as the teacher's own MD (within 0.03 eV/atom, a few
        # standard errors of a run's mean) and no atoms closer than 1.9 Å (the teacher's
        # own MD keeps them > 2.0 Å apart)
        "physical": bool(
            abs(np.mean(e_ref[half]) - teacher["mean_second_half"]) < 0.03
            and result["dmin"].min() > 1.9
        ),
    }


def plot(results: dict, teacher: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, r in results.items():
        a = r["audited"]
        axes[0].semilogy(a["step"], a["audit_max_error"], ".-", ms=3, label=name)
        axes[1].plot(a["step"], a["audit_epot_eV"] / r["natoms"], ".-", ms=3, label=name)
        axes[2].semilogy(r["log"]["step"], r["log"]["max_radius"], lw=0.8, label=name)
    events = results["adaptive"]["events"]
    axes[2].plot([e["step"] for e in events], [e["max_radius"] for e in events], "kx", ms=4,
                 label="reference calls (R before learning)")  # fmt: skip
    axes[0].set_ylim(bottom=1e-2)
    axes[2].axhline(R_THR, color="r", ls="--", lw=1, label=f"r_thr = {R_THR} eV/Å")
    axes[1].plot(teacher["step"], teacher["energy"], color="grey", lw=1,
                 label="the teacher's own MD")  # fmt: skip
    axes[0].set_ylabel("true max force error (eV/Å)")
    axes[1].set_ylabel("teacher energy (eV/atom)")
    axes[2].set_ylabel("max conformal ball radius (eV/Å)")
    for ax in axes:
        ax.set_xlabel("MD step (1 fs, 1500 K)")
        ax.legend(fontsize=8)
    fig.suptitle("si-md300 (trained at 300 K) in 1500 K MD: plain vs adaptive")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tutorials" / "figures")
    parser.add_argument(
        "--runs",
        type=Path,
        default=ROOT / "runs" / "tutorials",
        help="scratch folder for the MD run folders (replaced on each run)",
    )
    parser.add_argument("--quick", action="store_true", help="40 steps each")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="'where' used without 'out'")
    args.out.mkdir(parents=True, exist_ok=True)
    steps = 40 if args.quick else args.steps
    t0 = time.perf_counter()
    train = select_frames(read(DATA / "sige_tersoff_train.extxyz", ":"), ["md300"], ["Si"])
    calib = select_frames(read(DATA / "sige_tersoff_calib.extxyz", ":"), ["md300"], ["Si"])
    teacher = teacher_md(steps)
    results = {name: run(name, r_thr, steps, args.runs, train, calib)
               for name, r_thr in (("plain", np.inf), ("adaptive", R_THR))}  # fmt: skip
    report = {name: figures(r, teacher) for name, r in results.items()}
    report["teacher_md"] = {k: teacher[k] for k in ("mean_second_half", "std_second_half")}
    report["teacher_md"]["min_distance"] = float(teacher["dmin"].min())
    print(f" teacher: its own MD, energy {teacher['mean_second_half']:.4f} ± "
          f"{teacher['std_second_half']:.4f} eV/atom in the second half, closest distance "
          f"{teacher['dmin'].min():.2f} Å")  # fmt: skip
    for name in ("plain", "adaptive"):
        f = report[name]
        print(f"{name:>8}: {f['reference_calls']} reference calls in {f['steps']} steps; "
              f"true max force error median {f['median_max_force_error']:.2f} eV/Å "
              f"({f['median_max_force_error_second_half']:.2f} in the second half); teacher "
              f"energy {f['teacher_energy_excess_per_atom']:+.3f} eV/atom from the teacher's own "
              f"MD; model - teacher {f['model_minus_teacher_energy_per_atom']:+.3f} eV/atom; "
              f"closest distance {f['min_distance']:.2f} Å; "
              f"{'physical' if f['physical'] else 'UNPHYSICAL'}")  # fmt: skip
    suffix = "_quick" if args.quick else ""
    plot(results, teacher, args.out / f"adaptive_md_si{suffix}.png")
    (args.out / f"adaptive_md_si{suffix}.json").write_text(json.dumps(report, indent=2))
    print(f"figure: {args.out / f'adaptive_md_si{suffix}.png'} "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
