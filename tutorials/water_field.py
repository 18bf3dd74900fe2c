"""Water in an electric field: dipoles and polarizabilities of the shipped ``water-pbe0``.

``water-pbe0`` is a hybrid model (charge equilibration + Coulomb, field as an l=1 input)
trained on PySCF PBE0/def2-SVPD water monomers, dimers and trimers in random uniform fields
up to 0.5 V/Å (``data/make_water_pyscf.py``). Its dipole is ``-∂E/∂𝓔`` and its
polarizability ``-∂²E/∂𝓔²`` by autograd: nothing is fitted to dipoles separately.

This script evaluates a model on the held-out ``data/water_pbe0_field_test.extxyz``
(structures never trained on): energy, force, dipole and polarizability errors, the
isotropic polarizability ``tr(α)/3`` relative error, and a plot of predicted versus
reference dipole components and isotropic polarizabilities
(``water_field_dipoles.png``). It also prints the dipole of one monomer as the field is
ramped along its symmetry axis, whose slope is the model's polarizability.

Acceptance targets of the long-range issue: dipole MAE ≤ 0.02 e·Å, isotropic
polarizability within 10 %.

    python tutorials/water_field.py                            # shipped water-pbe0
    python tutorials/water_field.py --model runs/water-pbe0/model.pt
    python tutorials/water_field.py --quick --out /tmp/w       # a few structures (CI)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.build import molecule  # noqa: E402

from ase_gnnp import GNNPCalculator, load_model  # noqa: E402
from ase_gnnp.data import read_structures  # noqa: E402
from ase_gnnp.evaluate import evaluate_structures, format_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def predictions(calc: GNNPCalculator, frames) -> dict[str, list]:
    """Reference and predicted dipoles (e·Å) and isotropic polarizabilities (e·Å²/V)."""
    rows: dict[str, list] = {"group": [], "mu_ref": [], "mu_pred": [], "a_ref": [], "a_pred": []}
    for atoms in frames:
        ref = atoms.calc.results
        atoms = atoms.copy()
        atoms.calc = calc
        rows["group"].append(atoms.info.get("config_type", "-"))
        rows["mu_ref"].append(np.asarray(ref["dipole"]))
        rows["mu_pred"].append(atoms.get_dipole_moment())
        if "polarizability" in atoms.info:
            rows["a_ref"].append(np.trace(np.asarray(atoms.info["polarizability"])) / 3)
            rows["a_pred"].append(np.trace(calc.get_property("polarizability", atoms)) / 3)
    return rows


def plot(rows: dict, path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
    mu_ref, mu_pred = np.array(rows["mu_ref"]), np.array(rows["mu_pred"])
    groups = np.array(rows["group"])
    for group in sorted(set(groups)):
        sel = groups == group
        ax1.scatter(mu_ref[sel].ravel(), mu_pred[sel].ravel(), s=8, label=group, alpha=0.7)
    lim = np.abs(mu_ref).max() * 1.1
    ax1.plot([-lim, lim], [-lim, lim], "k-", lw=0.8)
    mae = np.abs(mu_pred - mu_ref).mean()
    ax1.set(xlabel="PBE0 dipole component (e·Å)", ylabel="model dipole component (e·Å)",
            title=f"dipoles in a field, MAE {mae:.4f} e·Å")  # fmt: skip
    ax1.legend()
    if rows["a_ref"]:
        a_ref, a_pred = np.array(rows["a_ref"]), np.array(rows["a_pred"])
        ax2.scatter(a_ref, a_pred, s=12)
        lo, hi = 0.9 * a_ref.min(), 1.1 * a_ref.max()
        ax2.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        rel = 100 * np.abs(a_pred / a_ref - 1).mean()
        ax2.set(xlabel="PBE0 tr(α)/3 (e·Å²/V)", ylabel="model tr(α)/3 (e·Å²/V)",
                title=f"isotropic polarizability, mean error {rel:.1f} %")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def field_ramp(calc: GNNPCalculator) -> list[tuple[float, float]]:
    """Dipole along the C2 axis of a relaxed-geometry monomer versus field along that axis."""
    atoms = molecule("H2O")  # C2 axis along z
    ramp = []
    for strength in np.linspace(-0.5, 0.5, 5):
        atoms.info["electric_field"] = [0.0, 0.0, float(strength)]
        atoms.calc = calc
        ramp.append((float(strength), float(atoms.get_dipole_moment()[2])))
    return ramp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="water-pbe0", help="checkpoint or shipped name")
    parser.add_argument("--test", type=Path, default=ROOT / "data" / "water_pbe0_field_test.extxyz")
    parser.add_argument("--out", type=Path, default=ROOT / "tutorials" / "figures")
    parser.add_argument("--quick", action="store_true", help="every 10th test structure")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    frames = read_structures(args.test)
    if args.quick:
        frames = frames[::10]
    model = load_model(args.model, dtype=torch.float64)
    summary = evaluate_structures(model, frames)
    print(f"model {args.model} on {args.test.name} ({len(frames)} held-out structures)")
    print(format_table(summary))

    calc = GNNPCalculator(model, dtype=torch.float64)
    rows = predictions(calc, frames)
    png = args.out / "water_field_dipoles.png"
    plot(rows, png)
    ramp = field_ramp(calc)
    slope = (ramp[-1][1] - ramp[0][1]) / (ramp[-1][0] - ramp[0][0])
    print("monomer dipole along its C2 axis (z) versus field along z:")
    for strength, mu in ramp:
        print(f"  field {strength:+.2f} V/Å   μ_z {mu:+.4f} e·Å")
    print(f"  slope {slope:.4f} e·Å²/V (α_zz of the monomer)")

    report = {
        "model": str(args.model),
        "test_set": str(args.test.name),
        "n_structures": len(frames),
        "metrics": summary,
        "field_ramp": ramp,
        "targets": {"dipole_mae": 0.02, "polarizability_iso_rel_mae": 0.10},
    }
    name = "water_field_quick.json" if args.quick else "water_field.json"
    (args.out / name).write_text(json.dumps(report, indent=2))
    print(f"dipole MAE {summary['dipole_mae']:.4f} e·Å (target <= 0.02)")
    if "polarizability_iso_rel_mae" in summary:
        print(
            f"isotropic polarizability error {100 * summary['polarizability_iso_rel_mae']:.1f} % "
            "(target <= 10 %)"
        )
    print(f"saved {png} and {args.out / name}")


if __name__ == "__main__":
    main()
