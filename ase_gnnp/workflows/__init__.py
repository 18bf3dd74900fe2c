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
from ase_gnnp.workflows.peierls import (
    GlideSetup,
    PeierlsResult,
    build_glide,
    peierls_barrier,
    plot_barriers,
)
from ase_gnnp.workflows.relax import relax

__all__ = [
    "DEFAULT_STRAIN",
    "ElasticCalculation",
    "ElasticResult",
    "GlideSetup",
    "PeierlsResult",
    "build_glide",
    "elastic_constants",
    "peierls_barrier",
    "plot_barriers",
    "plot_strain_sweep",
    "relax",
    "strain_sweep",
    "voigt_reuss_hill",
]
