"""Benchmark on real DFT data: mlearn Si (Zuo et al., J. Phys. Chem. A 124, 731 (2020)).

1. Train on ``Si_train.extxyz`` with a fixed, ``config_type``-stratified 10 % validation
   split (seed 0; used only for early stopping / model selection) within a wall-time budget
   (default 20 minutes), and report validation errors and training wall time.
2. Time NVE MD (forces + stress every step) for 64-, 512- and 4,096-atom diamond Si cells
   with the trained model.

Run nothing else heavy on the machine meanwhile (2 cores: oversubscription distorts timings
30-100x). Results are printed and saved as JSON (and the learning curve as PNG) in ``--out``.

    python tutorials/bench_mlearn_si.py                  # full: 20 min training + MD timings
    python tutorials/bench_mlearn_si.py --quick --out /tmp/q   # smoke test, ~1 minute
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from ase_gnnp import GNNPCalculator
from ase_gnnp.config import ModelConfig
from ase_gnnp.md import md_throughput
from ase_gnnp.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mlearn" / "Si_train.extxyz"

#: architecture used for both the accuracy and the speed figures
MODEL = ModelConfig(cutoff=5.0, channels=32, lmax=2, num_layers=2, correlation=3, last_lmax=1)
#: MACE (64x0e+64x1o, L=1, r=5 Å, float32) on this machine, 2 threads, forces + stress
MACE_REFERENCE = {64: 723.0, 512: 459.0, 4096: 284.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_mlearn_si")
    parser.add_argument("--minutes", type=float, default=20.0, help="training time budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096])
    parser.add_argument("--md-steps", type=int, default=10)
    parser.add_argument("--lmax", type=int, default=MODEL.lmax)
    parser.add_argument("--channels", type=int, default=MODEL.channels)
    parser.add_argument("--correlation", type=int, default=MODEL.correlation)
    parser.add_argument("--last-lmax", type=int, default=MODEL.last_lmax)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--energy-weight", type=float, default=10.0)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument(
        "--scheduler", choices=("plateau", "cosine", "stable-decay"), default="plateau"
    )
    parser.add_argument("--quick", action="store_true", help="2 epochs, tiny model, 64 atoms")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"mlearn data not found at {args.data}; pass --data")
    torch.set_num_threads(args.threads)

    model = replace(
        MODEL,
        lmax=args.lmax,
        channels=args.channels,
        correlation=args.correlation,
        last_lmax=args.last_lmax,
    )
    epochs = 1000
    if args.quick:
        model, epochs, args.sizes, args.md_steps = ModelConfig(cutoff=5.0, channels=8), 2, [64], 3
    config = TrainConfig(
        data=str(args.data), out=str(args.out), val_fraction=0.1, seed=0, epochs=epochs,
        batch_size=args.batch_size, lr=args.lr, min_lr=1e-5, scheduler=args.scheduler,
        energy_weight=args.energy_weight,
        forces_weight=1.0, stress_weight=1000.0, patience=40, max_minutes=args.minutes,
        threads=args.threads,
        model=model,
    )  # fmt: skip
    t0 = time.perf_counter()
    result = Trainer(config, overwrite=args.overwrite, progress=True).run()
    train_wall = time.perf_counter() - t0

    calc = GNNPCalculator(args.out / "model.pt")
    speed = [md_throughput(calc, n, steps=args.md_steps + 1) for n in args.sizes]
    val = result["val_metrics"]
    report = {
        "data": str(args.data),
        "model": model.to_dict(),
        "training": {
            k: getattr(config, k)
            for k in (
                "lr",
                "batch_size",
                "scheduler",
                "energy_weight",
                "forces_weight",
                "stress_weight",
                "max_minutes",
            )
        },  # fmt: skip
        "threads": args.threads,
        "epochs_run": result["epochs"],
        "best_epoch": result["epoch"],
        "stop_reason": result["stop_reason"],
        "train_wall_s": train_wall,
        "val_energy_mae_meV_per_atom": 1000 * val["energy_mae_per_atom"],
        "val_force_mae_meV_per_A": 1000 * val["force_mae"],
        "val_stress_mae_meV_per_A3": 1000 * val.get("stress_mae", float("nan")),
        "md": [
            {
                "natoms": s["natoms"],
                "atom_steps_per_s": s["atom_steps_per_s"],
                "ratio_to_mace_reference": s["atom_steps_per_s"] / MACE_REFERENCE[s["natoms"]]
                if s["natoms"] in MACE_REFERENCE
                else None,
            }
            for s in speed
        ],
    }
    (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    print(f"\nmlearn Si, validation split (10 %, seed 0, stratified), {args.threads} threads")
    print(f"training: {report['epochs_run']} epochs ({report['stop_reason']}), "
          f"{train_wall / 60:.1f} min wall, best epoch {report['best_epoch']}")  # fmt: skip
    print(f"energy MAE {report['val_energy_mae_meV_per_atom']:.2f} meV/atom (target <= 5)")
    print(f"force MAE  {report['val_force_mae_meV_per_A']:.1f} meV/Å (target <= 50)")
    print(f"stress MAE {report['val_stress_mae_meV_per_A3']:.3f} meV/Å^3")
    print(f"\n{'atoms':>8}{'atom-steps/s':>16}{'MACE ref':>12}{'ratio':>8}")
    for row in report["md"]:
        ref = MACE_REFERENCE.get(row["natoms"])
        ratio = f"{row['ratio_to_mace_reference']:.2f}" if ref else "-"
        print(f"{row['natoms']:>8}{row['atom_steps_per_s']:>16.0f}{ref or '-':>12}{ratio:>8}")
    print(f"saved {args.out / 'bench.json'} and {args.out / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
