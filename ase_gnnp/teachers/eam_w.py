"""Finnis–Sinclair (1984) tungsten, tabulated as an EAM potential for matscipy.

M. W. Finnis and J. E. Sinclair, Phil. Mag. A 50, 45 (1984), Table 1 (W):

- pair term ``V(r) = (r − c)² (c0 + c1 r + c2 r²)`` for ``r < c``;
- density ``φ(r) = (r − d)² + β (r − d)³ / d`` for ``r < d`` (β = 0 for W);
- embedding ``F(ρ) = −A √ρ``.

Fitted exactly to the lattice constant (3.1652 Å), cohesive energy (8.90 eV) and elastic
constants of W (C11 522.4, C12 204.4, C44 160.6 GPa). Its ½⟨111⟩ screw dislocation has a
degenerate core and a rugged Peierls path (see ``ase_gnnp.workflows.peierls``); a
potential with a non-degenerate core (e.g. Marinica's EAM for W) is tabulated by splines
that cannot be rebuilt offline here.

The analytic functions are tabulated on fine grids (eam/alloy "setfl" format, written
with ``matscipy.calculators.eam.io.write_eam``) and read back by matscipy's ``EAM``
calculator, which interpolates them with splines. The table is written once to the
user's cache folder (or a given path); no data is downloaded.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["FINNIS_SINCLAIR_W", "TEACHER_LABEL_W", "finnis_sinclair_w", "write_w_table"]

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


def _functions(p: dict = FINNIS_SINCLAIR_W):
    def pair(r):
        poly = p["c0"] + p["c1"] * r + p["c2"] * r**2
        return np.where(r < p["c"], (r - p["c"]) ** 2 * poly, 0.0)

    def density(r):
        x = r - p["d"]
        return np.where(r < p["d"], x**2 + p["beta"] * x**3 / p["d"], 0.0)

    def embedding(rho):
        return -p["A"] * np.sqrt(np.maximum(rho, 0.0))

    return pair, density, embedding


def write_w_table(path: str | Path) -> Path:
    """Tabulate the potential in eam/alloy format at ``path`` (refuses to overwrite)."""
    from matscipy.calculators.eam.io import EAMParameters, write_eam

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; remove it or choose another path")
    pair, density, embedding = _functions()
    cutoff = max(FINNIS_SINCLAIR_W["c"], FINNIS_SINCLAIR_W["d"])
    nr, nrho = _GRID["nr"], _GRID["nrho"]
    dr, drho = cutoff / (nr - 1), _GRID["rho_max"] / (nrho - 1)
    r = np.arange(nr) * dr
    rho = np.arange(nrho) * drho
    params = EAMParameters(
        ["W"], [74], [183.84], [FINNIS_SINCLAIR_W["a0"]], ["bcc"], nrho, nr, drho, dr, cutoff
    )
    # setfl stores r·V(r) for the pair term
    write_eam(TEACHER_LABEL_W, params, embedding(rho)[None, :], density(r)[None, :],
              (r * pair(r))[None, None, :], str(path), kind="eam/alloy")  # fmt: skip
    return path


def _cached_table() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ase_gnnp"
    target = cache / f"W_finnis_sinclair_{_GRID['nr']}_{_GRID['nrho']}.eam.alloy"
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            written = write_w_table(Path(tmp) / target.name)
            os.replace(written, target)  # atomic: parallel callers never see half a file
    return target


def finnis_sinclair_w(table: str | Path | None = None):
    """matscipy ``EAM`` calculator of Finnis–Sinclair W (from ``table`` or the cache)."""
    from matscipy.calculators.eam import EAM

    return EAM(str(table or _cached_table()), kind="eam/alloy")
