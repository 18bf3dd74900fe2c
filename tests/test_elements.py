"""Tests for :mod:`ase_gnnp.elements`."""

import math

import numpy as np
import pytest

from ase_gnnp import elements
from ase_gnnp.elements import (
    DESCRIPTOR_NAMES,
    FIRST_IONIZATION_ENERGY_EV,
    MAX_Z,
    PAULING_ELECTRONEGATIVITY,
    block,
    check_atomic_numbers,
    descriptor_table,
    group,
    period,
    valence_electrons,
)


def test_constant_lengths():
    assert MAX_Z == 86
    assert len(PAULING_ELECTRONEGATIVITY) == MAX_Z
    assert len(FIRST_IONIZATION_ENERGY_EV) == MAX_Z


def test_shape_and_padding_row():
    table = descriptor_table()
    assert table.shape == (MAX_Z + 1, len(DESCRIPTOR_NAMES))
    assert table.dtype == np.float64
    assert np.all(table[0] == 0.0)
    assert np.all(np.isfinite(table))


def test_standardization():
    table = descriptor_table()
    for name in (
        "period",
        "group",
        "valence_electrons",
        "pauling_electronegativity",
        "covalent_radius",
        "log_atomic_mass",
        "first_ionization_energy",
    ):
        col = table[1:, DESCRIPTOR_NAMES.index(name)]
        assert col.mean() == pytest.approx(0.0, abs=1e-12)
        assert col.std() == pytest.approx(1.0)
    onehot = table[1:, DESCRIPTOR_NAMES.index("block_s") :]
    assert np.all(onehot.sum(axis=1) == 1.0)


def test_positions():
    assert (period(14), group(14)) == (3, 14)  # Si
    assert (period(32), group(32)) == (4, 14)  # Ge
    assert group(26) == 8  # Fe
    assert (period(1), group(1), block(1)) == (1, 1, "s")  # H
    assert (group(2), block(2), valence_electrons(2)) == (18, "s", 2)  # He
    assert (period(86), group(86), block(86)) == (6, 18, "p")  # Rn
    assert (group(57), block(57)) == (3, "f")  # La
    assert (group(70), block(70)) == (3, "f")  # Yb
    assert (group(71), block(71)) == (3, "d")  # Lu
    assert (group(72), block(72)) == (4, "d")  # Hf
    assert valence_electrons(8) == 6  # O
    assert valence_electrons(26) == 8  # Fe
    assert valence_electrons(64) == 3  # Gd
    assert valence_electrons(56) == 2  # Ba


def test_known_values():
    assert PAULING_ELECTRONEGATIVITY[8 - 1] == pytest.approx(3.44)  # O
    assert PAULING_ELECTRONEGATIVITY[14 - 1] == pytest.approx(1.90)  # Si
    assert PAULING_ELECTRONEGATIVITY[32 - 1] == pytest.approx(2.01)  # Ge
    assert math.isnan(PAULING_ELECTRONEGATIVITY[18 - 1])  # Ar
    assert FIRST_IONIZATION_ENERGY_EV[11 - 1] == pytest.approx(5.139, abs=1e-3)
    table = descriptor_table()
    flag = DESCRIPTOR_NAMES.index("has_electronegativity")
    assert table[18, flag] == 0.0  # Ar
    assert table[14, flag] == 1.0  # Si


def test_si_ge_closer_than_si_na():
    table = descriptor_table()
    si, ge, na = table[14], table[32], table[11]
    assert not np.allclose(si, ge)
    assert np.linalg.norm(si - ge) < np.linalg.norm(si - na)


@pytest.mark.parametrize(
    ("numbers", "match"),
    [([1, 87], r"Fr \(Z=87\)"), ([0, 6], r"X \(Z=0\)"), ([200], "Z=200")],
)
def test_check_atomic_numbers_raises(numbers, match):
    with pytest.raises(ValueError, match=match) as info:
        check_atomic_numbers(numbers)
    assert "Z = 1..86 (H..Rn)" in str(info.value)


def test_check_atomic_numbers_accepts_valid():
    check_atomic_numbers(np.arange(1, MAX_Z + 1))
    check_atomic_numbers([])


def test_functions_reject_out_of_range():
    with pytest.raises(ValueError, match="Fr"):
        period(87)


def test_table_not_mutated_by_callers():
    first = descriptor_table()
    reference = first.copy()
    first[:] = 42.0
    assert np.array_equal(descriptor_table(), reference)
    assert descriptor_table() is not descriptor_table()
    assert elements.descriptor_table()[0].sum() == 0.0
