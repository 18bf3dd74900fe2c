"""Names of the fields of a graph (``torch_geometric.data.Data``) and of model outputs.

One place for every key, with its shape and unit, used everywhere instead of literals.
``N`` atoms, ``E`` edges (directed), ``B`` structures in a batch.
"""

POSITIONS = "pos"  # (N, 3) Å
ATOMIC_NUMBERS = "numbers"  # (N,) int64
CELL = "cell"  # (B, 3, 3) Å, rows are lattice vectors; zeros where not periodic
PBC = "pbc"  # (B, 3) bool
EDGE_INDEX = "edge_index"  # (2, E): row 0 centre atom i, row 1 neighbour j
# (E, 3) lattice shifts S, integers stored in float dtype: r_ij = r_j - r_i + S @ cell
EDGE_SHIFTS = "shifts"
BATCH = "batch"  # (N,) structure index of each atom
NUM_ATOMS = "natoms"  # (B,)
TOTAL_CHARGE = "total_charge"  # (B,) e, from atoms.info["charge"] (default 0)
FIELD = "electric_field"  # (B, 3) V/Å, from atoms.info["electric_field"] (default 0)

# reference labels (training targets)
REF_ENERGY = "ref_energy"  # (B,) eV
REF_FORCES = "ref_forces"  # (N, 3) eV/Å
REF_STRESS = "ref_stress"  # (B, 3, 3) eV/Å^3, ASE sign
HAS_ENERGY = "has_energy"  # (B,) bool
HAS_FORCES = "has_forces"  # (N,) bool
HAS_STRESS = "has_stress"  # (B,) bool
WEIGHT = "weight"  # (B,) per-structure loss weight
ATOM_WEIGHT = "atom_weight"  # (N,) per-atom loss weight (forces, charges), times WEIGHT
REF_DIPOLE = "ref_dipole"  # (B, 3) e·Å
REF_POLARIZABILITY = "ref_polarizability"  # (B, 3, 3) e·Å²/V
REF_CHARGES = "ref_charges"  # (N,) e
HAS_DIPOLE = "has_dipole"  # (B,) bool
HAS_POLARIZABILITY = "has_polarizability"  # (B,) bool
HAS_CHARGES = "has_charges"  # (N,) bool
# relative energies (training only): the structure's group, -1 for none
ENERGY_GROUP = "energy_group"  # (B,) int64

# model outputs
ENERGY = "energy"  # (B,) eV
ATOMIC_ENERGIES = "energies"  # (N,) eV
FORCES = "forces"  # (N, 3) eV/Å
STRESS = "stress"  # (B, 3, 3) eV/Å^3, ASE sign (positive under tension)
VIRIAL = "virial"  # (B, 3, 3) eV, -dE/d(strain)
LATENT = "latent"  # (N, C) invariant per-atom features of the last layer
CHARGES = "charges"  # (N,) e
DIPOLE = "dipole"  # (B, 3) e·Å, -dE/d(field); molecules only
POLARIZABILITY = "polarizability"  # (B, 3, 3) e·Å²/V, -d²E/d(field)²; [a, b] = dμ_b/dF_a
BORN_CHARGES = "born_effective_charges"  # (N, 3, 3) e; [i, a, b] = dF_ib / d(field)_a
