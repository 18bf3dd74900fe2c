"""Predict energies, forces and stresses of a trained MACE model (worker of bench_dft.py).

Runs with the peer environment's Python (mace-torch pins e3nn 0.4.4, so it never shares the
project's environment); standard library, ASE and MACE only.

    ../.venv-peers/bin/python tutorials/_mace_predict.py MODEL IN.extxyz OUT.extxyz --threads 2
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("structures")
    parser.add_argument("out")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read, write
    from mace.calculators import MACECalculator

    torch.set_num_threads(args.threads)
    calc = MACECalculator(model_paths=args.model, device="cpu", default_dtype="float32")
    predicted = []
    for atoms in read(args.structures, ":"):
        atoms = atoms.copy()
        atoms.calc = calc
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.all():
            results["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
        predicted.append(atoms)
    write(args.out, predicted, format="extxyz")


if __name__ == "__main__":
    main()
