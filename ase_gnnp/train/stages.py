"""The final training stage: other loss weights and learning rate, weights averaged.

MACE ends its training with a second stage in which the energy weighs more and the
weights are averaged (stochastic weight averaging); on its benchmarks this stage cut the
error of energies, and of forces too, in the last epochs. :class:`FinalStage` says when
the stage begins (a share of the run, counted in epochs or in the wall-time budget,
whichever ends the run) and what changes then; the trainer applies it.
"""

from __future__ import annotations

from ase_gnnp.train.config import TrainConfig

__all__ = ["FinalStage"]


class FinalStage:
    """When the final stage of a run starts and what it changes.

    Parameters
    ----------
    config
        Training options; ``final_fraction`` > 0 enables the stage.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    @property
    def enabled(self) -> bool:
        return self.config.final_fraction > 0

    def due(self, done: float) -> bool:
        """Whether a run ``done`` (0..1) of the way through is in the final stage."""
        return self.enabled and done >= 1.0 - self.config.final_fraction

    def weights(self, weights: dict[str, float]) -> dict[str, float]:
        """The first stage's loss ``weights`` with the final stage's replacements (a zero
        stress weight, for data without stress labels, stays zero)."""
        cfg = self.config
        new = dict(weights)
        finals = {
            "energy": cfg.final_energy_weight,
            "forces": cfg.final_forces_weight,
            "stress": cfg.final_stress_weight,
        }
        for name, value in finals.items():
            if value is not None and not (name == "stress" and weights[name] == 0.0):
                new[name] = float(value)
        return new
