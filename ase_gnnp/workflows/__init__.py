"""Materials workflows that run with any ASE calculator (the model or a teacher)."""

from ase_gnnp.workflows.elastic import (
    DEFAULT_STRAIN,
    ElasticCalculation,
    ElasticResult,
    elastic_constants,
    plot_strain_sweep,
    strain_sweep,
    voigt_reuss_hill,
)

__all__ = [
    "DEFAULT_STRAIN",
    "ElasticCalculation",
    "ElasticResult",
    "elastic_constants",
    "plot_strain_sweep",
    "strain_sweep",
    "voigt_reuss_hill",
]
