"""Generate a diverse multi-element pretraining set labelled by CHGNet.

CHGNet (v0.3.0 weights, shipped with the ``chgnet`` pip package:
``pip install -e .[pretrain-data]``) stands in for PBE here: it was trained on Materials
Project PBE(+U) relaxations and is **softer than PBE** (force slope 0.6-0.8 against
mlearn PBE on Si, wrong sign of the Si-Ge mixing energy, unreliable for magnetic Fe), so
this set is for pretraining only, never for physical claims. Ge and Mo are left out on
purpose: they are the fine-tuning targets of the sample-efficiency and transfer studies
(mlearn PBE sets).

Prototypes (``PROTOTYPES``, 169 of them over 51 elements): elements in fcc, bcc and hcp
(metals) or diamond (C, Si, Sn); rocksalt, CsCl, zincblende, fluorite/antifluorite, L1_2
and cubic perovskite compounds. Each prototype's lattice constant is the minimum of a
CHGNet energy-volume scan started from covalent radii. Every structure is that
prototype, repeated to at least 8 atoms, under a random strain (up to ±5 % per
component) and a 0.01-0.15 Å rattle, labelled with CHGNet energy, forces and stress.

Writes next to this script (fixed seeds; ``info``: ``config_type`` = prototype family,
``prototype``, ``teacher``, ``seed``):

- ``chgnet_source_train.extxyz`` (seed 0): 16 structures drawn per prototype (2,704),
  2,692 kept;
- ``chgnet_source_test.extxyz`` (seed 1): 3 drawn per prototype (507), 506 kept.

Structures with a CHGNet force component above ``MAX_FORCE`` = 20 eV/Å are dropped (the
rattle pushed two atoms of a stiff oxide too close; dropping them leaves the random
stream, and so every other structure, unchanged).

Run: ``python data/make_chgnet_source.py`` (about 10 minutes on 2 cores). Refuses to
overwrite existing files unless ``--force``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
from _script import generate_sets  # data/_script.py
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, covalent_radii
from tqdm import tqdm

HERE = Path(__file__).resolve().parent

METALS = ("Li Na K Be Mg Ca Sr Al Sc Ti V Cr Ni Cu Zn Y Zr Nb Ru Rh Pd Ag Cd In "
          "Hf Ta W Re Ir Pt Au Pb").split()  # fmt: skip
COMPOUNDS = {
    "diamond": ["C", "Si", "Sn"],
    "rocksalt": "LiF LiCl NaF NaCl KCl KBr MgO CaO SrO BaO TiN ZrN TiC NbC ScN AgCl PbS".split(),
    "cesiumchloride": "CsCl CsBr NiAl CuZn AgMg TiNi RuAl PdIn CuSc CuY".split(),
    "zincblende": "SiC BN BP AlP AlAs GaP GaAs InP InAs ZnS ZnSe CdTe CuCl GaN".split(),
    "fluorite": "CaF2 SrF2 BaF2 ZrO2 HfO2 CeO2 Li2O Na2O Mg2Si".split(),
    "L12": "Ni3Al Cu3Au Au3Cu Al3Sc Ni3Si Pt3Al Ir3Nb Rh3Nb Cu3Pd Ag3Pt".split(),
    "perovskite": "SrTiO3 BaTiO3 CaTiO3 KNbO3 NaNbO3 LaAlO3 SrZrO3 BaZrO3 KTaO3 LaGaO3".split(),
}
LEFT_OUT = ("Ge", "Mo")


def _radius(symbol: str) -> float:
    return float(covalent_radii[atomic_numbers[symbol]])


def _split(formula: str) -> list[str]:
    """Element symbols of a formula in order, e.g. ``'SrTiO3'`` -> Sr, Ti, O."""
    return Atoms(formula).get_chemical_symbols()


def _l12(a_sym: str, b_sym: str, a: float) -> Atoms:
    """A3B in L1_2: B at the corner, A at the face centres."""
    frac = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
    return Atoms([b_sym, a_sym, a_sym, a_sym], scaled_positions=frac, cell=[a] * 3, pbc=True)


def _perovskite(a_sym: str, b_sym: str, x_sym: str, a: float) -> Atoms:
    frac = [(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    return Atoms([a_sym, b_sym, x_sym, x_sym, x_sym], scaled_positions=frac, cell=[a] * 3,
                 pbc=True)  # fmt: skip


def build(family: str, name: str, a: float) -> Atoms:
    """The conventional cell of ``name`` in ``family`` with lattice constant ``a`` (Å)."""
    if family in ("fcc", "bcc", "diamond"):
        return bulk(name, family, a=a, cubic=True)
    if family == "hcp":
        return bulk(name, "hcp", a=a, c=1.633 * a)
    if family == "L12":
        s = _split(name)
        return _l12(s[0], s[-1], a)
    if family == "perovskite":
        s = _split(name)
        return _perovskite(s[0], s[1], s[2], a)
    if family == "fluorite":
        s = _split(name)
        if s.count(s[0]) > 1:  # antifluorite A2B: B on the fcc sites
            return bulk(f"{s[-1]}{s[0]}2", "fluorite", a=a, cubic=True)
        return bulk(name, "fluorite", a=a, cubic=True)
    return bulk(name, family, a=a, cubic=True)


def guess(family: str, name: str) -> float:
    """Lattice constant (Å) from the sum of covalent radii of nearest neighbours."""
    s = _split(name)
    if family in ("fcc", "bcc", "hcp", "diamond"):
        d = 2 * _radius(s[0])
    elif family == "perovskite":
        d = _radius(s[1]) + _radius(s[2])
    else:
        d = _radius(s[0]) + _radius(s[-1])
    factor = {"fcc": np.sqrt(2), "L12": np.sqrt(2), "bcc": 2 / np.sqrt(3), "hcp": 1.0,
              "cesiumchloride": 2 / np.sqrt(3), "diamond": 4 / np.sqrt(3),
              "zincblende": 4 / np.sqrt(3), "fluorite": 4 / np.sqrt(3), "rocksalt": 2.0,
              "perovskite": 2.0}[family]  # fmt: skip
    return float(factor * d)


PROTOTYPES: list[tuple[str, str]] = [(f, m) for m in METALS for f in ("fcc", "bcc", "hcp")] + [
    (family, name) for family, names in COMPOUNDS.items() for name in names
]


@functools.cache
def teacher():
    try:
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator
    except ImportError:
        raise SystemExit(
            "this generator needs CHGNet: pip install -e .[pretrain-data] (or chgnet)"
        ) from None
    return CHGNetCalculator(CHGNet.load(model_name="0.3.0", verbose=False), use_device="cpu")


@functools.cache
def lattice_constant(family: str, name: str) -> float:
    """Minimum of a CHGNet energy scan over ±15 % of the guess (re-centred while the
    minimum is on an edge), refined by a parabola."""
    a0 = guess(family, name)
    scales = np.linspace(0.85, 1.15, 13)
    for _ in range(4):  # re-centre while the minimum sits on the scan's edge
        energies = []
        for s in scales:
            atoms = build(family, name, a0 * s)
            atoms.calc = teacher()
            energies.append(atoms.get_potential_energy() / len(atoms))
        k = int(np.argmin(energies))
        if 0 < k < len(scales) - 1:
            break
        a0 *= scales[k]
    k = int(np.clip(k, 1, len(scales) - 2))
    c2, c1, _ = np.polyfit(scales[k - 1 : k + 2], energies[k - 1 : k + 2], 2)
    best = -c1 / (2 * c2) if c2 > 0 else scales[k]
    return float(a0 * np.clip(best, scales[0], scales[-1]))


def sample(family: str, name: str, rng: np.random.Generator) -> Atoms:
    atoms = build(family, name, lattice_constant(family, name))
    reps = 1
    while len(atoms) * reps**3 < 8:
        reps += 1
    atoms = atoms * (reps, reps, reps)
    eps = rng.uniform(-0.05, 0.05, (3, 3))
    eps = 0.5 * (eps + eps.T)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    atoms.rattle(rng.uniform(0.01, 0.15), seed=int(rng.integers(2**31)))
    atoms.calc = teacher()
    energy, forces, stress = (atoms.get_potential_energy(), atoms.get_forces(),
                              atoms.get_stress())  # fmt: skip
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
    atoms.info.update(config_type=family, prototype=name, teacher="CHGNet-0.3.0")
    return atoms


#: structures with a larger CHGNet force component (eV/Å) are dropped: the rattle pushed
#: two atoms of a stiff oxide too close (up to 124 eV/Å, 1.2 Å apart in KNbO3)
MAX_FORCE = 20.0


def generate(seed: int, per_prototype: float) -> list:
    rng = np.random.default_rng(seed)
    frames = []
    for family, name in tqdm(PROTOTYPES, desc=f"CHGNet source set (seed {seed})"):
        for _ in range(int(per_prototype)):
            atoms = sample(family, name, rng)  # drawn and labelled even if dropped
            if np.abs(atoms.get_forces()).max() > MAX_FORCE:
                continue
            atoms.info["seed"] = seed
            frames.append(atoms)
    return frames


if __name__ == "__main__":
    used = {s for _, name in PROTOTYPES for s in _split(name)}
    if used & set(LEFT_OUT):
        sys.exit(f"prototypes must not hold {LEFT_OUT}")
    generate_sets(
        "CHGNet-labelled multi-element pretraining set (stands in for PBE; softer)",
        HERE,
        generate,
        [("chgnet_source_train.extxyz", 0, 16), ("chgnet_source_test.extxyz", 1, 3)],
    )
