"""Generate a deliberately imbalanced fcc alloy set with ASE's EMT teacher.

Writes next to this script, before any weighting is tried (fixed seeds):

- ``emt_fair_train.extxyz`` (seed 0, 200 structures): Cu, Ni and Ag are common (random
  fcc alloys of one to three of them); Au and Pd are rare: each is present in 8
  structures (4 %), alloyed with the common metals.
- ``emt_fair_test.extxyz`` (seed 1, 100 structures): balanced, every element in about the
  same number of structures, so each element's error is measured on enough atoms.
- ``emt_fair_val.extxyz`` (seed 2, 100 structures): a second balanced draw for choosing
  the weighting (exponent and cap); a 10 % split of the imbalanced training set leaves one
  or two structures per rare element, too few to see a rare element's error. Added after
  the first study; the training and test sets are unchanged by it.
- ``emt_fair_balanced.extxyz`` (seed 3, 200 structures): the training set's size with
  the balanced plan (40 structures each feature Au and Pd): the reference that tells how
  much of a rare element's error is due to the imbalance at all (a model trained on it
  is the best any weighting of the imbalanced set could hope for). Added after the
  weighting studies; the other three files are unchanged by it.

Every structure is a 32-atom fcc cell (2×2×2 conventional) with random occupations,
Vegard lattice constant, ±3 % strain and a 0.02–0.1 Å rattle; ``info`` records
``config_type`` ("common" or "rare_Au" / "rare_Pd"), ``teacher`` and ``seed``; labels are
calculator results. Run: ``python data/make_emt_fairness.py`` (about a minute). Refuses
to overwrite existing files unless ``--force``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _script import generate_sets  # data/_script.py
from ase.build import bulk
from ase.data import atomic_numbers
from make_emt_alloys import label, strain
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
A = {"Cu": 3.61, "Ni": 3.52, "Ag": 4.09, "Au": 4.08, "Pd": 3.89}
COMMON, RARE = ("Cu", "Ni", "Ag"), ("Au", "Pd")


def cell(symbols: list[str], rng: np.random.Generator):
    """A 32-atom fcc cell with a random composition over ``symbols``."""
    share = rng.dirichlet(np.ones(len(symbols)))
    atoms = bulk("Cu", "fcc", a=float(share @ [A[s] for s in symbols]), cubic=True) * (2, 2, 2)
    numbers = rng.choice([atomic_numbers[s] for s in symbols], size=len(atoms), p=share)
    numbers[: len(symbols)] = [atomic_numbers[s] for s in symbols]  # each one present
    atoms.numbers = rng.permutation(numbers)
    atoms = strain(atoms, 0.03, rng)
    atoms.rattle(rng.uniform(0.02, 0.1), seed=int(rng.integers(2**31)))
    return atoms


def generate(seed: int, scale: float) -> list:
    rng = np.random.default_rng(seed)
    plan = []
    if seed == 0:  # imbalanced: 184 common, 8 with Au, 8 with Pd
        plan += [("common", None)] * 184 + [("rare_Au", "Au")] * 8 + [("rare_Pd", "Pd")] * 8
    else:  # balanced: 20 per element as the featured one (per 100 structures)
        n = round(20 * scale)
        plan += [("common", None)] * (3 * n) + [("rare_Au", "Au")] * n + [("rare_Pd", "Pd")] * n
    frames = []
    for config_type, rare in tqdm(plan, desc=f"EMT fairness (seed {seed})"):
        k = int(rng.integers(1, 4))
        symbols = list(rng.choice(COMMON, size=k, replace=False))
        if rare is None and seed != 0:  # balanced sets: common elements one by one
            symbols = [COMMON[len(frames) % 3]] + symbols[1:]
            symbols = list(dict.fromkeys(symbols))
        if rare is not None:
            symbols = [rare, *symbols[: max(1, k - 1)]]
        frames.append(label(cell(symbols, rng), config_type, "-".join(symbols), seed))
    return frames


def main() -> None:
    jobs = [
        ("emt_fair_train.extxyz", 0, 1.0),
        ("emt_fair_test.extxyz", 1, 1.0),
        ("emt_fair_val.extxyz", 2, 1.0),
        ("emt_fair_balanced.extxyz", 3, 2.0),
    ]
    generate_sets(__doc__.splitlines()[0], HERE, generate, jobs)


if __name__ == "__main__":
    main()
