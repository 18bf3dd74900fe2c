"""Phonons through phonopy with any ASE calculator, and force constants from the model's
analytic Hessian.

Units follow phonopy's defaults for eV and Å (its VASP units): force constants in eV/Å²,
frequencies in THz, thermal properties per mole of primitive cells (free energy kJ/mol,
entropy and heat capacity J/(K·mol)). phonopy is imported lazily; install it with
``pip install 'ase_gnnp[phonons]'``.

Examples
--------
>>> from ase.build import bulk
>>> from ase_gnnp import GNNPCalculator
>>> calc = PhononCalculation(bulk("Si", cubic=True), GNNPCalculator("sige-small"),
...                          supercell=2, primitive_matrix="F")
>>> fc = calc.finite_displacement_force_constants()
>>> result = calc.run()
>>> result.special_frequencies["X"]  # THz
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.dft.kpoints import parse_path_string

from ase_gnnp.integrations import require
from ase_gnnp.workflows.relax import relax

__all__ = [
    "PhononCalculation",
    "PhononResult",
    "force_constants_difference",
    "plot_phonons",
    "to_ase_atoms",
    "to_phonopy_atoms",
]

_CENTERINGS = ("P", "F", "I", "A", "C", "R")


def _phonopy():
    return require("phonopy", "phonons")


def to_phonopy_atoms(atoms: Atoms):
    """``PhonopyAtoms`` with the symbols, cell, scaled positions and masses of ``atoms``."""
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.array(atoms.cell),
        scaled_positions=atoms.get_scaled_positions(wrap=False),
        masses=atoms.get_masses(),
    )


def to_ase_atoms(cell) -> Atoms:
    """Periodic ASE ``Atoms`` from a ``PhonopyAtoms``."""
    return Atoms(
        symbols=cell.symbols,
        cell=cell.cell,
        scaled_positions=cell.scaled_positions,
        masses=cell.masses,
        pbc=True,
    )


def _supercell_matrix(supercell) -> np.ndarray:
    matrix = np.asarray(supercell)
    if matrix.ndim == 0:
        matrix = np.eye(3) * matrix
    elif matrix.shape == (3,):
        matrix = np.diag(matrix)
    if matrix.shape != (3, 3) or not np.allclose(matrix, np.round(matrix)):
        raise ValueError(
            f"supercell must be an integer, three integers or an integer 3×3 matrix, "
            f"got {supercell!r}"
        )
    matrix = np.round(matrix).astype(int)
    if round(abs(np.linalg.det(matrix))) < 1:
        raise ValueError(f"supercell matrix {matrix.tolist()} is singular")
    return matrix


def _primitive_matrix(primitive_matrix):
    if isinstance(primitive_matrix, str):
        if primitive_matrix not in _CENTERINGS:
            raise ValueError(
                f"primitive_matrix must be one of {', '.join(_CENTERINGS)} or a 3×3 matrix, "
                f"got {primitive_matrix!r} (phonopy's 'auto' is not accepted: say it)"
            )
        return primitive_matrix
    matrix = np.asarray(primitive_matrix, dtype=float)
    if matrix.shape != (3, 3):
        raise ValueError(f"primitive_matrix must be 3×3, got shape {matrix.shape}")
    return matrix


def _widths(cell: np.ndarray) -> np.ndarray:
    """Distances (Å) between opposite faces of a cell."""
    volume = abs(np.linalg.det(cell))
    return volume / np.linalg.norm(np.cross(np.roll(cell, -1, 0), np.roll(cell, -2, 0)), axis=1)


def _calculator_cutoff(calc: Calculator) -> float | None:
    model = getattr(calc, "model", None)
    cutoff = getattr(model, "cutoff", None)
    if cutoff is None:
        cutoff = getattr(calc, "cutoff", None)
    try:  # a number, or per-pair cutoffs (matscipy)
        value = float(np.max(np.asarray(cutoff, dtype=float)))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def force_constants_difference(fc: np.ndarray, reference: np.ndarray, p2s: Sequence[int]) -> float:
    """``max |fc - reference|`` over the rows of the primitive atoms, divided by the largest
    ``|reference|`` element. Either array may be full (N, N, 3, 3) or compact
    (n_primitive, N, 3, 3)."""

    def rows(x):
        x = np.asarray(x)
        return x[list(p2s)] if x.shape[0] == x.shape[1] else x

    a, b = rows(fc), rows(reference)
    if a.shape != b.shape:
        raise ValueError(f"force constants of shapes {a.shape} and {b.shape} cannot be compared")
    return float(np.abs(a - b).max() / np.abs(b).max())


@dataclass
class PhononResult:
    """Phonon band structure, DOS and thermal properties of one calculation.

    Attributes
    ----------
    special_frequencies : dict
        Label → frequencies (THz, ascending) at the special q-points of the path.
    special_points : dict
        Label → q-point in reduced coordinates of the primitive reciprocal lattice.
    distances, frequencies : list of ndarray
        Per band segment: path length (1/Å) and frequencies (n_q, n_bands) in THz.
    labels : list of tuple
        (start, end) labels of each band segment.
    dos_frequencies, dos : ndarray
        Total phonon DOS (states/THz per primitive cell).
    temperatures, free_energy, entropy, heat_capacity : ndarray
        K, kJ/mol, J/(K·mol), J/(K·mol), per mole of primitive cells.
    min_frequency : float
        Lowest frequency on the path (THz); markedly negative means imaginary modes.
    """

    special_frequencies: dict
    special_points: dict
    distances: list
    frequencies: list
    labels: list
    dos_frequencies: np.ndarray
    dos: np.ndarray
    temperatures: np.ndarray
    free_energy: np.ndarray
    entropy: np.ndarray
    heat_capacity: np.ndarray

    @property
    def min_frequency(self) -> float:
        return float(min(f.min() for f in self.frequencies))

    def to_dict(self) -> dict:
        def listed(x):
            return np.round(np.asarray(x, dtype=float), 6).tolist()

        return {
            "frequencies_THz": {k: listed(v) for k, v in self.special_frequencies.items()},
            "special_points": {k: listed(v) for k, v in self.special_points.items()},
            "min_frequency_THz": self.min_frequency,
            "band": {
                "labels": [list(pair) for pair in self.labels],
                "distances": [listed(d) for d in self.distances],
                "frequencies_THz": [listed(f) for f in self.frequencies],
            },
            "dos": {"frequencies_THz": listed(self.dos_frequencies), "dos": listed(self.dos)},
            "thermal": {
                "temperature_K": listed(self.temperatures),
                "free_energy_kJ_mol": listed(self.free_energy),
                "entropy_J_K_mol": listed(self.entropy),
                "heat_capacity_J_K_mol": listed(self.heat_capacity),
            },
        }


class PhononCalculation:
    """A phonopy calculation driven by an ASE calculator.

    Parameters
    ----------
    atoms
        Unit cell, periodic in three directions (e.g. the conventional cubic cell).
    calc
        Any ASE calculator giving forces; a :class:`~ase_gnnp.GNNPCalculator` also gives
        analytic force constants, batched displacement forces and Born charges. Use it in
        float64: second derivatives of a float32 model are noisy at the 1e-3 THz level.
    supercell
        Supercell of ``atoms``: an integer, three integers or an integer 3×3 matrix.
    primitive_matrix
        Primitive cell in terms of ``atoms``' cell: ``"P"`` (the cell itself), ``"F"``,
        ``"I"``, … or a 3×3 matrix. Always explicit (phonopy's "auto" guesses).
    distance
        Displacement (Å) of the finite-difference force constants; ± pairs are used, so
        the error is second order in it.
    relax_cell, relax_ions
        Relax the unit cell (cell and positions) or only the positions first; phonons
        of an unrelaxed structure have spurious soft or imaginary modes.
    fmax
        Force threshold of the relaxation (eV/Å).
    symprec
        Symmetry tolerance for phonopy (Å).
    min_width
        Smallest allowed distance (Å) between opposite faces of the supercell. Default:
        twice the calculator's cutoff when it has one, so that no atom interacts with its
        own periodic image (force constants would fold onto images otherwise).
    """

    def __init__(
        self,
        atoms: Atoms,
        calc: Calculator,
        supercell,
        primitive_matrix,
        *,
        distance: float = 0.01,
        relax_cell: bool = True,
        relax_ions: bool = True,
        fmax: float = 1e-4,
        symprec: float = 1e-5,
        min_width: float | None = None,
    ) -> None:
        phonopy = _phonopy()
        if not isinstance(atoms, Atoms):
            raise TypeError(f"atoms must be ase.Atoms, got {type(atoms).__name__}")
        if not np.all(atoms.pbc):
            raise ValueError(
                "phonons need a cell periodic in all three directions, "
                f"got pbc={atoms.pbc.tolist()}"
            )
        if not 0.0 < distance < 0.1:
            raise ValueError(f"displacement distance must be in (0, 0.1) Å, got {distance!r}")
        matrix = _supercell_matrix(supercell)
        primitive = _primitive_matrix(primitive_matrix)
        if min_width is None:
            cutoff = _calculator_cutoff(calc)
            min_width = 2.0 * cutoff if cutoff else 0.0
        widths = _widths(matrix @ np.array(atoms.cell))
        if widths.min() < min_width:
            raise ValueError(
                f"the supercell {matrix.tolist()} is only {widths.min():.2f} Å wide, less than "
                f"{min_width:.2f} Å (twice the potential's cutoff): atoms would interact with "
                "their own periodic images; use a larger supercell"
            )
        self.calc = calc
        self.distance = float(distance)
        self.unitcell = atoms.copy()
        self.unitcell.calc = calc
        if relax_cell or relax_ions:
            relax(self.unitcell, relax_cell, fmax, what="unit cell for phonons")
        self.phonon = phonopy.Phonopy(
            to_phonopy_atoms(self.unitcell), supercell_matrix=matrix,
            primitive_matrix=primitive, symprec=symprec,
        )  # fmt: skip
        self.phonon.generate_displacements(distance=self.distance, is_plusminus=True)

    @property
    def supercell(self) -> Atoms:
        return to_ase_atoms(self.phonon.supercell)

    @property
    def primitive(self) -> Atoms:
        return to_ase_atoms(self.phonon.primitive)

    @property
    def p2s_map(self) -> np.ndarray:
        """Supercell indices of the primitive cell's atoms (the rows of compact force constants)."""
        return np.asarray(self.phonon.primitive.p2s_map)

    def displaced_supercells(self) -> list[Atoms]:
        return [to_ase_atoms(c) for c in self.phonon.supercells_with_displacements]

    def finite_displacement_force_constants(
        self, batch_size: int = 16, progress: bool = True
    ) -> np.ndarray:
        """Force constants (N, N, 3, 3) eV/Å² from ± displacements, symmetrised by phonopy,
        and set on the phonopy object. A calculator with ``batch_evaluate`` (the model's)
        evaluates several displaced supercells per call."""
        from tqdm.auto import tqdm

        cells = self.displaced_supercells()
        forces = []
        if hasattr(self.calc, "batch_evaluate"):
            chunks = range(0, len(cells), batch_size)
            for start in tqdm(chunks, desc="displacements", disable=not progress):
                results = self.calc.batch_evaluate(cells[start : start + batch_size], stress=False)
                forces += [r["forces"] for r in results]
        else:
            for atoms in tqdm(cells, desc="displacements", disable=not progress):
                atoms.calc = self.calc
                forces.append(atoms.get_forces())
        self.phonon.forces = np.array(forces)
        self.phonon.produce_force_constants()
        return np.array(self.phonon.force_constants)

    def hessian_force_constants(self) -> np.ndarray:
        """Compact force constants (n_primitive, N, 3, 3) eV/Å² from the model's analytic
        Hessian (rows of the primitive atoms), set on the phonopy object."""
        from ase_gnnp.calculator import GNNPCalculator

        if not isinstance(self.calc, GNNPCalculator):
            raise TypeError(
                f"{type(self.calc).__name__} has no analytic Hessian here (GNNPCalculator "
                "has); use finite_displacement_force_constants"
            )
        fc = self.calc.get_hessian(self.supercell, self.p2s_map)
        self.phonon.force_constants = fc
        return np.array(fc)

    def set_born_charges(
        self, born: np.ndarray | None = None, epsilon: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Switch on phonopy's non-analytic correction (LO–TO splitting).

        Parameters
        ----------
        born
            Born effective charges (n_primitive, 3, 3) in e, ``[i, α, β] = ∂F_iβ/∂𝓔_α``
            (phonopy's convention: first index field, second displacement). Default:
            from the calculator (``born_effective_charges`` of the primitive cell).
        epsilon
            High-frequency dielectric tensor (3, 3). Default: the calculator's
            ``dielectric_tensor``, when it has one.

        Returns
        -------
        born, epsilon
            What was set.
        """
        primitive = self.primitive
        primitive.calc = self.calc
        if born is None:
            born = primitive.calc.get_property("born_effective_charges", primitive)
        born = np.asarray(born, dtype=float)
        if born.shape != (len(primitive), 3, 3):
            raise ValueError(
                f"born must have shape ({len(primitive)}, 3, 3) for the primitive cell, "
                f"got {born.shape}"
            )
        if epsilon is None:
            try:
                epsilon = primitive.calc.get_property("dielectric_tensor", primitive)
            except Exception as err:  # noqa: BLE001 - re-raised with what to do
                raise ValueError(
                    "the calculator gives no dielectric tensor: pass epsilon (ε∞, 3×3)"
                ) from err
        epsilon = np.asarray(epsilon, dtype=float)
        if epsilon.shape != (3, 3):
            raise ValueError(f"epsilon must be a 3×3 tensor, got shape {epsilon.shape}")
        from phonopy.interface.calculator import get_calculator_physical_units

        # e²/(4πε0) in eV·Å (phonopy's factor for eV and Å, its default "VASP" units)
        factor = get_calculator_physical_units(None).nac_factor
        self.phonon.nac_params = {"born": born, "dielectric": epsilon, "factor": factor}
        return born, epsilon

    def write_born(self, path: str | Path = "BORN", overwrite: bool = False) -> Path:
        """Write phonopy's BORN file from the non-analytic correction that is set."""
        from phonopy.file_IO import write_BORN

        nac = self.phonon.nac_params
        if not nac:
            raise ValueError("no Born charges are set: call set_born_charges first")
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True or choose another path")
        write_BORN(self.phonon.primitive, nac["born"], nac["dielectric"], filename=path)
        return path

    def band_path(self) -> tuple[list[list[str]], dict[str, np.ndarray]]:
        """The standard path of the primitive cell (ASE's ``bandpath``, Setyawan–Curtarolo):
        label segments and special points in reduced coordinates of its reciprocal lattice."""
        path = self.primitive.cell.bandpath(npoints=0)
        return parse_path_string(path.path), dict(path.special_points)

    def run(
        self,
        npoints: int = 51,
        mesh: Sequence[int] | float = (20, 20, 20),
        t_max: float = 1000.0,
        t_step: float = 10.0,
    ) -> PhononResult:
        """Bands along the standard path, frequencies at its special points, total DOS on
        ``mesh`` and thermal properties from 0 to ``t_max`` K; force constants must be set."""
        from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections

        if self.phonon.force_constants is None:
            raise ValueError(
                "no force constants yet: call finite_displacement_force_constants() or "
                "hessian_force_constants() first"
            )
        segments, points = self.band_path()
        used = [label for seg in segments for label in seg]
        paths = [[points[label] for label in seg] for seg in segments]
        qpoints, connections = get_band_qpoints_and_path_connections(paths, npoints=npoints)
        # phonopy wants every label of every path in order (one per segment end)
        self.phonon.run_band_structure(qpoints, path_connections=connections, labels=used)
        band = self.phonon.get_band_structure_dict()
        unique = list(dict.fromkeys(used))
        self.phonon.run_qpoints([points[label] for label in unique])
        at_points = self.phonon.get_qpoints_dict()["frequencies"]
        self.phonon.run_mesh(mesh, is_gamma_center=True)
        self.phonon.run_total_dos()
        dos = self.phonon.get_total_dos_dict()
        # the three acoustic modes at Γ have zero frequency: no thermal weight
        self.phonon.run_thermal_properties(
            t_min=0, t_max=t_max, t_step=t_step, exclude_gamma_acoustic=True
        )
        thermal = self.phonon.get_thermal_properties_dict()
        return PhononResult(
            special_frequencies={k: np.sort(f) for k, f in zip(unique, at_points)},
            special_points={k: np.asarray(points[k], dtype=float) for k in unique},
            distances=[np.asarray(d) for d in band["distances"]],
            frequencies=[np.asarray(f) for f in band["frequencies"]],
            labels=[(a, b) for seg in segments for a, b in zip(seg[:-1], seg[1:])],
            dos_frequencies=np.asarray(dos["frequency_points"]),
            dos=np.asarray(dos["total_dos"]),
            temperatures=np.asarray(thermal["temperatures"]),
            free_energy=np.asarray(thermal["free_energy"]),
            entropy=np.asarray(thermal["entropy"]),
            heat_capacity=np.asarray(thermal["heat_capacity"]),
        )


def plot_phonons(results: Mapping[str, PhononResult], path: str | Path, title: str = "") -> None:
    """Band structure and DOS of one or more results (same structure) side by side, PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_dos) = plt.subplots(
        1, 2, figsize=(8, 4.5), sharey=True, gridspec_kw={"width_ratios": [3, 1]}
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ticks, tick_labels = [], []
    for k, (name, result) in enumerate(results.items()):
        style = {"color": colors[k % len(colors)], "lw": 1.2, "ls": "-" if k == 0 else "--"}
        for n, (d, f) in enumerate(zip(result.distances, result.frequencies)):
            lines = ax.plot(d, f, **style)
            lines[0].set_label(name if n == 0 else "_")
        ax_dos.plot(result.dos, result.dos_frequencies, **style)
        if k == 0:
            ticks, tick_labels = _ticks(result)
    for x in ticks:
        ax.axvline(x, color="0.8", lw=0.6)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_xticks(ticks, tick_labels)
    first = next(iter(results.values()))
    ax.set(xlim=(first.distances[0][0], first.distances[-1][-1]), ylabel="frequency (THz)",
           title=title)  # fmt: skip
    ax.legend(fontsize=8)
    ax_dos.set(xlabel="DOS (1/THz)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ticks(result: PhononResult) -> tuple[list[float], list[str]]:
    """Positions and names of the special points along the plotted path ("K|U" where the
    path jumps)."""
    ticks = [float(result.distances[0][0])]
    names = [result.labels[0][0]]
    for k, (d, (_, end)) in enumerate(zip(result.distances, result.labels)):
        following = result.labels[k + 1][0] if k + 1 < len(result.labels) else end
        ticks.append(float(d[-1]))
        names.append(end if following == end else f"{end}|{following}")
    return ticks, [n.replace("G", r"$\Gamma$") for n in names]
