"""The ASE calculator."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress
from torch_geometric.data import Batch

from ase_gnnp import keys as K
from ase_gnnp.checkpoint import load_model
from ase_gnnp.graph import atoms_to_graph, electric_field
from ase_gnnp.longrange import EPSILON0
from ase_gnnp.model import GNNPModel
from ase_gnnp.uq.statistics import uq_statistics

#: mixed-precision choices of GNNPCalculator(autocast=...)
AUTOCAST = {None: None, "bfloat16": torch.bfloat16, "float16": torch.float16}

__all__ = ["GNNPCalculator"]


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()


class GNNPCalculator(Calculator):
    """ASE calculator for an ase_gnnp model.

    Energy, per-atom energies and forces are computed for every structure, and stress for
    cells periodic in all three directions, all in one autograd pass; ASE caches them.
    Models with long-range charges also give ``charges`` (e) in that pass. Models with a
    field input give, when one of them is asked for, ``dipole`` (e·Å, molecules only),
    ``polarizability`` (3×3, e·Å²/V, molecules only; not an ASE standard name: an extra
    result) and ``born_effective_charges`` ((n, 3, 3) e, ``[i, α, β] = ∂F_iβ/∂𝓔_α``),
    all exact derivatives of ``E(r; 𝓔)``; for cells periodic in 3-D, ``dielectric_tensor``
    (3×3, the clamped-ion ε∞ = I + (−∂²E/∂𝓔²)/(ε0 V)). The total charge is ``atoms.info["charge"]``
    (default 0) and the field ``atoms.info["electric_field"]`` (V/Å, default 0) unless
    ``field`` is given; changing either triggers a new calculation.

    Models with uncertainty statistics (``ase-gnnp uq fit`` / ``uq calibrate``) also give,
    in the same pass, ``mahalanobis`` ((n,), the latent Mahalanobis distance of each atom
    to its element's training data, dimensionless) and ``force_uncertainty`` ((n,) eV/Å,
    the radius ``R_i`` of a conformal ball that holds the true force with probability
    ``1 − α`` for atoms like the calibration set's; an element without statistics is
    scored against the nearest fitted one, and its ball carries no guarantee); see
    :mod:`ase_gnnp.uq`.

    Parameters
    ----------
    model
        A checkpoint path, the name of a shipped model (``"sige-small"``) or a loaded
        :class:`~ase_gnnp.model.GNNPModel`. A model object whose dtype and device already
        match is used as it is (later weight or statistics updates are seen by the
        calculator after ``calc.reset()``: ASE caches results per structure); otherwise
        a converted copy is used. The object passed in is never modified.
    device
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    dtype
        ``torch.float32`` or ``torch.float64``; default: the model's own dtype.
    field
        Uniform electric field (3,) in V/Å applied to every structure, overriding
        ``atoms.info["electric_field"]``; needs a model with ``field=True``.
    compile
        Evaluate through ``torch.compile`` (first call compiles: a minute or more on a
        CPU); response properties stay eager.
    edge_chunk
        Process at most this many edges at a time (large systems: less memory, same
        result).
    autocast
        ``"bfloat16"`` or ``"float16"``: mixed precision for the feature layers (see
        :meth:`~ase_gnnp.model.GNNPModel.set_performance_options`); ``None`` for full
        precision.

    Any of the last three works on a copy of the model.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase_gnnp import GNNPCalculator
    >>> atoms = bulk("Si", "diamond", a=5.43)
    >>> atoms.calc = GNNPCalculator("sige-small")
    >>> forces = atoms.get_forces()  # (2, 3) eV/Å
    """

    implemented_properties = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "charges",
        "dipole",
        "polarizability",
        "born_effective_charges",
        "dielectric_tensor",
        "mahalanobis",
        "force_uncertainty",
    ]
    #: ``atoms.info`` keys that change the result (watched by ``check_state``)
    info_keys = ("charge", "electric_field")
    _response_properties = (
        "dipole",
        "polarizability",
        "born_effective_charges",
        "dielectric_tensor",
    )

    def __init__(
        self,
        model: str | Path | GNNPModel,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        field=None,
        compile: bool = False,
        edge_chunk: int | None = None,
        autocast: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        given = model
        if isinstance(model, (str, Path)):
            model = load_model(model)
        elif not isinstance(model, GNNPModel):
            raise TypeError(
                f"model must be a checkpoint path, a shipped model name or a GNNPModel, "
                f"got {type(model).__name__}"
            )
        if autocast not in AUTOCAST:
            raise ValueError(f"autocast must be one of {list(AUTOCAST)}, got {autocast!r}")
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        self.device = torch.empty(0, device=device).device  # "cuda" -> "cuda:0"
        self.dtype = dtype or model.dtype
        if model.dtype != self.dtype or model.scale.device != self.device:
            # convert a copy: the caller's model object is never changed
            model = copy.deepcopy(model).to(device=self.device, dtype=self.dtype)
        if compile or edge_chunk is not None or autocast is not None:
            model = copy.deepcopy(model) if model is given else model
            model.set_performance_options(
                edge_chunk=edge_chunk if edge_chunk is not None else "keep",
                autocast_dtype=AUTOCAST[autocast] if autocast is not None else "keep",
                compile_inference=True if compile else None,
            )
            if compile:
                model.eval()  # compiled inference runs in evaluation mode only
        self.model = model
        self._warned: set[int] = set()
        self.field = None
        if field is not None:
            if not model.config.field:
                raise ValueError("field was given but this model has no field input (field=False)")
            self.field = electric_field(Atoms(), field)

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        changes = super().check_state(atoms, tol)
        if self.atoms is not None:
            for key in self.info_keys:
                old, new = self.atoms.info.get(key), atoms.info.get(key)
                if (old is None) != (new is None) or (
                    old is not None and not np.array_equal(np.asarray(old), np.asarray(new))
                ):
                    changes.append("info")
                    break
        return changes

    def _graph(self, atoms: Atoms):
        if not self.model.config.field and self.field is None:
            efield = atoms.info.get("electric_field")
            if efield is not None and np.any(np.asarray(efield, dtype=float) != 0):
                raise ValueError(
                    f"atoms.info['electric_field'] = {efield!r} but this model has no field "
                    "input (field=False): it cannot respond to a field"
                )
        graph = atoms_to_graph(atoms, self.model.cutoff, self.dtype, field=self.field)
        self._warn_unfitted(atoms.numbers)
        return graph

    def _warn_unfitted(self, numbers: np.ndarray) -> None:
        fitted = self.model.fitted_elements.cpu().numpy()
        if not fitted.any():
            return  # an untrained model: nothing was fitted at all
        seen = set(np.unique(numbers).tolist())
        new = sorted(seen - self._warned - set(np.nonzero(fitted)[0].tolist()))
        if new:
            self._warned.update(new)
            names = ", ".join(chemical_symbols[z] for z in new)
            warnings.warn(
                f"element(s) {names} were not in this model's training data: their reference "
                "energy is 0 eV and their embedding comes from element descriptors only, so "
                "absolute energies are meaningless (refit the reference energy, see "
                "ase-gnnp train --init-from)",
                UserWarning,
                stacklevel=3,
            )

    @staticmethod
    def _check_stress_request(atoms: Atoms, properties: Sequence[str]) -> bool:
        periodic = bool(np.all(atoms.pbc))
        if "stress" in properties and not periodic:
            raise ValueError(
                "stress needs a cell periodic in all three directions, "
                f"got pbc={atoms.pbc.tolist()}"
            )
        return periodic

    def _check_response_request(self, atoms: Atoms, properties: Sequence[str]) -> bool:
        asked = [p for p in properties if p in self._response_properties]
        if "charges" in properties and self.model.charge_head is None:
            raise PropertyNotImplementedError(
                "charges need a model with long-range charges (long_range='ewald' or 'pme')"
            )
        uq = uq_statistics(self.model)
        if "mahalanobis" in properties and uq.mahalanobis is None:
            raise PropertyNotImplementedError(
                "mahalanobis needs a model with Mahalanobis statistics: ase-gnnp uq fit "
                "--model M --data train.extxyz"
            )
        if "force_uncertainty" in properties and uq.conformal is None:
            raise PropertyNotImplementedError(
                "force_uncertainty needs a conformally calibrated model: ase-gnnp uq fit, "
                "then ase-gnnp uq calibrate --model M --data calib.extxyz --alpha 0.01"
            )
        if not asked:
            return False
        if not self.model.config.field:
            raise PropertyNotImplementedError(
                f"{', '.join(asked)} need a model with a field input (field=True)"
            )
        undefined = [p for p in asked if p in ("dipole", "polarizability")]
        if undefined and np.any(atoms.pbc):
            raise ValueError(
                f"{' and '.join(undefined)} of a periodic cell (pbc={atoms.pbc.tolist()}) "
                "depend on the choice of periodic images and are undefined; Born effective "
                "charges and forces are defined (use a molecule without pbc for dipoles)"
            )
        if "dielectric_tensor" in asked and not np.all(atoms.pbc):
            raise ValueError(
                f"dielectric_tensor needs a cell periodic in all three directions, got "
                f"pbc={atoms.pbc.tolist()}; a molecule has a polarizability instead"
            )
        return True

    def _evaluate(
        self, atoms_list: Sequence[Atoms], stress: bool, response: bool = False
    ) -> list[dict]:
        graphs = [self._graph(a) for a in atoms_list]
        # one structure needs no collation (saves ~1 ms per MD step)
        batch = (graphs[0] if len(graphs) == 1 else Batch.from_data_list(graphs)).to(self.device)
        out = self.model(batch, forces=True, stress=stress, response=response)
        counts = batch[K.NUM_ATOMS].tolist()
        uq = uq_statistics(self.model)
        if uq.mahalanobis is not None:
            distances = _numpy(
                uq.mahalanobis.torch_distances(out[K.LATENT], batch[K.ATOMIC_NUMBERS])
            )
            radii = None if uq.conformal is None else uq.conformal.radii(distances)
        total = out[K.ENERGY].detach().cpu().double().numpy()
        energies = out[K.ATOMIC_ENERGIES].detach().cpu().double().numpy()
        forces = out[K.FORCES].detach().cpu().double().numpy()
        if stress:
            voigt = full_3x3_to_voigt_6_stress(out[K.STRESS].detach().cpu().double().numpy())
        results, start = [], 0
        for k, n in enumerate(counts):
            res = {
                "energy": float(total[k]),
                "energies": energies[start : start + n].copy(),
                "forces": forces[start : start + n].copy(),
            }
            res["free_energy"] = res["energy"]
            if stress:
                res["stress"] = voigt[k].copy()
            if uq.mahalanobis is not None:
                res["mahalanobis"] = distances[start : start + n].copy()
                if radii is not None:
                    res["force_uncertainty"] = radii[start : start + n].copy()
            if K.CHARGES in out:
                res["charges"] = _numpy(out[K.CHARGES])[start : start + n].copy()
            if response:
                res["born_effective_charges"] = _numpy(out[K.BORN_CHARGES])[start : start + n]
                if not batch[K.PBC][k].any():
                    res["dipole"] = _numpy(out[K.DIPOLE])[k].copy()
                    res["polarizability"] = _numpy(out[K.POLARIZABILITY])[k].copy()
                elif batch[K.PBC][k].all():
                    volume = abs(float(np.linalg.det(_numpy(batch[K.CELL])[k])))
                    chi = _numpy(out[K.POLARIZABILITY])[k] / (EPSILON0 * volume)
                    res["dielectric_tensor"] = np.eye(3) + chi
            results.append(res)
            start += n
        return results

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        stress = self._check_stress_request(self.atoms, properties)
        response = self._check_response_request(self.atoms, properties)
        self.results = self._evaluate([self.atoms], stress, response)[0]

    def get_hessian(self, atoms: Atoms | None = None, atom_indices=None) -> np.ndarray:
        """Analytic force constants ``Φ[i, j, α, β] = ∂²E/∂r_iα ∂r_jβ`` (eV/Å²) by autograd.

        Parameters
        ----------
        atoms
            Structure (default: the calculator's current atoms).
        atom_indices
            Rows ``i`` wanted (default: all atoms), e.g. the primitive atoms of a phonopy
            supercell (phonopy's compact force constants).

        Returns
        -------
        ndarray
            ``(len(atom_indices), N, 3, 3)``. Moving an atom of a periodic cell moves its
            images, as in a supercell finite-displacement calculation.
        """
        from ase_gnnp.hessian import hessian_rows

        atoms = atoms if atoms is not None else self.atoms
        if not isinstance(atoms, Atoms):
            raise TypeError(f"atoms must be ase.Atoms, got {type(atoms).__name__}")
        graph = self._graph(atoms).to(self.device)
        return _numpy(hessian_rows(self.model, graph, atom_indices))

    def batch_evaluate(
        self,
        atoms_list: Sequence[Atoms],
        batch_size: int = 16,
        stress: bool | None = None,
    ) -> list[dict]:
        """Evaluate many structures in batches (faster than one ``calculate`` each).

        Parameters
        ----------
        atoms_list
            Structures; each may have a different size, cell and PBC.
        batch_size
            Structures per forward pass.
        stress
            Compute stress; default: when every structure is periodic in 3-D.

        Returns
        -------
        list of dict
            Per structure: ``energy``, ``free_energy`` (eV), ``energies`` (n,), ``forces``
            (n, 3) eV/Å and, with stress, ``stress`` (6,) Voigt eV/Å^3.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        atoms_list = [atoms_list] if isinstance(atoms_list, Atoms) else list(atoms_list)
        for k, atoms in enumerate(atoms_list):
            if not isinstance(atoms, Atoms):
                raise TypeError(f"atoms_list[{k}] must be ase.Atoms, got {type(atoms).__name__}")
        if stress is None:
            stress = all(np.all(a.pbc) for a in atoms_list)
        elif stress:
            for k, a in enumerate(atoms_list):
                try:
                    self._check_stress_request(a, ["stress"])
                except ValueError as err:
                    raise ValueError(f"atoms_list[{k}]: {err}") from None
        results = []
        for start in range(0, len(atoms_list), batch_size):
            results += self._evaluate(atoms_list[start : start + batch_size], stress)
        return results
