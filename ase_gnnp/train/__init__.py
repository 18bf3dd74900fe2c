"""Training: configuration, data statistics, loss, and the resumable training loop."""

from ase_gnnp.train import distributed
from ase_gnnp.train.config import TrainConfig
from ase_gnnp.train.trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "distributed"]
