"""Long range and field response: Ewald/PME, learned charges, dipole, polarizability, Born.

The checks run on a random float64 model with charges (Ewald) and a field input, so they
test the mathematics (exact derivatives, symmetries, conservation), not a fit.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from conftest import make_bulk

from ase_gnnp import GNNPCalculator, GNNPModel, ModelConfig
from ase_gnnp.longrange import (
    COULOMB_EV_A,
    EPSILON0,
    ChargeEquilibration,
    Coulomb,
    ewald_parameters,
)
from ase_gnnp.nn.radial import PolynomialCutoff
from ase_gnnp.testing import assert_forces_match_fd, assert_stress_matches_fd, random_rotation

MADELUNG_NACL = 1.7475645946
FIELD = np.array([0.12, -0.2, 0.15])  # V/Å


# --------------------------------------------------------------------------- Coulomb sums
def _nacl(primitive: bool, a: float = 5.64) -> Atoms:
    return bulk("NaCl", "rocksalt", a=a, cubic=not primitive)


@pytest.mark.parametrize("method", ["ewald", "pme"])
@pytest.mark.parametrize("primitive", [False, True])
def test_madelung_constant_of_rock_salt(method, primitive):
    """E per ion pair = -M k_e / r0 with M = 1.747565 (relative 1e-5)."""
    atoms = _nacl(primitive)
    coulomb = Coulomb(short_range_cutoff=2.0, method=method, accuracy=1e-6, real_cutoff=8.0)
    charges = torch.tensor(np.where(atoms.numbers == 11, 1.0, -1.0), dtype=torch.float64)
    pos = torch.tensor(atoms.positions)
    cell = torch.tensor(atoms.cell.array)
    energy = coulomb.bare_energies(charges, pos, cell, torch.ones(3, dtype=torch.bool)).sum()
    r0 = 5.64 / 2
    madelung = -float(energy) / (len(atoms) / 2) * r0 / COULOMB_EV_A
    assert madelung == pytest.approx(MADELUNG_NACL, rel=1e-5)


def test_coarser_accuracy_is_coarser():
    """The accuracy parameter is honoured: 1e-3 misses the Madelung constant by more."""
    atoms = _nacl(True)
    charges = torch.tensor([1.0, -1.0], dtype=torch.float64)
    errors = []
    for accuracy in (1e-6, 1e-2 * 0.5):
        c = Coulomb(2.0, accuracy=accuracy, real_cutoff=4.0)
        e = c.bare_energies(
            charges, torch.tensor(atoms.positions), torch.tensor(atoms.cell.array),
            torch.ones(3, dtype=torch.bool),
        ).sum()  # fmt: skip
        errors.append(abs(-float(e) * 2.82 / COULOMB_EV_A - MADELUNG_NACL))
    assert errors[0] < 1e-5 < errors[1]


def test_ewald_parameters_validate():
    smearing, wavelength = ewald_parameters(8.0, 1e-6)
    assert 0 < smearing < 8.0 and 0 < wavelength < 2 * smearing
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="accuracy"):
            ewald_parameters(8.0, bad)
    with pytest.raises(ValueError, match="real_cutoff"):
        ewald_parameters(-1.0, 1e-6)
    with pytest.raises(ValueError, match="method"):
        Coulomb(3.0, method="p3m-ish")


def test_damped_pair_energy():
    """Two charges inside r_s: k q1 q2 (1 - u(d/r_s)) / d; beyond r_s: bare Coulomb."""
    r_s = 4.0
    coulomb = Coulomb(short_range_cutoff=r_s)
    u = PolynomialCutoff(r_s, 6)
    q = torch.tensor([0.7, -0.4], dtype=torch.float64)
    for d in (1.5, 3.0, 5.0):
        pos = torch.tensor([[0.0, 0.0, 0.0], [d, 0.0, 0.0]], dtype=torch.float64)
        edges = torch.tensor([[0, 1], [1, 0]]) if d < r_s else torch.zeros(2, 0, dtype=torch.long)
        lengths = torch.full((edges.shape[1],), d, dtype=torch.float64)
        e = coulomb(
            q, pos, torch.zeros(1, 3, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.bool),
            torch.tensor([0, 2]), edges, lengths,
        ).sum()  # fmt: skip
        damp = float(u(torch.tensor(d, dtype=torch.float64)))
        assert float(e) == pytest.approx(COULOMB_EV_A * 0.7 * -0.4 * (1 - damp) / d, rel=1e-12)


def test_electronegativity_prior_sets_the_sign_of_untrained_charges():
    """With the MLP silent, Qeq on Pauling χ: O negative, H positive, Σq = Q exactly."""
    head = ChargeEquilibration(4).to(torch.float64)
    with torch.no_grad():
        head.mlp[-1].weight.zero_()
        head.mlp[-1].bias.zero_()
    latent = torch.randn(3, 4, dtype=torch.float64)
    numbers = torch.tensor([8, 1, 1])
    q = head(latent, torch.zeros(3, dtype=torch.long), torch.zeros(1), numbers)
    hardness = math.log(2.0) + 0.5  # softplus(0) + min_hardness
    mean_chi = (3.44 + 2 * 2.20) / 3
    expected = [(mean_chi - 3.44) / hardness] + 2 * [(mean_chi - 2.20) / hardness]
    np.testing.assert_allclose(q.detach().numpy(), expected, rtol=1e-12)
    silent = ChargeEquilibration(4, electronegativity_prior=0.0).to(torch.float64)
    silent.load_state_dict(head.state_dict())  # the prior is not in the state dict
    with torch.no_grad():
        q_silent = silent(latent, torch.zeros(3, dtype=torch.long), torch.zeros(1), numbers)
    assert float(q_silent.abs().max()) == 0.0


# --------------------------------------------------------------------------- model fixtures
CONFIG = ModelConfig(
    cutoff=3.5, channels=8, lmax=1, num_layers=2, long_range="ewald", field=True,
    coulomb_cutoff=6.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def _field_model() -> GNNPModel:
    torch.manual_seed(1)
    model = GNNPModel(CONFIG).to(torch.float64)
    with torch.no_grad():
        model.set_avg_num_neighbors(3.0)
        model.scale.fill_(0.5)
        # O(1) field response so that finite differences test something
        model.field_embedding.linear.weight.mul_(5.0)
    return model.eval()


@pytest.fixture
def calc(_field_model) -> GNNPCalculator:
    return GNNPCalculator(copy.deepcopy(_field_model), dtype=torch.float64)


def water_dimer(charge: int = 0) -> Atoms:
    atoms = molecule("H2O") + molecule("H2O")
    atoms.positions[3:] += (2.9, 0.3, 0.2)
    atoms.rattle(0.05, seed=2)
    if charge:
        atoms += Atoms("H", positions=[atoms.positions[0] + (0.2, -0.9, 0.3)])
        atoms.info["charge"] = charge
    return atoms


def periodic_cell() -> Atoms:
    atoms = make_bulk()[:8]
    atoms.set_cell(atoms.cell.array * 0.8, scale_atoms=True)
    atoms.rattle(0.05, seed=4)
    return atoms


def _with(atoms: Atoms, calc, field=None) -> Atoms:
    atoms = atoms.copy()
    if field is not None:
        atoms.info["electric_field"] = list(field)
    atoms.calc = calc
    return atoms


def _fd_field(atoms: Atoms, prop: str, h: float = 1e-4) -> np.ndarray:
    """Central differences of a property with respect to the field: [a, ...] = d prop / d𝓔_a."""
    base = np.asarray(atoms.info.get("electric_field", (0, 0, 0)), dtype=float)
    rows = []
    for a in range(3):
        values = []
        for sign in (1, -1):
            probe = atoms.copy()
            probe.calc = atoms.calc
            probe.info["electric_field"] = (base + sign * h * np.eye(3)[a]).tolist()
            values.append(np.asarray(probe.calc.get_property(prop, probe), dtype=float))
        rows.append((values[0] - values[1]) / (2 * h))
    return np.array(rows)


# --------------------------------------------------------------------------- charges
@pytest.mark.parametrize("charge", [0, 1])
def test_total_charge_is_conserved(calc, charge):
    atoms = _with(water_dimer(charge), calc, FIELD)
    q = atoms.get_charges()
    assert q.shape == (len(atoms),)
    assert q.sum() == pytest.approx(charge, abs=1e-12)
    assert np.abs(q).max() > 1e-3  # charges are not trivially zero


def test_batch_keeps_each_total_charge(calc):
    frames = [water_dimer(0), water_dimer(1), periodic_cell()]
    for atoms, result in zip(frames, calc.batch_evaluate(frames, stress=False)):
        assert result["charges"].sum() == pytest.approx(atoms.info.get("charge", 0), abs=1e-12)
        np.testing.assert_allclose(result["charges"], calc.get_charges(atoms), atol=1e-12)


# --------------------------------------------------------------------------- derivatives
def test_molecule_forces_in_a_field_match_finite_differences(calc):
    assert_forces_match_fd(_with(water_dimer(), calc, FIELD), atol=1e-6, eps=1e-4)


def test_periodic_forces_and_stress_with_coulomb_match_finite_differences(calc):
    atoms = _with(periodic_cell(), calc)
    assert_forces_match_fd(atoms, atol=1e-6, eps=1e-4)
    assert_stress_matches_fd(atoms, atol=1e-6, eps=1e-5)


def test_short_coulomb_damping_radius_is_used_and_differentiable():
    """coulomb_damping < cutoff: the damping envelope ends there, derivatives stay exact."""
    config = ModelConfig.from_dict({**CONFIG.to_dict(), "coulomb_damping": 2.0})
    torch.manual_seed(3)
    model = GNNPModel(config).to(torch.float64)
    assert model.coulomb.damping.cutoff == 2.0
    calc = GNNPCalculator(model, dtype=torch.float64)
    atoms = _with(periodic_cell(), calc)
    assert_forces_match_fd(atoms, atol=1e-6, eps=1e-4)
    assert_stress_matches_fd(atoms, atol=1e-6, eps=1e-5)
    with pytest.raises(ValueError, match="coulomb_damping"):
        ModelConfig.from_dict({**CONFIG.to_dict(), "coulomb_damping": 4.0})


def test_periodic_forces_in_a_field_add_q_times_field(calc):
    atoms = _with(periodic_cell(), calc, FIELD)
    plain = calc.model.config
    assert plain.field
    forces = atoms.get_forces()
    q = atoms.get_charges()
    # -dE/dr at the same field, from finite differences of the energy
    from ase.calculators.fd import calculate_numerical_forces

    numeric = calculate_numerical_forces(atoms, eps=1e-4)
    np.testing.assert_allclose(forces, numeric + q[:, None] * FIELD, atol=1e-6)


@pytest.mark.parametrize("charge", [0, 1])
def test_dipole_is_minus_energy_gradient_in_field(calc, charge):
    atoms = _with(water_dimer(charge), calc, FIELD)
    dipole = atoms.calc.get_property("dipole", atoms)
    numeric = -_fd_field(atoms, "energy")
    np.testing.assert_allclose(dipole, numeric, atol=1e-7)
    assert np.linalg.norm(dipole) > 1e-2


def test_polarizability_is_field_derivative_of_dipole(calc):
    atoms = _with(water_dimer(), calc, FIELD)
    alpha = calc.get_property("polarizability", atoms)
    numeric = _fd_field(atoms, "dipole")
    np.testing.assert_allclose(alpha, numeric, atol=1e-6)
    np.testing.assert_allclose(alpha, alpha.T, atol=1e-10)
    assert np.abs(alpha).max() > 1e-3


@pytest.mark.parametrize("make", [water_dimer, lambda: water_dimer(1), periodic_cell])
def test_born_charges_are_field_derivatives_of_forces(calc, make):
    atoms = _with(make(), calc, FIELD)
    born = calc.get_property("born_effective_charges", atoms)
    assert born.shape == (len(atoms), 3, 3)
    numeric = _fd_field(atoms, "forces")  # [a, i, b]
    np.testing.assert_allclose(born, numeric.transpose(1, 0, 2), atol=1e-6)


@pytest.mark.parametrize("make", [water_dimer, lambda: water_dimer(1), periodic_cell])
def test_acoustic_sum_rule(calc, make):
    atoms = _with(make(), calc, FIELD)
    born = calc.get_property("born_effective_charges", atoms)
    charge = atoms.info.get("charge", 0)
    np.testing.assert_allclose(born.sum(0), charge * np.eye(3), atol=1e-9)


# --------------------------------------------------------------------------- symmetry
@pytest.mark.parametrize("improper", [False, True])
def test_response_rotates_as_vectors_and_tensors(calc, improper):
    rng = np.random.default_rng(7)
    rot = random_rotation(rng, improper=improper)
    atoms = _with(water_dimer(), calc, FIELD)
    names = ("energy", "charges", "forces", "dipole", "polarizability", "born_effective_charges")
    ref = {p: np.asarray(calc.get_property(p, atoms)) for p in names}
    turned = atoms.copy()
    turned.positions = atoms.positions @ rot.T
    turned.info["electric_field"] = (rot @ FIELD).tolist()
    turned.calc = calc
    got = {p: np.asarray(calc.get_property(p, turned)) for p in ref}
    np.testing.assert_allclose(got["energy"], ref["energy"], atol=1e-9)
    np.testing.assert_allclose(got["charges"], ref["charges"], atol=1e-10)
    np.testing.assert_allclose(got["forces"], ref["forces"] @ rot.T, atol=1e-9)
    np.testing.assert_allclose(got["dipole"], rot @ ref["dipole"], atol=1e-9)
    np.testing.assert_allclose(got["polarizability"], rot @ ref["polarizability"] @ rot.T,
                               atol=1e-9)  # fmt: skip
    np.testing.assert_allclose(got["born_effective_charges"],
                               rot @ ref["born_effective_charges"] @ rot.T, atol=1e-9)  # fmt: skip


@pytest.mark.parametrize("improper", [False, True])
def test_dielectric_tensor_rotates_with_cell_and_field(calc, improper):
    rot = random_rotation(np.random.default_rng(8), improper=improper)
    atoms = _with(periodic_cell(), calc, FIELD)
    ref = calc.get_property("dielectric_tensor", atoms)
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rot.T, scale_atoms=True)
    turned.info["electric_field"] = (rot @ FIELD).tolist()
    turned.calc = calc
    got = calc.get_property("dielectric_tensor", turned)
    np.testing.assert_allclose(got, rot @ ref @ rot.T, atol=1e-9)


def test_translation_changes_nothing_for_a_neutral_molecule(calc):
    atoms = _with(water_dimer(), calc, FIELD)
    ref = (atoms.get_potential_energy(), calc.get_property("dipole", atoms))
    moved = atoms.copy()
    moved.positions += (3.0, -2.0, 7.5)
    moved.calc = calc
    assert moved.get_potential_energy() == pytest.approx(ref[0], abs=1e-9)
    np.testing.assert_allclose(calc.get_property("dipole", moved), ref[1], atol=1e-9)


# --------------------------------------------------------------------------- contract
def test_check_state_watches_field_and_charge(calc):
    atoms = _with(water_dimer(), calc, FIELD)
    e0 = atoms.get_potential_energy()
    atoms.info["electric_field"] = (FIELD * 2).tolist()
    e1 = atoms.get_potential_energy()
    assert e1 != e0
    atoms.info["charge"] = 0  # same value as the default: still a new state key
    assert "info" in calc.check_state(atoms)


def test_calculator_field_overrides_info(_field_model):
    calc = GNNPCalculator(copy.deepcopy(_field_model), dtype=torch.float64, field=FIELD)
    atoms = _with(water_dimer(), calc, field=(0.0, 0.0, 0.0))
    ref = _with(water_dimer(), GNNPCalculator(copy.deepcopy(_field_model), dtype=torch.float64),
                FIELD)  # fmt: skip
    assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-12)


def test_dielectric_tensor_of_a_periodic_cell_is_energy_curvature(calc):
    """ε∞ = I + (-∂²E/∂𝓔²)/(ε0 V), the curvature by finite differences of the energy."""
    atoms = _with(periodic_cell(), calc, FIELD)
    eps = calc.get_property("dielectric_tensor", atoms)
    base, h = np.asarray(FIELD, dtype=float), 1e-3

    def energy(shift):
        probe = atoms.copy()
        probe.calc = calc
        probe.info["electric_field"] = (base + shift).tolist()
        return probe.get_potential_energy()

    curvature = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            ea, eb = h * np.eye(3)[a], h * np.eye(3)[b]
            curvature[a, b] = (
                energy(ea + eb) - energy(ea - eb) - energy(eb - ea) + energy(-ea - eb)
            ) / (4 * h * h)
    expected = np.eye(3) - curvature / (EPSILON0 * atoms.get_volume())
    np.testing.assert_allclose(eps, expected, atol=1e-5)
    assert np.abs(eps - np.eye(3)).max() > 1e-3
    with pytest.raises(ValueError, match="periodic in all three"):
        calc.get_property("dielectric_tensor", _with(water_dimer(), calc, FIELD))


def test_dipole_of_a_periodic_cell_is_an_error(calc):
    atoms = _with(periodic_cell(), calc, FIELD)
    for prop in ("dipole", "polarizability"):
        with pytest.raises(ValueError, match="periodic"):
            calc.get_property(prop, atoms)


@pytest.mark.parametrize(
    "info, match",
    [
        ({"electric_field": [0.1, 0.2]}, "shape"),
        ({"electric_field": "strong"}, "3 numbers"),
        ({"electric_field": [0.1, np.nan, 0.0]}, "finite"),
        ({"charge": 0.5}, "integer"),
        ({"charge": 99}, "does not fit"),
        ({"charge": "plus one"}, "number"),
    ],
)
def test_bad_field_or_charge(calc, info, match):
    atoms = water_dimer()
    atoms.info.update(info)
    with pytest.raises((ValueError, TypeError), match=match):
        calc.get_potential_energy(atoms)


def test_bad_calculator_field(_field_model):
    with pytest.raises(ValueError, match="shape"):
        GNNPCalculator(_field_model, field=[1.0, 2.0])


def test_models_without_charges_or_field_say_so(small_model):
    plain = GNNPCalculator(small_model)
    atoms = water_dimer()
    with pytest.raises(PropertyNotImplementedError, match="long-range"):
        plain.get_property("charges", atoms)
    with pytest.raises(PropertyNotImplementedError, match="field"):
        plain.get_property("dipole", atoms)
    atoms.info["electric_field"] = FIELD.tolist()
    with pytest.raises(ValueError, match="no field"):
        plain.get_potential_energy(atoms)
    with pytest.raises(ValueError, match="no field"):
        GNNPCalculator(small_model, field=FIELD)


def test_mixed_pbc_with_coulomb_is_an_error(calc):
    atoms = periodic_cell()
    atoms.pbc = (True, True, False)
    atoms.calc = calc
    with pytest.raises(ValueError, match="vacuum"):
        atoms.get_potential_energy()
