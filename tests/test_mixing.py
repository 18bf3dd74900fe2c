"""Alloy mixing energies: hull, verdict, the workflow with EMT, the report command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.calculators.emt import EMT

from ase_gnnp.cli import main
from ase_gnnp.workflows.mixing import lower_hull, mixing_energies, verdict


def test_lower_hull_and_verdict():
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 0.5])
    e = np.array([0.0, -0.02, -0.01, -0.03, 0.0, 0.02])
    assert x[lower_hull(x, e)].tolist() == [0.0, 0.25, 0.75, 1.0]
    assert verdict(x, e) == "ordering"
    assert verdict(x, np.abs(e) + 0.005 * (x % 1 > 0)) == "phase separation"
    assert verdict(x, np.where((x > 0) & (x < 1), 1e-4, 0.0)) == "ideal mixing"
    # a positive curve: the hull is the two pure phases
    up = np.array([0.0, 0.01, 0.015, 0.01, 0.0])
    assert lower_hull(x[:5], up).tolist() == [0, 4]


@pytest.fixture(scope="module")
def cu_au():
    return mixing_energies(EMT(), "Cu", "Au", "fcc", x_values=(0.25, 0.5, 0.75), reps=(1, 1, 1),
                           samples=1, progress=False, ordered=False)  # fmt: skip


def test_emt_cu_au_mixing(cu_au):
    r = cu_au
    assert r.natoms == 4 and sorted(r.x.tolist()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    # pure phases relaxed to EMT's own lattice constants (Cu 3.59 Å, Au 4.06 Å)
    assert r.pure_lattice_constant["Cu"] == pytest.approx(3.59, abs=0.02)
    assert r.pure_lattice_constant["Au"] == pytest.approx(4.06, abs=0.02)
    assert np.all(r.mixing_energy[r.x % 1 == 0] == 0.0)
    # 4-atom cells are the ordered phases: EMT's Cu3Au (L1_2) and CuAu (L1_0) lie below
    # the pure metals, CuAu3 above (-10.2, -7.9 and +7.2 meV/atom)
    energy = dict(zip(r.x.tolist(), r.mixing_energy.tolist()))
    assert energy[0.75] < energy[0.5] < 0 < energy[0.25]
    assert r.verdict == "ordering"
    assert r.x[r.hull].tolist() == [0.0, 0.5, 0.75, 1.0]
    # relaxed volumes lie between the pure ones
    assert r.volume[r.x == 0][0] > r.volume[r.x == 0.5][0] > r.volume[r.x == 1][0]


def test_ordered_compounds(cu_au):
    """In the 4-atom cell every occupation with k Cu atoms is the ordered compound, so the
    named L1_2 / L1_0 cells reproduce the random ones."""
    r = mixing_energies(EMT(), "Cu", "Au", "fcc", x_values=(0.5,), reps=(1, 1, 1), samples=1,
                        progress=False)  # fmt: skip
    ordered = r.ordered()
    assert set(ordered) == {"L1_2 AB3", "L1_0 AB", "L1_2 A3B"}
    reference = dict(zip(cu_au.x.tolist(), cu_au.mixing_energy.tolist()))
    for x, e in ordered.values():
        assert e == pytest.approx(reference[x], abs=2e-4)
    assert r.verdict == "ordering"
    assert r.mean_curve()[0].tolist() == [0.0, 0.5, 1.0]  # the random alloys only


def test_bad_input():
    with pytest.raises(ValueError, match="lattice must be one of"):
        mixing_energies(EMT(), "Cu", "Au", "hcp")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        mixing_energies(EMT(), "Cu", "Au", x_values=(0.0, 0.5))
    with pytest.raises(ValueError, match="must differ"):
        mixing_energies(EMT(), "Cu", "Cu")
    with pytest.raises(ValueError, match="unknown element"):
        mixing_energies(EMT(), "Cu", "Xx")


def test_report_mixing_cli(tmp_path, capsys):
    out = tmp_path / "cuau"
    args = ["report", "mixing", "--teacher", "emt", "--elements", "Cu", "Au", "--x", "0.5",
            "--supercell", "1", "1", "1", "--samples", "1", "--out", str(out),
            "--json"]  # fmt: skip
    assert main(args) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["verdict"] == "ordering" and figures["source"] == "emt"
    assert (tmp_path / "cuau.png").stat().st_size > 1000
    assert json.loads((tmp_path / "cuau.json").read_text()) == figures
    assert main(args) == 2  # never overwrites
    assert "exist; choose another --out" in capsys.readouterr().err
