"""The CHGNet pretraining-set generator: prototypes, left-out targets, labels and filter
(CHGNet itself is replaced by a cheap calculator; the shipped set is generated once)."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.io import read

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def generator():
    sys.path.insert(0, str(ROOT / "data"))  # for its `_script` helper
    try:
        spec = importlib.util.spec_from_file_location(
            "make_chgnet_source", ROOT / "data" / "make_chgnet_source.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "data"))
    return module


def test_prototypes(generator):
    names = Counter(family for family, _ in generator.PROTOTYPES)
    assert len(generator.PROTOTYPES) == 169 and set(names) == {
        "fcc", "bcc", "hcp", "diamond", "rocksalt", "cesiumchloride", "zincblende",
        "fluorite", "L12", "perovskite"}  # fmt: skip
    elements = set()
    for family, name in generator.PROTOTYPES:
        atoms = generator.build(family, name, generator.guess(family, name))
        symbols = atoms.get_chemical_symbols()
        elements |= set(symbols)
        assert sorted(Counter(symbols).values()) == sorted(  # the formula's stoichiometry
            (len(atoms) // sum(Counter(generator._split(name)).values())) * k
            for k in Counter(generator._split(name)).values())  # fmt: skip
        d = atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)]
        assert d.min() > 1.0, (family, name)
    assert len(elements) == 51 and not elements & set(generator.LEFT_OUT)


def test_generate_labels_and_filters(generator, monkeypatch):
    """Labels come from the teacher; structures over MAX_FORCE are dropped."""
    monkeypatch.setattr(generator, "teacher", EMT)
    monkeypatch.setattr(generator, "PROTOTYPES", [("fcc", "Cu"), ("bcc", "Ni"), ("L12", "Cu3Au")])
    generator.lattice_constant.cache_clear()
    frames = generator.generate(0, 3)
    assert len(frames) == 9
    for atoms in frames:
        assert len(atoms) >= 8 and atoms.info["seed"] == 0
        assert atoms.info["teacher"] == "CHGNet-0.3.0" and atoms.calc.name == "unknown"
        reference = atoms.copy()
        reference.calc = EMT()
        np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), atol=1e-10)
    a_cu = generator.lattice_constant("fcc", "Cu")
    assert abs(a_cu - 3.59) < 0.05  # EMT's own fcc Cu minimum
    largest = [np.abs(a.get_forces()).max() for a in frames]
    threshold = float(np.median(largest))
    monkeypatch.setattr(generator, "MAX_FORCE", threshold)
    kept = generator.generate(0, 3)
    expected = [a for a, f in zip(frames, largest) if f <= threshold]
    assert 0 < len(kept) == len(expected) < 9
    for a, b in zip(kept, expected):  # the same random stream: the same structures
        np.testing.assert_array_equal(a.positions, b.positions)
    generator.lattice_constant.cache_clear()


def test_shipped_set_has_no_targets_and_no_outliers():
    for name in ("train", "test"):
        frames = read(ROOT / "data" / f"chgnet_source_{name}.extxyz", ":")
        symbols = {s for a in frames for s in a.get_chemical_symbols()}
        assert not symbols & {"Ge", "Mo"} and len(symbols) == 51
        assert max(np.abs(a.get_forces()).max() for a in frames) <= 20.0
        assert {a.info["teacher"] for a in frames} == {"CHGNet-0.3.0"}
