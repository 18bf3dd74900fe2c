"""The divergence guard: an epoch whose training loss blows up is undone and trained again
with half the learning rate; a run that never diverges is unchanged."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from conftest import final_weights, train_config

from ase_gnnp import load_model
from ase_gnnp.train import Trainer
from ase_gnnp.train.guard import DivergenceGuard


def _rows(out) -> list[dict]:
    with open(out / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def _blow_up(trainer: Trainer) -> None:
    """What a spike leaves behind: weights far from anything trained."""
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(torch.randn_like(p) * 50.0)


def test_an_epoch_is_judged_against_the_lowest_loss_of_its_stage():
    guard = DivergenceGuard(factor=10.0, retries=3)
    assert not guard.diverged(5.0, final_stage=False)  # the first epoch sets the scale
    assert not guard.diverged(1.0, final_stage=False)
    assert not guard.diverged(9.9, final_stage=False)  # 9.9x the lowest: a bad epoch
    assert guard.diverged(10.1, final_stage=False)
    assert guard.diverged(math.nan, final_stage=False)
    assert guard.diverged(math.inf, final_stage=False)
    # new loss weights (the final stage) give the loss a new scale
    assert not guard.diverged(500.0, final_stage=True)
    assert guard.diverged(5001.0, final_stage=True)
    off = DivergenceGuard(factor=0.0, retries=3)
    assert not off.diverged(1.0, False) and not off.diverged(1e9, False)
    assert not off.diverged(math.nan, False)


@pytest.mark.parametrize(
    "changes, match",
    [({"divergence_factor": 0.5}, "divergence_factor"), ({"divergence_retries": -1}, "retries")],
)
def test_guard_options_are_checked(tiny_dataset, tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        train_config(tiny_dataset, tmp_path, **changes)


def test_a_run_that_never_diverges_is_the_same_with_and_without_the_guard(tiny_dataset, tmp_path):
    options = dict(epochs=3, scheduler="cosine", warmup_fraction=0.2)
    on = Trainer(train_config(tiny_dataset, tmp_path / "on", **options), progress=False)
    result = on.run()
    assert result["rollbacks"] == 0 and on.guard.lr_scale == 1.0
    off = Trainer(
        train_config(tiny_dataset, tmp_path / "off", divergence_factor=0.0, **options),
        progress=False,
    )
    off.run()
    a, b = final_weights(tmp_path / "on"), final_weights(tmp_path / "off")
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(b[part][key], value), key


@pytest.mark.parametrize("scheduler", ["cosine", "plateau"])
def test_a_blown_up_epoch_is_undone_and_trained_again_at_half_the_lr(
    tiny_dataset, tmp_path, monkeypatch, scheduler
):
    options = dict(epochs=4, scheduler=scheduler)
    Trainer(train_config(tiny_dataset, tmp_path / "ref", **options), progress=False).run()
    original = Trainer.train_epoch
    starts = []

    def spike_in_epoch_3(self):
        starts.append({k: v.clone() for k, v in self.model.state_dict().items()})
        loss = original(self)
        if self.epoch == 2 and len(starts) == 3:  # the first try of epoch 3
            _blow_up(self)
            return 1e6 * loss
        return loss

    monkeypatch.setattr(Trainer, "train_epoch", spike_in_epoch_3)
    out = tmp_path / "spike"
    trainer = Trainer(train_config(tiny_dataset, out, **options), progress=False)
    result = trainer.run()
    assert result["rollbacks"] == 1 and result["epochs"] == 4
    assert result["stop_reason"] == "epochs"
    # the retry started from the weights the spiked try started from
    assert len(starts) == 5
    for key, value in starts[2].items():
        assert torch.equal(starts[3][key], value), key
    # the first two epochs are the reference run's; from the retry on, the LR is halved
    ref, rows = _rows(tmp_path / "ref"), _rows(out)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[:2] == [{**r, "wall_s": s["wall_s"]} for r, s in zip(ref[:2], rows[:2])]
    assert float(rows[2]["lr"]) == pytest.approx(0.5 * float(ref[2]["lr"]), rel=1e-9)
    assert float(rows[2]["train_loss"]) < 10 * float(rows[1]["train_loss"])
    assert all(torch.isfinite(p).all() for p in load_model(out / "model.pt").parameters())
    # a resumed run keeps the cut LR
    monkeypatch.setattr(Trainer, "train_epoch", original)
    resumed = Trainer.resume(out, progress=False, epochs=5)
    assert resumed.guard.lr_scale == 0.5 and resumed.guard.rollbacks == 1


def test_a_run_that_keeps_diverging_stops_with_its_best_model(tiny_dataset, tmp_path, monkeypatch):
    original = Trainer.train_epoch

    def diverges_after_epoch_1(self):
        loss = original(self)
        if self.epoch >= 1:
            _blow_up(self)
            return math.nan
        return loss

    monkeypatch.setattr(Trainer, "train_epoch", diverges_after_epoch_1)
    out = tmp_path / "bad"
    config = train_config(tiny_dataset, out, epochs=4, divergence_retries=2)
    result = Trainer(config, progress=False).run()
    assert result["stop_reason"] == "diverged" and result["rollbacks"] == 2
    assert result["epochs"] == 1 and load_model(out / "model.pt").metadata["epoch"] == 1

    def never_finite(self):
        original(self)
        return math.nan

    monkeypatch.setattr(Trainer, "train_epoch", never_finite)
    config = train_config(tiny_dataset, tmp_path / "worse", divergence_retries=1)
    with pytest.raises(RuntimeError, match="diverged in its first epoch 2 times"):
        Trainer(config, progress=False).run()
