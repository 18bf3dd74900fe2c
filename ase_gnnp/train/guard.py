"""Undo an epoch whose training loss blew up, and go on with a smaller learning rate.

A learning rate that trains well on most splits of a data set can, on one split, send a
run into a spike from which it never recovers: on mlearn Si at 4e-2 (twice the default
recipe's) the training loss of one fold rose 83-fold within an epoch and the network
collapsed to constant forces for the remaining 120 epochs. :class:`DivergenceGuard`
keeps a copy of the trainer's state at the end of each accepted epoch; an epoch whose
mean training loss is not finite, or exceeds ``factor`` times the lowest epoch loss of
its training stage, is undone (weights, weight average, optimizer moments, LR schedule
state, stage) and the learning rate is halved for the rest of the run. The epoch is then
trained again, on the same batches.

The lowest loss starts afresh when the loss weights change (the final stage), so that a
higher energy weight is not taken for a blow-up. Runs that never diverge are unchanged:
the guard only copies state, it draws no random numbers.
"""

from __future__ import annotations

import copy
import math

__all__ = ["DivergenceGuard"]

#: the learning rate is multiplied by this after each rollback
LR_FACTOR = 0.5


class DivergenceGuard:
    """Decide whether an epoch diverged; keep and restore the last good state.

    Parameters
    ----------
    factor
        An epoch whose mean training loss exceeds ``factor`` times the lowest epoch loss
        of its stage diverged (a non-finite loss always does); 0 disables the guard.
    retries
        Rollbacks allowed in one run; the next divergence ends the run (the best model
        saved so far is the result).

    Attributes
    ----------
    lr_scale : float
        Product of the LR cuts so far (1.0 until the first rollback); the trainer
        multiplies every scheduled LR by it.
    rollbacks : int
        Epochs undone so far.
    """

    def __init__(self, factor: float, retries: int) -> None:
        if not (factor == 0 or factor > 1):
            raise ValueError(f"divergence_factor must be 0 (off) or > 1, got {factor!r}")
        if retries < 0:
            raise ValueError(f"divergence_retries must be >= 0, got {retries!r}")
        self.factor = float(factor)
        self.retries = int(retries)
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.lowest = math.inf
        self.stage: bool | None = None
        self._saved: dict | None = None

    @property
    def enabled(self) -> bool:
        return self.factor > 0

    @property
    def exhausted(self) -> bool:
        """Whether no rollback is left."""
        return self.rollbacks >= self.retries

    def diverged(self, loss: float, final_stage: bool) -> bool:
        """Whether an epoch with mean training ``loss``, ending in the final stage or not,
        diverged; an accepted epoch's loss updates the stage's lowest loss."""
        if not self.enabled:
            return False
        if not math.isfinite(loss):
            return True
        if final_stage != self.stage:  # new loss weights: a new scale of the loss
            self.stage, self.lowest = final_stage, loss
            return False
        if loss > self.factor * self.lowest:
            return True
        self.lowest = min(self.lowest, loss)
        return False

    def save(self, trainer) -> None:
        """Keep a copy of ``trainer``'s state at the end of an accepted epoch."""
        if not self.enabled:
            return
        self._saved = copy.deepcopy(
            {
                **trainer.weights_state(),
                "weights": trainer.weights,
                "in_final_stage": trainer.in_final_stage,
                "lowest": self.lowest,
                "stage": self.stage,
            }
        )

    def roll_back(self, trainer) -> None:
        """Restore the last saved state into ``trainer`` and cut the learning rate."""
        if self._saved is None:
            raise RuntimeError("DivergenceGuard.roll_back before any DivergenceGuard.save")
        saved = copy.deepcopy(self._saved)
        trainer.load_weights_state(saved)
        trainer.weights = saved["weights"]
        trainer.in_final_stage = saved["in_final_stage"]
        self.lowest, self.stage = saved["lowest"], saved["stage"]
        self.rollbacks += 1
        self.lr_scale *= LR_FACTOR
        # a plateau or constant LR lives in the optimizer; a cosine one is reset every
        # step from ``lr_scale``
        for group in trainer.optimizer.param_groups:
            group["lr"] *= LR_FACTOR

    def state_dict(self) -> dict:
        """What a resumed run needs (the saved copy is rebuilt at its first epoch)."""
        return {
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "lowest": self.lowest,
            "stage": self.stage,
        }

    def load_state_dict(self, state: dict) -> None:
        self.lr_scale = float(state["lr_scale"])
        self.rollbacks = int(state["rollbacks"])
        self.lowest = float(state["lowest"])
        self.stage = state["stage"]
