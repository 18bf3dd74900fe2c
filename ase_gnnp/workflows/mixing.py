"""Mixing energies of a binary alloy A_x B_{1-x}: random supercells, relaxed, with their
convex hull and a verdict (ordering or phase separation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.data import atomic_numbers, reference_states
from tqdm import tqdm

from ase_gnnp.workflows.relax import relax

__all__ = [
    "LATTICES",
    "ORDERED",
    "MixingResult",
    "lower_hull",
    "mixing_energies",
    "plot_mixing",
    "verdict",
]

#: lattices the alloy can take (conventional cubic cells)
LATTICES = ("fcc", "bcc", "diamond")
#: |ΔE| below this (eV/atom) counts as ideal mixing in the verdict
TOLERANCE = 1e-3


def _reference_lattice_constant(symbol: str, lattice: str) -> float:
    z = atomic_numbers.get(symbol)
    if z is None:
        raise ValueError(f"unknown element {symbol!r}")
    state = reference_states[z] or {}
    if state.get("symmetry") == lattice and "a" in state:
        return float(state["a"])
    # another ground state: a guess from the atomic volume of the reference state
    atoms = bulk(symbol)
    volume = atoms.get_volume() / len(atoms)
    per_cell = {"fcc": 4, "bcc": 2, "diamond": 8}[lattice]
    return float((volume * per_cell) ** (1 / 3))


def _cell(symbol: str, lattice: str, a: float, reps) -> Atoms:
    return bulk(symbol, lattice, a=a, cubic=True) * tuple(reps)


#: ordered compounds on each lattice's conventional cell: name -> sites of A (the rest B)
ORDERED = {
    "fcc": {"L1_2 AB3": [0], "L1_0 AB": [0, 1], "L1_2 A3B": [1, 2, 3]},
    "bcc": {"B2 AB": [0]},
    "diamond": {"zincblende AB": [0, 1, 2, 3]},
}


def lower_hull(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Indices of the lower convex hull of points ``(x, e)``, ordered by ``x``."""
    order = np.lexsort((e, x))
    hull: list[int] = []
    for i in order:
        while len(hull) >= 2:
            (x1, e1), (x2, e2) = (x[hull[-2]], e[hull[-2]]), (x[hull[-1]], e[hull[-1]])
            if (x2 - x1) * (e[i] - e1) - (e2 - e1) * (x[i] - x1) <= 0:
                hull.pop()  # the middle point lies on or above the chord
            else:
                break
        hull.append(int(i))
    return np.array(hull)


def verdict(x: np.ndarray, e: np.ndarray, tolerance: float = TOLERANCE) -> str:
    """``"ordering"`` (some composition below the pure phases by more than ``tolerance``
    eV/atom), ``"phase separation"`` (every one above) or ``"ideal mixing"``."""
    inner = (x > 0) & (x < 1)
    if np.any(e[inner] < -tolerance):
        return "ordering"
    if np.all(e[inner] > tolerance):
        return "phase separation"
    return "ideal mixing"


@dataclass
class MixingResult:
    """Mixing energies of ``A_x B_{1-x}`` (``x``: fraction of A).

    Attributes
    ----------
    elements : (A, B)
    lattice : str
    natoms : int
        Atoms per supercell.
    x : ndarray (M,)
        Composition of each relaxed cell (pure phases included, x = 0 and 1).
    kind : list of str (M,)
        ``"pure"``, ``"random"`` (a random occupation of the supercell) or the name of an
        ordered compound (``"L1_2 A3B"``, ``"L1_0 AB"``, ``"B2 AB"``, ``"zincblende AB"``).
    mixing_energy : ndarray (M,)
        ``E/N − x E_A − (1 − x) E_B`` in eV/atom, pure phases relaxed in the same lattice.
    volume : ndarray (M,)
        Relaxed volume per atom, Å³.
    pure_energy, pure_lattice_constant : dict
        eV/atom and Å of the relaxed pure phases.
    hull : ndarray
        Indices of the lower convex hull.
    verdict : str
        See :func:`verdict`.
    """

    elements: tuple[str, str]
    lattice: str
    natoms: int
    x: np.ndarray
    mixing_energy: np.ndarray
    volume: np.ndarray
    kind: list = field(default_factory=list)
    pure_energy: dict = field(default_factory=dict)
    pure_lattice_constant: dict = field(default_factory=dict)
    hull: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    verdict: str = ""

    def mean_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Compositions and the mean mixing energy of the random alloys (the disordered
        solution) at each, with the pure phases."""
        keep = np.array([k in ("pure", "random") for k in self.kind])
        xs = np.unique(self.x[keep])
        return xs, np.array([self.mixing_energy[keep & (self.x == v)].mean() for v in xs])

    def ordered(self) -> dict[str, tuple[float, float]]:
        """Ordered compounds: name -> (x, mixing energy)."""
        return {k: (float(x), float(e)) for k, x, e in zip(self.kind, self.x, self.mixing_energy)
                if k not in ("pure", "random")}  # fmt: skip

    def to_dict(self) -> dict:
        xs, mean = self.mean_curve()
        return {
            "elements": list(self.elements),
            "lattice": self.lattice,
            "natoms": self.natoms,
            "x": self.x.tolist(),
            "mixing_energy_eV_per_atom": self.mixing_energy.tolist(),
            "volume_A3_per_atom": self.volume.tolist(),
            "kind": list(self.kind),
            "mean_curve": {"x": xs.tolist(), "mixing_energy_eV_per_atom": mean.tolist()},
            "ordered": self.ordered(),
            "pure_energy_eV_per_atom": self.pure_energy,
            "pure_lattice_constant_A": self.pure_lattice_constant,
            "hull_x": self.x[self.hull].tolist(),
            "hull_mixing_energy": self.mixing_energy[self.hull].tolist(),
            "verdict": self.verdict,
        }


def mixing_energies(
    calc: Calculator,
    a: str,
    b: str,
    lattice: str = "fcc",
    x_values: Sequence[float] = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875),
    reps: Sequence[int] = (2, 2, 2),
    samples: int = 3,
    fmax: float = 0.01,
    max_steps: int = 500,
    seed: int = 0,
    progress: bool = True,
    ordered: bool = True,
) -> MixingResult:
    """Relax random ``A_x B_{1-x}`` supercells (positions and cell) with ``calc``.

    Parameters
    ----------
    calc
        Any ASE calculator giving energy, forces and stress (the model or a teacher).
    a, b
        Element symbols; ``x`` is the fraction of ``a``.
    lattice
        ``"fcc"``, ``"bcc"`` or ``"diamond"`` (conventional cubic cell × ``reps``).
    x_values
        Compositions strictly between 0 and 1; each is rounded to a whole number of atoms.
    samples
        Random occupations per composition (the same ones for every calculator with the
        same ``seed``): the spread shows the configurational scatter.
    fmax
        Force threshold of the relaxation, eV/Å.
    ordered
        Also relax the ordered compounds of the lattice (:data:`ORDERED`): a random
        solution can lie above the pure phases while an ordered compound lies below.

    Raises
    ------
    ValueError
        For an unknown lattice or element, or compositions outside (0, 1).
    RuntimeError
        If a relaxation does not converge within ``max_steps``.
    """
    if lattice not in LATTICES:
        raise ValueError(f"lattice must be one of {LATTICES}, got {lattice!r}")
    if a == b:
        raise ValueError(f"the two elements must differ, got {a!r} twice")
    x_values = [float(v) for v in x_values]
    if not x_values or any(not 0.0 < v < 1.0 for v in x_values):
        raise ValueError(f"x_values must lie strictly between 0 and 1, got {x_values}")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    constants = {s: _reference_lattice_constant(s, lattice) for s in (a, b)}
    pure_energy, pure_a = {}, {}
    for symbol in (a, b):
        unit = _cell(symbol, lattice, constants[symbol], (1, 1, 1))
        unit.calc = calc
        relax(unit, cell=True, fmax=fmax, max_steps=max_steps, what=f"pure {symbol}")
        pure_energy[symbol] = float(unit.get_potential_energy() / len(unit))
        pure_a[symbol] = float(np.cbrt(unit.get_volume()))
    rng = np.random.default_rng(seed)
    per_cell = len(unit)  # atoms in the conventional cell of the lattice
    rows = [(1.0, 0.0, pure_a[a] ** 3 / per_cell, "pure"),
            (0.0, 0.0, pure_a[b] ** 3 / per_cell, "pure")]  # fmt: skip

    def relaxed(atoms: Atoms, kind: str) -> None:
        atoms.calc = calc
        n = len(atoms)
        n_a = int(np.sum(atoms.numbers == atomic_numbers[a]))
        relax(atoms, cell=True, fmax=fmax, max_steps=max_steps, what=f"{a}{n_a}{b}{n - n_a}")
        xa = n_a / n
        e = atoms.get_potential_energy() / n - xa * pure_energy[a] - (1 - xa) * pure_energy[b]
        rows.append((xa, float(e), atoms.get_volume() / n, kind))

    for name, sites in ORDERED[lattice].items() if ordered else ():
        xa = len(sites) / per_cell
        atoms = _cell(b, lattice, xa * pure_a[a] + (1 - xa) * pure_a[b], (1, 1, 1))
        numbers = atoms.numbers.copy()
        numbers[sites] = atomic_numbers[a]
        atoms.numbers = numbers
        relaxed(atoms, name)
    jobs = [(x, k) for x in x_values for k in range(samples)]
    natoms = len(_cell(a, lattice, 1.0, reps))
    for x, _ in tqdm(jobs, desc=f"mixing {a}-{b}", disable=not progress):
        n_a = int(round(x * natoms))
        guess = (n_a * pure_a[a] + (natoms - n_a) * pure_a[b]) / natoms  # Vegard
        atoms = _cell(b, lattice, guess, reps)
        numbers = atoms.numbers.copy()
        numbers[rng.choice(natoms, n_a, replace=False)] = atomic_numbers[a]
        atoms.numbers = numbers
        atoms.rattle(0.01, seed=int(rng.integers(2**31)))  # break symmetric saddle points
        relaxed(atoms, "random")
    x, e, volume = (np.array(col) for col in list(zip(*rows))[:3])
    kinds = [row[3] for row in rows]
    return MixingResult(
        elements=(a, b), lattice=lattice, natoms=natoms, x=x, mixing_energy=e, volume=volume,
        kind=kinds, pure_energy=pure_energy, pure_lattice_constant=pure_a,
        hull=lower_hull(x, e), verdict=verdict(x, e),
    )  # fmt: skip


def plot_mixing(results: dict[str, MixingResult], path: str | Path, title: str = "") -> Path:
    """Mixing energy against composition for each labelled result, with hulls; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for k, (label, r) in enumerate(results.items()):
        color = f"C{k}"
        random = np.array([k == "random" for k in r.kind])
        ax.plot(r.x[random], 1000 * r.mixing_energy[random], "o", color=color, alpha=0.35, ms=4)
        for xo, eo in r.ordered().values():
            ax.plot(xo, 1000 * eo, "*", color=color, ms=9)
        xs, mean = r.mean_curve()
        ax.plot(xs, 1000 * mean, "-", color=color, label=f"{label}: {r.verdict}")
        ax.plot(r.x[r.hull], 1000 * r.mixing_energy[r.hull], "--", color=color, lw=1)
    a, b = next(iter(results.values())).elements
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"x in {a}$_x${b}$_{{1-x}}$")
    ax.set_ylabel("mixing energy (meV/atom)")
    ax.set_title(title or f"{a}-{b} mixing energies (relaxed)")
    ax.text(0.02, 0.02, "dots: random alloys (line: mean); stars: ordered compounds; "
            "dashed: lower hull", transform=ax.transAxes, fontsize=7)  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
