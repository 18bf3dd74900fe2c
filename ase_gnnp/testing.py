"""Reusable checks of the physical contract of a potential (NequIP-style test helpers).

These functions are shipped with the package so that users can check a trained model, or
any other ASE calculator, the same way the test suite checks :class:`GNNPCalculator`:

* :func:`assert_energy_invariant_forces_equivariant` — E(3) symmetry (rotations including
  improper ones, translations) and permutation symmetry of energy, forces and stress;
* :func:`assert_forces_match_fd` — forces are minus the gradient of the energy;
* :func:`assert_stress_matches_fd` — stress is the strain derivative of the energy.

Examples
--------
>>> import numpy as np
>>> from ase.build import bulk
>>> from ase_gnnp import GNNPCalculator
>>> from ase_gnnp.testing import assert_energy_invariant_forces_equivariant
>>> atoms = bulk("Si", "diamond", a=5.43) * (2, 2, 2)
>>> atoms.rattle(0.05, seed=0)
>>> calc = GNNPCalculator("sige-small")  # doctest: +SKIP
>>> assert_energy_invariant_forces_equivariant(
...     calc, atoms, np.random.default_rng(0), atol=1e-4
... )  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.stress import voigt_6_to_full_3x3_stress

__all__ = [
    "random_rotation",
    "assert_energy_invariant_forces_equivariant",
    "assert_forces_match_fd",
    "assert_stress_matches_fd",
]


def random_rotation(
    rng: np.random.Generator,
    dtype: np.dtype | torch.dtype | type = np.float64,
    improper: bool = False,
) -> np.ndarray | torch.Tensor:
    """Draw a uniformly random (Haar) orthogonal 3×3 matrix by QR decomposition.

    Parameters
    ----------
    rng
        Source of randomness, e.g. ``numpy.random.default_rng(0)``.
    dtype
        A numpy dtype (returns a ``numpy.ndarray``) or a torch floating dtype (returns a
        ``torch.Tensor``).
    improper
        If False, a proper rotation (``det R = +1``); if True, a rotation combined with
        the inversion (``det R = -1``), i.e. a reflection or rotoreflection.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (3, 3)
        Orthogonal matrix ``R`` (``R @ R.T = 1``) acting on column vectors; row vectors
        such as ``atoms.positions`` transform as ``positions @ R.T``.
    """
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    # fix the sign ambiguity of QR so that q is Haar distributed
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1.0
    if improper:
        q = -q  # inversion times a proper rotation: det = -1 in 3-D
    if isinstance(dtype, torch.dtype):
        return torch.as_tensor(q, dtype=dtype)
    return q.astype(dtype)


def _evaluate(calc: Calculator, atoms: Atoms, stress: bool) -> dict:
    atoms = atoms.copy()
    atoms.calc = calc
    result = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if stress:
        result["stress"] = voigt_6_to_full_3x3_stress(atoms.get_stress())
    return result


def _close(actual, desired, atol: float, rtol: float, what: str) -> None:
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=what)


def assert_energy_invariant_forces_equivariant(
    calc: Calculator,
    atoms: Atoms,
    rng: np.random.Generator,
    atol: float = 1e-9,
    rtol: float = 1e-9,
) -> None:
    """Check E(3) and permutation symmetry of energy, forces and stress.

    The structure is rotated (positions *and* cell) by a proper rotation and by an improper
    one (rotation times inversion), translated (and wrapped back into the cell along
    periodic directions) and its atoms are permuted, each alone and all combined. Checked:

    * the energy is unchanged;
    * forces transform as ``F' = F R^T`` (rows are atoms) and follow the permutation;
    * when the cell is periodic in all three directions, the 3×3 stress transforms as
      ``σ' = R σ R^T``.

    ``atoms`` is not modified.

    Parameters
    ----------
    calc
        Any ASE calculator giving energy and forces (and stress for periodic cells).
    atoms
        Structure to test: molecule, slab (mixed PBC) or bulk.
    rng
        Draws the rotations, the translation and the permutation.
    atol, rtol
        Absolute and relative tolerance of every comparison (eV, eV/Å, eV/Å^3).

    Raises
    ------
    AssertionError
        If any symmetry is violated beyond the tolerance.
    """
    stress = bool(np.all(atoms.pbc))
    ref = _evaluate(calc, atoms, stress)
    n = len(atoms)

    def transformed(rot=None, shift=None, perm=None) -> tuple[Atoms, np.ndarray, np.ndarray]:
        new = atoms.copy()
        new.calc = None
        if rot is not None:
            new.set_cell(new.cell.array @ rot.T, scale_atoms=False)
            new.positions = atoms.positions @ rot.T
        if shift is not None:
            new.positions = new.positions + shift
            if new.pbc.any():
                new.wrap()
        index = np.arange(n) if perm is None else perm
        new = new[index]
        r = np.eye(3) if rot is None else rot
        return new, ref["forces"][index] @ r.T, r

    cases = {
        "proper rotation": dict(rot=random_rotation(rng)),
        "improper rotation": dict(rot=random_rotation(rng, improper=True)),
        "inversion": dict(rot=-np.eye(3)),
        "translation": dict(shift=rng.uniform(-3.0, 3.0, size=3)),
        "permutation": dict(perm=rng.permutation(n)),
        "all combined": dict(
            rot=random_rotation(rng, improper=True),
            shift=rng.uniform(-3.0, 3.0, size=3),
            perm=rng.permutation(n),
        ),
    }
    for name, kwargs in cases.items():
        new, forces_expected, r = transformed(**kwargs)
        got = _evaluate(calc, new, stress)
        _close(got["energy"], ref["energy"], atol, rtol, f"energy changed under {name}")
        _close(got["forces"], forces_expected, atol, rtol, f"forces not equivariant: {name}")
        if stress:
            expected = r @ ref["stress"] @ r.T
            _close(got["stress"], expected, atol, rtol, f"stress not equivariant: {name}")


def assert_forces_match_fd(atoms: Atoms, atol: float = 1e-6, eps: float = 1e-4) -> None:
    """Check forces against central finite differences of the energy.

    Parameters
    ----------
    atoms
        Structure with a calculator attached; its positions are restored afterwards.
    atol
        Largest allowed absolute difference per component, eV/Å.
    eps
        Displacement of the finite differences, Å.

    Raises
    ------
    AssertionError
        If analytical and numerical forces differ by more than ``atol``.
    """
    analytic = atoms.get_forces().copy()
    numeric = calculate_numerical_forces(atoms, eps=eps)
    np.testing.assert_allclose(
        analytic, numeric, rtol=0, atol=atol, err_msg="forces differ from -dE/dr"
    )


def assert_stress_matches_fd(atoms: Atoms, atol: float = 1e-6, eps: float = 1e-5) -> None:
    """Check the stress against central finite differences of the energy under strain.

    Parameters
    ----------
    atoms
        Periodic structure with a calculator attached; its cell is restored afterwards.
    atol
        Largest allowed absolute difference per Voigt component, eV/Å^3.
    eps
        Strain of the finite differences (dimensionless).

    Raises
    ------
    AssertionError
        If analytical and numerical stress differ by more than ``atol``.
    """
    analytic = atoms.get_stress(voigt=True).copy()
    numeric = calculate_numerical_stress(atoms, eps=eps, voigt=True)
    np.testing.assert_allclose(
        analytic, numeric, rtol=0, atol=atol, err_msg="stress differs from (1/V) dE/dstrain"
    )
