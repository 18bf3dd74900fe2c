"""Training end to end on a tiny Tersoff-labelled SiGe data set: outputs, learning, resume."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from conftest import TINY_MODEL, final_weights, train_config

from ase_gnnp import GNNPCalculator, load_model
from ase_gnnp.config import ModelConfig
from ase_gnnp.evaluate import evaluate_structures
from ase_gnnp.train import TrainConfig, Trainer


def _metrics(out) -> list[dict]:
    with open(out / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_train_writes_outputs(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    result = Trainer(train_config(tiny_dataset, out), progress=False).run()
    assert result["epochs"] == 3
    assert result["stop_reason"] == "epochs"
    for name in ("model.pt", "checkpoint.pt", "metrics.csv", "learning_curve.png", "config.yaml"):
        assert (out / name).is_file(), name
    rows = _metrics(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(np.isfinite(float(r["train_loss"])) for r in rows)
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert TrainConfig.from_yaml(out / "config.yaml").epochs == 3
    # the saved model is usable by the calculator and carries its fitted statistics
    model = load_model(out / "model.pt")
    assert model.config == TINY_MODEL
    assert bool(model.fitted_elements[14]) and bool(model.fitted_elements[32])
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.calc = GNNPCalculator(model)
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_stress().shape == (6,)


@pytest.mark.slow
def test_loss_decreases(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    Trainer(train_config(tiny_dataset, out, epochs=8, lr=5e-3), progress=False).run()
    rows = _metrics(out)
    assert len(rows) == 8
    train = [float(r["train_loss"]) for r in rows]
    val = [float(r["val_loss"]) for r in rows]
    print("train loss per epoch:", [f"{x:.4g}" for x in train])
    assert train[-1] < train[0]
    assert min(val[1:]) < val[0]


@pytest.mark.slow
def test_resume_equals_uninterrupted(tiny_dataset, tmp_path):
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    Trainer(train_config(tiny_dataset, out_a, epochs=4), progress=False).run()

    Trainer(train_config(tiny_dataset, out_b, epochs=2), progress=False).run()
    assert [int(r["epoch"]) for r in _metrics(out_b)] == [1, 2]
    result = Trainer.resume(out_b, progress=False, epochs=4).run()
    assert result["epochs"] == 4

    a, b = final_weights(out_a), final_weights(out_b)
    assert a["epoch"] == b["epoch"] == 4
    for part in ("model", "ema"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, rtol=1e-6, atol=1e-6, msg=key)
    assert [int(r["epoch"]) for r in _metrics(out_b)] == [1, 2, 3, 4]
    rows_a, rows_b = _metrics(out_a), _metrics(out_b)
    for ra, rb in zip(rows_a, rows_b):
        assert float(ra["train_loss"]) == pytest.approx(float(rb["train_loss"]), rel=1e-6)
    # the best models agree too
    ma, mb = load_model(out_a / "model.pt"), load_model(out_b / "model.pt")
    for key, value in ma.state_dict().items():
        torch.testing.assert_close(mb.state_dict()[key], value, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_resume_after_a_kill_keeps_each_epoch_once(tiny_dataset, tmp_path, monkeypatch):
    """A run killed in epoch 3 resumes at epoch 3 without duplicating rows of metrics.csv."""
    out = tmp_path / "run"
    trainer = Trainer(train_config(tiny_dataset, out, epochs=4), progress=False)
    original = Trainer.train_epoch

    def killed_in_epoch_3(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_epoch", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    monkeypatch.setattr(Trainer, "train_epoch", original)
    assert [int(r["epoch"]) for r in _metrics(out)] == [1, 2]
    Trainer.resume(out, progress=False, epochs=4).run()
    assert [int(r["epoch"]) for r in _metrics(out)] == [1, 2, 3, 4]


def test_existing_run_needs_resume_or_overwrite(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    Trainer(train_config(tiny_dataset, out, epochs=1), progress=False).run()
    with pytest.raises(ValueError, match="resume"):
        Trainer(train_config(tiny_dataset, out, epochs=1), progress=False)
    config = train_config(tiny_dataset, out, epochs=1)
    result = Trainer(config, overwrite=True, progress=False).run()
    assert result["epochs"] == 1
    assert [int(r["epoch"]) for r in _metrics(out)] == [1]


def test_resume_without_checkpoint(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="resume"):
        Trainer.resume(tmp_path / "empty", progress=False)


def test_resume_from_a_corrupt_state_is_a_clear_error(tiny_dataset, tmp_path):
    out = tmp_path / "broken"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"\x00 not a torch file")
    with pytest.raises(ValueError, match="training state .* corrupt"):
        Trainer.resume(out, progress=False)


@pytest.mark.slow
def test_init_from(tiny_dataset, tmp_path):
    first = tmp_path / "first"
    Trainer(train_config(tiny_dataset, first, epochs=2), progress=False).run()
    parent = load_model(first / "model.pt")

    second = tmp_path / "second"
    # the architecture comes from the checkpoint, whatever config.model says
    other_arch = ModelConfig(cutoff=3.0, channels=4, lmax=0)
    config = train_config(tiny_dataset, second, epochs=1, model=other_arch)
    trainer = Trainer(config, init_from=str(first / "model.pt"), progress=False)
    assert trainer.model.config == TINY_MODEL
    # starts from the parent's weights and keeps its fitted reference energies
    for key, value in parent.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[key], value)
    trainer.run()
    child = load_model(second / "model.pt")
    assert child.config == TINY_MODEL
    torch.testing.assert_close(child.atomic_reference, parent.atomic_reference)
    assert TrainConfig.from_yaml(second / "config.yaml").model == TINY_MODEL


@pytest.fixture(scope="module")
def mixed_dataset(tmp_path_factory, tiny_dataset):
    """The bulk cells (with stress) plus 8 non-periodic Si/Ge clusters (no stress)."""
    from ase.io import read

    from ase_gnnp.teachers import tersoff_sige

    frames = read(tiny_dataset, index=":")
    rng = np.random.default_rng(1)
    for k in range(8):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.numbers[rng.random(len(atoms)) < 0.4] = 32
        atoms.rattle(0.08, seed=100 + k)
        atoms.center(vacuum=6.0)  # a cell for the teacher's neighbour list only
        atoms.pbc = False
        atoms.calc = tersoff_sige()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        atoms.info["config_type"] = "cluster"
        frames.append(atoms)
    path = tmp_path_factory.mktemp("mixed") / "mixed.extxyz"
    write(path, frames, format="extxyz")
    return path


def test_mixed_periodic_and_molecular_data(mixed_dataset, tmp_path):
    out = tmp_path / "run"
    Trainer(train_config(mixed_dataset, out, epochs=2, batch_size=8), progress=False).run()
    rows = _metrics(out)
    assert all(np.isfinite(float(r["train_loss"])) for r in rows)
    assert all(np.isfinite(float(r["val_loss"])) for r in rows)
    model = load_model(out / "model.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_loss_ignores_stress_of_non_periodic_graphs():
    """Unit level: stress terms of unlabelled, non-periodic graphs must not poison the loss."""
    from ase import Atoms
    from torch_geometric.data import Batch

    from ase_gnnp.data import labelled_graph
    from ase_gnnp.model import GNNPModel
    from ase_gnnp.train.loss import loss_terms

    torch.manual_seed(0)
    model = GNNPModel(TINY_MODEL)
    periodic = bulk("Si", "diamond", a=5.43)
    periodic.calc = SinglePointCalculator(
        periodic, energy=-9.0, forces=np.zeros((2, 3)), stress=np.zeros(6)
    )
    molecule = Atoms("SiGe", positions=[[0, 0, 0], [2.4, 0, 0]])
    molecule.calc = SinglePointCalculator(molecule, energy=-8.0, forces=np.zeros((2, 3)))
    periodic_only = Batch.from_data_list([labelled_graph(periodic, 3.5)])
    both = Batch.from_data_list([labelled_graph(a, 3.5) for a in (periodic, molecule)])
    terms_one = loss_terms(model(periodic_only, stress=True), periodic_only)
    assert torch.isfinite(terms_one["stress"])
    terms = loss_terms(model(both, stress=True), both)
    assert torch.isfinite(terms["stress"])
    torch.testing.assert_close(terms["stress"], terms_one["stress"])


def test_train_config_validation(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="scheduler"):
        train_config(tiny_dataset, tmp_path, scheduler="step")
    with pytest.raises(ValueError, match="dtype"):
        train_config(tiny_dataset, tmp_path, dtype="float16")
    with pytest.raises(ValueError, match="epochs"):
        train_config(tiny_dataset, tmp_path, epochs=0)
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"epochs": 1, "learning_rate": 1.0})


def test_cosine_schedule_follows_epochs_or_time_budget(tiny_dataset, tmp_path):
    """Cosine anneals lr -> min_lr over whichever of epochs / max_minutes ends the run."""
    config = train_config(tiny_dataset, tmp_path / "cos", scheduler="cosine", epochs=4, min_lr=1e-4)
    trainer = Trainer(config, progress=False)
    assert trainer.progress_fraction() == 0.0
    trainer._set_cosine_lr(0.0, 0.0)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)
    trainer.epoch = 2
    assert trainer.progress_fraction() == pytest.approx(0.5)
    trainer._set_cosine_lr(0.0, 0.0)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * (5e-3 + 1e-4))
    # a time budget that binds first: 45 s of a 1-minute budget is 75 % of the run
    trainer.config = trainer.config.updated(max_minutes=1.0)
    trainer.elapsed = 40.0
    assert trainer.progress_fraction(0.0, 5.0) == pytest.approx(0.75)
    trainer.epoch, trainer.elapsed = 0, 0.0
    trainer.config = config
    trainer.run()
    lrs = [float(r["lr"]) for r in _metrics(tmp_path / "cos")]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.2 * 5e-3


def test_resume_keeps_the_saved_run_and_refuses_other_changes(tiny_dataset, tmp_path):
    """Resuming never resets unspecified options to defaults, and only run length may change."""
    out = tmp_path / "keep"
    config = train_config(tiny_dataset, out, epochs=2, patience=7, max_minutes=30.0)
    Trainer(config, progress=False).run()
    resumed = Trainer.resume(out, progress=False, epochs=3)
    assert resumed.config == config.updated(epochs=3)
    with pytest.raises(ValueError, match="lr"):
        Trainer.resume(out, progress=False, lr=1.0)


def test_runs_saved_before_loss_normalization_keep_their_weights_normalization(
    tiny_dataset, tmp_path
):
    """A saved run without the option divided by Σ w: resume and study reuse keep that;
    a user's YAML without it gets the default."""
    out = tmp_path / "old"
    config = train_config(tiny_dataset, out, epochs=1)
    Trainer(config, progress=False).run()
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    del state["config"]["loss_normalization"]
    torch.save(state, out / "checkpoint.pt")
    assert Trainer.resume(out, progress=False, epochs=2).config.loss_normalization == "weights"
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["loss_normalization"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert TrainConfig.from_yaml(out / "config.yaml", saved=True).loss_normalization == "weights"
    assert TrainConfig.from_yaml(out / "config.yaml").loss_normalization == "labels"


def test_structure_weights_multiply_each_structure_s_share_of_every_term():
    """``labels``: Σ w x / Σ m, a weight multiplies; ``weights``: Σ w x / Σ w, weights only
    set shares within the batch; an unknown normalization is refused."""
    from ase import Atoms
    from torch_geometric.data import Batch

    from ase_gnnp.data import labelled_graph
    from ase_gnnp.model import GNNPModel
    from ase_gnnp.train.loss import loss_terms

    torch.manual_seed(0)
    model = GNNPModel(TINY_MODEL).double()
    frames = []
    for k, energy in enumerate((-8.0, -3.0)):
        atoms = Atoms("SiGe", positions=[[0, 0, 0], [2.3 + 0.2 * k, 0, 0]])
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.full((2, 3), k + 1.0))
        frames.append(atoms)

    def terms(weights, normalization):
        graphs = [labelled_graph(a, 3.5, dtype=torch.float64, weight=w)
                  for a, w in zip(frames, weights)]  # fmt: skip
        single = [Batch.from_data_list([labelled_graph(a, 3.5, dtype=torch.float64)])
                  for a in frames]  # fmt: skip
        both = Batch.from_data_list(graphs)
        return ([loss_terms(model(g), g) for g in single],
                loss_terms(model(both), both, normalization))  # fmt: skip

    (one, two), by_labels = terms((5.0, 1.0), "labels")
    _, by_weights = terms((5.0, 1.0), "weights")
    for name in ("energy", "forces"):  # forces: both structures have two atoms
        torch.testing.assert_close(by_labels[name], (5.0 * one[name] + two[name]) / 2.0)
        torch.testing.assert_close(by_weights[name], (5.0 * one[name] + two[name]) / 6.0)
        assert not torch.isclose(by_labels[name], (one[name] + two[name]) / 2)
    # equal weights: both normalizations give the plain mean
    _, plain = terms((1.0, 1.0), "weights")
    _, doubled = terms((2.0, 2.0), "labels")
    for name in ("energy", "forces"):
        torch.testing.assert_close(plain[name], (one[name] + two[name]) / 2.0)
        torch.testing.assert_close(doubled[name], one[name] + two[name])
    with pytest.raises(ValueError, match="normalization"):
        terms((1.0, 1.0), "sum")
    with pytest.raises(ValueError, match="loss_normalization"):
        TrainConfig.from_dict({"loss_normalization": "batch"})


def test_atom_weights_multiply_each_atom_s_share_of_the_force_term():
    """Per-atom weights act on forces only, on top of the structure weight."""
    from ase import Atoms
    from torch_geometric.data import Batch

    from ase_gnnp.data import labelled_graph
    from ase_gnnp.model import GNNPModel
    from ase_gnnp.train.loss import loss_terms

    torch.manual_seed(0)
    model = GNNPModel(TINY_MODEL).double()
    atoms = Atoms("SiGe", positions=[[0, 0, 0], [2.3, 0, 0]])
    atoms.calc = SinglePointCalculator(atoms, energy=-7.0, forces=[[1.0, 0, 0], [-2.0, 0.5, 0]])
    plain = Batch.from_data_list([labelled_graph(atoms, 3.5, dtype=torch.float64)])
    out = model(plain)
    per_atom = (out["forces"] - plain["ref_forces"]).pow(2).mean(-1).detach()
    assert not torch.isclose(per_atom[0], per_atom[1])
    base = loss_terms(out, plain)
    for normalization, expected in (
        ("labels", (3.0 * per_atom[0] + 0.5 * per_atom[1]) / 2),
        ("weights", (3.0 * per_atom[0] + 0.5 * per_atom[1]) / 3.5),
    ):
        graph = labelled_graph(atoms, 3.5, dtype=torch.float64, atom_weight=np.array([3.0, 0.5]))
        data = Batch.from_data_list([graph])
        terms = loss_terms(model(data), data, normalization)
        torch.testing.assert_close(terms["forces"].detach(), expected)
        torch.testing.assert_close(terms["energy"], base["energy"])
    # with a structure weight of 2 on top (labels): every atom's share doubles
    graph = labelled_graph(atoms, 3.5, dtype=torch.float64, weight=2.0,
                           atom_weight=np.array([3.0, 0.5]))  # fmt: skip
    data = Batch.from_data_list([graph])
    torch.testing.assert_close(loss_terms(model(data), data)["forces"].detach(),
                               3.0 * per_atom[0] + 0.5 * per_atom[1])  # fmt: skip
    with pytest.raises(ValueError, match="atom_weight must hold 2"):
        labelled_graph(atoms, 3.5, atom_weight=np.ones(3))
    with pytest.raises(ValueError, match="atom_weight must hold 2"):
        labelled_graph(atoms, 3.5, atom_weight=np.array([1.0, -1.0]))


def test_config_type_weights(tiny_dataset, tmp_path):
    trainer = Trainer(
        train_config(tiny_dataset, tmp_path / "run", config_type_weights={"rattled": 4.0}),
        progress=False,
    )
    for graphs in (trainer.train_graphs, trainer.val_graphs):
        weights = {float(g["weight"]) for g in graphs}
        assert weights == {1.0, 4.0}
    with pytest.raises(ValueError, match=r"\['melted'\].*config types there: \['rattled'"):
        Trainer(train_config(tiny_dataset, tmp_path / "bad", config_type_weights={"melted": 2.0}))
    with pytest.raises(ValueError, match="must be positive"):
        train_config(tiny_dataset, tmp_path, config_type_weights={"rattled": 0.0})
    with pytest.raises(TypeError, match="config_type_weights must map"):
        train_config(tiny_dataset, tmp_path, config_type_weights=[("rattled", 2.0)])


def test_config_type_balance_weights():
    from ase_gnnp.train.weighting import config_type_balance

    types = ["md"] * 90 + ["vacancy"] * 57 + ["elastic"] * 55 + ["surface"] * 12
    assert config_type_balance(types, 0.0) == {t: 1.0 for t in set(types)}
    equal = config_type_balance(types, 1.0)  # every type the same total weight
    totals = [equal[t] * types.count(t) for t in equal]
    assert np.allclose(totals, totals[0])
    half = config_type_balance(types, 0.5)
    assert np.isclose(np.mean([half[t] for t in types]), 1.0)
    assert np.isclose(half["surface"] / half["md"], (90 / 12) ** 0.5)
    assert config_type_balance([], 1.0) == {}
    for bad in (-0.5, True, "1"):
        with pytest.raises(ValueError, match="config_type_balance must be a number >= 0"):
            config_type_balance(types, bad)


def test_config_type_balance_in_training(tiny_dataset, tmp_path):
    """Weights from the training split's counts (12 'md' and 4 'surface' structures),
    times the explicit config-type weights, on the training and validation structures."""
    from ase_gnnp.data import config_types, split_indices

    frames = read(tiny_dataset, ":")
    for k, atoms in enumerate(frames):
        atoms.info["config_type"] = "md" if k < 12 else "surface"
    data = tmp_path / "uneven.extxyz"
    write(data, frames, format="extxyz")
    config = train_config(
        data,
        tmp_path / "run",
        config_type_balance=1.0,
        config_type_weights={"surface": 2.0},
        val_fraction=0.25,
    )
    trainer = Trainer(config, progress=False)
    types = config_types(frames)
    train_idx, val_idx = split_indices(types, config.val_fraction, config.seed)
    n = {t: [types[i] for i in train_idx].count(t) for t in ("md", "surface")}
    assert n["md"] > n["surface"] > 0
    # equal totals per type, mean 1 over the training structures: w_t = N / (2 n_t)
    expected = {t: len(train_idx) / (2 * n[t]) * (2.0 if t == "surface" else 1.0) for t in n}
    for graphs, idx in ((trainer.train_graphs, train_idx), (trainer.val_graphs, val_idx)):
        got = [float(g["weight"]) for g in graphs]
        assert np.allclose(got, [expected[types[i]] for i in idx])
    with pytest.raises(ValueError, match="config_type_balance must be a number >= 0"):
        train_config(tiny_dataset, tmp_path, config_type_balance=-1.0)


def test_select_config_types_and_elements(tiny_dataset, tmp_path):
    trainer = Trainer(train_config(tiny_dataset, tmp_path / "run", config_types=["rattled"]),
                      progress=False)  # fmt: skip
    assert len(trainer.train_graphs) + len(trainer.val_graphs) == 8
    assert set(trainer.val_groups) == {"rattled"}
    with pytest.raises(ValueError, match=r"no structure in .* only elements \['C'\]"):
        Trainer(train_config(tiny_dataset, tmp_path / "c", elements=["C"]), progress=False)
    with pytest.raises(ValueError, match="elements must be chemical symbols"):
        train_config(tiny_dataset, tmp_path, elements=["Silicon"])
    with pytest.raises(TypeError, match="config_types must be a list"):
        train_config(tiny_dataset, tmp_path, config_types="rattled")


def test_element_weights_follow_inverse_frequency():
    from ase_gnnp.train.weighting import element_frequencies, element_weights

    si = bulk("Si", "diamond", a=5.43)
    ge = bulk("Ge", "diamond", a=5.66)
    sige = si.copy()
    sige.numbers[1] = 32
    frames = [si] * 8 + [sige, ge]  # Si in 9 of 10 structures, Ge in 2
    assert element_frequencies(frames) == {"Ge": 0.2, "Si": 0.9}
    w = element_weights(frames, exponent=1.0, cap=10.0)
    raw = np.array([1.0] * 8 + [4.5, 4.5])  # (0.9 / 0.2)^1 for structures with Ge
    np.testing.assert_allclose(w, raw / raw.mean())
    np.testing.assert_allclose(element_weights(frames, 1.0, cap=2.0)[-1], 2.0 / 1.2)
    np.testing.assert_allclose(element_weights(frames, 0.0, 10.0), 1.0)
    with pytest.raises(ValueError, match="cap must be >= 1"):
        element_weights(frames, 1.0, cap=0.5)


def test_atom_element_weights_follow_inverse_atom_frequency():
    from ase_gnnp.train.weighting import atom_element_weights, atom_frequencies

    si = bulk("Si", "diamond", a=5.43)  # 2 atoms
    sige = si.copy()
    sige.numbers[1] = 32
    frames = [si] * 4 + [sige]  # 10 atoms: 9 Si, 1 Ge
    assert atom_frequencies(frames) == pytest.approx({"Ge": 0.1, "Si": 0.9})
    w = atom_element_weights(frames, exponent=1.0, cap=10.0)
    scale = (9 * 1.0 + 9.0) / 10  # raw weights: Si 1, Ge 0.9 / 0.1 = 9; mean over atoms 1.8
    np.testing.assert_allclose(w[0], [1 / scale, 1 / scale])
    np.testing.assert_allclose(w[-1], [1 / scale, 9 / scale])  # Si in sige keeps its weight
    assert np.concatenate(w).mean() == pytest.approx(1.0)
    capped = atom_element_weights(frames, 1.0, cap=3.0)
    np.testing.assert_allclose(capped[-1], np.array([1.0, 3.0]) / 1.2)
    np.testing.assert_allclose(np.concatenate(atom_element_weights(frames, 0.0, 10.0)), 1.0)
    # frequencies come from the reference (training) set; unseen elements count as rarest
    carbon = bulk("C", "diamond", a=3.57)
    unseen = atom_element_weights([carbon, sige], 1.0, 10.0, reference=frames)
    np.testing.assert_allclose(unseen[0], 9 / scale)
    np.testing.assert_allclose(unseen[1], w[-1])
    with pytest.raises(ValueError, match="exponent must be >= 0"):
        atom_element_weights(frames, -1.0, cap=10.0)


def test_trainer_applies_element_weights_and_reads_several_files(tiny_dataset, tmp_path):
    frames = read(tiny_dataset, ":")
    for a in frames[:3]:  # three pure-Si structures: Ge is everywhere else
        a.numbers[:] = 14
    first, second = tmp_path / "a.extxyz", tmp_path / "b.extxyz"
    write(first, frames[:8], format="extxyz")
    write(second, frames[8:], format="extxyz")
    config = train_config(first, tmp_path / "run", element_weight_exponent=1.0)
    trainer = Trainer(config.updated(data=[str(first), str(second)]), progress=False)
    assert len(trainer.train_graphs) + len(trainer.val_graphs) == 16
    weights = np.array([float(g["weight"]) for g in trainer.train_graphs])
    assert weights.mean() == pytest.approx(1.0) and weights.max() > 1.0
    with pytest.raises(ValueError, match="element_weight_exponent must be >= 0"):
        train_config(first, tmp_path, element_weight_exponent=-1.0)
    assert all(torch.all(g["atom_weight"] == 1) for g in trainer.train_graphs)
    # per atom: structure weights stay 1, the rare element's atoms weigh more, mean 1
    atom = Trainer(config.updated(data=[str(first), str(second)], element_weight_scope="atom",
                                  out=str(tmp_path / "atom")), progress=False)  # fmt: skip
    assert {float(g["weight"]) for g in atom.train_graphs} == {1.0}
    per_atom = torch.cat([g["atom_weight"] for g in atom.train_graphs])
    numbers = torch.cat([g["numbers"] for g in atom.train_graphs])
    assert float(per_atom.mean()) == pytest.approx(1.0, rel=1e-6)
    si_count, ge_count = int((numbers == 14).sum()), int((numbers == 32).sum())
    rare, common = (14, 32) if si_count < ge_count else (32, 14)
    assert float(per_atom[numbers == rare].min()) > float(per_atom[numbers == common].max())
    with pytest.raises(ValueError, match="element_weight_scope must be one of"):
        train_config(first, tmp_path, element_weight_scope="element")
    summary = evaluate_structures(trainer.model, frames)
    assert set(summary["per_element"]) == {"Si", "Ge"}
    with_ge = sum(32 in a.numbers for a in frames)
    assert summary["per_element"]["Ge"]["n_structures"] == with_ge < 16


def _drawn_trainer(tiny_dataset, tmp_path, scope: str, pure_ge: int = 0):
    """A trainer whose element weights (exponent 1, cap 30) act through the batches
    (scope ``sampling`` or ``repeat``) on data with three pure-Si structures and
    ``pure_ge`` pure-Ge ones (Si and Ge elsewhere); checks the loss is unweighted."""
    frames = read(tiny_dataset, ":")
    for a in frames[:3]:
        a.numbers[:] = 14
    for a in frames[3 : 3 + pure_ge]:
        a.numbers[:] = 32
    data = tmp_path / "d.extxyz"
    write(data, frames, format="extxyz")
    config = train_config(data, tmp_path / "run", element_weight_exponent=1.0,
                     element_weight_scope=scope, element_weight_cap=30.0)  # fmt: skip
    trainer = Trainer(config, progress=False)
    assert {float(g["weight"]) for g in trainer.train_graphs} == {1.0}  # not in the loss
    assert max(float(g["weight"]) for g in trainer.val_graphs) > 1.0  # validation keeps it
    return trainer, config, data


def test_sampling_scope_draws_rare_structures_more_often_and_keeps_the_loss_unweighted(
    tiny_dataset, tmp_path
):
    trainer, config, data = _drawn_trainer(tiny_dataset, tmp_path, "sampling")
    drawn = trainer.sample_weights
    assert drawn is not None and len(drawn) == len(trainer.train_graphs)
    # Si is in every structure, Ge (the rarer element) in all but the pure-Si ones
    has_ge = np.array([bool(g["numbers"].eq(32).any()) for g in trainer.train_graphs])
    assert has_ge.any() and not has_ge.all()
    np.testing.assert_allclose(drawn[has_ge], drawn[has_ge].max())
    assert float(drawn[has_ge].min()) > float(drawn[~has_ge].max())
    # one epoch has len(train) draws with replacement; over many epochs each structure is
    # drawn in proportion to its weight (the rare ones more often than the rest)
    counts = np.zeros(len(has_ge))
    epochs = 400
    for epoch in range(epochs):
        batches = list(trainer._index_loader(epoch))
        assert sum(map(len, batches)) == len(has_ge)
        for batch in batches:
            np.add.at(counts, batch, 1)
    expected = epochs * len(has_ge) * drawn.numpy() / drawn.numpy().sum()
    np.testing.assert_allclose(counts, expected, rtol=0.15)
    assert counts[has_ge].sum() / has_ge.sum() > counts[~has_ge].sum() / (~has_ge).sum()
    # the training loader draws the same structures as the index loader (torchrun)
    sizes = [b.num_graphs for b in trainer._loader(0)]
    assert sum(sizes) == len(has_ge) and max(sizes) == config.batch_size
    trainer.train_epoch()
    # without weights: the usual shuffle, every structure once per epoch
    plain = Trainer(config.updated(element_weight_exponent=0.0, out=str(tmp_path / "p")),
                    progress=False)  # fmt: skip
    assert plain.sample_weights is None
    once = sorted(i for b in plain._index_loader(0) for i in b)
    assert once == list(range(len(plain.train_graphs)))
    with pytest.raises(ValueError, match="'sampling' cannot be combined with a relative"):
        train_config(data, tmp_path, element_weight_scope="sampling", relative_energy_key="group",
                relative_energy_weight=1.0)  # fmt: skip


def test_repeat_counts_average_the_weights_and_keep_every_structure():
    from ase_gnnp.train.weighting import repeat_counts

    weights = np.array([1.0, 1.0, 2.5, 7.25])
    draws = np.stack([repeat_counts(weights, np.random.default_rng(s)) for s in range(4000)])
    assert draws.min() >= 1  # no structure is left out of an epoch
    np.testing.assert_array_equal(draws[:, :2], 1)
    assert set(np.unique(draws[:, 2])) == {2, 3} and set(np.unique(draws[:, 3])) == {7, 8}
    np.testing.assert_allclose(draws.mean(axis=0), weights, rtol=0.02)
    for bad in ([0.5, 2.0], [[1.0, 2.0]]):
        with pytest.raises(ValueError, match="values >= 1"):
            repeat_counts(np.array(bad), np.random.default_rng(0))


def test_repeat_scope_keeps_every_structure_and_repeats_the_rare_ones(tiny_dataset, tmp_path):
    from ase_gnnp.train.weighting import raw_element_weights

    trainer, config, data = _drawn_trainer(tiny_dataset, tmp_path, "repeat", pure_ge=2)
    raw = raw_element_weights([Atoms(g["numbers"].numpy()) for g in trainer.train_graphs],
                              1.0, 30.0)  # fmt: skip
    np.testing.assert_allclose(trainer.sample_weights.numpy(), raw)
    assert raw.min() == 1.0 and raw.max() > 1.0
    counts = np.zeros(len(raw))
    epochs = 300
    for epoch in range(epochs):
        batches = list(trainer._index_loader(epoch))
        seen = np.bincount(np.concatenate(batches), minlength=len(raw))
        assert seen.min() >= 1  # every structure in every epoch, unlike "sampling"
        np.testing.assert_array_equal(seen, np.floor(raw) + (seen > np.floor(raw)))
        counts += seen
    np.testing.assert_allclose(counts / epochs, raw, rtol=0.1)
    # the training loader gives the same epoch as the index loader (torchrun), and the
    # epoch is longer than the training set
    sizes = [b.num_graphs for b in trainer._loader(0)]
    assert sum(sizes) == sum(map(len, trainer._index_loader(0))) > len(raw)
    trainer.train_epoch()
    with pytest.raises(ValueError, match="'repeat' cannot be combined with a relative"):
        train_config(data, tmp_path, element_weight_scope="repeat", relative_energy_key="group",
                relative_energy_weight=1.0)  # fmt: skip


def test_freeze_modes(small_model):
    from ase_gnnp.train.freeze import freeze

    everything = [n for n, _ in small_model.named_parameters()]
    assert freeze(small_model, "none") == everything
    readout = freeze(small_model, "readout")
    assert readout and all(n.startswith("readout.") for n in readout)
    equivariant = freeze(small_model, "equivariant")
    assert "embedding.learned.weight" in equivariant
    assert not any(n.startswith(("layers.", "radial.", "embedding.mlp.")) for n in equivariant)
    but_last = freeze(small_model, "equivariant-but-last")
    assert any(n.startswith("layers.1.") for n in but_last)
    assert not any(n.startswith("layers.0.") for n in but_last)
    assert [n for n, p in small_model.named_parameters() if p.requires_grad] == but_last
    with pytest.raises(ValueError, match="freeze must be one of"):
        freeze(small_model, "geometric")


def test_fine_tuning_with_frozen_layers_changes_only_the_rest(tiny_dataset, tmp_path):
    first = Trainer(train_config(tiny_dataset, tmp_path / "pre", epochs=1), progress=False)
    first.run()
    tuned = Trainer(train_config(tiny_dataset, tmp_path / "tuned", epochs=2, freeze="equivariant"),
                    init_from=str(tmp_path / "pre/model.pt"), progress=False)  # fmt: skip
    before = {n: p.detach().clone() for n, p in tuned.model.named_parameters()}
    tuned.train_epoch()
    for name, p in tuned.model.named_parameters():
        same = torch.equal(before[name], p.detach())
        assert same == (name.startswith(("layers.", "radial.", "embedding.mlp."))), name


def test_gradient_checkpointing_trains_the_same_weights(tiny_dataset, tmp_path):
    runs = {}
    for flag in (False, True):
        out = tmp_path / f"ckpt_{flag}"
        trainer = Trainer(train_config(tiny_dataset, out, epochs=1, dtype="float64",
                                  gradient_checkpointing=flag), progress=False)  # fmt: skip
        assert trainer.model.gradient_checkpointing is flag
        trainer.run()
        runs[flag] = final_weights(out)["model"]
    for key, value in runs[False].items():
        torch.testing.assert_close(runs[True][key], value, rtol=1e-9, atol=1e-12)
    with pytest.raises(TypeError, match="gradient_checkpointing"):
        train_config(tiny_dataset, tmp_path, gradient_checkpointing="yes")
