"""Uncertainty: Ledoit–Wolf, Mahalanobis OOD score, split conformal force balls, storage,
calculator properties, the uq command line and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from conftest import SMALL_CONFIG

from ase_gnnp import GNNPCalculator, GNNPModel, load_model, save_model
from ase_gnnp.checkpoint import read_checkpoint
from ase_gnnp.cli import main
from ase_gnnp.teachers import tersoff_sige
from ase_gnnp.testing import random_rotation
from ase_gnnp.uq import (
    ConformalForces,
    LatentMahalanobis,
    auroc,
    calibrate_forces,
    conformal_quantile,
    coverage,
    fit_mahalanobis,
    ledoit_wolf,
    predict_atoms,
    spearman,
    structure_scores,
    uq_statistics,
)

pytestmark = pytest.mark.filterwarnings("ignore:'where' used without 'out':UserWarning")


def tersoff_frames(n: int, seed: int, rattle: float = 0.05) -> list:
    """``n`` rattled, strained 8-atom Si cells labelled by the Tersoff teacher."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = bulk("Si", "diamond", a=5.432, cubic=True)
        eps = rng.uniform(-0.02, 0.02, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        atoms.rattle(rattle, seed=int(rng.integers(2**31)))
        atoms.calc = tersoff_sige()
        results = {p: atoms.calc.get_property(p, atoms) for p in ("energy", "forces", "stress")}
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["config_type"] = f"g{k % 2}"
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def train_frames():
    return tersoff_frames(6, seed=0)


@pytest.fixture(scope="module")
def calib_frames():
    return tersoff_frames(8, seed=1)


@pytest.fixture
def uq_model(small_model, train_frames, calib_frames) -> GNNPModel:
    fit_mahalanobis(small_model, train_frames)
    calibrate_forces(small_model, calib_frames, alpha=0.1)
    return small_model


# ---------------------------------------------------------------- Ledoit–Wolf
def test_ledoit_wolf_matches_its_definition():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6))
    mean, cov, shrinkage = ledoit_wolf(x)
    n, p = x.shape
    xc = x - x.mean(0)
    sample = xc.T @ xc / n
    mu = np.trace(sample) / p
    delta = np.sum((sample - mu * np.eye(p)) ** 2) / p
    beta = sum(np.sum((np.outer(v, v) - sample) ** 2) for v in xc) / (n**2 * p)
    expected = min(beta, delta) / delta
    assert 0 < shrinkage < 1
    assert shrinkage == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(mean, x.mean(0))
    np.testing.assert_allclose(cov, (1 - expected) * sample + expected * mu * np.eye(p))


def test_ledoit_wolf_is_invertible_with_fewer_samples_than_features():
    x = np.random.default_rng(1).normal(size=(5, 20))
    _, cov, shrinkage = ledoit_wolf(x)
    assert 0 < shrinkage <= 1
    assert np.linalg.eigvalsh(cov).min() > 0


def test_ledoit_wolf_needs_two_varying_samples():
    with pytest.raises(ValueError, match="at least 2 samples"):
        ledoit_wolf(np.ones((1, 3)))
    with pytest.raises(ValueError, match="do not vary"):
        ledoit_wolf(np.ones((5, 3)))


# ---------------------------------------------------------------- Mahalanobis
def test_mahalanobis_of_gaussian_samples_and_unknown_elements():
    rng = np.random.default_rng(2)
    p = 8
    a = np.eye(p) + 0.3 * rng.normal(size=(p, p))  # well conditioned: shrinkage is tiny
    latent = np.concatenate([rng.normal(size=(4000, p)) @ a, rng.normal(size=(3000, p)) + 5.0])
    numbers = np.array([14] * 4000 + [32] * 3000)
    stats = LatentMahalanobis.fit(latent, numbers)
    assert stats.numbers.tolist() == [14, 32] and stats.counts.tolist() == [4000, 3000]
    d = stats.distances(latent, numbers)
    # E[d²] = p for Gaussian data
    assert np.mean(d[:4000] ** 2) == pytest.approx(p, rel=0.05)
    assert np.mean(d[4000:] ** 2) == pytest.approx(p, rel=0.05)
    assert stats.train_median == pytest.approx(np.median(d))
    far = stats.distances(latent[:1] + 50 * a[0], numbers[:1])
    assert far[0] > 10 * np.sqrt(p)
    # an element without statistics: its distance to the nearest fitted element
    other = stats.distances(latent[4000:4010], np.full(10, 6))
    both = np.stack([stats.distances(latent[4000:4010], np.full(10, z)) for z in (14, 32)])
    np.testing.assert_allclose(other, both.min(0))
    again = LatentMahalanobis.from_dict(stats.to_dict())
    np.testing.assert_allclose(again.distances(latent, numbers), d)


def test_mahalanobis_needs_enough_atoms_per_element():
    latent = np.random.default_rng(0).normal(size=(12, 4))
    with pytest.raises(ValueError, match="Ge has 2 training atoms"):
        LatentMahalanobis.fit(latent, np.array([14] * 10 + [32] * 2))


# ---------------------------------------------------------------- conformal
@pytest.mark.parametrize(("n", "alpha", "rank"), [(9, 0.1, 9), (19, 0.1, 18), (99, 0.01, 99),
                                                  (199, 0.05, 190), (1000, 0.1, 901)])  # fmt: skip
def test_conformal_quantile_is_the_finite_sample_rank(n, alpha, rank):
    ratios = np.random.default_rng(n).permutation(np.arange(1, n + 1)).astype(float)
    assert conformal_quantile(ratios, alpha) == rank


def test_calibration_set_too_small_for_alpha():
    with pytest.raises(ValueError, match="98 atoms is too small for alpha=0.01.*at least 99"):
        conformal_quantile(np.ones(98), 0.01)
    with pytest.raises(ValueError, match="alpha must be in"):
        conformal_quantile(np.ones(98), 1.5)


@pytest.mark.parametrize("score", ["constant", "mahalanobis"])
@pytest.mark.parametrize("alpha", [0.1, 0.05])
def test_split_conformal_coverage_guarantee(score, alpha):
    """Over many exchangeable splits the mean coverage lies in [1-α, 1-α+1/(n+1))."""
    rng = np.random.default_rng(3)
    n, trials = 199, 4000
    d = rng.gamma(4.0, 1.0, size=(trials, 2 * n))
    errors = np.abs(rng.normal(size=d.shape)) * (0.02 + 0.01 * d)  # heteroscedastic
    covered = []
    for k in range(trials):
        c = ConformalForces.calibrate(errors[k, :n], d[k, :n], alpha, score, offset=1.0)
        covered.append(np.mean(errors[k, n:] <= c.radii(d[k, n:])))
    mean, se = np.mean(covered), np.std(covered) / np.sqrt(trials)
    assert 1 - alpha - 3 * se <= mean <= 1 - alpha + 1 / (n + 1) + 3 * se


def test_normalised_balls_are_smaller_on_heteroscedastic_errors():
    rng = np.random.default_rng(4)
    d = rng.gamma(2.0, 2.0, size=20000)
    errors = np.abs(rng.normal(size=d.shape)) * 0.01 * d
    radii = {
        s: ConformalForces.calibrate(errors[:10000], d[:10000], 0.05, s, 0.5).radii(d[10000:])
        for s in ("constant", "mahalanobis")
    }
    for r in radii.values():
        assert np.mean(errors[10000:] <= r) == pytest.approx(0.95, abs=0.01)
    assert radii["mahalanobis"].mean() < 0.8 * radii["constant"].mean()


def test_auroc_spearman_and_bootstrap_coverage():
    assert auroc([0, 1, 2], [3, 4]) == 1.0
    assert auroc([3, 4], [0, 1, 2]) == 0.0
    assert auroc([1, 2], [1, 2]) == 0.5
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    errors = np.array([0.1, 0.2, 0.9, 0.1, 0.1, 0.1])
    cov = coverage(errors, np.full(6, 0.5), np.array([0, 0, 0, 1, 1, 2]), n_boot=500)
    assert cov["coverage"] == pytest.approx(5 / 6)
    assert cov["low"] <= cov["coverage"] <= cov["high"] and cov["n_structures"] == 3
    assert cov["low"] < 5 / 6 < cov["high"]  # structure 0 (one miss) is resampled, or not
    high, mean = structure_scores([1.0, 3.0, 2.0, 5.0], [0, 0, 0, 1])
    np.testing.assert_allclose(high, [3.0, 5.0])
    np.testing.assert_allclose(mean, [2.0, 5.0])


# ---------------------------------------------------------------- model and calculator
def test_calculator_gives_invariant_uncertainties(uq_model, calib_frames):
    stats = uq_statistics(uq_model)
    assert stats.conformal.alpha == 0.1 and stats.conformal.score == "mahalanobis"
    assert stats.conformal.n_atoms == 64 and stats.conformal.n_structures == 8
    calc = GNNPCalculator(uq_model)
    atoms = calib_frames[0].copy()
    atoms.calc = calc
    d = atoms.calc.get_property("mahalanobis", atoms)
    radii = atoms.calc.get_property("force_uncertainty", atoms)
    assert d.shape == radii.shape == (len(atoms),) and np.all(d > 0)
    np.testing.assert_allclose(radii, stats.conformal.qhat * (d + stats.mahalanobis.train_median))
    # the same pass: energy and forces are cached with them
    assert calc.results.keys() >= {"energy", "forces", "stress", "mahalanobis"}
    rng = np.random.default_rng(0)
    moved = atoms.copy()
    rot = random_rotation(rng)
    moved.set_cell(moved.cell.array @ rot.T, scale_atoms=False)
    moved.positions = atoms.positions @ rot.T + [0.3, -1.1, 2.0]
    perm = rng.permutation(len(atoms))
    moved = moved[perm]
    moved.calc = GNNPCalculator(uq_model)
    np.testing.assert_allclose(moved.calc.get_property("mahalanobis", moved), d[perm], rtol=1e-7)
    np.testing.assert_allclose(
        moved.calc.get_property("force_uncertainty", moved), radii[perm], rtol=1e-7
    )


def test_uncertainty_needs_statistics(small_model, train_frames):
    atoms = train_frames[0].copy()
    atoms.calc = GNNPCalculator(small_model)
    with pytest.raises(PropertyNotImplementedError, match="uq fit"):
        atoms.calc.get_property("mahalanobis", atoms)
    fit_mahalanobis(small_model, train_frames)
    atoms.calc = GNNPCalculator(small_model)
    assert atoms.calc.get_property("mahalanobis", atoms).shape == (8,)
    with pytest.raises(PropertyNotImplementedError, match="uq calibrate"):
        atoms.calc.get_property("force_uncertainty", atoms)


def test_calibration_errors(small_model, train_frames, calib_frames):
    with pytest.raises(ValueError, match="no Mahalanobis statistics"):
        calibrate_forces(small_model, calib_frames, 0.1)
    fit_mahalanobis(small_model, train_frames)
    with pytest.raises(ValueError, match="64 atoms is too small for alpha=0.01"):
        calibrate_forces(small_model, calib_frames, 0.01)
    with pytest.raises(ValueError, match="score must be one of"):
        calibrate_forces(small_model, calib_frames, 0.1, score="ensemble")
    unlabelled = [a.copy() for a in calib_frames]  # copies carry no calculator
    with pytest.raises(ValueError, match="no reference forces"):
        calibrate_forces(small_model, unlabelled, 0.1)


def test_checkpoint_keeps_uq_statistics(uq_model, calib_frames, tmp_path):
    loaded = load_model(save_model(uq_model, tmp_path / "m.pt"))
    a, b = predict_atoms(uq_model, calib_frames), predict_atoms(loaded, calib_frames)
    np.testing.assert_array_equal(a.distances, b.distances)
    assert uq_statistics(loaded).conformal == uq_statistics(uq_model).conformal
    payload = read_checkpoint(tmp_path / "m.pt")
    payload["uq"]["mahalanobis"].pop("precision")
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="corrupt uncertainty statistics"):
        load_model(tmp_path / "bad.pt")


def test_models_without_uq_load_and_fine_tuning_drops_stale_statistics(uq_model, tmp_path):
    from ase_gnnp.train import TrainConfig, Trainer

    payload = read_checkpoint(save_model(uq_model, tmp_path / "m.pt"))
    del payload["uq"]  # a checkpoint written before uncertainty existed
    torch.save(payload, tmp_path / "old.pt")
    assert uq_statistics(load_model(tmp_path / "old.pt")).mahalanobis is None
    data = tmp_path / "d.extxyz"
    write(data, tersoff_frames(4, seed=5), format="extxyz")
    config = TrainConfig(data=str(data), out=str(tmp_path / "run"), epochs=1, dtype="float64",
                         model=SMALL_CONFIG)  # fmt: skip
    trainer = Trainer(config, init_from=str(tmp_path / "m.pt"), progress=False)
    assert uq_statistics(trainer.model).mahalanobis is None


# ---------------------------------------------------------------- command line
def test_cli_fit_calibrate_evaluate(small_model, train_frames, calib_frames, tmp_path, capsys):
    model = save_model(small_model, tmp_path / "m.pt")
    train, calib = tmp_path / "train.extxyz", tmp_path / "calib.extxyz"
    write(train, train_frames, format="extxyz")
    write(calib, calib_frames, format="extxyz")
    assert main(["uq", "fit", "--model", str(model), "--data", str(train)]) == 0
    assert "Mahalanobis statistics of 8 latent features for Z = [14]" in capsys.readouterr().out
    assert uq_statistics(load_model(model)).mahalanobis is not None  # updated in place
    out = tmp_path / "calibrated.pt"
    args = ["uq", "calibrate", "--model", str(model), "--data", str(calib), "--alpha", "0.1",
            "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    assert "from 64 atoms in 8 structures" in capsys.readouterr().out
    assert uq_statistics(load_model(model)).conformal is None  # --output: source untouched
    assert uq_statistics(load_model(out)).conformal.alpha == 0.1
    assert main(args) == 2  # never overwrites without asking
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["uq", "calibrate", "--model", str(model), "--data", str(calib),
                 "--config-types", "g1"]) == 2  # fmt: skip
    assert "32 atoms is too small for alpha=0.01" in capsys.readouterr().err
    assert main(["uq", "fit", "--model", "sige-small", "--data", str(train)]) == 2
    assert "shipped model; give --output" in capsys.readouterr().err
    assert main(["uq", "evaluate", "--model", str(out), "--data", str(calib),
                 "--ood", str(train), "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["alpha"] == 0.1
    assert 0 <= report["in_distribution"]["coverage"]["coverage"] <= 1
    assert set(report["shifted"]) == {"g0", "g1"}
    assert 0 <= report["shifted"]["g0"]["auroc_max"] <= 1


def test_cli_label_keys_and_fit_after_calibration(uq_model, calib_frames, tmp_path, capsys):
    """Labels under custom keys (REF_forces, REF_energy); a refit says it drops q̂."""
    frames = []
    for atoms in calib_frames:
        copy = atoms.copy()
        copy.arrays["REF_forces"] = atoms.get_forces()
        copy.info["REF_energy"] = atoms.get_potential_energy()
        frames.append(copy)  # no calculator: only the keys hold labels
    data = tmp_path / "keys.extxyz"
    write(data, frames, format="extxyz")
    model = save_model(uq_model, tmp_path / "m.pt")
    args = ["uq", "calibrate", "--model", str(model), "--data", str(data), "--alpha", "0.1"]
    assert main(args) == 2
    assert "no forces label" in capsys.readouterr().err
    assert main([*args, "--forces-key", "REF_forces", "--energy-key", "REF_energy"]) == 0
    capsys.readouterr()
    calibrated = uq_statistics(load_model(model)).conformal
    assert calibrated.qhat == pytest.approx(uq_statistics(uq_model).conformal.qhat)
    assert calibrated.source["keys"] == {"energy": "REF_energy", "forces": "REF_forces"}
    assert main(["uq", "fit", "--model", str(model), "--data", str(data)]) == 0
    assert "conformal calibration is dropped" in capsys.readouterr().out
    assert uq_statistics(load_model(model)).conformal is None
