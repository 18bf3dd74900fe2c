"""W EAM teachers (Marinica 2013, Finnis–Sinclair 1984) and the Peierls-barrier workflow
(matscipy + ASE NEB)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces
from ase.neighborlist import neighbor_list

from ase_gnnp.cli import main
from ase_gnnp.teachers.eam_w import (
    FINNIS_SINCLAIR_W,
    MARINICA_W,
    _functions,
    _marinica_functions,
    check_min_distance,
    finnis_sinclair_w,
    marinica_w,
)
from ase_gnnp.workflows import elastic_constants
from ase_gnnp.workflows.peierls import (
    PeierlsResult,
    build_glide,
    peierls_barrier,
    plot_barriers,
)

pytest.importorskip("matscipy")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

A0 = FINNIS_SINCLAIR_W["a0"]
#: Finnis & Sinclair (1984) fitted W exactly: cohesive energy (eV) and C11, C12, C44 (GPa)
FS_W = {"E_coh": 8.90, "C11": 522.4, "C12": 204.4, "C44": 160.6}


#: Marinica et al. (2013), W: lattice constant (Å), cohesive energy (eV), C11, C12, C44 (GPa)
MARINICA = {"a0": 3.14339, "E_coh": 8.90, "C11": 523.0, "C12": 202.0, "C44": 161.0}


def _analytic_energy(atoms, functions=_functions, cutoff=FINNIS_SINCLAIR_W["d"]) -> float:
    pair, density, embedding = functions()
    i, _, d = neighbor_list("ijd", atoms, cutoff)
    rho = np.bincount(i, weights=density(d), minlength=len(atoms))
    return float(np.sum(embedding(rho)) + 0.5 * np.sum(pair(d)))


@pytest.mark.parametrize(
    "calc, functions, cutoff",
    [(finnis_sinclair_w, _functions, FINNIS_SINCLAIR_W["d"]),
     (marinica_w, _marinica_functions, MARINICA_W["pair_r"][-1])],
)  # fmt: skip
def test_tabulated_teacher_matches_the_analytic_potential(calc, functions, cutoff):
    atoms = bulk("W", "bcc", a=A0, cubic=True) * (2, 2, 2)
    atoms.rattle(0.08, seed=3)
    atoms.calc = calc()
    expected = _analytic_energy(atoms, functions, cutoff)
    assert atoms.get_potential_energy() == pytest.approx(expected, abs=2e-5)
    numeric = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), numeric, atol=2e-4)


def test_teacher_reproduces_the_published_fit():
    atoms = bulk("W", "bcc", a=A0, cubic=True)
    atoms.calc = finnis_sinclair_w()
    assert -atoms.get_potential_energy() / len(atoms) == pytest.approx(FS_W["E_coh"], abs=1e-4)
    np.testing.assert_allclose(atoms.get_stress(), 0.0, atol=1e-5)  # a0 is the minimum
    C = elastic_constants(atoms, finnis_sinclair_w()).C
    assert C[0, 0] == pytest.approx(FS_W["C11"], rel=3e-3)
    assert C[0, 1] == pytest.approx(FS_W["C12"], rel=3e-3)
    assert C[3, 3] == pytest.approx(FS_W["C44"], rel=3e-3)


def test_marinica_teacher_reproduces_the_published_fit():
    atoms = bulk("W", "bcc", a=MARINICA["a0"], cubic=True)
    atoms.calc = marinica_w()
    assert -atoms.get_potential_energy() / len(atoms) == pytest.approx(MARINICA["E_coh"], abs=1e-3)
    np.testing.assert_allclose(atoms.get_stress(), 0.0, atol=1e-5)  # a0 is the minimum
    C = elastic_constants(atoms, marinica_w()).C
    for (i, j), name in (((0, 0), "C11"), ((0, 1), "C12"), ((3, 3), "C44")):
        assert C[i, j] == pytest.approx(MARINICA[name], rel=5e-3), name


def test_truncated_teacher_drops_exactly_the_interactions_beyond_its_range(tmp_path):
    from ase import Atoms

    from ase_gnnp.teachers.eam_w import range_taper

    r = np.array([1.0, 4.19, 4.2, 4.35, 4.5, 5.0])
    np.testing.assert_allclose(range_taper(r, 4.5), [1, 1, 1, 0.5, 0, 0], atol=1e-12)
    pair = lambda d: Atoms("W2", [[0, 0, 0], [d, 0, 0]], cell=[20] * 3, pbc=True)  # noqa: E731
    full, cut = marinica_w(), marinica_w(truncate=4.5)
    for d, same in ((3.0, True), (4.1, True), (4.6, False)):
        a, b = pair(d), pair(d)
        a.calc, b.calc = full, cut
        equal = a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)
        assert equal == same, d
    assert cut.get_potential_energy(pair(4.6)) == pytest.approx(0.0, abs=1e-9)
    # beyond the potential's own 5.46 Å range nothing is cut
    crystal = bulk("W", "bcc", a=MARINICA["a0"], cubic=True) * (2, 2, 2)
    crystal.rattle(0.05, seed=1)
    e_full = full.get_potential_energy(crystal)
    assert marinica_w(truncate=5.8).get_potential_energy(crystal) == pytest.approx(e_full, abs=1e-5)
    assert abs(cut.get_potential_energy(crystal) - e_full) > 1.0  # 3rd-5th shells matter
    with pytest.raises(ValueError, match="not both"):
        marinica_w(table=tmp_path / "x", truncate=4.5)
    with pytest.raises(ValueError, match="truncate must be"):
        marinica_w(truncate=0.1)


def test_marinica_teacher_refuses_atoms_closer_than_its_validity():
    atoms = bulk("W", "bcc", a=MARINICA["a0"], cubic=True)
    assert check_min_distance(atoms) == pytest.approx(MARINICA["a0"] * np.sqrt(3) / 2)
    atoms.positions[1] = atoms.positions[0] + [1.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="1.500 Å apart"):
        check_min_distance(atoms)


def test_glide_setup_geometry():
    setup = build_glide("W", A0, 522.4, 204.4, 160.6, radius=12.0)
    assert setup.burgers == pytest.approx(A0 * np.sqrt(3) / 2)
    assert setup.line_length == pytest.approx(setup.burgers)  # one Burgers vector thick
    # a {110} glide step between neighbouring Peierls valleys: a√2/√3
    assert setup.glide_distance == pytest.approx(A0 * np.sqrt(2 / 3), rel=1e-6)
    assert len(setup.initial) == len(setup.final)
    fixed = setup.initial.constraints[0].get_indices()
    assert 0 < len(fixed) < len(setup.initial)
    with pytest.raises(ValueError, match="radius"):
        build_glide("W", A0, 522.4, 204.4, 160.6, radius=2.0)


def test_profile_metrics_on_a_sinusoid(tmp_path):
    s = np.linspace(0, 1, 41)
    energies = 50.0 * (1 - np.cos(2 * np.pi * s))  # meV/b, barrier 100
    result = PeierlsResult(energies, s, glide_distance=2.58, burgers=2.74)
    assert result.barrier == pytest.approx(100.0)
    assert result.single_hump
    assert result.peierls_stress == pytest.approx(result.peierls_stress_sinusoidal, rel=1e-3)
    rugged = PeierlsResult(np.array([0, 130, 10, 80, 1, 139, 0.0]), np.linspace(0, 1, 7),
                           glide_distance=2.58, burgers=2.74)  # fmt: skip
    assert not rugged.single_hump
    plot_barriers({"sinusoid": result, "rugged": rugged}, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 5000


@pytest.mark.slow
def test_marinica_core_is_non_degenerate_with_a_single_hump():
    """The reason w-eam learns from this teacher: a symmetric single-hump profile between
    equivalent valleys (Finnis–Sinclair's is rugged)."""
    setup = build_glide("W", MARINICA["a0"], 523.0, 202.2, 160.9, radius=20.0)
    result = peierls_barrier(setup, marinica_w(), n_images=7, fmax=0.01)
    assert result.single_hump
    assert abs(result.energies[-1]) < 1.0  # meV/b: the next valley is equivalent
    np.testing.assert_allclose(result.energies, result.energies[::-1], atol=3.0)
    assert 20.0 < result.barrier < 120.0


@pytest.mark.slow
def test_teacher_barrier_on_a_small_cylinder(tmp_path):
    setup = build_glide("W", A0, 522.4, 204.4, 160.6, radius=12.0)
    result = peierls_barrier(setup, finnis_sinclair_w(), n_images=5, fmax=0.02)
    assert result.energies[0] == 0.0
    assert abs(result.energies[-1]) < 5.0  # the next valley is equivalent (meV/b)
    assert 10.0 < result.barrier < 400.0
    assert result.path[0] == 0.0 and result.path[-1] == pytest.approx(1.0)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["barrier_meV_per_b"] == pytest.approx(result.barrier)


def test_bad_input():
    setup = build_glide("W", A0, 522.4, 204.4, 160.6, radius=12.0)
    with pytest.raises(ValueError, match="n_images"):
        peierls_barrier(setup, finnis_sinclair_w(), n_images=2)
    assert main(["peierls", "--teacher", "fs-w", "--structure", "Cu"]) == 2
    assert main(["peierls", "--teacher", "fs-w", "--radius", "1"]) == 2


@pytest.mark.slow
def test_cli_json(tmp_path, capsys):
    plot = tmp_path / "barrier.png"
    code = main(["peierls", "--teacher", "fs-w", "--radius", "12", "--images", "5",
                 "--fmax", "0.02", "--plot", str(plot), "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lattice_A"] == pytest.approx(A0, abs=1e-3)
    assert report["elastic_GPa"][2] == pytest.approx(FS_W["C44"], rel=5e-3)
    assert report["barrier_meV_per_b"] > 10.0
    assert plot.stat().st_size > 5000
    assert main(["peierls", "--teacher", "fs-w", "--plot", str(plot)]) == 2  # no overwrite
