"""Relaxation to a force threshold, failing loudly when it is not reached."""

from __future__ import annotations

from ase import Atoms
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.optimize.optimize import Optimizer

__all__ = ["relax"]


def relax(
    atoms: Atoms,
    cell: bool,
    fmax: float,
    max_steps: int = 500,
    what: str = "structure",
    optimizer: type[Optimizer] = BFGS,
) -> None:
    """Relax ``atoms`` in place with ``optimizer`` (BFGS; the cell too with
    ``FrechetCellFilter``).

    Raises ``RuntimeError`` naming ``what`` when ``fmax`` (eV/Å, and eV/Å³·V for the cell
    degrees of freedom) is not reached within ``max_steps``.
    """
    if not fmax > 0:
        raise ValueError(f"fmax must be positive (eV/Å), got {fmax!r}")
    target = FrechetCellFilter(atoms) if cell else atoms
    opt = optimizer(target, logfile=None)
    if not opt.run(fmax=fmax, steps=max_steps):
        raise RuntimeError(
            f"relaxing the {what} did not reach fmax={fmax} eV/Å in {max_steps} steps"
        )
