"""Elastic constants from any ASE calculator: stress-strain slope and energy-strain curvature.

Strains are Voigt vectors ``(ε_xx, ε_yy, ε_zz, γ_yz, γ_xz, γ_xy)`` with engineering shear
``γ = 2 ε``, applied as ``cell' = cell (I + ε)`` (rows are lattice vectors). With ASE's
sign convention (stress = (1/V) ∂E/∂ε, positive under tension) the two routes are

- stress: ``C_ij = ∂σ_i/∂ε_j`` by central differences of the stress, six ± pairs;
- energy: ``C_ij = (1/V0) ∂²E/∂ε_i∂ε_j`` by central second differences of the energy
  (a three-point stencil on the diagonal, a four-point stencil off it).

At every strained cell the atoms may relax at fixed cell (``relax_ions=True``, the default):
that gives the relaxed-ion constants measured by experiment (C44 of diamond drops by about
40 % against the clamped-ion value). The reference cell is relaxed (cell and positions)
first unless ``relax_cell=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator

from ase_gnnp.workflows.relax import relax

#: Voigt index -> (row, column) of the symmetric strain tensor
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
METHODS = ("stress", "energy")


def voigt_strain_matrix(voigt: Sequence[float]) -> np.ndarray:
    """Symmetric 3×3 strain tensor from a Voigt vector with engineering shear strains."""
    voigt = np.asarray(voigt, dtype=float)
    if voigt.shape != (6,):
        raise ValueError(f"a Voigt strain has 6 components, got shape {voigt.shape}")
    eps = np.zeros((3, 3))
    for k, (i, j) in enumerate(VOIGT):
        value = voigt[k] if i == j else 0.5 * voigt[k]
        eps[i, j] = eps[j, i] = value
    return eps


@dataclass
class ElasticResult:
    """Elastic tensor and derived moduli.

    Attributes
    ----------
    C : (6, 6) ndarray
        Voigt elastic constants in GPa.
    method : str
        ``"stress"`` or ``"energy"``.
    strain : float
        Step of the finite differences (dimensionless).
    relax_ions : bool
        Whether the atoms were relaxed in every strained cell.
    volume : float
        Reference volume (Å³).
    """

    C: np.ndarray
    method: str
    strain: float
    relax_ions: bool
    volume: float
    moduli: dict = field(init=False)

    def __post_init__(self) -> None:
        self.moduli = voigt_reuss_hill(self.C)

    def to_dict(self) -> dict:
        return {
            "C_GPa": np.round(self.C, 6).tolist(),
            "method": self.method,
            "strain": self.strain,
            "relax_ions": self.relax_ions,
            "volume_A3": self.volume,
            **{f"{k}_GPa": v for k, v in self.moduli.items()},
        }


def voigt_reuss_hill(C: np.ndarray) -> dict[str, float]:
    """Bulk, shear and Young's moduli (GPa) in the Voigt, Reuss and Hill averages.

    The Reuss (and so the Hill) figures need the compliance ``S = C⁻¹``; for a singular
    ``C`` (e.g. a strain step below the energy's round-off, which leaves rows of zeros)
    they are NaN, and the Voigt figures are still given.
    """
    C = np.asarray(C, dtype=float)
    try:
        S = np.linalg.inv(C)
    except np.linalg.LinAlgError:
        S = np.full_like(C, np.nan)
    kv = (C[0, 0] + C[1, 1] + C[2, 2] + 2 * (C[0, 1] + C[1, 2] + C[0, 2])) / 9
    gv = (
        C[0, 0] + C[1, 1] + C[2, 2] - (C[0, 1] + C[1, 2] + C[0, 2])
        + 3 * (C[3, 3] + C[4, 4] + C[5, 5])
    ) / 15  # fmt: skip
    kr = 1 / (S[0, 0] + S[1, 1] + S[2, 2] + 2 * (S[0, 1] + S[1, 2] + S[0, 2]))
    gr = 15 / (
        4 * (S[0, 0] + S[1, 1] + S[2, 2]) - 4 * (S[0, 1] + S[1, 2] + S[0, 2])
        + 3 * (S[3, 3] + S[4, 4] + S[5, 5])
    )  # fmt: skip
    kh, gh = (kv + kr) / 2, (gv + gr) / 2
    return {
        "bulk_voigt": kv, "bulk_reuss": kr, "bulk_hill": kh,
        "shear_voigt": gv, "shear_reuss": gr, "shear_hill": gh,
        "young_hill": 9 * kh * gh / (3 * kh + gh),
        "poisson_hill": (3 * kh - 2 * gh) / (2 * (3 * kh + gh)),
    }  # fmt: skip


class ElasticCalculation:
    """Strained copies of a reference cell evaluated with one calculator.

    Parameters
    ----------
    atoms
        Periodic structure (all three directions).
    calc
        Any ASE calculator giving energy and stress.
    relax_cell
        Relax cell shape and positions of the reference first (to zero stress).
    relax_ions
        Relax positions in every strained cell (relaxed-ion constants).
    fmax
        Force threshold (eV/Å) of every relaxation.
    max_steps
        Step limit of every relaxation; exceeding it is an error.
    """

    def __init__(
        self,
        atoms: Atoms,
        calc: Calculator,
        relax_cell: bool = True,
        relax_ions: bool = True,
        fmax: float = 1e-4,
        max_steps: int = 500,
    ) -> None:
        if not isinstance(atoms, Atoms):
            raise TypeError(f"atoms must be ase.Atoms, got {type(atoms).__name__}")
        if not np.all(atoms.pbc):
            raise ValueError(
                f"elastic constants need a cell periodic in all three directions, "
                f"got pbc={atoms.pbc.tolist()}"
            )
        if not fmax > 0:
            raise ValueError(f"fmax must be positive (eV/Å), got {fmax!r}")
        self.calc = calc
        self.relax_ions = bool(relax_ions)
        self.fmax = float(fmax)
        self.max_steps = int(max_steps)
        self.reference = atoms.copy()
        self.reference.calc = calc
        if relax_cell or self.relax_ions:
            what = "reference cell" if relax_cell else "reference positions"
            self._relax(self.reference, what, cell=relax_cell)
        self.volume = self.reference.get_volume()
        self._cache: dict[tuple, tuple[float, np.ndarray]] = {}

    def _relax(self, atoms: Atoms, what: str, cell: bool = False) -> None:
        relax(atoms, cell, self.fmax, self.max_steps, what)

    def evaluate(self, voigt: Sequence[float]) -> tuple[float, np.ndarray]:
        """Energy (eV) and Voigt stress (eV/Å³) of the reference strained by ``voigt``."""
        key = tuple(np.round(np.asarray(voigt, dtype=float), 14))
        if key not in self._cache:
            atoms = self.reference.copy()
            atoms.calc = self.calc
            deformation = np.eye(3) + voigt_strain_matrix(voigt)
            atoms.set_cell(self.reference.cell.array @ deformation, scale_atoms=True)
            if self.relax_ions and len(atoms) > 1:
                self._relax(atoms, f"atoms at strain {list(key)}")
            self._cache[key] = (atoms.get_potential_energy(), atoms.get_stress(voigt=True))
        return self._cache[key]

    def stress_route(self, strain: float) -> ElasticResult:
        """C from central differences of the stress (6 pairs of strained cells)."""
        _check_strain(strain)
        C = np.zeros((6, 6))
        for j in range(6):
            step = strain * np.eye(6)[j]
            C[:, j] = (self.evaluate(step)[1] - self.evaluate(-step)[1]) / (2 * strain)
        return ElasticResult(_symmetrise(C) / units.GPa, "stress", strain, self.relax_ions,
                             self.volume)  # fmt: skip

    def energy_route(self, strain: float) -> ElasticResult:
        """C from second differences of the energy (72 strained cells)."""
        _check_strain(strain)
        e0 = self.evaluate(np.zeros(6))[0]
        C = np.zeros((6, 6))
        basis = strain * np.eye(6)
        for i in range(6):
            e_plus, e_minus = self.evaluate(basis[i])[0], self.evaluate(-basis[i])[0]
            C[i, i] = (e_plus - 2 * e0 + e_minus) / strain**2
            for j in range(i):
                a, b = basis[i], basis[j]
                C[i, j] = C[j, i] = (
                    self.evaluate(a + b)[0] - self.evaluate(a - b)[0]
                    - self.evaluate(b - a)[0] + self.evaluate(-a - b)[0]
                ) / (4 * strain**2)  # fmt: skip
        return ElasticResult(C / self.volume / units.GPa, "energy", strain, self.relax_ions,
                             self.volume)  # fmt: skip

    def run(self, method: str, strain: float) -> ElasticResult:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        return self.stress_route(strain) if method == "stress" else self.energy_route(strain)


def elastic_constants(
    atoms: Atoms,
    calc: Calculator,
    method: str = "stress",
    strain: float | None = None,
    **options,
) -> ElasticResult:
    """Elastic constants (GPa) of ``atoms`` with ``calc``; see :class:`ElasticCalculation`.

    ``strain`` defaults to the recommended step of each route (:data:`DEFAULT_STRAIN`).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    strain = DEFAULT_STRAIN[method] if strain is None else strain
    return ElasticCalculation(atoms, calc, **options).run(method, strain)


#: recommended steps from the sweep in ``tutorials/elastic_constants.py`` (diamond Si)
DEFAULT_STRAIN = {"stress": 5e-3, "energy": 1e-2}


def strain_sweep(
    calculation: ElasticCalculation,
    strains: Sequence[float] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    methods: Sequence[str] = METHODS,
    progress: bool = False,
) -> dict[str, list[ElasticResult]]:
    """Both routes over a range of finite-difference steps (the strained cells are shared).

    Too small a step amplifies numerical noise (float32 models, loose relaxations); too large
    a step leaves the harmonic regime. Plot with :func:`plot_strain_sweep`.
    """
    from tqdm import tqdm

    jobs = [(m, s) for m in methods for s in strains]
    out: dict[str, list[ElasticResult]] = {m: [] for m in methods}
    for method, strain in tqdm(jobs, desc="strain sweep", disable=not progress):
        out[method].append(calculation.run(method, strain))
    return out


def plot_strain_sweep(sweep: dict[str, list[ElasticResult]], path, title: str = "") -> None:
    """C11, C12, C44 (GPa) versus strain step for each route, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    styles = {"stress": "o-", "energy": "s--"}
    for method, results in sweep.items():
        steps = [r.strain for r in results]
        for (i, j), name in (((0, 0), "C11"), ((0, 1), "C12"), ((3, 3), "C44")):
            ax.plot(steps, [r.C[i, j] for r in results], styles.get(method, "x-"),
                    label=f"{name} ({method})")  # fmt: skip
    # too-small steps can be off by orders of magnitude: keep the stable band readable
    top = 1.6 * max(abs(r.C[0, 0]) for rs in sweep.values() for r in rs[len(rs) // 2 :])
    ax.set(xscale="log", xlabel="strain step", ylabel="GPa", title=title, ylim=(0, top))
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _check_strain(strain: float) -> None:
    if not 0.0 < strain < 0.1:
        raise ValueError(f"strain step must be in (0, 0.1), got {strain!r}")


def _symmetrise(C: np.ndarray) -> np.ndarray:
    return 0.5 * (C + C.T)
