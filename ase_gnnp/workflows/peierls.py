"""Peierls barrier of a ½⟨111⟩ screw dislocation in a BCC metal by climbing-image NEB.

A cylinder of radius ``radius`` around the dislocation line (one Burgers vector thick,
periodic along the line, outer shell fixed to the anisotropic elastic solution) is built
with ``matscipy.dislocation.BCCScrew111Dislocation`` for the core at its initial and at
the neighbouring Peierls valley one glide step away on a {110} plane. The end points are
relaxed and ``ase.mep.NEB`` (climbing image, improved tangent) finds the minimum energy
path; the barrier is reported per Burgers vector and the Peierls stress from the largest
slope of the energy along the glide coordinate, ``σ_P = max(dE/dx) / (b · L)`` with L
the length of dislocation line in the cell (here L = b).

Any ASE calculator works, so the teacher and the model run on the same geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator

from ase_gnnp.workflows.relax import relax

__all__ = ["GlideSetup", "PeierlsResult", "build_glide", "peierls_barrier", "plot_barriers"]


@dataclass
class GlideSetup:
    """End points of one glide step and the dislocation's geometry."""

    bulk: Atoms
    initial: Atoms
    final: Atoms
    burgers: float  # |b|, Å
    glide_distance: float  # Å
    line_length: float  # Å of dislocation line in the cell


def build_glide(
    symbol: str, a: float, C11: float, C12: float, C44: float, radius: float = 25.0
) -> GlideSetup:
    """Unrelaxed end points (anisotropic elastic displacement field, ``adsl`` method).

    Parameters
    ----------
    symbol
        The BCC metal, e.g. ``"W"``.
    a
        Lattice constant (Å).
    C11, C12, C44
        Cubic elastic constants (GPa) for the displacement field.
    radius
        Cylinder radius (Å); atoms within 10 Å of its surface are fixed.
    """
    from matscipy.dislocation import BCCScrew111Dislocation

    if not 5.0 <= radius <= 80.0:
        raise ValueError(f"radius must be within 5..80 Å, got {radius!r}")
    if not a > 0:
        raise ValueError(f"lattice constant must be positive, got {a!r}")
    dislocation = BCCScrew111Dislocation(a, C11, C12, C44, symbol=symbol)
    bulk, initial, final = dislocation.build_glide_configurations(
        radius=radius, average_positions=True, method="adsl", verbose=False
    )
    burgers = a * np.sqrt(3) / 2
    return GlideSetup(bulk, initial, final, burgers, float(dislocation.glide_distance),
                      float(initial.cell[2, 2]))  # fmt: skip


@dataclass
class PeierlsResult:
    """Minimum energy path of one glide step.

    Attributes
    ----------
    energies : ndarray
        Image energies relative to the initial state, meV per Burgers vector (of line).
    path : ndarray
        Glide coordinate of each image as a fraction of the glide step (0 … 1), from the
        cumulative path length.
    barrier : float
        Highest image energy above the initial state, meV/b.
    peierls_stress : float
        ``max(dE/dx) / (b L)`` from a cubic spline through the images, MPa.
    peierls_stress_sinusoidal : float
        The same for a sinusoidal profile of height ``barrier``.
    """

    energies: np.ndarray
    path: np.ndarray
    glide_distance: float
    burgers: float
    images: list = field(repr=False, default_factory=list)
    seconds: float = 0.0
    neb_steps: int = 0

    @property
    def barrier(self) -> float:
        return float(self.energies.max())

    @property
    def peierls_stress(self) -> float:
        from scipy.interpolate import CubicSpline

        x = self.path * self.glide_distance  # Å
        spline = CubicSpline(x, self.energies / 1000.0)  # eV per b of line
        grid = np.linspace(x[0], x[-1], 400)
        return self._stress_mpa(spline(grid, 1).max())  # slope in eV/Å per b of line

    @property
    def peierls_stress_sinusoidal(self) -> float:
        """``π ΔE / (a' b²)``, MPa: the largest slope of a sinusoidal profile of the same
        height over the glide step a'; the robust figure when the path is rugged (the
        spline slope then measures the ruggedness, not the lattice resistance)."""
        return self._stress_mpa(np.pi * self.barrier / 1000.0 / self.glide_distance)

    def _stress_mpa(self, slope: float) -> float:
        """Resolved shear stress (MPa) that balances an energy slope (eV/Å per b of line)."""
        return float(slope / self.burgers**2 / units.GPa * 1000.0)

    @property
    def single_hump(self) -> bool:
        """Whether the energy rises to one maximum and falls again (no intermediate dips
        deeper than 10 % of the barrier)."""
        peak = int(np.argmax(self.energies))
        rise, fall = np.diff(self.energies[: peak + 1]), np.diff(self.energies[peak:])
        tol = 0.1 * self.barrier
        return bool(np.all(rise > -tol) and np.all(fall < tol))

    def to_dict(self) -> dict:
        return {
            "barrier_meV_per_b": self.barrier,
            "peierls_stress_MPa": self.peierls_stress,
            "peierls_stress_sinusoidal_MPa": self.peierls_stress_sinusoidal,
            "single_hump": self.single_hump,
            "energies_meV_per_b": np.round(self.energies, 4).tolist(),
            "glide_fraction": np.round(self.path, 5).tolist(),
            "glide_distance_A": self.glide_distance,
            "burgers_A": self.burgers,
            "seconds": self.seconds,
            "neb_steps": self.neb_steps,
        }


def peierls_barrier(
    setup: GlideSetup,
    calc: Calculator,
    n_images: int = 7,
    fmax: float = 0.01,
    max_steps: int = 1000,
    climb: bool = True,
    progress: bool = False,
) -> PeierlsResult:
    """Relax the end points with ``calc`` and run a climbing-image NEB between them.

    Parameters
    ----------
    setup
        From :func:`build_glide` (the same geometry for every calculator compared).
    calc
        Any ASE calculator; one object is shared by all images (they are computed one
        after another).
    n_images
        Images including the two end points.
    fmax
        Force threshold (eV/Å) of the end-point relaxations and the NEB.
    """
    import time

    from ase.mep import NEB
    from ase.optimize import FIRE

    if n_images < 3:
        raise ValueError(f"n_images must be at least 3 (two end points), got {n_images}")
    start = time.perf_counter()
    ends = []
    for which, atoms in (("initial", setup.initial), ("final", setup.final)):
        atoms = atoms.copy()
        atoms.calc = calc
        relax(atoms, False, fmax / 2, max_steps, f"{which} dislocation core", optimizer=FIRE)
        ends.append(atoms)
    images = [ends[0]] + [ends[0].copy() for _ in range(n_images - 2)] + [ends[1]]
    for image in images:
        image.calc = calc
    neb = NEB(images, climb=climb, method="improvedtangent", allow_shared_calculator=True)
    neb.interpolate(apply_constraint=True)
    optimizer = FIRE(neb, logfile="-" if progress else None)
    if not optimizer.run(fmax=fmax, steps=max_steps):
        raise RuntimeError(f"the NEB did not reach fmax={fmax} eV/Å in {max_steps} steps")
    energies = np.array([image.get_potential_energy() for image in images])
    n_b = setup.line_length / setup.burgers
    displacement = [np.linalg.norm(b.positions - a.positions) for a, b in zip(images, images[1:])]
    path = np.concatenate([[0.0], np.cumsum(displacement)])
    return PeierlsResult(
        energies=(energies - energies[0]) * 1000.0 / n_b,
        path=path / path[-1],
        glide_distance=setup.glide_distance,
        burgers=setup.burgers,
        images=[image.copy() for image in images],
        seconds=time.perf_counter() - start,
        neb_steps=optimizer.nsteps,
    )


def plot_barriers(results: dict[str, PeierlsResult], path, title: str = "") -> None:
    """Energy along the glide step (meV/b) of one or more calculators, PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.interpolate import CubicSpline

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (name, result), marker in zip(results.items(), "osd^v"):
        spline = CubicSpline(result.path, result.energies)
        grid = np.linspace(0, 1, 200)
        lines = ax.plot(grid, spline(grid), "-")
        label = f"{name}: {result.barrier:.1f} meV/b"
        ax.plot(result.path, result.energies, marker, color=lines[0].get_color(), label=label)
    ax.set(xlabel="glide coordinate (fraction of one step)", ylabel="E − E_initial (meV/b)",
           title=title)  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
