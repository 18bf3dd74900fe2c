"""Long range on BKS SiO₂: hybrid (charges + Ewald) versus short-range-only model.

Trains two models of the same size with the same epoch budget on
``data/sio2_bks_train.extxyz``, energies/forces/stress only (the exact BKS charges in the
file are never used for training): the hybrid of the shipped ``sio2-bks`` config
(``ase_gnnp/models/sio2-bks.yaml``) and the same network with ``long_range="none"``. Then
reports, on the held-out ``data/sio2_bks_test.extxyz`` (which adds 162-atom cells larger
than any training cell), the force and energy MAE per ``config_type`` for both and the
hybrid's mean learned charge of Si and O against the teacher's +2.4 / -1.2 e.

Acceptance targets of the long-range issue: mean Si charge within 10 % of +2.4 (O of
-1.2); the hybrid's held-out force MAE at most half the short-range model's.

    python tutorials/sio2_long_range.py                     # full run (both models)
    python tutorials/sio2_long_range.py --quick --out /tmp/s  # smoke test, ~1 minute

Results are printed and saved as JSON in ``--out`` (with both runs' learning curves); the
hybrid's ``model.pt`` is what ships as ``sio2-bks``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from ase.io import write

from ase_gnnp import GNNPCalculator, load_model
from ase_gnnp.config import ModelConfig
from ase_gnnp.data import DataKeys, read_structures
from ase_gnnp.evaluate import evaluate_structures
from ase_gnnp.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "ase_gnnp" / "models" / "sio2-bks.yaml"
#: energies, forces, stress only: the teacher's charges are never seen in training
KEYS = DataKeys(charges="")


def train(name: str, config: TrainConfig, args) -> tuple[Path, float]:
    out = args.out / name
    config = config.updated(out=str(out), data=str(args.train), threads=args.threads)
    start = time.perf_counter()
    Trainer(config, overwrite=args.overwrite, progress=True).run()
    return out / "model.pt", time.perf_counter() - start


def mean_charges(model_path: Path, frames) -> dict[str, float]:
    calc = GNNPCalculator(model_path, dtype=torch.float64)
    q = {14: [], 8: []}
    for atoms in frames:
        charges = calc.get_charges(atoms)
        for z in q:
            q[z] += charges[atoms.numbers == z].tolist()
    return {"Si": float(np.mean(q[14])), "O": float(np.mean(q[8]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=ROOT / "data" / "sio2_bks_train.extxyz")
    parser.add_argument("--test", type=Path, default=ROOT / "data" / "sio2_bks_test.extxyz")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "sio2_long_range")
    parser.add_argument("--config", type=Path, default=CONFIG, help="hybrid's training config")
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 epochs, a tiny model")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig.from_yaml(args.config)
    if args.epochs:
        config = config.updated(epochs=args.epochs)
    test = read_structures(args.test, KEYS)
    if args.quick:  # a tiny model on every 8th structure, two epochs: a smoke test
        tiny = ModelConfig(cutoff=4.0, channels=4, lmax=1, coulomb_cutoff=6.0,
                           long_range="ewald", coulomb_damping=2.0)  # fmt: skip
        config = config.updated(epochs=2, max_minutes=0.0, model=tiny)
        args.out.mkdir(parents=True, exist_ok=True)
        subset = args.out / "train_subset.extxyz"
        write(subset, read_structures(args.train, KEYS)[::8], format="extxyz")
        args.train, test = subset, [a for a in test if len(a) <= 72][::6]
    if config.model.long_range == "none":
        raise SystemExit(f"{args.config} is not a hybrid model config (long_range='none')")
    report = {"epochs": config.epochs, "train": config.to_dict(), "runs": {}}
    short = config.updated(model=ModelConfig.from_dict({**config.model.to_dict(),
                                                        "long_range": "none"}))  # fmt: skip
    for name, run_config in (("hybrid", config), ("short_range", short)):
        path, seconds = train(name, run_config, args)
        summary = evaluate_structures(load_model(path), test, KEYS)
        report["runs"][name] = {
            "train_seconds": seconds,
            "force_mae": summary["force_mae"],
            "energy_mae_per_atom": summary["energy_mae_per_atom"],
            "per_config_type": {
                k: {name: v.get(name) for name in ("force_mae", "energy_mae_per_atom")}
                for k, v in summary["per_config_type"].items()
            },
        }
        if name == "hybrid":
            report["runs"][name]["mean_charge"] = mean_charges(path, test)

    short, hybrid = report["runs"]["short_range"], report["runs"]["hybrid"]
    report["force_mae_ratio"] = hybrid["force_mae"] / short["force_mae"]
    (args.out / "sio2_long_range.json").write_text(json.dumps(report, indent=2))
    print(f"\nBKS SiO2 held-out set ({len(test)} structures), {config.epochs} epochs each")
    print(f"{'config_type':<12}{'F MAE short':>14}{'F MAE hybrid':>14}   meV/Å")
    for group in short["per_config_type"]:
        f_s = 1000 * short["per_config_type"][group]["force_mae"]
        f_h = 1000 * hybrid["per_config_type"][group]["force_mae"]
        print(f"{group:<12}{f_s:>14.1f}{f_h:>14.1f}")
    print(f"{'ALL':<12}{1000 * short['force_mae']:>14.1f}{1000 * hybrid['force_mae']:>14.1f}")
    print(f"hybrid / short-range force MAE: {report['force_mae_ratio']:.2f} (target <= 0.5)")
    q = hybrid["mean_charge"]
    print(f"mean learned charge: Si {q['Si']:+.3f} e (teacher +2.4), O {q['O']:+.3f} e (-1.2)")
    print(f"saved {args.out / 'sio2_long_range.json'}")


if __name__ == "__main__":
    main()
