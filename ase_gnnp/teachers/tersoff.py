"""Tersoff (1989) Si–Ge potential through matscipy's many-body calculator.

Parameters are those of J. Tersoff, Phys. Rev. B 39, 5566 (1989), Table I, with the
Si–Ge mixing rules of that paper: λ and μ arithmetic means, A, B, R and S geometric
means, and the bond-order prefactor χ(Si–Ge) = 1.00061. The three-body parameters
(β, n, c, d, h) belong to the central atom.

Example
-------
>>> from ase.build import bulk
>>> from ase_gnnp.teachers import tersoff_sige
>>> atoms = bulk("Si", "diamond", a=5.432)
>>> atoms.calc = tersoff_sige()
>>> round(atoms.get_potential_energy() / len(atoms), 3)
-4.63
"""

from __future__ import annotations

from math import sqrt

from ase.calculators.calculator import Calculator

__all__ = ["TERSOFF_SIGE_1989", "tersoff_sige"]

_SI = dict(
    A=1830.8, B=471.18, lam=2.4799, mu=1.7322, beta=1.1000e-6, n=0.78734,
    c=1.0039e5, d=16.217, h=-0.59825, R=2.7, S=3.0,
)  # fmt: skip
_GE = dict(
    A=1769.0, B=419.23, lam=2.4451, mu=1.7047, beta=9.0166e-7, n=0.75627,
    c=1.0643e5, d=15.652, h=-0.43884, R=2.8, S=3.1,
)  # fmt: skip
_CHI_SIGE = 1.00061


def _pairs(key: str, rule) -> list[float]:
    # matscipy's pair order for two elements: (0, 0), (0, 1), (1, 1)
    return [_SI[key], rule(_SI[key], _GE[key]), _GE[key]]


def _geo(a: float, b: float) -> float:
    return sqrt(a * b)


def _arith(a: float, b: float) -> float:
    return 0.5 * (a + b)


#: Parameter dictionary in matscipy's ``TersoffBrenner`` "Tersoff" style.
TERSOFF_SIGE_1989: dict = {
    "__ref__": "Tersoff J., Phys. Rev. B 39, 5566 (1989)",
    "style": "Tersoff",
    "el": ["Si", "Ge"],
    "A": _pairs("A", _geo),
    "B": _pairs("B", _geo),
    "chi": [1.0, _CHI_SIGE, 1.0],
    "lambda": _pairs("lam", _arith),
    "mu": _pairs("mu", _arith),
    "lambda3": [0.0, 0.0, 0.0],
    "beta": [_SI["beta"], _GE["beta"]],
    "n": [_SI["n"], _GE["n"]],
    "c": [_SI["c"], _GE["c"]],
    "d": [_SI["d"], _GE["d"]],
    "h": [_SI["h"], _GE["h"]],
    "r1": _pairs("R", _geo),
    "r2": _pairs("S", _geo),
}

#: Label written into the headers of generated data.
TEACHER_LABEL = "Tersoff PRB 39 5566 (1989) Si-Ge, matscipy Manybody"


def tersoff_sige() -> Calculator:
    """Return a fresh matscipy calculator for the Tersoff (1989) Si–Ge potential.

    Returns
    -------
    ase.calculators.calculator.Calculator
        Gives energy (eV), forces (eV/Å) and stress (eV/Å^3) for any mix of Si and Ge.

    Raises
    ------
    ImportError
        If matscipy is not installed (``pip install ase_gnnp[teacher]``).
    """
    try:
        from matscipy.calculators.manybody import Manybody
        from matscipy.calculators.manybody.explicit_forms import TersoffBrenner
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the Tersoff teacher needs matscipy: pip install 'ase_gnnp[teacher]'"
        ) from err
    return Manybody(**TersoffBrenner(TERSOFF_SIGE_1989))
