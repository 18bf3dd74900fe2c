"""Building blocks of the equivariant network."""

from ase_gnnp.nn.embedding import ElementEmbedding, FieldEmbedding
from ase_gnnp.nn.interaction import Interaction
from ase_gnnp.nn.radial import BesselBasis, PolynomialCutoff, RadialEmbedding

__all__ = [
    "BesselBasis",
    "ElementEmbedding",
    "FieldEmbedding",
    "Interaction",
    "PolynomialCutoff",
    "RadialEmbedding",
]
