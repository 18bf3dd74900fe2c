"""Performance tools: roofline profile, memory scaling, mixed precision, large systems."""

from ase_gnnp.perf.memory import peak_memory
from ase_gnnp.perf.memory_studies import (
    checkpointing_study,
    largest_system,
    memory_scan,
    plot_checkpointing,
    plot_memory,
)
from ase_gnnp.perf.precision import plot_precision, precision_study

__all__ = [
    "checkpointing_study", "largest_system", "memory_scan", "peak_memory",
    "plot_checkpointing", "plot_memory", "plot_precision", "precision_study",
]  # fmt: skip
