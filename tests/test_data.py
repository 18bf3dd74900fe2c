"""Reading labelled extxyz files, label keys, training graphs and the train/val split."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.stress import voigt_6_to_full_3x3_stress
from conftest import make_bulk, make_cluster, make_slab

from ase_gnnp import keys as K
from ase_gnnp.data import DataKeys, labelled_graph, read_structures, reference_labels, split_indices


def _labelled_frames(n: int = 4):
    frames = []
    rng = np.random.default_rng(0)
    for k in range(n):
        atoms = [make_bulk, make_cluster, make_slab][k % 3](seed=k + 1)
        results = {
            "energy": float(-4.0 * len(atoms) + rng.normal()),
            "forces": rng.normal(size=(len(atoms), 3)),
        }
        if atoms.pbc.all():
            results["stress"] = rng.normal(size=6) * 1e-2
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["config_type"] = ["bulk", "cluster", "slab"][k % 3]
        frames.append(atoms)
    return frames


# ---------------------------------------------------------------- split
def _groups():
    return ["a"] * 10 + ["b"] * 20 + ["c"] * 5 + ["single"]


def test_split_is_stratified():
    groups = _groups()
    train, val = split_indices(groups, 0.2, seed=0)
    counts = Counter(groups[i] for i in val)
    assert counts == {"a": 2, "b": 4, "c": 1}
    assert "single" in {groups[i] for i in train}


def test_split_is_disjoint_and_complete():
    groups = _groups()
    for seed in range(5):
        train, val = split_indices(groups, 0.3, seed=seed)
        assert set(train).isdisjoint(val)
        assert sorted([*train, *val]) == list(range(len(groups)))
        assert list(train) == sorted(train) and list(val) == sorted(val)


def test_split_is_deterministic_per_seed():
    groups = _groups()
    a = split_indices(groups, 0.2, seed=3)
    b = split_indices(groups, 0.2, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    others = [tuple(split_indices(groups, 0.2, seed=s)[1]) for s in range(4, 10)]
    assert any(o != tuple(a[1]) for o in others)


def test_split_small_groups_get_one_validation_member():
    groups = ["x", "x", "y", "y", "y"]
    _, val = split_indices(groups, 0.05, seed=0)
    assert Counter(groups[i] for i in val) == {"x": 1, "y": 1}


def test_split_without_validation():
    train, val = split_indices(["a"] * 7, 0.0, seed=0)
    assert len(val) == 0 and list(train) == list(range(7))


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(["a", "b"], fraction, seed=0)


# ---------------------------------------------------------------- reading
def test_read_calculator_labels(tmp_path):
    frames = _labelled_frames()
    path = tmp_path / "data.extxyz"
    write(path, frames, format="extxyz")
    read_back = read_structures(path, require=("energy", "forces"))
    assert len(read_back) == len(frames)
    for ref, atoms in zip(frames, read_back):
        labels = reference_labels(atoms)
        assert labels["energy"] == pytest.approx(ref.get_potential_energy(), rel=1e-10)
        np.testing.assert_allclose(labels["forces"], ref.get_forces(), atol=1e-8)
        if ref.pbc.all():
            np.testing.assert_allclose(
                labels["stress"], voigt_6_to_full_3x3_stress(ref.get_stress()), atol=1e-10
            )
        else:
            assert labels["stress"] is None
        assert atoms.info["config_type"] == ref.info["config_type"]
        np.testing.assert_array_equal(atoms.pbc, ref.pbc)


def test_custom_keys(tmp_path):
    frames = []
    for k, atoms in enumerate([make_bulk(1), make_cluster(2), make_slab(3)]):
        atoms.info["ref_energy"] = -10.0 - k
        atoms.arrays["ref_forces"] = np.full((len(atoms), 3), 0.1 * (k + 1))
        atoms.info["ref_stress"] = np.arange(6, dtype=float) * 1e-3
        frames.append(atoms)
    path = tmp_path / "custom.extxyz"
    write(path, frames, format="extxyz")
    keys = DataKeys(energy="ref_energy", forces="ref_forces", stress="ref_stress")
    read_back = read_structures(path, keys, require=("energy", "forces"))
    for k, atoms in enumerate(read_back):
        labels = reference_labels(atoms, keys)
        assert labels["energy"] == pytest.approx(-10.0 - k)
        np.testing.assert_allclose(labels["forces"], 0.1 * (k + 1))
        np.testing.assert_allclose(
            labels["stress"], voigt_6_to_full_3x3_stress(np.arange(6) * 1e-3)
        )
    # the default keys (calculator results) see nothing in this file
    assert reference_labels(read_back[0])["energy"] is None
    with pytest.raises(ValueError, match="no energy label"):
        read_structures(path)


def test_missing_custom_key_names_key_and_frame(tmp_path):
    frames = [make_cluster(seed) for seed in range(3)]
    for atoms in frames[:2]:
        atoms.info["ref_energy"] = -20.0
    path = tmp_path / "partial.extxyz"
    write(path, frames, format="extxyz")
    with pytest.raises(ValueError, match=r"frame 2 has no energy label \(key 'ref_energy'\)"):
        read_structures(path, DataKeys(energy="ref_energy"))
    with pytest.raises(ValueError, match=r"frame 0 has no forces label \(key 'ref_forces'\)"):
        read_structures(path, DataKeys(energy="ref_energy", forces="ref_forces"), require=())


def test_missing_calculator_label(tmp_path):
    path = tmp_path / "nolabels.extxyz"
    write(path, [make_cluster()], format="extxyz")
    with pytest.raises(ValueError, match=r"frame 0 has no energy label \(calculator results\)"):
        read_structures(path)
    assert len(read_structures(path, require=())) == 1


def test_empty_key_disables_label(tmp_path):
    frames = _labelled_frames(2)
    path = tmp_path / "data.extxyz"
    write(path, frames, format="extxyz")
    keys = DataKeys(forces="", stress="")
    (atoms, _) = read_structures(path, keys)
    labels = reference_labels(atoms, keys)
    assert labels["forces"] is None and labels["stress"] is None
    assert labels["energy"] is not None


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_structures(tmp_path / "nope.extxyz")


# ---------------------------------------------------------------- graphs
def test_labelled_graph_masks(tmp_path):
    frames = _labelled_frames(3)
    for atoms in frames:
        g = labelled_graph(atoms, 3.5, dtype=torch.float64)
        n = len(atoms)
        assert g[K.POSITIONS].shape == (n, 3) and g[K.POSITIONS].dtype == torch.float64
        assert g[K.REF_ENERGY].item() == pytest.approx(atoms.get_potential_energy())
        assert bool(g[K.HAS_ENERGY].all()) and bool(g[K.HAS_FORCES].all())
        assert g[K.REF_FORCES].shape == (n, 3)
        assert bool(g[K.HAS_STRESS].item()) == bool(atoms.pbc.all())
        assert g[K.REF_STRESS].shape == (1, 3, 3)
        assert g[K.EDGE_INDEX].shape[0] == 2 and g[K.EDGE_INDEX].shape[1] > 0
        # edges are within the cutoff and both directions are stored
        assert g[K.EDGE_INDEX].shape[1] % 2 == 0


def test_labelled_graph_without_labels():
    atoms = make_cluster()
    g = labelled_graph(atoms, 3.5)
    assert not bool(g[K.HAS_ENERGY].any())
    assert not bool(g[K.HAS_FORCES].any())
    assert not bool(g[K.HAS_STRESS].any())


# ---------------------------------------------------------------- evaluation
def test_evaluate_against_own_labels_is_exact(small_model):
    from ase_gnnp import GNNPCalculator
    from ase_gnnp.evaluate import evaluate_structures, format_table

    calc = GNNPCalculator(small_model)
    frames = [make_bulk(1), make_cluster(2), make_slab(3), make_bulk(4)]
    for atoms, res in zip(frames, calc.batch_evaluate(frames, stress=False)):
        labels = {"energy": res["energy"], "forces": res["forces"]}
        if atoms.pbc.all():
            atoms.calc = calc
            labels["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **labels)
        atoms.info["config_type"] = "periodic" if atoms.pbc.all() else "other"
    summary = evaluate_structures(small_model, frames, batch_size=3)
    assert summary["n_structures"] == 4
    for key in ("energy_mae_per_atom", "force_mae", "force_rmse", "stress_mae"):
        assert summary[key] < 1e-10, key
    assert set(summary["per_config_type"]) == {"periodic", "other"}
    assert summary["per_config_type"]["periodic"]["n_structures"] == 2
    assert "stress_mae" not in summary["per_config_type"]["other"]
    table = format_table(summary)
    assert "ALL" in table and "periodic" in table


def test_evaluate_reports_known_errors(small_model):
    from ase_gnnp import GNNPCalculator
    from ase_gnnp.evaluate import evaluate_structures

    calc = GNNPCalculator(small_model)
    frames = [make_cluster(2), make_cluster(5)]
    for atoms, res in zip(frames, calc.batch_evaluate(frames)):
        # energy off by +0.6 eV (0.1 eV/atom), every force component off by 0.2 eV/Å
        atoms.calc = SinglePointCalculator(
            atoms, energy=res["energy"] + 0.6, forces=res["forces"] - 0.2
        )
    summary = evaluate_structures(small_model, frames)
    assert summary["energy_mae_per_atom"] == pytest.approx(0.1, rel=1e-8)
    assert summary["force_mae"] == pytest.approx(0.2, rel=1e-8)
    assert summary["force_rmse"] == pytest.approx(0.2, rel=1e-8)
    assert "stress_mae" not in summary


def test_relative_energies_follow_each_groups_lowest_structure(small_model):
    from ase_gnnp import GNNPCalculator
    from ase_gnnp.evaluate import evaluate_structures, format_table

    calc = GNNPCalculator(small_model)
    scan = [make_cluster(seed) for seed in range(4)]
    offset = [make_cluster(seed) for seed in range(10, 13)]
    mixed = [make_cluster(20), make_bulk(21)]
    single = [make_cluster(30)]
    frames = scan + offset + mixed + single
    pred = np.array([r["energy"] for r in calc.batch_evaluate(frames, stress=False)])
    # a profile whose lowest structure is the scan's first; a constant offset elsewhere
    profile = np.array([-3.0, -2.5, -2.9, -2.0])
    ref = np.concatenate([profile, pred[4:] + 7.0])
    groups = ["scan"] * 4 + ["offset"] * 3 + ["mixed"] * 2 + ["single"]
    for atoms, energy, group in zip(frames, ref, groups):
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
        atoms.info["config_type"] = group
    summary = evaluate_structures(small_model, frames, batch_size=3, relative_energies=True)
    rel = summary["relative_energy"]
    expected = (pred[:4] - pred[0]) - (profile - profile[0])
    assert rel["per_config_type"]["scan"]["reference_index"] == 0
    assert rel["per_config_type"]["scan"]["reference_range"] == pytest.approx(1.0)
    assert rel["per_config_type"]["scan"]["energy_rel_mae"] == pytest.approx(
        np.abs(expected).mean(), rel=1e-6
    )
    assert rel["per_config_type"]["offset"]["energy_rel_rmse"] < 1e-9  # the offset drops out
    assert rel["skipped"] == ["mixed", "single"]
    assert rel["n_structures"] == 7
    pooled = np.concatenate([expected, np.zeros(3)])
    assert rel["energy_rel_rmse"] == pytest.approx(np.sqrt((pooled**2).mean()), rel=1e-6)
    assert "profile spans 1000.0" in format_table(summary)
    assert "relative_energy" not in evaluate_structures(small_model, frames)
