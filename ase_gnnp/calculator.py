"""The ASE calculator."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress
from torch_geometric.data import Batch

from ase_gnnp import keys as K
from ase_gnnp.checkpoint import load_model
from ase_gnnp.graph import atoms_to_graph
from ase_gnnp.model import GNNPModel

__all__ = ["GNNPCalculator"]


class GNNPCalculator(Calculator):
    """ASE calculator for an ase_gnnp model.

    Energy, per-atom energies and forces are computed for every structure, and stress for
    cells periodic in all three directions, all in one autograd pass; ASE caches them.

    Parameters
    ----------
    model
        A checkpoint path, the name of a shipped model (``"sige-small"``) or a loaded
        :class:`~ase_gnnp.model.GNNPModel`. A model object whose dtype and device already
        match is used as it is (later weight updates are seen by the calculator); otherwise
        a converted copy is used. The object passed in is never modified.
    device
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    dtype
        ``torch.float32`` or ``torch.float64``; default: the model's own dtype.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase_gnnp import GNNPCalculator
    >>> atoms = bulk("Si", "diamond", a=5.43)
    >>> atoms.calc = GNNPCalculator("sige-small")
    >>> forces = atoms.get_forces()  # (2, 3) eV/Å
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: str | Path | GNNPModel,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(model, (str, Path)):
            model = load_model(model)
        elif not isinstance(model, GNNPModel):
            raise TypeError(
                f"model must be a checkpoint path, a shipped model name or a GNNPModel, "
                f"got {type(model).__name__}"
            )
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        self.device = torch.empty(0, device=device).device  # "cuda" -> "cuda:0"
        self.dtype = dtype or model.dtype
        if model.dtype != self.dtype or model.scale.device != self.device:
            # convert a copy: the caller's model object is never changed
            model = copy.deepcopy(model).to(device=self.device, dtype=self.dtype)
        self.model = model
        self._warned: set[int] = set()

    def _graph(self, atoms: Atoms):
        graph = atoms_to_graph(atoms, self.model.cutoff, self.dtype)
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

    def _evaluate(self, atoms_list: Sequence[Atoms], stress: bool) -> list[dict]:
        graphs = [self._graph(a) for a in atoms_list]
        # one structure needs no collation (saves ~1 ms per MD step)
        batch = (graphs[0] if len(graphs) == 1 else Batch.from_data_list(graphs)).to(self.device)
        out = self.model(batch, forces=True, stress=stress)
        counts = batch[K.NUM_ATOMS].tolist()
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
            results.append(res)
            start += n
        return results

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        stress = self._check_stress_request(self.atoms, properties)
        self.results = self._evaluate([self.atoms], stress)[0]

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
