"""Trust: latent Mahalanobis OOD score and conformal force balls on shipped models.

Three studies, all on data never trained on (``data/make_sige_uq.py``):

1. Out-of-distribution detection. ``si-md300`` (trained on 300 K silicon only) scores
   fresh 300 K silicon (in distribution) against hot MD (1500 K, 2500 K), surfaces,
   cells compressed to 85 % of their volume and germanium (an element it never saw,
   embedded through its element descriptors). Per group: AUROC of the per-structure
   score (max and mean over atoms) as an OOD detector, and the Spearman correlation of
   per-atom score and per-atom force error. ``sige-small`` is scored on the same groups.
2. Conformal force balls for ``sige-small``: calibrated on ``sige_tersoff_calib`` and
   tested on ``sige_tersoff_holdout`` (exchangeable, split by structure), for α = 0.1,
   0.05 and 0.01 with the plain (constant) and the normalised (Mahalanobis) score:
   coverage with a structure-bootstrap 95 % interval, and mean ball radius over the force
   MAE. Then coverage under shift (the groups of study 1).
3. Plain 1500 K MD of ``si-md300``: the largest Mahalanobis score and ball rise before the
   simulation goes unphysical (the teacher's energy runs away from the teacher's own MD
   with the same protocol, or atoms come too close).

    python tutorials/uq_si.py                # figures in tutorials/figures (~3 min)
    python tutorials/uq_si.py --quick --out /tmp/uq
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
from adaptive_md_si import si300_pools, teacher_md  # noqa: E402 (tutorials/adaptive_md_si.py)
from ase.build import bulk  # noqa: E402
from ase.io import read  # noqa: E402
from ase.neighborlist import neighbor_list  # noqa: E402

from ase_gnnp import load_model  # noqa: E402
from ase_gnnp.data import config_types, select_frames  # noqa: E402
from ase_gnnp.teachers import tersoff_sige  # noqa: E402
from ase_gnnp.uq import (  # noqa: E402
    ConformalForces,
    coverage,
    predict_atoms,
    uq_report,
    uq_statistics,
)
from ase_gnnp.uq.adaptive import AdaptiveMD  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
ALPHAS = (0.1, 0.05, 0.01)
WINDOWS = {0.1: (0.88, 0.92), 0.05: (0.94, 0.96), 0.01: (0.985, 0.995)}


def conformal_study(model, calib, test, shifted) -> dict:
    stats = uq_statistics(model).mahalanobis
    pc, pt = predict_atoms(model, calib), predict_atoms(model, test)
    mae = float(np.abs(pt.ref_forces - pt.forces).mean())
    out = {"force_mae": mae, "n_calibration": [len(calib), len(pc.errors)],
           "n_test": [len(test), len(pt.errors)], "alphas": {}}  # fmt: skip
    shifted_pred = {g: predict_atoms(model, f) for g, f in shifted.items()}
    for alpha in ALPHAS:
        row = {}
        for score in ("constant", "mahalanobis"):
            c = ConformalForces.calibrate(pc.errors, pc.distances, alpha, score,
                                          stats.train_median, len(calib))  # fmt: skip
            radii = c.radii(pt.distances)
            row[score] = {
                "qhat": c.qhat,
                "coverage": coverage(pt.errors, radii, pt.structure),
                "mean_radius_over_mae": float(radii.mean() / mae),
                "shifted": {
                    g: coverage(p.errors, c.radii(p.distances), p.structure)["coverage"]
                    for g, p in shifted_pred.items()
                },
            }
        out["alphas"][str(alpha)] = row
    return out


def unstable_md(steps: int, out: Path, seed: int = 0) -> dict:
    """Plain MD (no learning: r_thr = ∞) of si-md300 at 1500 K, audited by the teacher."""
    train, calib = si300_pools()
    atoms = bulk("Si", "diamond", a=5.432, cubic=True) * (2, 2, 2)
    run = out / "uq_si_plain_md"
    shutil.rmtree(run, ignore_errors=True)  # this script's own scratch folder
    driver = AdaptiveMD("si-md300", tersoff_sige(), atoms, train, calib, run, np.inf,
                        temperature_K=1500.0, audit_every=2, trajectory_every=2, seed=seed,
                        progress=False)  # fmt: skip
    driver.run(steps)
    log = np.genfromtxt(run / "steps.csv", delimiter=",", names=True)
    frames = read(run / "trajectory.extxyz", ":")
    dmin = np.array([neighbor_list("d", a, 3.0).min() for a in frames])
    audited = log[~np.isnan(log["audit_max_error"])]
    # the control: the teacher's own MD with the same protocol
    teacher = teacher_md(steps)
    e_hot, d_hot = teacher["mean_second_half"], float(teacher["dmin"].min())
    runaway = audited["audit_epot_eV"] / len(atoms) > e_hot + 0.1  # eV/atom, ~5 σ
    close = dmin < 1.9  # Å; the teacher's 1500 K MD keeps its atoms > 2.0 Å apart
    broken = runaway | close[: len(runaway)]
    first_broken = int(audited["step"][np.argmax(broken)]) if broken.any() else None
    alarm = log["max_radius"] > 1.0  # the adaptive tutorial's threshold, eV/Å
    first_alarm = int(log["step"][np.argmax(alarm)]) if alarm.any() else None
    return {"log": log, "dmin": dmin, "audited": audited, "first_unphysical_step": first_broken,
            "first_alarm_step": first_alarm, "alarm_radius": 1.0, "teacher_e_1500K": e_hot,
            "teacher_dmin_1500K": d_hot}  # fmt: skip


def plot(ood: dict, conformal: dict, md: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    groups = list(ood["si-md300"]["shifted"])
    x = np.arange(len(groups))
    for k, name in enumerate(("si-md300", "sige-small")):
        ax.bar(
            x + 0.4 * k - 0.2,
            [ood[name]["shifted"][g]["auroc_max"] for g in groups],
            0.4,
            label=name,
        )
    ax.axhline(0.5, color="grey", ls=":")
    ax.set_xticks(x, groups, rotation=20)
    ax.set_ylabel("AUROC of max score")
    ax.set_title("OOD detection vs fresh in-distribution data")
    ax.legend()
    ax = axes[1]
    for score, marker, dx in (("constant", "o", -0.002), ("mahalanobis", "s", 0.002)):
        cov = [conformal["alphas"][str(a)][score]["coverage"] for a in ALPHAS]
        y = [c["coverage"] for c in cov]
        err = [[c["coverage"] - c["low"] for c in cov], [c["high"] - c["coverage"] for c in cov]]
        ax.errorbar([1 - a + dx for a in ALPHAS], y, yerr=err, fmt=marker, capsize=3,
                    label=score)  # fmt: skip
    ax.plot([0.88, 1.0], [0.88, 1.0], "k:", lw=1)
    ax.set_xlabel("target coverage 1 - α")
    ax.set_ylabel("held-out coverage (95 % bootstrap)")
    ax.set_title("sige-small conformal force balls")
    ax.legend()
    ax = axes[2]
    log, audited = md["log"], md["audited"]
    ax.semilogy(log["step"], log["max_mahalanobis"], label="max Mahalanobis score")
    ax.semilogy(log["step"], log["max_radius"], label="max ball radius R (eV/Å)")
    ax.semilogy(audited["step"], audited["audit_max_error"], "k.", ms=3,
                label="true max force error (eV/Å)")  # fmt: skip
    for step, style, text in ((md["first_alarm_step"], "--", "R > 1 eV/Å"),
                              (md["first_unphysical_step"], "-", "unphysical")):  # fmt: skip
        if step is not None:
            ax.axvline(step, color="r", ls=style, lw=1, label=f"{text} (step {step})")
    ax.set_ylim(bottom=1e-2)
    ax.set_xlabel("MD step (1 fs), si-md300 at 1500 K")
    ax.set_title("plain MD: the score rises first")
    ax.legend(fontsize=8)
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
    parser.add_argument("--quick", action="store_true", help="fewer structures, short MD")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="'where' used without 'out'")
    warnings.filterwarnings("ignore", message="element.*were not in this model")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    take = (lambda frames: frames[::8]) if args.quick else (lambda frames: frames)

    shift = read(DATA / "si_uq_shift.extxyz", ":")
    groups = config_types(shift)
    shifted = {g: take([a for a, t in zip(shift, groups) if t == g])
               for g in sorted(set(groups)) if g != "md300"}  # fmt: skip
    fresh_si = [a for a, t in zip(shift, groups) if t == "md300"]
    holdout = read(DATA / "sige_tersoff_holdout.extxyz", ":")
    si300 = select_frames(holdout, ["md300"], ["Si"]) + fresh_si
    ood = {
        "si-md300": uq_report(load_model("si-md300"), si300, shifted),
        "sige-small": uq_report(load_model("sige-small"), take(holdout), shifted),
    }
    print("1. OOD detection (per-structure score: max / mean over atoms)")
    for name, rows in ood.items():
        base = rows["in_distribution"]
        print(f"  {name}: in-distribution force MAE {base['force_mae']:.3f} eV/Å, "
              f"Spearman(score, error) {base['spearman']:.2f} in distribution, "
              f"{rows['pooled_spearman']:.2f} over all atoms")  # fmt: skip
        for g, r in rows["shifted"].items():
            print(f"    {g:<11} AUROC {r['auroc_max']:.3f} / {r['auroc_mean']:.3f}   "
                  f"Spearman {r['spearman']:+.2f}   "
                  f"force MAE {r['force_mae']:.3f} eV/Å")  # fmt: skip

    sige = load_model("sige-small")
    calib = take(read(DATA / "sige_tersoff_calib.extxyz", ":"))
    conformal = conformal_study(sige, calib, take(holdout), shifted)
    print(f"2. sige-small conformal force balls: calibration {conformal['n_calibration']}, "
          f"test {conformal['n_test']} (structures, atoms); force MAE "
          f"{conformal['force_mae']:.4f} eV/Å")  # fmt: skip
    for alpha in ALPHAS:
        lo, hi = WINDOWS[alpha]
        for score in ("constant", "mahalanobis"):
            r = conformal["alphas"][str(alpha)][score]
            c = r["coverage"]
            ok = "in" if lo <= c["coverage"] <= hi else "OUTSIDE"
            shifted_text = ", ".join(f"{g} {v:.3f}" for g, v in r["shifted"].items())
            print(f"  α={alpha:<5} {score:<12} coverage {c['coverage']:.4f} "
                  f"[{c['low']:.4f}, {c['high']:.4f}] ({ok} [{lo}, {hi}])  "
                  f"mean R / MAE {r['mean_radius_over_mae']:.2f}   "
                  f"shifted: {shifted_text}")  # fmt: skip

    md = unstable_md(60 if args.quick else 400, args.runs)
    print(f"3. plain si-md300 MD at 1500 K: first step with R > {md['alarm_radius']} eV/Å: "
          f"{md['first_alarm_step']}; first unphysical step: {md['first_unphysical_step']} "
          f"(teacher energy 0.1 eV/atom above the teacher's own MD, "
          f"{md['teacher_e_1500K']:.3f} eV/atom, or atoms closer than 1.9 Å; the teacher's "
          f"own MD keeps them {md['teacher_dmin_1500K']:.2f} Å apart)")  # fmt: skip

    suffix = "_quick" if args.quick else ""
    plot(ood, conformal, md, args.out / f"uq_si{suffix}.png")
    summary = {"ood": ood, "conformal": conformal,
               "plain_md": {k: md[k] for k in ("first_alarm_step", "first_unphysical_step",
                                               "alarm_radius", "teacher_e_1500K",
                                               "teacher_dmin_1500K")}}  # fmt: skip
    (args.out / f"uq_si{suffix}.json").write_text(json.dumps(summary, indent=2))
    print(f"figures: {args.out / f'uq_si{suffix}.png'} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
