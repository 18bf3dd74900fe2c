"""Tungsten EAM teachers, tabulated for matscipy from published parameters.

Two potentials, each written once from its paper's parameters:

- **Marinica et al. (2013)**, J. Phys.: Condens. Matter 25, 395502: cubic-spline EAM
  ``V(r) = Σ a_k (r_k − r)³ H(r_k − r)`` (15 knots, 2.56–5.46 Å),
  ``ρ(r) = Σ A_k (R_k − r)³ H(R_k − r)`` (4 knots, 2.5–4.9 Å; constant below
  2.003 Å) and ``F(ρ) = a₁ √ρ + a₂ ρ²``. Lattice constant 3.1434 Å, cohesive energy
  8.90 eV. Its ½⟨111⟩ screw dislocation has a **non-degenerate core** and a
  single-hump Peierls profile, as DFT finds: the teacher of the shipped ``w-eam``. The
  parameter set is the one labelled EAM4 in the MDPSCU code's transcription of the paper
  (its comment says EAM2; the two share the form and the fitted bulk properties, which
  this module reproduces). The paper's short-range ZBL join (r < 2 Å) is left out: the
  cubic splines continue as a steep repulsion, and :func:`check_min_distance` refuses
  structures that reach it.
- **Finnis and Sinclair (1984)**, Phil. Mag. A 50, 45, Table 1 (W): pair
  ``V(r) = (r − c)² (c0 + c1 r + c2 r²)`` for ``r < c``, density
  ``φ(r) = (r − d)² + β (r − d)³ / d`` for ``r < d`` (β = 0 for W), embedding
  ``F(ρ) = −A √ρ``; fitted exactly to a = 3.1652 Å, 8.90 eV and C11 522.4, C12 204.4,
  C44 160.6 GPa. Its screw core is degenerate and its Peierls path rugged (kept as the
  contrast case of the Peierls tutorial).

The functions are tabulated on fine grids (eam/alloy "setfl" format, written with
``matscipy.calculators.eam.io.write_eam``) and read back by matscipy's ``EAM``
calculator, which interpolates them with splines. Each table is written once to the
user's cache folder (or a given path); no data is downloaded.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = [
    "FINNIS_SINCLAIR_W",
    "MARINICA_W",
    "TEACHER_LABEL_MARINICA_W",
    "TEACHER_LABEL_W",
    "check_min_distance",
    "finnis_sinclair_w",
    "marinica_w",
    "write_w_table",
]

#: Finnis & Sinclair (1984), Table 1, W (Å, eV)
FINNIS_SINCLAIR_W = {
    "A": 1.896373,
    "d": 4.400224,
    "beta": 0.0,
    "c": 3.25,
    "c0": 47.1346499,
    "c1": -33.7665655,
    "c2": 6.2541999,
    "a0": 3.1652,
}
TEACHER_LABEL_W = "Finnis-Sinclair W (Phil. Mag. A 50, 45, 1984), tabulated EAM"
_GRID = {"nr": 5000, "nrho": 5000, "rho_max": 120.0}

#: Marinica et al. (2013), W: spline coefficients (eV/Å³, e/Å³) and knots (Å); embedding
#: F(ρ) = a1 √ρ + a2 ρ² (eV); the density is held at its value at ``rho_floor`` below it
MARINICA_W = {
    "pair_a": (95.4071477542914, -181.161004448916, 93.0215233132627, -10.8428907515182,
               11.2027468539573, -3.12459176640227, 1.23028140617302, 1.54767467307454,
               -1.28861387780439, -0.843327493551467, 2.14009882965042, -1.02898314532388,
               1.38163259601912, -3.60872433001551, 2.17655968740690),
    "pair_r": (2.5648975, 2.629795, 2.6946925, 2.8663175, 2.973045, 3.0797725, 3.5164725,
               3.846445, 4.1764175, 4.700845, 4.8953, 5.089755, 5.3429525, 5.401695,
               5.4604375),
    "rho_a": (-0.0420429107805055, 0.518217702261442, 0.0562720834534370,
              0.0344164178842340),
    "rho_r": (2.5, 3.1, 3.5, 4.9),
    "rho_floor": 2.002970124727,
    "a1": -5.553986589859130,
    "a2": -0.045691157657292,
    "a0": 3.14339,
    "min_distance": 2.0,
}  # fmt: skip
TEACHER_LABEL_MARINICA_W = (
    "Marinica et al. W EAM (J. Phys.: Condens. Matter 25, 395502, 2013), tabulated"
)


def _functions(p: dict = FINNIS_SINCLAIR_W):
    """Finnis–Sinclair pair V(r), density φ(r) and embedding F(ρ) as numpy functions."""

    def pair(r):
        poly = p["c0"] + p["c1"] * r + p["c2"] * r**2
        return np.where(r < p["c"], (r - p["c"]) ** 2 * poly, 0.0)

    def density(r):
        x = r - p["d"]
        return np.where(r < p["d"], x**2 + p["beta"] * x**3 / p["d"], 0.0)

    def embedding(rho):
        return -p["A"] * np.sqrt(np.maximum(rho, 0.0))

    return pair, density, embedding


def _cubic_splines(r, coefficients, knots):
    x = np.clip(np.asarray(knots)[None, :] - np.asarray(r, float)[..., None], 0.0, None)
    return (np.asarray(coefficients) * x**3).sum(-1)


def _marinica_functions(p: dict = MARINICA_W):
    """Marinica (2013) pair V(r), density ρ(r) and embedding F(ρ) as numpy functions."""

    def pair(r):
        return _cubic_splines(r, p["pair_a"], p["pair_r"])

    def density(r):
        return _cubic_splines(np.maximum(r, p["rho_floor"]), p["rho_a"], p["rho_r"])

    def embedding(rho):
        rho = np.maximum(rho, 0.0)
        return p["a1"] * np.sqrt(rho) + p["a2"] * rho**2

    return pair, density, embedding


_POTENTIALS = {
    "finnis_sinclair": (
        _functions, TEACHER_LABEL_W, FINNIS_SINCLAIR_W["a0"],
        max(FINNIS_SINCLAIR_W["c"], FINNIS_SINCLAIR_W["d"]),
    ),
    "marinica": (
        _marinica_functions, TEACHER_LABEL_MARINICA_W, MARINICA_W["a0"],
        max(MARINICA_W["pair_r"][-1], MARINICA_W["rho_r"][-1]),
    ),
}  # fmt: skip


#: width (Å) of the cosine taper of a truncated table (:func:`write_w_table`)
TRUNCATION_WIDTH = 0.3


def range_taper(r: np.ndarray, truncate: float | None) -> np.ndarray:
    """1 below ``truncate - TRUNCATION_WIDTH``, a cosine down to 0 at ``truncate`` (Å),
    0 beyond; all ones when ``truncate`` is None."""
    r = np.asarray(r, float)
    if truncate is None:
        return np.ones_like(r)
    x = np.clip((r - truncate + TRUNCATION_WIDTH) / TRUNCATION_WIDTH, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def write_w_table(
    path: str | Path, potential: str = "finnis_sinclair", truncate: float | None = None
) -> Path:
    """Tabulate ``potential`` (``"finnis_sinclair"`` or ``"marinica"``) in eam/alloy
    format at ``path`` (refuses to overwrite).

    ``truncate`` (Å) multiplies the pair and density functions by :func:`range_taper`: a
    diagnostic teacher without the interactions beyond a model's cutoff (what a model of
    that cutoff cannot see in one message-passing step)."""
    from matscipy.calculators.eam.io import EAMParameters, write_eam

    if potential not in _POTENTIALS:
        raise ValueError(f"potential must be one of {sorted(_POTENTIALS)}, got {potential!r}")
    if truncate is not None and not TRUNCATION_WIDTH < truncate:
        raise ValueError(f"truncate must be a range above {TRUNCATION_WIDTH} Å, got {truncate!r}")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; remove it or choose another path")
    functions, label, a0, cutoff = _POTENTIALS[potential]
    pair, density, embedding = functions()
    nr, nrho = _GRID["nr"], _GRID["nrho"]
    dr, drho = cutoff / (nr - 1), _GRID["rho_max"] / (nrho - 1)
    r = np.arange(nr) * dr
    rho = np.arange(nrho) * drho
    taper = range_taper(r, truncate)
    params = EAMParameters(["W"], [74], [183.84], [a0], ["bcc"], nrho, nr, drho, dr, cutoff)
    # setfl stores r·V(r) for the pair term
    write_eam(label, params, embedding(rho)[None, :], (taper * density(r))[None, :],
              (taper * r * pair(r))[None, None, :], str(path), kind="eam/alloy")  # fmt: skip
    return path


def _cached_table(potential: str, truncate: float | None = None) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ase_gnnp"
    cut = "" if truncate is None else f"_cut{truncate:g}"
    target = cache / f"W_{potential}{cut}_{_GRID['nr']}_{_GRID['nrho']}.eam.alloy"
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            written = write_w_table(Path(tmp) / target.name, potential, truncate)
            os.replace(written, target)  # atomic: parallel callers never see half a file
    return target


def finnis_sinclair_w(table: str | Path | None = None):
    """matscipy ``EAM`` calculator of Finnis–Sinclair W (from ``table`` or the cache)."""
    from matscipy.calculators.eam import EAM

    return EAM(str(table or _cached_table("finnis_sinclair")), kind="eam/alloy")


def marinica_w(table: str | Path | None = None, truncate: float | None = None):
    """matscipy ``EAM`` calculator of Marinica (2013) W (from ``table`` or the cache).

    Valid for interatomic distances above 2 Å (see :func:`check_min_distance`).
    ``truncate`` (Å): the diagnostic teacher whose pair and density functions end there
    (see :func:`write_w_table`); the full range is 5.46 Å.
    """
    from matscipy.calculators.eam import EAM

    if table is not None and truncate is not None:
        raise ValueError("give a table or truncate, not both: a table is already tabulated")
    return EAM(str(table or _cached_table("marinica", truncate)), kind="eam/alloy")


def check_min_distance(atoms, minimum: float = MARINICA_W["min_distance"]) -> float:
    """Shortest interatomic distance of ``atoms`` (Å); ``ValueError`` below ``minimum``,
    where the Marinica teacher here lacks the paper's ZBL core."""
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", atoms, minimum + 1.0)
    shortest = float(d.min()) if len(d) else np.inf
    if shortest < minimum:
        raise ValueError(
            f"atoms {shortest:.3f} Å apart: below {minimum} Å, where the tabulated Marinica "
            f"W teacher omits the paper's short-range ZBL repulsion"
        )
    return shortest
