"""Generate the uncertainty sets with the Tersoff (1989) Si–Ge teacher.

Writes next to this script:

- ``sige_tersoff_calib.extxyz`` (seed 2) and ``sige_tersoff_holdout.extxyz`` (seed 4):
  a conformal calibration set and a coverage test set, both drawn from the recipe of
  ``sige_tersoff_train`` (``make_sige_tersoff.generate`` at full size), so they are
  exchangeable with each other and never trained on. Full size matters: rare groups
  (a few reconstructed alloy surfaces with force errors of several eV/Å) decide the
  99 % quantile, and a small set may hold none of them.
- ``si_uq_shift.extxyz`` (seed 3): 64-atom cells labelled by ``config_type`` for the
  out-of-distribution study of a model trained on 300 K silicon (``si-md300``):
  ``md300`` (in distribution: fresh 300 K silicon snapshots), ``md1500`` and ``md2500``
  (hot silicon; 2500 K is above the teacher's melting point), ``surface`` ((100),
  (110) and (111) silicon slabs at 300 K), ``compressed`` (300 K silicon at 85 % of the
  equilibrium volume) and ``ge`` (germanium at 300 K: an element the model never saw).

Run: ``python data/make_sige_uq.py`` (about five minutes). Refuses to overwrite existing
files unless ``--force``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _script import generate_sets  # data/_script.py
from ase.build import surface
from make_sige_tersoff import crystal, generate, label, md_snapshots
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
PER_GROUP = 16


def shifted(seed: int, scale: float = 1.0) -> list:
    """The out-of-distribution groups for a 300 K silicon model (``PER_GROUP`` each)."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(PER_GROUP * scale)))
    frames = []

    def snapshots(make, temperature, config_type, per_run=4):
        for _ in range(0, n, per_run):
            for atoms in md_snapshots(make(), temperature, per_run, 40, rng):
                frames.append(label(atoms, config_type, seed))

    def silicon():
        return crystal(0.0, (2, 2, 2), rng)

    def compressed():
        atoms = silicon()
        atoms.set_cell(atoms.cell * 0.85 ** (1 / 3), scale_atoms=True)
        return atoms

    def slab():
        miller = [(1, 0, 0), (1, 1, 0), (1, 1, 1)][int(rng.integers(3))]
        atoms = surface(crystal(0.0, (1, 1, 1), rng), miller, layers=4, vacuum=5.0,
                        periodic=True)  # fmt: skip
        return atoms * (2, 1, 1) if len(atoms) < 24 else atoms

    groups = [
        (silicon, 300, "md300"),
        (silicon, 1500, "md1500"),
        (silicon, 2500, "md2500"),
        (slab, 300, "surface"),
        (compressed, 300, "compressed"),
        (lambda: crystal(1.0, (2, 2, 2), rng), 300, "ge"),
    ]
    for make, temperature, config_type in tqdm(groups, desc=f"shifted (seed {seed})"):
        snapshots(make, temperature, config_type)
    return frames


def _sets(seed: int, scale: float) -> list:
    return shifted(seed, scale) if seed == 3 else generate(seed, scale)


def main() -> None:
    jobs = [
        ("sige_tersoff_calib.extxyz", 2, 1.0),
        ("sige_tersoff_holdout.extxyz", 4, 1.0),
        ("si_uq_shift.extxyz", 3, 1.0),
    ]
    generate_sets(__doc__.splitlines()[0], HERE, _sets, jobs)


if __name__ == "__main__":
    main()
