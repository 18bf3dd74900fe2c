"""Error metrics of a model against labelled structures (overall and per group)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress
from torch_geometric.data import Batch, Data

from ase_gnnp import keys as K
from ase_gnnp.data import DataKeys, config_types, labelled_graph
from ase_gnnp.model import GNNPModel

#: optional outputs compared per component: (output, reference, mask)
_EXTRA = (
    (K.DIPOLE, K.REF_DIPOLE, K.HAS_DIPOLE),
    (K.POLARIZABILITY, K.REF_POLARIZABILITY, K.HAS_POLARIZABILITY),
    (K.CHARGES, K.REF_CHARGES, K.HAS_CHARGES),
)


def _mae_rmse(err: np.ndarray) -> tuple[float, float]:
    """Mean absolute and root-mean-square value of the errors ``err`` (any shape)."""
    err = np.asarray(err, dtype=float)
    return float(np.abs(err).mean()), float(np.sqrt((err**2).mean()))


def _by_group(rows: list[dict]) -> dict[str, list[dict]]:
    """``rows`` per ``config_type`` (their ``"group"``), in sorted group order."""
    groups: dict[str, list] = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
    return dict(sorted(groups.items()))


def forward_options(model: GNNPModel, data: Data) -> dict:
    """Keyword arguments of ``model(data, ...)`` that produce every label ``data`` holds."""
    has = lambda key: key in data and bool(data[key].any())  # noqa: E731
    field = bool(model.config.field)
    return {
        "forces": True,
        "stress": has(K.HAS_STRESS),
        "dipole": field and has(K.HAS_DIPOLE),
        "response": field and has(K.HAS_POLARIZABILITY),
    }


class ErrorAccumulator:
    """Collects per-structure errors and reduces them to MAE/RMSE tables.

    Energies are compared per atom (eV/atom), forces per Cartesian component (eV/Å),
    stresses per Voigt component (eV/Å^3), dipoles per component (e·Å), polarizabilities
    per tensor element (e·Å²/V), charges per atom (e).
    """

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, out: dict, data: Data, groups: Sequence[str]) -> None:
        natoms = data[K.NUM_ATOMS].tolist()
        numbers = data[K.ATOMIC_NUMBERS].cpu().numpy()
        e_pred = out[K.ENERGY].detach().double().cpu().numpy()
        e_ref = data[K.REF_ENERGY].double().cpu().numpy()
        f_err = (out[K.FORCES].detach() - data[K.REF_FORCES]).double().cpu().numpy()
        has_s = K.STRESS in out
        s_err = (
            (out[K.STRESS].detach() - data[K.REF_STRESS]).double().cpu().numpy() if has_s else None
        )
        start = 0
        for k, n in enumerate(natoms):
            row = {"group": str(groups[k]), "natoms": n, "numbers": numbers[start : start + n]}
            if bool(data[K.HAS_ENERGY][k]):
                row["energy"] = (e_pred[k] - e_ref[k]) / n
                row["total_energy"] = (float(e_pred[k]), float(e_ref[k]))
            if bool(data[K.HAS_FORCES][start]) if n else False:
                row["forces"] = f_err[start : start + n].ravel()
            if has_s and bool(data[K.HAS_STRESS][k]):
                row["stress"] = full_3x3_to_voigt_6_stress(s_err[k])
            for name, ref, mask in _EXTRA:
                if (
                    name in out
                    and ref in data
                    and bool(data[mask][start if name == K.CHARGES else k])
                ):
                    pred = out[name].detach().double().cpu().numpy()
                    true = data[ref].double().cpu().numpy()
                    rows = slice(start, start + n) if name == K.CHARGES else k
                    row[name] = (pred[rows] - true[rows]).ravel()
                    if name == K.POLARIZABILITY:  # isotropic α = tr(α)/3, relative error
                        iso_true = np.trace(true[k]) / 3.0
                        row["polarizability_iso"] = (np.trace(pred[k]) / 3.0 - iso_true) / iso_true
            self.rows.append(row)
            start += n

    @staticmethod
    def _reduce(rows: list[dict]) -> dict:
        result: dict = {"n_structures": len(rows)}
        for name, label, unit in (
            ("energy", "energy", "per_atom"),
            ("forces", "force", ""),
            ("stress", "stress", ""),
            (K.DIPOLE, "dipole", ""),
            (K.POLARIZABILITY, "polarizability", ""),
            (K.CHARGES, "charge", ""),
        ):
            values = [np.atleast_1d(r[name]) for r in rows if name in r]
            if not values:
                continue
            err = np.concatenate(values)
            suffix = f"_{unit}" if unit else ""
            result[f"{label}_mae{suffix}"], result[f"{label}_rmse{suffix}"] = _mae_rmse(err)
        iso = [r["polarizability_iso"] for r in rows if "polarizability_iso" in r]
        if iso:  # relative error of the isotropic polarizability tr(α)/3, per structure
            result["polarizability_iso_rel_mae"] = float(np.abs(iso).mean())
            result["polarizability_iso_rel_max"] = float(np.abs(iso).max())
        return result

    def per_element(self) -> dict:
        """Force MAE/RMSE over the atoms of each element (eV/Å, per component), with the
        number of atoms and of structures holding the element."""
        table: dict[str, dict] = {}
        with_forces = [r for r in self.rows if "forces" in r]
        for z in sorted({int(z) for r in with_forces for z in r["numbers"]}):
            err = np.concatenate(
                [r["forces"].reshape(-1, 3)[r["numbers"] == z].ravel() for r in with_forces]
            )
            mae, rmse = _mae_rmse(err)
            table[chemical_symbols[z]] = {
                "n_atoms": len(err) // 3,
                "n_structures": sum(bool(np.any(r["numbers"] == z)) for r in with_forces),
                "force_mae": mae,
                "force_rmse": rmse,
            }
        return table

    def relative_energies(self) -> dict:
        """Energy errors relative to each ``config_type``'s lowest-energy structure.

        Within a group of structures of one composition (a torsion scan, a dissociation
        curve, an MD trajectory), the reference structure ``m`` is the one with the lowest
        reference energy, and each structure's error is ``(E_k - E_m) - (E_k^ref -
        E_m^ref)``: what a model gets wrong in the energy profile, whatever its constant
        offset. The reference structure counts with its zero error, as in a plotted
        profile. Groups of one structure or of several compositions are listed in
        ``skipped``.

        Returns
        -------
        dict
            ``energy_rel_mae``, ``energy_rel_rmse`` (eV per structure, over every group's
            structures), ``n_structures``, ``per_config_type`` (the same per group, with
            ``reference_index``, the reference structure's position in the evaluated
            list, and ``reference_range``, the group's spread of reference energies, eV)
            and ``skipped`` (names of groups left out).
        """
        # each row's position in the evaluated list, by which a group's reference is named
        position = {id(r): i for i, r in enumerate(self.rows)}
        labelled = [r for r in self.rows if "total_energy" in r]
        table, errors, skipped = {}, [], []
        for group, rows in _by_group(labelled).items():
            compositions = {tuple(sorted(r["numbers"].tolist())) for r in rows}
            if len(rows) < 2 or len(compositions) > 1:
                skipped.append(group)
                continue
            pred, ref = np.array([r["total_energy"] for r in rows]).T
            m = int(np.argmin(ref))
            err = (pred - pred[m]) - (ref - ref[m])
            errors.append(err)
            mae, rmse = _mae_rmse(err)
            table[group] = {
                "n_structures": len(rows),
                "reference_index": position[id(rows[m])],
                "reference_range": float(ref.max() - ref.min()),
                "energy_rel_mae": mae,
                "energy_rel_rmse": rmse,
            }
        result: dict = {"n_structures": sum(len(e) for e in errors)}
        if errors:
            result["energy_rel_mae"], result["energy_rel_rmse"] = _mae_rmse(np.concatenate(errors))
        return result | {"per_config_type": table, "skipped": skipped}

    def summary(self, relative_energies: bool = False) -> dict:
        """Overall metrics plus ``per_config_type`` and ``per_element`` sub-tables, and
        with ``relative_energies`` a ``relative_energy`` table
        (:meth:`relative_energies`)."""
        result = self._reduce(self.rows)
        result["per_config_type"] = {g: self._reduce(rs) for g, rs in _by_group(self.rows).items()}
        result["per_element"] = self.per_element()
        if relative_energies:
            result["relative_energy"] = self.relative_energies()
        return result


def evaluate_graphs(
    model: GNNPModel,
    batches: Iterable[Batch],
    groups: Iterable[Sequence[str]],
    loss_fn: Callable[[dict, Batch], torch.Tensor] | None = None,
    relative_energies: bool = False,
) -> dict:
    """Metrics of ``model`` over labelled batches; ``groups`` gives config types per batch.

    With ``loss_fn(out, batch)``, the structure-weighted mean loss is added as ``"loss"``;
    with ``relative_energies``, the errors of energies relative to each group's lowest
    (:meth:`ErrorAccumulator.relative_energies`) as ``"relative_energy"``.
    """
    acc = ErrorAccumulator()
    loss, count = 0.0, 0
    for data, grp in zip(batches, groups):
        out = model(data, **forward_options(model, data))
        acc.add(out, data, grp)
        if loss_fn is not None:
            loss += float(loss_fn(out, data).detach()) * data.num_graphs
            count += data.num_graphs
    summary = acc.summary(relative_energies)
    if loss_fn is not None:
        summary["loss"] = loss / max(count, 1)
    return summary


def evaluate_structures(
    model: GNNPModel,
    frames: Sequence[Atoms],
    keys: DataKeys = DataKeys(),
    batch_size: int = 8,
    relative_energies: bool = False,
) -> dict:
    """Metrics of ``model`` on labelled ``frames`` (grouped by ``info['config_type']``);
    ``relative_energies`` adds the errors of energies relative to each group's lowest
    (:meth:`ErrorAccumulator.relative_energies`)."""
    dtype = model.dtype
    graphs = [labelled_graph(a, model.cutoff, keys, dtype) for a in frames]
    groups = config_types(frames)
    chunks = range(0, len(graphs), batch_size)
    batches = (Batch.from_data_list(graphs[i : i + batch_size]) for i in chunks)
    groups_per_batch = (groups[i : i + batch_size] for i in chunks)
    return evaluate_graphs(model, batches, groups_per_batch, relative_energies=relative_energies)


def format_table(summary: dict) -> str:
    """Human-readable table: energy meV/atom, forces meV/Å, stress meV/Å^3."""
    columns = ("E MAE", "E RMSE", "F MAE", "F RMSE", "S MAE", "S RMSE")
    head = f"{'config_type':<16}{'n':>5}" + "".join(f"{c:>10}" for c in columns)
    lines = [head, "-" * len(head)]

    def line(name: str, m: dict) -> str:
        def v(key: str) -> str:
            return f"{1000 * m[key]:10.2f}" if key in m else f"{'-':>10}"

        return (
            f"{name:<16}{m['n_structures']:>5}{v('energy_mae_per_atom')}{v('energy_rmse_per_atom')}"
            f"{v('force_mae')}{v('force_rmse')}{v('stress_mae')}{v('stress_rmse')}"
        )

    for name, m in summary.get("per_config_type", {}).items():
        lines.append(line(name, m))
    lines.append(line("ALL", summary))
    lines.append("units: energy meV/atom, forces meV/Å, stress meV/Å^3")
    for label, unit in (("dipole", "e·Å"), ("polarizability", "e·Å²/V"), ("charge", "e")):
        if f"{label}_mae" in summary:
            lines.append(
                f"{label} MAE {summary[f'{label}_mae']:.4f} {unit}, "
                f"RMSE {summary[f'{label}_rmse']:.4f} {unit}"
            )
    if "polarizability_iso_rel_mae" in summary:
        lines.append(
            f"isotropic polarizability: mean relative error "
            f"{100 * summary['polarizability_iso_rel_mae']:.1f} %, "
            f"max {100 * summary['polarizability_iso_rel_max']:.1f} %"
        )
    elements = summary.get("per_element", {})
    if len(elements) > 1:
        lines.append("force MAE per element (meV/Å): " + ", ".join(
            f"{e} {1000 * m['force_mae']:.1f} ({m['n_structures']} structures)"
            for e, m in elements.items()
        ))  # fmt: skip
    relative = summary.get("relative_energy")
    if relative is not None:
        lines.append(_format_relative(relative))
    return "\n".join(lines)


def _format_relative(relative: dict) -> str:
    """Lines of :meth:`ErrorAccumulator.relative_energies`' table (meV per structure)."""
    lines = ["energy relative to each config_type's lowest (meV per structure):"]
    for name, m in relative["per_config_type"].items():
        lines.append(
            f"  {name:<16}{m['n_structures']:>5}  MAE {1000 * m['energy_rel_mae']:.2f}  "
            f"RMSE {1000 * m['energy_rel_rmse']:.2f}  (reference: structure "
            f"{m['reference_index']}, profile spans {1000 * m['reference_range']:.1f})"
        )
    if "energy_rel_mae" in relative:
        lines.append(
            f"  {'ALL':<16}{relative['n_structures']:>5}  MAE "
            f"{1000 * relative['energy_rel_mae']:.2f}  "
            f"RMSE {1000 * relative['energy_rel_rmse']:.2f}"
        )
    if relative["skipped"]:
        lines.append(
            "  left out (one structure, or several compositions): " + ", ".join(relative["skipped"])
        )
    return "\n".join(lines)
