"""Physical element descriptors for Z = 1..86 (H to Rn).

The descriptors are intended as input features of a graph neural network
potential: an element embedding built from them is chemically meaningful
even for an element that never occurred in the training data.

Public names
------------
MAX_Z
    Largest atomic number covered by the table (86, Rn).
PAULING_ELECTRONEGATIVITY
    Pauling electronegativities, index ``Z - 1``; ``nan`` for He, Ne, Ar.
FIRST_IONIZATION_ENERGY_EV
    First ionization energies in eV (NIST), index ``Z - 1``.
period, group, block, valence_electrons
    Periodic-table position of an element computed from ``Z``.
DESCRIPTOR_NAMES
    Column names of :func:`descriptor_table`.
descriptor_table
    Standardized ``(MAX_Z + 1, len(DESCRIPTOR_NAMES))`` descriptor matrix.
check_atomic_numbers
    Raise :class:`ValueError` for atomic numbers outside ``1..MAX_Z``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import numpy as np
from ase.data import atomic_masses, chemical_symbols, covalent_radii

__all__ = [
    "DESCRIPTOR_NAMES",
    "FIRST_IONIZATION_ENERGY_EV",
    "MAX_Z",
    "PAULING_ELECTRONEGATIVITY",
    "block",
    "check_atomic_numbers",
    "descriptor_table",
    "group",
    "period",
    "valence_electrons",
]

MAX_Z: int = 86

_NAN = float("nan")

#: Pauling electronegativities (CRC Handbook / WebElements), index ``Z - 1``.
#: He, Ne and Ar have no Pauling value and are stored as ``nan``.
PAULING_ELECTRONEGATIVITY: tuple[float, ...] = (
    # Period 1: H, He
    2.20, _NAN,
    # Period 2: Li .. Ne
    0.98, 1.57, 2.04, 2.55, 3.04, 3.44, 3.98, _NAN,
    # Period 3: Na .. Ar
    0.93, 1.31, 1.61, 1.90, 2.19, 2.58, 3.16, _NAN,
    # Period 4: K .. Kr
    0.82, 1.00,
    1.36, 1.54, 1.63, 1.66, 1.55, 1.83, 1.88, 1.91, 1.90, 1.65,
    1.81, 2.01, 2.18, 2.55, 2.96, 3.00,
    # Period 5: Rb .. Xe
    0.82, 0.95,
    1.22, 1.33, 1.60, 2.16, 1.90, 2.20, 2.28, 2.20, 1.93, 1.69,
    1.78, 1.96, 2.05, 2.10, 2.66, 2.60,
    # Period 6: Cs, Ba
    0.79, 0.89,
    # La .. Lu
    1.10, 1.12, 1.13, 1.14, 1.13, 1.17, 1.20, 1.20,
    1.10, 1.22, 1.23, 1.24, 1.25, 1.10, 1.27,
    # Hf .. Hg
    1.30, 1.50, 2.36, 1.90, 2.20, 2.20, 2.28, 2.54, 2.00,
    # Tl .. Rn
    1.62, 2.33, 2.02, 2.00, 2.20, 2.20,
)  # fmt: skip

#: First ionization energies in eV (NIST Atomic Spectra Database, rounded to
#: three decimals), index ``Z - 1``.
FIRST_IONIZATION_ENERGY_EV: tuple[float, ...] = (
    # Period 1: H, He
    13.598, 24.587,
    # Period 2: Li .. Ne
    5.392, 9.323, 8.298, 11.260, 14.534, 13.618, 17.423, 21.565,
    # Period 3: Na .. Ar
    5.139, 7.646, 5.986, 8.152, 10.487, 10.360, 12.968, 15.760,
    # Period 4: K .. Kr
    4.341, 6.113,
    6.561, 6.828, 6.746, 6.767, 7.434, 7.902, 7.881, 7.640, 7.726, 9.394,
    5.999, 7.899, 9.789, 9.752, 11.814, 14.000,
    # Period 5: Rb .. Xe
    4.177, 5.695,
    6.217, 6.634, 6.759, 7.092, 7.119, 7.361, 7.459, 8.337, 7.576, 8.994,
    5.786, 7.344, 8.608, 9.010, 10.451, 12.130,
    # Period 6: Cs, Ba
    3.894, 5.212,
    # La .. Lu
    5.577, 5.539, 5.470, 5.525, 5.582, 5.644, 5.670, 6.150,
    5.864, 5.939, 6.022, 6.108, 6.184, 6.254, 5.426,
    # Hf .. Hg
    6.825, 7.550, 7.864, 7.834, 8.438, 8.967, 8.959, 9.226, 10.438,
    # Tl .. Rn
    6.108, 7.417, 7.286, 8.418, 9.318, 10.749,
)  # fmt: skip

# Atomic number of the last element of periods 1..6.
_PERIOD_ENDS: tuple[int, ...] = (2, 10, 18, 36, 54, 86)

DESCRIPTOR_NAMES: tuple[str, ...] = (
    "period",
    "group",
    "valence_electrons",
    "pauling_electronegativity",
    "has_electronegativity",
    "covalent_radius",
    "log_atomic_mass",
    "first_ionization_energy",
    "block_s",
    "block_p",
    "block_d",
    "block_f",
)

# Columns that are standardized; the flag and the block one-hot are not.
_STANDARDIZED_COLUMNS: tuple[int, ...] = (0, 1, 2, 3, 5, 6, 7)

_BLOCKS: str = "spdf"


def _validate(z: int) -> int:
    """Return ``z`` as ``int`` after checking that it lies in ``1..MAX_Z``.

    Parameters
    ----------
    z : int
        Atomic number.

    Returns
    -------
    int
        The atomic number.

    Raises
    ------
    ValueError
        If ``z`` is outside ``1..MAX_Z``.
    """
    z = int(z)
    check_atomic_numbers([z])
    return z


def period(z: int) -> int:
    """Return the period (row) of the periodic table of element ``z``.

    Parameters
    ----------
    z : int
        Atomic number, ``1 <= z <= MAX_Z``.

    Returns
    -------
    int
        Period, 1..6.

    Raises
    ------
    ValueError
        If ``z`` is outside ``1..MAX_Z``.
    """
    z = _validate(z)
    for p, last in enumerate(_PERIOD_ENDS, start=1):
        if z <= last:
            return p
    raise AssertionError("unreachable")  # pragma: no cover


def group(z: int) -> int:
    """Return the IUPAC group (column) of element ``z``.

    The lanthanides La..Lu (Z = 57..71) are all assigned to group 3.

    Parameters
    ----------
    z : int
        Atomic number, ``1 <= z <= MAX_Z``.

    Returns
    -------
    int
        Group, 1..18.

    Raises
    ------
    ValueError
        If ``z`` is outside ``1..MAX_Z``.
    """
    z = _validate(z)
    if z == 1:
        return 1
    if z == 2:
        return 18
    p = period(z)
    pos = z - _PERIOD_ENDS[p - 2]  # 1-based position within the period
    if pos <= 2:
        return pos
    if p in (2, 3):
        return pos + 10
    if p in (4, 5):
        return pos
    # Period 6: La..Lu (positions 3..17) in group 3, then Hf (Z=72) is group 4.
    if z <= 71:
        return 3
    return z - 68


def block(z: int) -> str:
    """Return the block (``'s'``, ``'p'``, ``'d'`` or ``'f'``) of element ``z``.

    He is in the s block; La..Yb (Z = 57..70) are f block and Lu (Z = 71)
    is d block.

    Parameters
    ----------
    z : int
        Atomic number, ``1 <= z <= MAX_Z``.

    Returns
    -------
    str
        One of ``'s'``, ``'p'``, ``'d'``, ``'f'``.

    Raises
    ------
    ValueError
        If ``z`` is outside ``1..MAX_Z``.
    """
    z = _validate(z)
    if z == 2:
        return "s"
    if 57 <= z <= 70:
        return "f"
    g = group(z)
    if g <= 2:
        return "s"
    if g <= 12:
        return "d"
    return "p"


def valence_electrons(z: int) -> int:
    """Return a simple valence-electron count of element ``z``.

    Groups 1 and 2 give 1 and 2, groups 13..18 give ``group - 10``
    (He gives 2), transition metals of groups 3..12 give the group number
    and the lanthanides La..Lu give 3.

    Parameters
    ----------
    z : int
        Atomic number, ``1 <= z <= MAX_Z``.

    Returns
    -------
    int
        Number of valence electrons, 1..12.

    Raises
    ------
    ValueError
        If ``z`` is outside ``1..MAX_Z``.
    """
    z = _validate(z)
    if z == 2:
        return 2
    if 57 <= z <= 71:
        return 3
    g = group(z)
    if g >= 13:
        return g - 10
    return g


@functools.cache
def _descriptor_table_cached() -> np.ndarray:
    """Build the standardized descriptor table once (read-only array).

    Returns
    -------
    numpy.ndarray
        Read-only array of shape ``(MAX_Z + 1, len(DESCRIPTOR_NAMES))``.
    """
    table = np.zeros((MAX_Z + 1, len(DESCRIPTOR_NAMES)), dtype=np.float64)
    for z in range(1, MAX_Z + 1):
        chi = PAULING_ELECTRONEGATIVITY[z - 1]
        has_chi = not math.isnan(chi)
        onehot = [1.0 if b == block(z) else 0.0 for b in _BLOCKS]
        table[z] = [
            period(z),
            group(z),
            valence_electrons(z),
            chi if has_chi else 0.0,
            1.0 if has_chi else 0.0,
            covalent_radii[z],
            math.log(atomic_masses[z]),
            FIRST_IONIZATION_ENERGY_EV[z - 1],
            *onehot,
        ]
    cols = list(_STANDARDIZED_COLUMNS)
    rows = table[1:, cols]
    table[1:, cols] = (rows - rows.mean(axis=0)) / rows.std(axis=0)
    table.setflags(write=False)
    return table


def descriptor_table() -> np.ndarray:
    """Return the standardized element descriptor table.

    Row ``Z`` holds the descriptors of the element with atomic number ``Z``
    for ``Z = 1..MAX_Z``; row 0 is an all-zero padding row (Z = 0 is not an
    element). The columns, named by :data:`DESCRIPTOR_NAMES`, are

    0. period
    1. group (lanthanides in group 3)
    2. valence electrons (see :func:`valence_electrons`)
    3. Pauling electronegativity, ``nan`` (He, Ne, Ar) replaced by 0.0
    4. has_electronegativity flag, 1.0 or 0.0
    5. covalent radius in Å (``ase.data.covalent_radii``)
    6. natural log of the atomic mass in u (``ase.data.atomic_masses``)
    7. first ionization energy in eV
    8. - 11. one-hot block indicator for s, p, d, f

    Columns 0-3 and 5-7 are standardized to zero mean and unit (population,
    ``ddof=0``) standard deviation over the element rows 1..86; the padding
    row is left at zero and excluded from the statistics. The
    has_electronegativity flag and the block one-hot columns are left as
    0.0/1.0. Column 3 is standardized after the ``nan`` values were set to
    0.0, so the noble gases He, Ne, Ar are told apart by column 4.

    The table is computed once and cached; every call returns a fresh,
    writable copy, so callers cannot mutate the cache.

    Returns
    -------
    numpy.ndarray
        Float64 array of shape ``(MAX_Z + 1, len(DESCRIPTOR_NAMES))``.
    """
    return _descriptor_table_cached().copy()


def _symbol(z: int) -> str:
    """Return the chemical symbol of ``z``, or its number if unknown.

    Parameters
    ----------
    z : int
        Atomic number (may be out of range).

    Returns
    -------
    str
        Symbol from ``ase.data.chemical_symbols`` or ``str(z)``.
    """
    if 0 <= z < len(chemical_symbols):
        return chemical_symbols[z]
    return str(z)


def check_atomic_numbers(numbers: Iterable[int] | np.ndarray) -> None:
    """Check that all atomic numbers are covered by the descriptor table.

    Parameters
    ----------
    numbers : iterable of int or numpy.ndarray
        Atomic numbers, e.g. ``atoms.numbers``.

    Raises
    ------
    ValueError
        If any number is smaller than 1 or larger than :data:`MAX_Z`. The
        message names every offending element by symbol and Z (or by Z
        alone when ASE has no symbol for it).
    """
    values = np.asarray(numbers).ravel()
    bad = np.unique(values[(values < 1) | (values > MAX_Z)]).astype(int).tolist()
    if not bad:
        return
    names = []
    for z in bad:
        sym = _symbol(z)
        names.append(f"{sym} (Z={z})" if sym != str(z) else f"Z={z}")
    raise ValueError(
        f"Unsupported element(s): {', '.join(names)}. The element descriptor "
        f"table covers Z = 1..{MAX_Z} (H..Rn) only."
    )
