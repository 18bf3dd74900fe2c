"""Generate the shipped water-in-a-field reference set with PySCF (PBE0/def2-SVPD, DF).

Writes ``water_pbe0_field_train.extxyz`` and ``water_pbe0_field_test.extxyz`` next to this
script (a seeded split, stratified by cluster size and polarizability subset, ``--test-fraction``
held out): water monomers, dimers and trimers
with randomly distorted molecules and random rigid-body arrangements, each in a random
uniform electric field of magnitude up to ``--max-field`` (default 0.5 V/Å). Every frame
stores, as ASE calculator results, the energy in the field (eV), analytic forces (eV/Å) and
the dipole (e·Å, origin-independent for these neutral clusters); ``info`` holds
``electric_field`` (V/Å), ``config_type``, ``teacher``, ``seed`` and ``charge`` (0).
A subset also carries ``info["polarizability"]`` (3×3, e·Å²/V) from central finite
differences of the dipole in the field.

The field enters as in the model: the electrons' one-electron Hamiltonian gets ``+𝓔·r``,
the nuclei ``−Σ_A Z_A R_A·𝓔``, and the nuclear gradient the matching terms, so that
``dipole = −∂E/∂𝓔`` and ``forces = −∂E/∂R`` in the field. Both identities are checked by
finite differences on a test structure before generation starts (``--skip-checks`` to
omit).

About an hour on 2 cores (monomer ~0.7 s, dimer ~2.4 s, trimer ~5.4 s per point). Progress
is written after every structure to ``<out>.partial``; an interrupted run resumes from it
(each structure draws from its own seeded generator, so a resumed file is identical to an
uninterrupted one). Refuses to overwrite finished files unless ``--force``.

    python data/make_water_pyscf.py               # default counts, seed 0
    python data/make_water_pyscf.py --quick --out /tmp/w.extxyz   # a few structures
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.units import Bohr, Hartree
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
TEACHER = "PySCF RKS PBE0/def2-SVPD density fitting, uniform field"
#: atomic unit of electric field in V/Å (E_h / (e a0))
FIELD_AU = Hartree / Bohr
#: atomic unit of polarizability (e² a0² / E_h) in e·Å²/V
POLARIZABILITY_AU = Bohr**2 / Hartree
FD_FIELD = 0.002  # a.u. (~0.1 V/Å): step for finite-field polarizabilities

# --------------------------------------------------------------------------- geometry


def water(rng: np.random.Generator) -> Atoms:
    """One H2O with O–H in [0.92, 1.04] Å and H–O–H in [97, 114]°, random orientation."""
    r1, r2 = rng.uniform(0.92, 1.04, 2)
    angle = np.radians(rng.uniform(97.0, 114.0))
    pos = np.array([[0.0, 0.0, 0.0], [r1, 0.0, 0.0], [r2 * np.cos(angle), r2 * np.sin(angle), 0.0]])
    mol = Atoms("OH2", positions=pos)
    mol.rotate(rng.uniform(0, 360), rng.normal(size=3) + 1e-9, center=(0, 0, 0))
    mol.rotate(rng.uniform(0, 360), rng.normal(size=3) + 1e-9, center=(0, 0, 0))
    return mol


def _clashes(atoms: Atoms, n_molecules: int) -> bool:
    """True if atoms of different molecules are too close (O–O < 2.4, O–H < 1.45, H–H < 1.5 Å)."""
    d = atoms.get_all_distances()
    mol_id = np.repeat(np.arange(n_molecules), 3)
    is_o = atoms.numbers == 8
    limit = np.where(is_o[:, None] & is_o[None, :], 2.4, np.where(is_o[:, None] | is_o, 1.45, 1.5))
    other = mol_id[:, None] != mol_id[None, :]
    return bool((other & (d < limit)).any())


def cluster(n: int, rng: np.random.Generator) -> Atoms:
    """``n`` distorted waters with oxygen–oxygen distances of 2.55–4.2 Å (random rigid bodies)."""
    while True:
        atoms = Atoms()
        centres = [np.zeros(3)]
        for _ in range(1, n):
            anchor = centres[rng.integers(len(centres))]
            direction = rng.normal(size=3)
            centres.append(anchor + rng.uniform(2.55, 4.2) * direction / np.linalg.norm(direction))
        for centre in centres:
            mol = water(rng)
            mol.translate(centre)
            atoms += mol
        if n == 1 or not _clashes(atoms, n):
            atoms.center()
            return atoms


def random_field(rng: np.random.Generator, max_field: float) -> np.ndarray:
    """Uniform direction; magnitude uniform in [0, max_field] V/Å, exactly zero for 10 %."""
    if rng.random() < 0.1:
        return np.zeros(3)
    direction = rng.normal(size=3)
    return rng.uniform(0.0, max_field) * direction / np.linalg.norm(direction)


# --------------------------------------------------------------------------- teacher


def _pyscf():
    try:
        import pyscf  # noqa: F401
    except ImportError as err:  # pragma: no cover - generator only
        raise ImportError("the water generator needs PySCF: pip install pyscf") from err
    from pyscf import dft, gto

    return dft, gto


def single_point(atoms: Atoms, field: np.ndarray, gradient: bool = True) -> dict:
    """PBE0/def2-SVPD energy (eV), forces (eV/Å) and dipole (e·Å) in a uniform field (V/Å).

    Electrons: ``h_core += Σ_α 𝓔_α r_α``; nuclei: ``E_nuc -= Σ_A Z_A R_A·𝓔``. The origin of
    ``r`` is the coordinate origin; for neutral molecules nothing depends on it.
    """
    dft, gto = _pyscf()
    field_au = np.asarray(field, dtype=float) / FIELD_AU
    mol = gto.M(
        atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
        basis="def2-svpd",
        unit="Angstrom",
        charge=0,
        spin=0,
        verbose=0,
    )
    mf = dft.RKS(mol, xc="pbe0").density_fit()
    mf.conv_tol = 1e-10
    hcore = mf.get_hcore(mol) + np.einsum("x,xij->ij", field_au, mol.intor("int1e_r", comp=3))
    mf.get_hcore = lambda *args: hcore
    z = mol.atom_charges()
    coords = mol.atom_coords()  # Bohr
    e_nuc_field = -float(np.einsum("a,ax,x->", z, coords, field_au))
    mf.energy_nuc = lambda *args: mol.energy_nuc() + e_nuc_field
    energy = mf.kernel()
    if not mf.converged:
        raise RuntimeError("SCF did not converge")
    dm = mf.make_rdm1()
    electronic = -np.einsum("xij,ji->x", mol.intor("int1e_r", comp=3), dm)
    dipole_au = electronic + np.einsum("a,ax->x", z, coords)
    result = {"energy": energy * Hartree, "dipole": dipole_au * Bohr}
    if gradient:
        grad = mf.nuc_grad_method()
        base_hcore = grad.get_hcore
        # PySCF's convention: get_hcore gives -(∇μ|h|ν). int1e_irp[a, b, i, j] is
        # (i| r_a ∂_b |j); for real functions (∂_b μ| r_a |ν) is its [a, b, ν, μ] element.
        irp = mol.intor("int1e_irp", comp=9).reshape(3, 3, mol.nao, mol.nao)
        field_deriv = -np.einsum("abji,a->bij", irp, field_au)
        grad.get_hcore = lambda *args: base_hcore(*args) + field_deriv
        base_nuc = grad.grad_nuc
        grad.grad_nuc = lambda *args, **kw: base_nuc(*args, **kw) - z[:, None] * field_au
        result["forces"] = -grad.kernel() * Hartree / Bohr
    return result


def polarizability(atoms: Atoms, field: np.ndarray) -> np.ndarray:
    """α_{αβ} = ∂μ_β/∂𝓔_α (e·Å²/V) by central differences of the dipole, symmetrised."""
    step = FD_FIELD * FIELD_AU
    alpha = np.zeros((3, 3))
    for a in range(3):
        shift = np.zeros(3)
        shift[a] = step
        plus = single_point(atoms, field + shift, gradient=False)["dipole"]
        minus = single_point(atoms, field - shift, gradient=False)["dipole"]
        alpha[a] = (plus - minus) / (2 * step)
    return 0.5 * (alpha + alpha.T)


def self_check(rng: np.random.Generator, n_molecules: int = 2) -> tuple[float, float]:
    """Dipole = −∂E/∂𝓔 and forces = −∂E/∂R by finite differences on a polarised cluster.

    Returns the largest differences (e·Å, eV/Å); raises RuntimeError above 1e-4 / 2e-3.
    """
    atoms = cluster(n_molecules, rng)
    field = np.array([0.2, -0.3, 0.25])
    ref = single_point(atoms, field)
    h = 1e-3 * FIELD_AU  # 1e-3 a.u.
    dipole_fd = np.zeros(3)
    for a in range(3):
        shift = np.zeros(3)
        shift[a] = h
        e_plus = single_point(atoms, field + shift, gradient=False)["energy"]
        e_minus = single_point(atoms, field - shift, gradient=False)["energy"]
        dipole_fd[a] = -(e_plus - e_minus) / (2 * h)
    err = np.abs(dipole_fd - ref["dipole"]).max()
    norm = np.linalg.norm(ref["dipole"])
    print(f"check: dipole vs -dE/dfield: max |diff| {err:.2e} e·Å (|μ| = {norm:.3f} e·Å)")
    if err > 1e-4:
        raise RuntimeError(f"dipole does not match -dE/dfield (max difference {err:.2e} e·Å)")
    dx = 1e-3
    worst = 0.0
    for i, a in ((0, 0), (1, 1), (len(atoms) - 1, 2)):
        moved = atoms.copy()
        moved.positions[i, a] += dx
        e_plus = single_point(moved, field, gradient=False)["energy"]
        moved.positions[i, a] -= 2 * dx
        e_minus = single_point(moved, field, gradient=False)["energy"]
        worst = max(worst, abs(-(e_plus - e_minus) / (2 * dx) - ref["forces"][i, a]))
    print(f"check: forces vs -dE/dR: max |diff| {worst:.2e} eV/Å")
    if worst > 2e-3:
        raise RuntimeError(f"forces do not match -dE/dR (max difference {worst:.2e} eV/Å)")
    return err, worst


# --------------------------------------------------------------------------- driver


def plan(counts: dict[str, int], n_polar: dict[str, int]) -> list[tuple[str, int, bool]]:
    """(config_type, molecules, with polarizability) for every structure, in order."""
    sizes = {"monomer": 1, "dimer": 2, "trimer": 3}
    jobs = []
    for kind, count in counts.items():
        jobs += [(kind, sizes[kind], k < n_polar.get(kind, 0)) for k in range(count)]
    return jobs


def make_structure(index: int, job: tuple[str, int, bool], seed: int, max_field: float) -> Atoms:
    kind, n, with_alpha = job
    rng = np.random.default_rng([seed, index])
    atoms = cluster(n, rng)
    field = random_field(rng, max_field)
    result = single_point(atoms, field)
    atoms.info.update(
        config_type=kind,
        teacher=TEACHER,
        seed=seed,
        index=index,
        charge=0,
        electric_field=field.tolist(),
    )
    if with_alpha:
        atoms.info["polarizability"] = polarizability(atoms, field)
    atoms.calc = SinglePointCalculator(
        atoms, energy=result["energy"], forces=result["forces"], dipole=result["dipole"]
    )
    return atoms


def split_train_test(
    frames: list[Atoms], test_fraction: float, seed: int
) -> tuple[list[Atoms], list[Atoms]]:
    """Seeded split by structure, stratified by (config_type, has polarizability)."""
    rng = np.random.default_rng([seed, 7])
    strata: dict[tuple, list[int]] = {}
    for i, atoms in enumerate(frames):
        key = (atoms.info["config_type"], "polarizability" in atoms.info)
        strata.setdefault(key, []).append(i)
    test = set()
    for key in sorted(strata):
        members = strata[key]
        n_test = int(round(test_fraction * len(members)))
        test.update(rng.choice(members, size=n_test, replace=False).tolist())
    train = [a for i, a in enumerate(frames) if i not in test]
    return train, [a for i, a in enumerate(frames) if i in test]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE / "water_pbe0_field.extxyz",
        help="stem: writes <stem>_train.extxyz and <stem>_test.extxyz",
    )  # fmt: skip
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-field", type=float, default=0.5, help="V/Å")
    parser.add_argument("--monomers", type=int, default=300)
    parser.add_argument("--dimers", type=int, default=300)
    parser.add_argument("--trimers", type=int, default=120)
    parser.add_argument("--polar-monomers", type=int, default=60)
    parser.add_argument("--polar-dimers", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="3 structures of each kind")
    parser.add_argument("--skip-checks", action="store_true")
    parser.add_argument("--force", action="store_true", help="overwrite a finished file")
    args = parser.parse_args()

    outputs = [args.out.with_name(f"{args.out.stem}_{part}.extxyz") for part in ("train", "test")]
    for path in outputs:
        if path.exists() and not args.force:
            raise SystemExit(f"{path} exists; pass --force to overwrite it")
    counts = {"monomer": args.monomers, "dimer": args.dimers, "trimer": args.trimers}
    n_polar = {"monomer": args.polar_monomers, "dimer": args.polar_dimers}
    if args.quick:
        counts = dict.fromkeys(counts, 3)
        n_polar = {"monomer": 1}
    jobs = plan(counts, n_polar)

    if not args.skip_checks:
        self_check(np.random.default_rng([args.seed, 10**6]))

    partial = args.out.with_name(args.out.name + ".partial")
    done = len(read(partial, ":", format="extxyz")) if partial.exists() else 0
    if done:
        print(f"resuming after {done} structures from {partial}")
    for index in tqdm(range(done, len(jobs)), initial=done, total=len(jobs), desc="water"):
        atoms = make_structure(index, jobs[index], args.seed, args.max_field)
        write(partial, atoms, format="extxyz", append=True)
    frames = read(partial, ":", format="extxyz")
    parts = split_train_test(frames, args.test_fraction, args.seed)
    for path, part in zip(outputs, parts):
        write(path, part, format="extxyz")
        print(f"wrote {len(part)} structures to {path}")
    os.remove(partial)


if __name__ == "__main__":
    main()
