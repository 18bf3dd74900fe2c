"""Shipped uncertainty: sige-small's conformal balls and si-md300's OOD score, measured on
data never trained on (data/make_sige_uq.py). Acceptance targets of the trust issue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read

from ase_gnnp import GNNPCalculator, load_model
from ase_gnnp.data import config_types, select_frames
from ase_gnnp.uq import (
    ConformalForces,
    auroc,
    coverage,
    predict_atoms,
    structure_scores,
    uq_statistics,
)

DATA = Path(__file__).resolve().parents[1] / "data"
#: the issue's coverage windows on exchangeable held-out structures
WINDOWS = {0.1: (0.88, 0.92), 0.05: (0.94, 0.96), 0.01: (0.985, 0.995)}


def test_sige_small_ships_uncertainty():
    model = load_model("sige-small")
    stats = uq_statistics(model)
    assert stats.mahalanobis.numbers.tolist() == [14, 32]
    assert stats.conformal.alpha == 0.01 and stats.conformal.score == "mahalanobis"
    assert stats.conformal.n_structures == len(read(DATA / "sige_tersoff_calib.extxyz", ":"))
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=0)
    atoms.calc = GNNPCalculator(model)
    radii = atoms.calc.get_property("force_uncertainty", atoms)
    d = atoms.calc.get_property("mahalanobis", atoms)
    assert radii.shape == d.shape == (8,)
    assert np.all((radii > 0.05) & (radii < 0.5))  # eV/Å: a near-perfect crystal is familiar


@pytest.mark.slow
def test_sige_small_coverage_on_held_out_structures():
    model = load_model("sige-small")
    stats = uq_statistics(model)
    test = predict_atoms(model, read(DATA / "sige_tersoff_holdout.extxyz", ":"))
    shipped = coverage(test.errors, stats.conformal.radii(test.distances), test.structure)
    assert WINDOWS[0.01][0] <= shipped["coverage"] <= WINDOWS[0.01][1]
    calib = predict_atoms(model, read(DATA / "sige_tersoff_calib.extxyz", ":"))
    median = stats.mahalanobis.train_median
    for alpha, (lo, hi) in WINDOWS.items():
        radii = {}
        for score in ("constant", "mahalanobis"):
            c = ConformalForces.calibrate(calib.errors, calib.distances, alpha, score, median)
            radii[score] = c.radii(test.distances)
            assert lo <= coverage(test.errors, radii[score], test.structure)["coverage"] <= hi
        # the normalised score gives smaller balls at equal coverage
        assert radii["mahalanobis"].mean() < radii["constant"].mean()


def test_si_md300_detects_shifted_structures():
    model = load_model("si-md300")
    shift = read(DATA / "si_uq_shift.extxyz", ":")
    groups = np.array(config_types(shift))
    fresh = select_frames(read(DATA / "sige_tersoff_holdout.extxyz", ":"), ["md300"], ["Si"])

    def scores(frames):
        p = predict_atoms(model, frames)
        return structure_scores(p.distances, p.structure)[0]  # max over atoms

    base = scores(fresh)
    for group in ("md2500", "surface", "compressed", "ge"):
        chosen = [a for a, g in zip(shift, groups) if g == group]
        assert auroc(base, scores(chosen)) > 0.95, group
