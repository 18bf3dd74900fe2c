"""Physical correctness of the model through its ASE calculator.

Symmetries (E(3) and permutations), forces and stress as exact derivatives of the energy,
extensivity, cells smaller than the cutoff, the smooth cutoff, isolated atoms, batching,
and energy conservation in NVE molecular dynamics.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.stress import voigt_6_to_full_3x3_stress
from conftest import CUTOFF, GE, SI, SMALL_CONFIG, make_bulk, make_cluster, make_slab

from ase_gnnp import GNNPCalculator, GNNPModel
from ase_gnnp.testing import (
    assert_energy_invariant_forces_equivariant,
    assert_forces_match_fd,
    assert_stress_matches_fd,
    random_rotation,
)


def _attach(atoms: Atoms, calc) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms


# ---------------------------------------------------------------- helpers
@pytest.mark.parametrize("improper", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, torch.float64, torch.float32])
def test_random_rotation_is_orthogonal(improper, dtype):
    rng = np.random.default_rng(0)
    for _ in range(5):
        r = random_rotation(rng, dtype, improper=improper)
        assert isinstance(r, torch.Tensor) == isinstance(dtype, torch.dtype)
        r = np.asarray(r, dtype=float)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)
        assert np.linalg.det(r) == pytest.approx(-1.0 if improper else 1.0, abs=1e-6)


def test_random_rotation_is_reproducible():
    a = random_rotation(np.random.default_rng(7))
    b = random_rotation(np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- symmetries
def test_symmetries_float64(calc64, any_atoms):
    """Rotation (proper, improper), translation, permutation; stress too for the bulk."""
    assert_energy_invariant_forces_equivariant(
        calc64, any_atoms, np.random.default_rng(42), atol=1e-10, rtol=1e-9
    )


def test_symmetries_float32(small_model, bulk_atoms):
    calc32 = GNNPCalculator(small_model, dtype=torch.float32)
    assert_energy_invariant_forces_equivariant(
        calc32, bulk_atoms, np.random.default_rng(3), atol=1e-4, rtol=1e-4
    )


def test_symmetry_check_detects_a_broken_model(bulk_atoms):
    """The helper must fail for a calculator that is not rotation invariant."""
    from ase.calculators.calculator import Calculator, all_changes

    class NotInvariant(Calculator):
        implemented_properties = ["energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            x = self.atoms.positions[:, 0]
            forces = np.zeros((len(self.atoms), 3))
            forces[:, 0] = -1.0
            self.results = {"energy": float(x.sum()), "forces": forces, "stress": np.zeros(6)}

    with pytest.raises(AssertionError):
        assert_energy_invariant_forces_equivariant(
            NotInvariant(), bulk_atoms, np.random.default_rng(0)
        )


# ---------------------------------------------------------------- derivatives
def test_forces_match_finite_differences(calc64, any_atoms):
    atoms = _attach(any_atoms, calc64)
    assert np.abs(atoms.get_forces()).max() > 1e-3  # not trivially zero
    assert_forces_match_fd(atoms, atol=1e-6, eps=1e-4)


def test_stress_matches_finite_differences(calc64, bulk_atoms):
    atoms = _attach(bulk_atoms, calc64)
    assert np.abs(atoms.get_stress()).max() > 1e-4  # not trivially zero
    assert_stress_matches_fd(atoms, atol=1e-6, eps=1e-5)


def test_stress_of_small_cell_matches_finite_differences(calc64):
    """A 2-atom cell smaller than the cutoff: edges to images of the atom itself."""
    atoms = bulk("Si", "diamond", a=4.2)
    atoms.numbers[1] = GE
    atoms.rattle(0.05, seed=5)
    atoms = _attach(atoms, calc64)
    assert_stress_matches_fd(atoms, atol=1e-6, eps=1e-5)
    assert_forces_match_fd(atoms, atol=1e-6, eps=1e-4)


def test_unwrapped_positions(calc64, bulk_atoms):
    """Atoms outside the cell (shifted by lattice vectors) give identical results."""
    ref = _attach(bulk_atoms, calc64)
    moved = bulk_atoms.copy()
    moved.positions[3] += 2 * moved.cell[0] - 3 * moved.cell[2]
    moved.positions[5] -= 5 * moved.cell[1]
    moved = _attach(moved, calc64)
    assert moved.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(moved.get_forces(), ref.get_forces(), atol=1e-10)
    np.testing.assert_allclose(moved.get_stress(), ref.get_stress(), atol=1e-12)


def test_non_periodic_cell_vector_is_irrelevant(calc64, slab_atoms):
    """Along a non-periodic axis the cell vector (vacuum, zero, anything) plays no role."""
    ref = _attach(slab_atoms, calc64)
    for third in ([0.0, 0.0, 0.0], [0.0, 0.0, 30.0], [1.0, 2.0, 9.0]):
        other = slab_atoms.copy()
        cell = other.cell.array.copy()
        cell[2] = third
        other.set_cell(cell, scale_atoms=False)
        other = _attach(other, calc64)
        assert other.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(other.get_forces(), ref.get_forces(), atol=1e-10)


# ---------------------------------------------------------------- extensivity
def test_supercell_extensivity(calc64, bulk_atoms):
    cell = _attach(bulk_atoms, calc64)
    sc = _attach(bulk_atoms * (2, 2, 2), calc64)
    assert sc.get_potential_energy() == pytest.approx(8 * cell.get_potential_energy(), rel=1e-10)
    np.testing.assert_allclose(sc.get_forces(), np.tile(cell.get_forces(), (8, 1)), atol=1e-10)
    np.testing.assert_allclose(sc.get_stress(), cell.get_stress(), atol=1e-10)
    np.testing.assert_allclose(
        sc.get_potential_energies(), np.tile(cell.get_potential_energies(), 8), atol=1e-10
    )


@pytest.mark.parametrize(
    "name",
    ["simple cubic a=2.3", "fcc primitive a=3.9", "rattled 2-atom diamond a=4.2"],
)
def test_cell_smaller_than_cutoff(calc64, name):
    """Periodic images of an atom itself are neighbours; results equal a 3x3x3 supercell."""
    if name.startswith("simple cubic"):
        atoms = Atoms("Si", cell=np.eye(3) * 2.3, pbc=True)
    elif name.startswith("fcc"):
        atoms = bulk("Ge", "fcc", a=3.9)
    else:
        atoms = bulk("Si", "diamond", a=4.2)
        atoms.numbers[0] = GE
        atoms.rattle(0.05, seed=11)
    assert min(atoms.cell.lengths()) < CUTOFF
    small = _attach(atoms, calc64)
    sc = _attach(atoms * (3, 3, 3), calc64)
    n = len(atoms)
    assert small.get_potential_energy() / n == pytest.approx(
        sc.get_potential_energy() / (27 * n), rel=1e-10
    )
    np.testing.assert_allclose(small.get_stress(), sc.get_stress(), atol=1e-10)
    np.testing.assert_allclose(sc.get_forces(), np.tile(small.get_forces(), (27, 1)), atol=1e-10)
    isolated = sum(
        _attach(Atoms([z], positions=[[0.0, 0.0, 0.0]]), calc64).get_potential_energy()
        for z in atoms.numbers
    )
    assert abs(small.get_potential_energy() - isolated) > 1e-5  # neighbours were seen
    assert np.abs(small.get_stress()).max() > 1e-5


# ---------------------------------------------------------------- smooth cutoff
def test_smooth_cutoff_two_atoms(calc64):
    direction = random_rotation(np.random.default_rng(1)) @ np.array([1.0, 0.0, 0.0])
    step = 1e-3
    distances = CUTOFF + step * np.arange(-50, 51)
    frames = [Atoms([SI, GE], positions=[np.zeros(3), d * direction]) for d in distances]
    results = calc64.batch_evaluate(frames)
    energy = np.array([r["energy"] for r in results])
    force = np.array([r["forces"] for r in results])  # (S, 2, 3)

    isolated = sum(
        _attach(Atoms([z], positions=[[0.0, 0.0, 0.0]]), calc64).get_potential_energy()
        for z in (SI, GE)
    )
    inside = distances < CUTOFF
    assert inside.sum() == 50
    # beyond the cutoff: exactly the isolated atoms, no force
    np.testing.assert_allclose(energy[~inside], isolated, rtol=0, atol=1e-12)
    np.testing.assert_allclose(force[~inside], 0.0, rtol=0, atol=1e-15)
    # inside, the pair still interacts
    assert abs(energy[0] - isolated) > 1e-9
    # continuity: energy goes smoothly to the isolated value, force smoothly to zero
    assert np.abs(np.diff(energy)).max() < 1e-6
    assert abs(energy[49] - isolated) < 1e-10
    assert np.abs(force[49]).max() < 1e-6
    assert np.abs(np.diff(force, axis=0)).max() < 1e-4
    # Newton's third law and central force
    np.testing.assert_allclose(force[:, 0], -force[:, 1], atol=1e-12)
    np.testing.assert_allclose(np.cross(force[:, 1], direction), 0.0, atol=1e-12)
    # the force is -dE/dr along the whole scan, across the cutoff too
    fd = -(energy[2:] - energy[:-2]) / (2 * step)
    np.testing.assert_allclose(force[1:-1, 1] @ direction, fd, rtol=0, atol=1e-7)


# ---------------------------------------------------------------- isolated atoms
@pytest.mark.parametrize("z", [SI, GE])
def test_single_isolated_atom(calc64, small_model, z):
    atoms = _attach(Atoms([z], positions=[[1.0, 2.0, 3.0]]), calc64)
    energy = atoms.get_potential_energy()
    np.testing.assert_array_equal(atoms.get_forces(), 0.0)
    assert atoms.get_potential_energies() == pytest.approx([energy])
    assert np.isfinite(energy)
    # the atom alone in a periodic box larger than the cutoff: same energy, zero stress
    boxed = _attach(Atoms([z], positions=[[1.0, 2.0, 3.0]], cell=[8.0, 8.0, 8.0], pbc=True), calc64)
    assert boxed.get_potential_energy() == pytest.approx(energy, abs=1e-12)
    np.testing.assert_array_equal(boxed.get_forces(), 0.0)
    np.testing.assert_allclose(boxed.get_stress(), 0.0, atol=1e-14)


def test_atom_without_neighbours_inside_a_structure(calc64):
    cluster = make_cluster()
    far = Atoms([GE], positions=[cluster.positions.mean(0) + [20.0, 0.0, 0.0]])
    combined = _attach(cluster + far, calc64)
    alone = _attach(cluster, calc64)
    single = _attach(far, calc64)
    e_single = single.get_potential_energy()
    assert combined.get_potential_energy() == pytest.approx(
        alone.get_potential_energy() + e_single, abs=1e-10
    )
    np.testing.assert_array_equal(combined.get_forces()[-1], 0.0)
    assert combined.get_potential_energies()[-1] == pytest.approx(e_single, abs=1e-12)
    np.testing.assert_allclose(combined.get_forces()[:-1], alone.get_forces(), atol=1e-12)


# ---------------------------------------------------------------- batching
def test_batch_evaluate_matches_single_calls(calc64):
    frames = [
        make_bulk(1),
        make_cluster(2),
        make_slab(3),
        make_bulk(4) * (1, 1, 2),
        make_cluster(5),
    ]
    batched = calc64.batch_evaluate(frames, batch_size=3)  # chunks of 3 and 2
    assert len(batched) == len(frames)
    for atoms, res in zip(frames, batched):
        single = _attach(atoms, calc64)
        assert res["energy"] == pytest.approx(single.get_potential_energy(), abs=1e-10)
        assert res["free_energy"] == res["energy"]
        assert res["forces"].shape == (len(atoms), 3)
        np.testing.assert_allclose(res["forces"], single.get_forces(), atol=1e-10)
        np.testing.assert_allclose(res["energies"], single.get_potential_energies(), atol=1e-10)
        assert "stress" not in res  # the batch holds non-periodic structures


def test_batch_evaluate_stress_for_periodic_frames(calc64):
    frames = [make_bulk(1), make_bulk(6) * (1, 2, 1), bulk("Ge", "diamond", a=5.65)]
    batched = calc64.batch_evaluate(frames)
    for atoms, res in zip(frames, batched):
        single = _attach(atoms, calc64)
        assert res["energy"] == pytest.approx(single.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(res["forces"], single.get_forces(), atol=1e-10)
        np.testing.assert_allclose(res["stress"], single.get_stress(), atol=1e-12)


def test_batch_does_not_couple_frames(calc64):
    """Changing one frame of a batch changes no other frame's result."""
    frames = [make_bulk(1), make_cluster(2), make_slab(3)]
    before = calc64.batch_evaluate(frames)
    moved = [f.copy() for f in frames]
    moved[1].positions[0] += [0.3, -0.2, 0.1]
    after = calc64.batch_evaluate(moved)
    for k in (0, 2):
        assert after[k]["energy"] == pytest.approx(before[k]["energy"], abs=1e-12)
        np.testing.assert_allclose(after[k]["forces"], before[k]["forces"], rtol=0, atol=1e-14)
    assert abs(after[1]["energy"] - before[1]["energy"]) > 1e-6


# ---------------------------------------------------------------- molecular dynamics
def _run_nve(atoms: Atoms, steps: int, seed: int = 0) -> np.ndarray:
    """Velocities at 300 K, zero total momentum, velocity Verlet 1 fs; E_tot per step."""
    from ase.md import velocitydistribution as vd
    from ase.md.verlet import VelocityVerlet

    # thermalize_momenta is the ASE >= 3.29 name of MaxwellBoltzmannDistribution
    thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=300.0, rng=np.random.default_rng(seed))
    vd.Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    total = [atoms.get_total_energy()]
    dyn.attach(lambda: total.append(atoms.get_total_energy()), interval=1)
    dyn.run(steps)
    return np.array(total)


@pytest.mark.slow
def test_nve_energy_conservation_shipped_model():
    from ase_gnnp.checkpoint import shipped_models

    if "sige-small" not in shipped_models():
        pytest.skip(f"shipped model 'sige-small' not available (shipped: {shipped_models()})")
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2)
    assert len(atoms) == 64
    atoms.rattle(0.05, seed=0)
    atoms.calc = GNNPCalculator("sige-small")
    total = _run_nve(atoms, steps=200)
    drift = np.abs(total - total[0]).max() / len(atoms)
    print(f"NVE 64 atoms, 200 x 1 fs: max |E_tot - E_tot(0)| = {1000 * drift:.4f} meV/atom")
    assert np.all(np.isfinite(total))
    assert drift < 5e-4  # observed ~6e-5 eV/atom over 200 fs


def test_nve_energy_conservation_small_model(small_model):
    """Same check with the random float64 model on a small cell (always runs)."""
    atoms = make_bulk()
    atoms.calc = GNNPCalculator(small_model)
    total = _run_nve(atoms, steps=50)
    drift = np.abs(total - total[0]).max() / len(atoms)
    assert drift < 1e-3


def test_stress_voigt_roundtrip_is_symmetric(calc64, bulk_atoms):
    atoms = _attach(bulk_atoms, calc64)
    full = voigt_6_to_full_3x3_stress(atoms.get_stress())
    np.testing.assert_allclose(full, full.T)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), full)


@pytest.mark.parametrize("shift", [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0)])
def test_overlapping_atoms_are_a_clear_error(calc64, shift):
    """Two atoms (or an atom and an image of another) on one spot: ValueError, not NaN."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.positions[1] = atoms.positions[0] + np.asarray(shift) @ atoms.cell.array
    atoms.calc = calc64
    with pytest.raises(ValueError, match="overlapping"):
        atoms.get_potential_energy()


def test_model_accepts_a_single_graph_and_a_batch(small_model, bulk_atoms):
    """``GNNPModel`` takes a plain ``Data`` (no ``batch`` field) as well as a ``Batch``."""
    from ase_gnnp.graph import atoms_to_batch, atoms_to_graph

    single = small_model(atoms_to_graph(bulk_atoms, CUTOFF, torch.float64), stress=True)
    batched = small_model(atoms_to_batch([bulk_atoms], CUTOFF, torch.float64), stress=True)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(single[key], batched[key])


# ---------------------------------------------------------------- product basis (MACE-style)
@pytest.mark.parametrize("correlation", [2, 3])
def test_product_basis_is_equivariant_and_conservative(correlation, any_atoms):
    """Symmetries and finite-difference forces (stress for the bulk) with correlation > 1."""
    torch.manual_seed(correlation)
    model = GNNPModel(replace(SMALL_CONFIG, correlation=correlation)).to(torch.float64)
    calc = GNNPCalculator(model, dtype=torch.float64)
    assert_energy_invariant_forces_equivariant(
        calc, any_atoms, np.random.default_rng(5), atol=1e-10, rtol=1e-9
    )
    atoms = _attach(any_atoms, calc)
    assert_forces_match_fd(atoms)
    if atoms.pbc.all():
        assert_stress_matches_fd(atoms)


def test_product_terms_contribute(bulk_atoms):
    """Zeroing the product weights must change the energy: the products are not dead code."""
    torch.manual_seed(0)
    model = GNNPModel(replace(SMALL_CONFIG, correlation=3)).to(torch.float64)
    energy = GNNPCalculator(model, dtype=torch.float64).get_potential_energy(bulk_atoms)
    with torch.no_grad():
        for layer in model.layers:
            for product in layer.products:
                product.linear.weight.zero_()
    plain = GNNPCalculator(model, dtype=torch.float64).get_potential_energy(bulk_atoms)
    assert abs(energy - plain) > 1e-6


def test_correlation_must_be_a_small_positive_integer():
    for bad in (0, 5, 2.0):
        with pytest.raises(ValueError, match="correlation"):
            replace(SMALL_CONFIG, correlation=bad)


def test_float32_model_keeps_large_total_energies_to_float64_precision():
    """Reference energies and sums over atoms are float64: a molecule of -2.8e4 eV keeps
    sub-meV energy differences in a float32 model (float32 alone resolves ~2 meV)."""
    torch.manual_seed(0)
    model = GNNPModel(SMALL_CONFIG)
    with torch.no_grad():
        model.atomic_reference[SI] = -1029.4889999855063
        model.fitted_elements[SI] = True
    assert model.float().atomic_reference.dtype == torch.float64
    assert model.double().atomic_reference[SI] == -1029.4889999855063
    twin = GNNPModel(SMALL_CONFIG).float()
    twin.load_state_dict(model.state_dict())
    cluster = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 1)  # 32 atoms, a molecule
    cluster.pbc = False
    cluster.rattle(0.05, seed=2)
    e64 = _attach(cluster, GNNPCalculator(model, dtype=torch.float64)).get_potential_energy()
    e32 = _attach(cluster, GNNPCalculator(twin, dtype=torch.float32)).get_potential_energy()
    assert abs(e64) > 1e4
    assert abs(e32 - e64) < 1e-4  # float32 sums would be off by ~1e-3 eV
