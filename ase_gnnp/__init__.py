"""ase_gnnp: an E(3)-equivariant graph neural network potential for ASE."""

__version__ = "0.1.0"

from ase_gnnp.calculator import GNNPCalculator  # noqa: E402
from ase_gnnp.checkpoint import load_model, save_model  # noqa: E402
from ase_gnnp.config import ModelConfig  # noqa: E402
from ase_gnnp.model import GNNPModel  # noqa: E402

__all__ = ["GNNPCalculator", "GNNPModel", "ModelConfig", "load_model", "save_model"]
