"""Relative-energy loss: energy differences within groups of structures (NEB images,
snapshots of one defect cell), whatever the group's common energy offset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from torch_geometric.data import Batch

from ase_gnnp import keys as K
from ase_gnnp.config import ModelConfig
from ase_gnnp.train import TrainConfig, Trainer
from ase_gnnp.train.loss import loss_terms
from ase_gnnp.train.trainer import LOSS_TERMS, loss_denominators

TINY_MODEL = ModelConfig(
    cutoff=3.5, channels=8, lmax=1, num_layers=2, num_radial=6, radial_hidden=16, readout_hidden=8
)


@pytest.fixture(scope="module")
def grouped_dataset(tmp_path_factory):
    """14 rattled 8-atom Si cells with Tersoff labels: groups "a" (6), "b" (6) and 2 without."""
    pytest.importorskip("matscipy", reason="the Tersoff teacher needs matscipy")
    from ase_gnnp.teachers import tersoff_sige

    frames = []
    for k in range(14):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = tersoff_sige()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["config_type"] = "rattled"
        if k < 12:
            atoms.info["path"] = "a" if k % 2 else "b"
        frames.append(atoms)
    path = tmp_path_factory.mktemp("data") / "grouped.extxyz"
    write(path, frames, format="extxyz")
    return path


def _config(data, out, **changes) -> TrainConfig:
    values = dict(data=str(data), out=str(out), epochs=2, batch_size=4, lr=5e-3, threads=1,
                  val_fraction=0.25, seed=0, model=TINY_MODEL, dtype="float64",
                  relative_energy_key="path", relative_energy_weight=10.0)  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


def _terms(model, graphs):
    data = Batch.from_data_list(graphs)
    return loss_terms(model(data), data)


def test_the_loss_is_the_spread_of_residuals_within_each_group_of_the_batch(
    grouped_dataset, tmp_path
):
    trainer = Trainer(_config(grouped_dataset, tmp_path / "run"), progress=False)
    graphs = trainer.train_graphs
    data = Batch.from_data_list(graphs)
    residual = (trainer.model(data)[K.ENERGY].double() - data[K.REF_ENERGY]).detach()
    groups = data[K.ENERGY_GROUP]
    assert sorted(set(groups.tolist())) == [-1, 0, 1]
    expected = torch.cat([residual[groups == g] - residual[groups == g].mean() for g in (0, 1)])
    torch.testing.assert_close(_terms(trainer.model, graphs)["relative_energy"].double(),
                               expected.pow(2).mean())  # fmt: skip
    # a group with one member in the batch, and ungrouped structures, contribute nothing
    single = [g for g in graphs if int(g[K.ENERGY_GROUP]) == 0][:1]
    ungrouped = [g for g in graphs if int(g[K.ENERGY_GROUP]) < 0]
    assert _terms(trainer.model, single + ungrouped)["relative_energy"] == 0


def test_the_loss_ignores_a_group_offset_and_sees_a_difference(grouped_dataset, tmp_path):
    trainer = Trainer(_config(grouped_dataset, tmp_path / "run"), progress=False)
    graphs = trainer.train_graphs
    before = _terms(trainer.model, graphs)
    assert before["relative_energy"] > 0
    group_a = [g for g in graphs if int(g[K.ENERGY_GROUP]) == 0]
    for g in group_a:  # every reference of one group shifted by the same 5 eV
        g[K.REF_ENERGY] = g[K.REF_ENERGY] + 5.0
    after = _terms(trainer.model, graphs)
    torch.testing.assert_close(after["relative_energy"], before["relative_energy"])
    assert after["energy"] > 2 * before["energy"]  # the per-atom term does see the shift
    group_a[0][K.REF_ENERGY] = group_a[0][K.REF_ENERGY] + 0.1  # one member alone: a difference
    assert _terms(trainer.model, graphs)["relative_energy"] > before["relative_energy"] + 1e-4


def test_grouped_structures_are_batched_with_their_group(grouped_dataset, tmp_path):
    trainer = Trainer(_config(grouped_dataset, tmp_path / "run"), progress=False)
    seen = []
    for batch in trainer._loader(0):
        assert len(set(batch[K.ENERGY_GROUP].tolist())) == 1
        seen += batch[K.ENERGY_GROUP].tolist()
    assert sorted(seen) == sorted(int(g[K.ENERGY_GROUP]) for g in trainer.train_graphs)
    first = [b[K.ENERGY_GROUP].tolist() for b in trainer._loader(0)]
    assert first == [b[K.ENERGY_GROUP].tolist() for b in trainer._loader(0)]  # seeded
    val = [int(g[K.ENERGY_GROUP]) for g in trainer.val_graphs]
    assert val == sorted(val, key=lambda g: (g < 0, g))  # validation sorted by group


def test_denominators_count_grouped_structures(grouped_dataset, tmp_path):
    config = _config(grouped_dataset, tmp_path / "run", config_type_weights={"rattled": 3.0})
    trainer = Trainer(config, progress=False)
    column = LOSS_TERMS.index("relative_energy")
    by_weights = loss_denominators(trainer.train_graphs, "weights")[:, column]
    expected = [3.0 * (int(g[K.ENERGY_GROUP]) >= 0) for g in trainer.train_graphs]
    assert by_weights.tolist() == expected
    assert 0.0 in expected and 3.0 in expected
    by_labels = loss_denominators(trainer.train_graphs)[:, column]  # counts, not weights
    assert by_labels.tolist() == [float(e > 0) for e in expected]


def test_training_with_relative_energies_runs_and_validates(grouped_dataset, tmp_path):
    out = tmp_path / "run"
    result = Trainer(_config(grouped_dataset, out), progress=False).run()
    assert result["epochs"] == 2 and (out / "model.pt").is_file()
    with_term = Trainer(_config(grouped_dataset, tmp_path / "again"), progress=False)
    assert with_term.weights["relative_energy"] == 10.0
    assert with_term.validate()[0] > 0
    plain = Trainer(_config(grouped_dataset, tmp_path / "plain", relative_energy_key=None,
                            relative_energy_weight=0.0), progress=False)  # fmt: skip
    assert K.ENERGY_GROUP not in plain.train_graphs[0]


def test_bad_relative_energy_options(grouped_dataset, tmp_path):
    with pytest.raises(ValueError, match="go together"):
        _config(grouped_dataset, tmp_path, relative_energy_key=None)
    with pytest.raises(ValueError, match="go together"):
        _config(grouped_dataset, tmp_path, relative_energy_weight=0.0)
    with pytest.raises(ValueError, match="must be >= 0"):
        _config(grouped_dataset, tmp_path, relative_energy_weight=-1.0)
    with pytest.raises(TypeError, match="non-empty string"):
        _config(grouped_dataset, tmp_path, relative_energy_key="")
    with pytest.raises(ValueError, match="no group has two training structures.*none"):
        Trainer(_config(grouped_dataset, tmp_path / "x", relative_energy_key="no_such_key"),
                progress=False)  # fmt: skip


def test_relative_energy_is_refused_under_torchrun(grouped_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="without torchrun"):
        Trainer(_config(grouped_dataset, tmp_path / "ddp"), progress=False)


def test_relative_energy_flags_parse():
    from ase_gnnp.cli.train import _TRAIN_FLAGS

    assert _TRAIN_FLAGS["relative_energy_key"]("cylinder") == "cylinder"
    assert _TRAIN_FLAGS["relative_energy_weight"]("100") == 100.0
    assert np.isfinite(_TRAIN_FLAGS["relative_energy_weight"]("1e3"))


def _group_spread(model, graphs) -> float:
    """RMS over grouped structures of the residual minus its group's mean (eV)."""
    data = Batch.from_data_list(graphs)
    residual = (model(data, forces=False)[K.ENERGY].double() - data[K.REF_ENERGY]).detach()
    groups = data[K.ENERGY_GROUP]
    centred = [residual[groups == g] - residual[groups == g].mean() for g in (0, 1)]
    return float(torch.cat(centred).pow(2).mean().sqrt())


def test_the_relative_term_alone_fits_energy_differences(grouped_dataset, tmp_path):
    config = _config(grouped_dataset, tmp_path / "rel", epochs=15, energy_weight=0.0,
                     forces_weight=0.0, stress_weight=0.0, relative_energy_weight=1.0,
                     ema_decay=0.0)  # fmt: skip
    trainer = Trainer(config, progress=False)
    before = _group_spread(trainer.model, trainer.train_graphs)
    for _ in range(config.epochs):
        trainer.train_epoch()
    assert _group_spread(trainer.model, trainer.train_graphs) < 0.5 * before
