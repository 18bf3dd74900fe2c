"""The parts of a training recipe: Huber penalty, final stage with weight averaging,
training without a validation split."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import final_weights, train_config

from ase_gnnp import load_model
from ase_gnnp.train import Trainer
from ase_gnnp.train.ema import EMA
from ase_gnnp.train.loss import penalty
from ase_gnnp.train.stages import FinalStage


def _rows(out) -> list[dict]:
    with open(out / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_huber_penalty_is_the_square_inside_delta_and_linear_beyond():
    x = torch.tensor([-0.3, -0.01, 0.0, 0.005, 0.02, 2.0], dtype=torch.float64)
    torch.testing.assert_close(penalty(x), x.pow(2))
    expected = torch.where(x.abs() <= 0.01, x.pow(2), 2 * 0.01 * x.abs() - 0.01**2)
    torch.testing.assert_close(penalty(x, 0.01), expected)


def test_uniform_average_is_the_mean_of_the_weights_after_each_step():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, 0.99)
    seen = []
    with torch.no_grad():
        model.weight.fill_(-5.0)
        ema.update(model)
        ema.restart_uniform()
        for k in range(4):
            model.weight.fill_(float(k))
            ema.update(model)
            seen.append(float(k))
    assert float(ema.shadow.weight[0, 0]) == pytest.approx(sum(seen) / len(seen))
    restored = EMA(model, 0.99)
    restored.load_state_dict(ema.state_dict())
    assert restored.uniform_count == 4


def test_final_stage_weights_keep_an_unlabelled_stress_out(tiny_dataset, tmp_path):
    config = train_config(
        tiny_dataset,
        tmp_path / "x",
        final_fraction=0.25,
        final_energy_weight=100.0,
        final_stress_weight=5.0,
    )
    stage = FinalStage(config)
    assert not stage.due(0.74) and stage.due(0.75)
    base = {"energy": 1.0, "forces": 1.0, "stress": 0.0}
    assert stage.weights(base) == {"energy": 100.0, "forces": 1.0, "stress": 0.0}
    assert not FinalStage(config.updated(final_fraction=0.0)).due(1.0)


def test_final_stage_switches_weights_lr_and_averages_over_the_stage(tiny_dataset, tmp_path):
    out = tmp_path / "final"
    config = train_config(
        tiny_dataset,
        out,
        epochs=4,
        scheduler="cosine",
        final_fraction=0.5,
        final_energy_weight=1000.0,
        final_lr=1e-4,
        loss="huber",
    )
    trainer = Trainer(config, progress=False)
    before = dict(trainer.weights)
    trainer.run()
    assert trainer.in_final_stage
    assert trainer.weights["energy"] == 1000.0 and trainer.weights["forces"] == before["forces"]
    lrs = [float(r["lr"]) for r in _rows(out)]
    assert lrs[2:] == [1e-4, 1e-4] and lrs[0] > 1e-3
    # two epochs of 3 steps in the stage: the average of 6 weight vectors
    assert trainer.ema.uniform_count == 6
    # model selection restarted in the stage: the best model is one of its epochs
    assert load_model(out / "model.pt").metadata["epoch"] >= 3


def test_resume_inside_the_final_stage_equals_an_uninterrupted_run(
    tiny_dataset, tmp_path, monkeypatch
):
    options = dict(epochs=4, scheduler="cosine", final_fraction=0.5, final_energy_weight=1000.0)
    Trainer(train_config(tiny_dataset, tmp_path / "a", **options), progress=False).run()
    killed = Trainer(train_config(tiny_dataset, tmp_path / "b", **options), progress=False)
    original = Trainer.train_epoch

    def killed_in_epoch_4(self):
        if self.epoch == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_epoch", killed_in_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        killed.run()
    monkeypatch.setattr(Trainer, "train_epoch", original)
    resumed = Trainer.resume(tmp_path / "b", progress=False)
    assert resumed.in_final_stage and resumed.weights["energy"] == 1000.0
    assert resumed.ema.uniform_count == 3  # epoch 3, the stage's first, was kept
    resumed.run()
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    for part in ("model", "ema"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, rtol=1e-6, atol=1e-6, msg=key)


def test_training_without_validation_keeps_the_last_model(tiny_dataset, tmp_path):
    out = tmp_path / "noval"
    config = train_config(tiny_dataset, out, epochs=3, val_fraction=0.0, scheduler="cosine")
    trainer = Trainer(config, progress=False)
    assert len(trainer.train_graphs) == 16 and trainer.val_graphs == []
    result = trainer.run()
    assert result["epochs"] == 3 and result["val_metrics"] == {}
    assert load_model(out / "model.pt").metadata["epoch"] == 3
    assert [r["val_force_mae"] for r in _rows(out)] == ["", "", ""]
    with pytest.raises(ValueError, match="plateau"):
        train_config(tiny_dataset, out, val_fraction=0.0, scheduler="plateau")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"loss": "l1"}, "loss must be"),
        ({"huber_delta": 0.0}, "huber_delta"),
        ({"final_fraction": 1.0}, "final_fraction"),
        ({"final_lr": -1.0}, "final_lr"),
        ({"final_average": "swa"}, "final_average"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_recipe_options_are_checked(tiny_dataset, tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        train_config(tiny_dataset, tmp_path, **changes)


def test_warmup_raises_the_lr_linearly_then_follows_the_cosine(tiny_dataset, tmp_path):
    config = train_config(
        tiny_dataset, tmp_path / "w", scheduler="cosine", epochs=10, warmup_fraction=0.2, min_lr=0.0
    )
    trainer = Trainer(config, progress=False)
    lrs = []
    for epoch in (0.0, 1.0, 2.0, 5.0):
        trainer.epoch = int(epoch)
        trainer._set_cosine_lr(0.0, 0.0)
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
    assert lrs[0] < 1e-12
    assert lrs[1] == pytest.approx(0.5 * 5e-3 * 0.5 * (1 + np.cos(np.pi * 0.1)))
    assert lrs[2] == pytest.approx(5e-3 * 0.5 * (1 + np.cos(np.pi * 0.2)))
    assert lrs[3] == pytest.approx(0.5 * 5e-3)
    with pytest.raises(ValueError, match="warmup_fraction"):
        train_config(tiny_dataset, tmp_path, warmup_fraction=1.0)
