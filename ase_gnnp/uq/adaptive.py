"""Uncertainty-driven MD: pause on large force balls, label, learn, recalibrate, go on."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from torch_geometric.data import Batch
from tqdm import tqdm

from ase_gnnp.calculator import GNNPCalculator
from ase_gnnp.checkpoint import load_model, save_model
from ase_gnnp.data import labelled_graph
from ase_gnnp.evaluate import forward_options
from ase_gnnp.model import GNNPModel
from ase_gnnp.train.loss import loss_terms, total_loss
from ase_gnnp.uq.statistics import calibrate_forces, fit_mahalanobis, uq_statistics

__all__ = [
    "REFERENCES",
    "AdaptiveEvent",
    "AdaptiveMD",
    "ReferenceCalculatorError",
    "reference_calculator",
]


class ReferenceCalculatorError(RuntimeError):
    """The reference calculator failed or gave non-finite results."""


#: reference calculators by name (the package's analytic teachers)
REFERENCES = ("tersoff", "marinica-w", "fs-w", "bks")


def reference_calculator(name: str) -> Calculator:
    """A teacher calculator by name (see :data:`REFERENCES`)."""
    from ase_gnnp import teachers

    makers = {
        "tersoff": teachers.tersoff_sige,
        "marinica-w": teachers.marinica_w,
        "fs-w": teachers.finnis_sinclair_w,
        "bks": teachers.BKSCalculator,
    }
    if name not in makers:
        raise ValueError(f"reference must be one of {REFERENCES}, got {name!r}")
    return makers[name]()


@dataclass
class AdaptiveEvent:
    """One pause of :class:`AdaptiveMD` (a line of ``events.jsonl``).

    Attributes
    ----------
    step : int
        MD step at which the largest ball exceeded the threshold.
    max_radius : float
        ``max_i R_i`` before learning, eV/Å.
    true_max_error : float
        ``max_i |F_ref − F_model|`` before learning, eV/Å.
    covered : float
        Share of atoms whose true error was inside their ball.
    destination : str
        ``"train"`` or ``"calibration"``: where the labelled structure went.
    max_radius_after, true_max_error_after : float
        The same after learning and recalibrating.
    qhat : float
        Recalibrated conformal quantile.
    n_train, n_calibration : int
        Structures in the training and calibration pools after the event.
    wall_s : float
        Seconds the pause took (reference call, training, refit, calibration).
    """

    step: int
    max_radius: float
    true_max_error: float
    covered: float
    destination: str
    max_radius_after: float
    true_max_error_after: float
    qhat: float
    n_train: int
    n_calibration: int
    wall_s: float


class AdaptiveMD:
    """Langevin MD that learns where its model is unsure.

    At every step the model's conformal force balls ``R_i`` are checked. When
    ``max_i R_i > r_thr`` the run pauses: the structure is labelled by ``reference``;
    every ``calibration_every``-th label goes to the calibration pool (never trained on),
    the others to the training pool; the model is trained for ``train_steps`` minibatch
    steps on the training pool (each batch holds the newest label), its Mahalanobis
    statistics are refitted on the training pool, q̂ is recalibrated on the calibration
    pool only, and MD resumes with the updated model. A run is resumable: the model, both
    pools, the MD state and the logs are saved in ``out`` at every event and every
    ``save_every`` steps.

    Parameters
    ----------
    model
        A calibrated model (with Mahalanobis statistics and a conformal q̂), a checkpoint
        or a shipped name. It is copied; the original is not changed.
    reference
        ASE calculator giving reference energy, forces and (for periodic cells) stress.
    atoms
        Initial structure (copied); velocities are drawn at ``temperature_K``.
    train_frames, calibration_frames
        Labelled structures with their labels as calculator results (see
        :func:`ase_gnnp.data.with_calculator_labels`): the model's training data (kept in
        every update, so it does not forget them) and its held-out calibration set.
    out
        Run folder: ``model.pt``, ``train_added.extxyz``, ``calibration_added.extxyz``,
        ``events.jsonl``, ``steps.csv``, ``state.extxyz``, ``run.json``.
    r_thr
        Threshold on the largest ball radius, eV/Å.
    temperature_K, timestep_fs, friction
        Langevin MD (friction in 1/fs).
    calibration_every
        Every n-th new label goes to the calibration pool (0: none does).
    train_steps, batch_size, lr
        Optimizer steps (AdamW) per event, structures per step, learning rate.
    loss_weights
        Weights of the loss terms by name (``energy``, ``forces``, ``stress``, ``dipole``,
        ``polarizability``, ``charges``); default: those of the model's training config
        as its checkpoint records them, else :class:`~ase_gnnp.train.TrainConfig`'s.
    cooldown
        Steps after an event before the next check (bounds reference calls).
    save_every
        Steps between saves of the MD state.
    audit_every
        Every this many steps, also call the reference for the log only (``audit_*``
        columns of ``steps.csv``: the true largest force error and the reference energy);
        never learned from (0: no audit). For demonstrations and benchmarks.
    trajectory_every
        Steps between frames of ``trajectory.extxyz`` (0: none).
    seed
        Seeds velocities, Langevin noise and minibatches.
    resume
        Continue the run saved in ``out`` (``atoms`` and ``model`` are then taken from
        there; the optimizer's moments start afresh and the random streams are reseeded
        from ``(seed, step)``). Without it,
        a folder holding a run is an error: nothing is overwritten.
    device
        Torch device of the model (default: a model object's own, CPU for a file).
    """

    def __init__(
        self,
        model: GNNPModel | str | Path,
        reference: Calculator,
        atoms: Atoms,
        train_frames: Sequence[Atoms],
        calibration_frames: Sequence[Atoms],
        out: str | Path,
        r_thr: float,
        *,
        temperature_K: float = 1500.0,
        timestep_fs: float = 1.0,
        friction: float = 0.01,
        calibration_every: int = 4,
        train_steps: int = 30,
        batch_size: int = 4,
        lr: float = 1e-3,
        loss_weights: dict | None = None,
        cooldown: int = 5,
        save_every: int = 100,
        audit_every: int = 0,
        trajectory_every: int = 0,
        seed: int = 0,
        progress: bool = True,
        resume: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        if not isinstance(reference, Calculator):
            raise TypeError(f"reference must be an ASE Calculator, got {type(reference).__name__}")
        if not isinstance(atoms, Atoms):
            raise TypeError(f"atoms must be ase.Atoms, got {type(atoms).__name__}")
        if not r_thr > 0:
            raise ValueError(f"r_thr must be a positive force (eV/Å), got {r_thr!r}")
        for name, value in (("train_steps", train_steps), ("batch_size", batch_size),
                            ("save_every", save_every)):  # fmt: skip
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(calibration_every, int) or calibration_every < 0:
            raise ValueError(
                f"calibration_every must be an integer >= 0, got {calibration_every!r}"
            )
        self.out = Path(out)
        self.paths = {
            name: self.out / name
            for name in ("model.pt", "train_added.extxyz", "calibration_added.extxyz",
                         "events.jsonl", "steps.csv", "state.extxyz", "run.json",
                         "trajectory.extxyz")
        }  # fmt: skip
        if resume and not self.paths["state.extxyz"].is_file():
            raise ValueError(f"resume: no adaptive-MD run in {self.out} to resume")
        if not resume and any(p.exists() for p in self.paths.values()):
            raise ValueError(
                f"{self.out} already holds an adaptive-MD run; resume it or choose another folder"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            model = self.paths["model.pt"]
        if isinstance(model, (str, Path)):
            model = load_model(model, device=device or "cpu")
        else:
            model = _copy(model).to(device if device is not None else model.scale.device)
        stats = uq_statistics(model)
        if stats.mahalanobis is None or stats.conformal is None:
            raise ValueError(
                "adaptive MD needs a calibrated model: run ase-gnnp uq fit and ase-gnnp uq "
                "calibrate on it first"
            )
        self.model = model.eval()
        self.alpha, self.score = stats.conformal.alpha, stats.conformal.score
        self.reference = reference
        self.r_thr = float(r_thr)
        self.timestep_fs, self.temperature_K = float(timestep_fs), float(temperature_K)
        self.calibration_every, self.cooldown = calibration_every, int(cooldown)
        self.train_steps, self.batch_size, self.save_every = train_steps, batch_size, save_every
        self.audit_every, self.trajectory_every = audit_every, trajectory_every
        self.weights = _loss_weights(model) | dict(loss_weights or {})
        self.progress = progress
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        self.base_train = list(train_frames)
        self.base_calibration = list(calibration_frames)
        if not self.base_train:
            raise ValueError("train_frames is empty: adaptive MD retrains on them")
        self.train_added: list[Atoms] = []
        self.calibration_added: list[Atoms] = []
        self.step = 0
        self.last_event = -(10**9)
        self.events: list[AdaptiveEvent] = []
        if resume:
            atoms = self._restore()
            # fresh streams for the rest of the run (not a replay of the first steps)
            self.rng = np.random.default_rng([seed, self.step])
            torch.manual_seed(seed * 1_000_003 + self.step)
        else:
            atoms = atoms.copy()
            thermalize_momenta(atoms, temperature_K, rng=self.rng)
            Stationary(atoms)
        self._graphs = [self._graph(a) for a in self.base_train + self.train_added]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0)
        self.atoms = atoms
        self.device = self.model.scale.device
        self.atoms.calc = GNNPCalculator(self.model, device=self.device)  # shares the model
        self.dyn = Langevin(
            self.atoms, timestep_fs * units.fs, temperature_K=temperature_K,
            friction=friction / units.fs, fixcm=False, rng=self.rng,
        )  # fmt: skip
        if not resume:
            self.paths["run.json"].write_text(json.dumps({
                "r_thr": self.r_thr, "temperature_K": temperature_K, "timestep_fs": timestep_fs,
                "friction": friction, "calibration_every": calibration_every,
                "train_steps": train_steps, "batch_size": batch_size, "lr": lr,
                "cooldown": cooldown, "seed": seed, "alpha": self.alpha, "score": self.score,
            }, indent=2))  # fmt: skip
            with open(self.paths["steps.csv"], "w", newline="") as fh:
                csv.writer(fh).writerow(
                    [
                        "step",
                        "time_fs",
                        "temperature_K",
                        "epot_eV",
                        "max_radius",
                        "max_mahalanobis",
                        "event",
                        "audit_max_error",
                        "audit_epot_eV",
                    ]
                )
            self.paths["events.jsonl"].touch()
            self._save()

    # ------------------------------------------------------------------ state
    def _graph(self, atoms: Atoms):
        return labelled_graph(atoms, self.model.cutoff, dtype=self.model.dtype)

    def _restore(self) -> Atoms:
        for name, pool in (("train_added.extxyz", self.train_added),
                           ("calibration_added.extxyz", self.calibration_added)):  # fmt: skip
            if self.paths[name].stat().st_size:
                pool += read(self.paths[name], ":")
        state = read(self.paths["state.extxyz"])
        self.step = int(state.info["step"])
        self.last_event = int(state.info.get("last_event", -(10**9)))
        # forget what was logged after the state was saved (a kill between saves), and a
        # line or frame cut short by the kill
        self.events = []
        for line in self.paths["events.jsonl"].read_text().splitlines():
            try:
                event = AdaptiveEvent(**json.loads(line))
            except (ValueError, TypeError):
                continue
            if event.step <= self.last_event:
                self.events.append(event)
        self.paths["events.jsonl"].write_text(
            "".join(json.dumps(asdict(e)) + "\n" for e in self.events)
        )
        with open(self.paths["steps.csv"]) as fh:
            rows = list(csv.reader(fh))
        kept = [r for r in rows[1:] if len(r) == len(rows[0]) and _int(r[0]) <= self.step]
        with open(self.paths["steps.csv"], "w", newline="") as fh:
            csv.writer(fh).writerows([rows[0], *kept])
        if self.paths["trajectory.extxyz"].is_file():
            frames = _read_complete(self.paths["trajectory.extxyz"])
            frames = [a for a in frames if int(a.info["step"]) <= self.step]
            write(self.paths["trajectory.extxyz"], frames, format="extxyz")
        atoms = Atoms(state.numbers, state.positions, cell=state.cell, pbc=state.pbc)
        atoms.set_momenta(state.get_momenta())
        return atoms

    def _save(self) -> None:
        metadata = dict(getattr(self.model, "metadata", None) or {})
        save_model(self.model, self.paths["model.pt"], metadata | {"adaptive_md_step": self.step})
        for name, pool in (("train_added.extxyz", self.train_added),
                           ("calibration_added.extxyz", self.calibration_added)):  # fmt: skip
            tmp = self.paths[name].with_suffix(".tmp")
            write(tmp, pool, format="extxyz") if pool else tmp.write_text("")
            tmp.replace(self.paths[name])
        self._save_state()

    def _save_state(self) -> None:
        atoms = self.atoms.copy()
        atoms.calc = None
        atoms.info.update(step=self.step, last_event=self.last_event)
        tmp = self.paths["state.extxyz"].with_suffix(".tmp")
        write(tmp, atoms, format="extxyz")
        tmp.replace(self.paths["state.extxyz"])

    # ------------------------------------------------------------------ learning
    def _label(self) -> Atoms:
        labelled = Atoms(self.atoms.numbers, self.atoms.positions, cell=self.atoms.cell,
                         pbc=self.atoms.pbc)  # fmt: skip
        labelled.calc = self.reference
        try:
            results = {"energy": labelled.get_potential_energy(), "forces": labelled.get_forces()}
            if np.all(labelled.pbc):
                results["stress"] = labelled.get_stress()
        except Exception as err:  # any failure of the user's reference is reported as such
            raise ReferenceCalculatorError(
                f"the reference calculator {type(self.reference).__name__} failed at MD step "
                f"{self.step}: {type(err).__name__}: {err}"
            ) from err
        if not all(np.all(np.isfinite(v)) for v in results.values()):
            raise ReferenceCalculatorError(
                f"the reference calculator gave non-finite results at step {self.step}"
            )
        labelled.calc = SinglePointCalculator(labelled, **results)
        labelled.info.update(config_type="adaptive", adaptive_md_step=self.step)
        return labelled

    def _train(self) -> None:
        self.model.train()
        newest = len(self._graphs) - 1
        for _ in range(self.train_steps):
            others = self.rng.choice(newest, size=min(self.batch_size - 1, newest), replace=False)
            chosen = [self._graphs[i] for i in [newest, *others.tolist()]]
            data = Batch.from_data_list(chosen).to(self.device)
            options = forward_options(self.model, data) | {"stress": bool(data.pbc.all())}
            out = self.model(data, create_graph=True, **options)
            loss = total_loss(loss_terms(out, data), self.weights)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
            self.optimizer.step()
        self.model.eval()

    def _learn(self, radii: np.ndarray) -> AdaptiveEvent:
        t0 = time.perf_counter()
        labelled = self._label()
        ref = labelled.get_forces()
        before = np.linalg.norm(ref - self.atoms.get_forces(), axis=1)
        n_new = len(self.train_added) + len(self.calibration_added) + 1
        to_calibration = self.calibration_every > 0 and n_new % self.calibration_every == 0
        if to_calibration:
            self.calibration_added.append(labelled)
        else:
            self.train_added.append(labelled)
            self._graphs.append(self._graph(labelled))
            self._train()
        fit_mahalanobis(self.model, self.base_train + self.train_added)
        calibrate_forces(self.model, self.base_calibration + self.calibration_added,
                         self.alpha, self.score)  # fmt: skip
        self.atoms.calc.reset()
        after = np.linalg.norm(ref - self.atoms.get_forces(), axis=1)
        event = AdaptiveEvent(
            step=self.step,
            max_radius=float(radii.max()),
            true_max_error=float(before.max()),
            covered=float(np.mean(before <= radii)),
            destination="calibration" if to_calibration else "train",
            max_radius_after=float(self.atoms.calc.get_property("force_uncertainty").max()),
            true_max_error_after=float(after.max()),
            qhat=float(uq_statistics(self.model).conformal.qhat),
            n_train=len(self.base_train) + len(self.train_added),
            n_calibration=len(self.base_calibration) + len(self.calibration_added),
            wall_s=time.perf_counter() - t0,
        )
        self.events.append(event)
        self.last_event = self.step
        self._save()  # model, pools and state first: a logged event is always a saved one
        with open(self.paths["events.jsonl"], "a") as fh:
            fh.write(json.dumps(asdict(event)) + "\n")
        return event

    # ------------------------------------------------------------------ run
    def _audit(self) -> tuple[float, float]:
        """True largest force error and reference energy now (for the log only)."""
        if not self.audit_every or self.step % self.audit_every:
            return float("nan"), float("nan")
        labelled = self._label()
        error = np.linalg.norm(labelled.get_forces() - self.atoms.get_forces(), axis=1)
        return float(error.max()), float(labelled.get_potential_energy())

    def _check(self) -> None:
        radii = self.atoms.calc.get_property("force_uncertainty", self.atoms)
        event = radii.max() > self.r_thr and self.step - self.last_event >= self.cooldown
        if event:
            self._learn(radii)
            radii = self.atoms.calc.get_property("force_uncertainty", self.atoms)
        row = [self.step, self.step * self.timestep_fs, self.atoms.get_temperature(),
               self.atoms.get_potential_energy(), float(radii.max()),
               float(self.atoms.calc.get_property("mahalanobis", self.atoms).max()),
               int(event), *self._audit()]  # fmt: skip
        with open(self.paths["steps.csv"], "a", newline="") as fh:
            csv.writer(fh).writerow(row)
        if self.trajectory_every and self.step % self.trajectory_every == 0:
            frame = Atoms(self.atoms.numbers, self.atoms.positions, cell=self.atoms.cell,
                          pbc=self.atoms.pbc, info={"step": self.step})  # fmt: skip
            write(self.paths["trajectory.extxyz"], frame, format="extxyz", append=True)

    def run(self, steps: int) -> dict:
        """Run until ``steps`` MD steps in all (a resumed run continues its count).

        Returns
        -------
        dict
            ``steps``, ``events`` (reference calls), ``train_added``,
            ``calibration_added``, ``wall_s``.
        """
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        t0 = time.perf_counter()
        if self.step == 0 and not self.events and _rows(self.paths["steps.csv"]) == 0:
            self._check()
        for _ in tqdm(range(self.step, steps), desc="adaptive md", disable=not self.progress):
            self.dyn.run(1)
            self.step += 1
            self._check()
            if self.step % self.save_every == 0:
                self._save_state()
        self._save_state()
        return {
            "steps": self.step,
            "events": len(self.events),
            "train_added": len(self.train_added),
            "calibration_added": len(self.calibration_added),
            "wall_s": time.perf_counter() - t0,
        }


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 2**62  # a malformed row: dropped


def _read_complete(path: Path) -> list[Atoms]:
    """The frames of an extxyz file up to the first one cut short."""
    try:
        return read(path, ":")
    except Exception:  # a truncated last frame: keep the complete ones
        frames, k = [], 0
        while True:
            try:
                frames.append(read(path, k))
            except Exception:
                return frames
            k += 1


def _loss_weights(model: GNNPModel) -> dict[str, float]:
    """The loss weights of the model's training config (TrainConfig's defaults if none)."""
    from ase_gnnp.train import TrainConfig

    recorded = (getattr(model, "metadata", None) or {}).get("train_config") or {}
    default = TrainConfig()
    names = ("energy", "forces", "stress", "dipole", "polarizability", "charges")
    return {n: float(recorded.get(f"{n}_weight", getattr(default, f"{n}_weight"))) for n in names}


def _rows(path: Path) -> int:
    with open(path) as fh:
        return max(sum(1 for _ in fh) - 1, 0)


def _copy(model: GNNPModel) -> GNNPModel:
    import copy

    if not isinstance(model, GNNPModel):
        raise TypeError(f"model must be a GNNPModel, a checkpoint or a shipped name, got "
                        f"{type(model).__name__}")  # fmt: skip
    return copy.deepcopy(model)
