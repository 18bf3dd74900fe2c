"""The training loop: split, statistics, AdamW + schedule + EMA, checkpoints, resume.

Under ``torchrun`` (``WORLD_SIZE > 1``) the same loop runs data-parallel: every rank holds
the whole data set and the same model, takes a contiguous share of each global batch of
``batch_size`` structures from the same shuffled epoch, and the loss of each share is
scaled so that the sum of the ranks' gradients (one allreduce per step) is the gradient
of the global batch's loss; see :meth:`Trainer.train_epoch`.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import torch
import torch.utils.data
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from ase_gnnp import keys as K
from ase_gnnp.checkpoint import atomic_save, load_model, read_torch_file, save_model
from ase_gnnp.data import (
    config_types,
    labelled_graph,
    split_indices,
)
from ase_gnnp.evaluate import ErrorAccumulator, evaluate_graphs, forward_options
from ase_gnnp.model import GNNPModel
from ase_gnnp.train import distributed
from ase_gnnp.train.config import TrainConfig, read_frames
from ase_gnnp.train.ema import EMA
from ase_gnnp.train.freeze import freeze
from ase_gnnp.train.guard import DivergenceGuard
from ase_gnnp.train.loss import check_normalization, grouped, loss_terms, total_loss
from ase_gnnp.train.plots import plot_learning_curve
from ase_gnnp.train.stages import FinalStage
from ase_gnnp.train.statistics import fit_statistics
from ase_gnnp.train.weighting import (
    RepeatSampler,
    atom_element_weights,
    config_type_balance,
    element_weights,
    raw_element_weights,
)

STATE_FORMAT = "ase_gnnp-train-state"
#: options that may differ between a run and its ``--resume`` (everything else is kept)
RESUMABLE_OPTIONS = ("epochs", "max_minutes", "threads", "patience")
METRIC_COLUMNS = [
    "epoch", "lr", "train_loss", "val_loss", "val_energy_mae_per_atom", "val_force_mae",
    "val_stress_mae", "val_dipole_mae", "val_polarizability_mae", "val_charge_mae", "wall_s",
]  # fmt: skip
#: loss terms of :func:`ase_gnnp.train.loss.loss_terms`, in the column order of
#: :func:`loss_denominators`
LOSS_TERMS = ("energy", "forces", "stress", "dipole", "polarizability", "charges",
              "relative_energy")  # fmt: skip


def loss_denominators(graphs: list, normalization: str = "labels") -> torch.Tensor:
    """Per structure, what each loss term's weighted mean divides by.

    :func:`ase_gnnp.train.loss.loss_terms` averages every term over a batch as
    ``Σ w m x / Σ m`` (``normalization="labels"``) or ``Σ w m x / Σ w m``
    (``"weights"``), with ``w`` the structure weight (times the atom weights for forces
    and charges) and ``m`` the label mask (per structure for energy, stress, dipole and
    polarizability, per atom for forces and charges, grouped structures for the relative
    energy).

    Returns
    -------
    torch.Tensor
        (len(graphs), len(LOSS_TERMS)) float64: each structure's ``Σ m`` or ``Σ w m``.
    """
    check_normalization(normalization)
    rows = []
    for g in graphs:
        w = g[K.WEIGHT].to(torch.float64).reshape(())
        if normalization == "labels":
            w = torch.ones_like(w)
        per_atom = w
        if normalization == "weights" and K.ATOM_WEIGHT in g:
            per_atom = w * g[K.ATOM_WEIGHT].to(torch.float64)
        masks = (K.HAS_ENERGY, K.HAS_FORCES, K.HAS_STRESS, K.HAS_DIPOLE, K.HAS_POLARIZABILITY,
                 K.HAS_CHARGES)  # fmt: skip
        row = [((per_atom if m in (K.HAS_FORCES, K.HAS_CHARGES) else w)
                * g[m].to(torch.float64)).sum() for m in masks]  # fmt: skip
        in_group = grouped(g).to(torch.float64).sum() if K.ENERGY_GROUP in g else w * 0
        rows.append(torch.stack([*row, w * in_group]))
    return torch.stack(rows) if rows else torch.zeros(0, len(LOSS_TERMS), dtype=torch.float64)


class Trainer:
    """Train a :class:`GNNPModel` from an extxyz file.

    Parameters
    ----------
    config
        Training options.
    init_from
        Checkpoint or shipped model to start from (its architecture replaces
        ``config.model``); reference energies are fitted only for new elements.
    overwrite
        Allow starting afresh in an output folder that already holds a run.
    progress
        Show tqdm progress bars (rank 0 only under ``torchrun``).
    state
        A saved training state to continue from; use :meth:`Trainer.resume`.

    Notes
    -----
    Launched by ``torchrun`` with ``WORLD_SIZE > 1``, the trainer joins the process group
    (gloo: training runs on CPU tensors), uses one torch thread per rank unless
    ``config.threads`` says otherwise, trains data-parallel (see :meth:`train_epoch`) and
    lets rank 0 alone write files and show progress bars.
    """

    def __init__(
        self,
        config: TrainConfig,
        init_from: str | None = None,
        overwrite: bool = False,
        progress: bool = True,
        state: dict | None = None,
    ) -> None:
        self.out = Path(config.out)
        self.state_path = self.out / "checkpoint.pt"
        resume = state is not None
        if not resume and self.state_path.exists() and not overwrite:
            raise ValueError(
                f"{self.out} already holds a training run; pass --resume to continue it or "
                f"--overwrite to start afresh"
            )
        self.config = config
        if config.relative_energy_key and distributed.launch_info().launched:
            raise ValueError(
                "relative_energy_key: the relative-energy loss compares group members within "
                "a batch, which data-parallel training splits across ranks; train it in one "
                "process (without torchrun)"
            )
        # joins torchrun's process group; a no-op for a single process
        distributed.init(device="cpu")
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        self.progress = progress and self.is_main
        if config.threads:
            torch.set_num_threads(config.threads)
        elif self.world_size > 1:  # ranks share the machine's cores: no oversubscription
            torch.set_num_threads(1)
        self.dtype = getattr(torch, config.dtype)
        torch.manual_seed(config.seed)

        if init_from is not None and not resume:
            model = load_model(init_from, dtype=self.dtype)
            model.uq = None  # training changes the latent space: its UQ statistics go stale
            config = config.updated(model=model.config)
            self.config = config
        else:
            model = GNNPModel(config.model).to(self.dtype)
        self.model = model.train()
        self.model.set_performance_options(gradient_checkpointing=config.gradient_checkpointing)
        self._load_data()
        self.weights = {
            "energy": config.energy_weight,
            "forces": config.forces_weight,
            # stress enters the loss only when the training data have stress labels
            "stress": config.stress_weight if self.use_stress else 0.0,
            "dipole": config.dipole_weight,
            "polarizability": config.polarizability_weight,
            "charges": config.charges_weight,
            "relative_energy": config.relative_energy_weight,
        }
        self.final_stage = FinalStage(config)
        self.in_final_stage = False
        self.trainable = freeze(self.model, config.freeze)
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        # cosine / stable-decay need no scheduler object: the LR follows the run's progress
        self.scheduler = None
        if config.scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=config.lr_factor, patience=config.lr_patience,
                min_lr=config.min_lr,
            )  # fmt: skip
        self.epoch = 0
        self.best = math.inf
        self.since_best = 0
        self.elapsed = 0.0
        self.huber_delta = config.huber_delta if config.loss == "huber" else None
        self.guard = DivergenceGuard(config.divergence_factor, config.divergence_retries)
        if resume:
            self._restore(state)
        else:
            self.stats = fit_statistics(
                self.model, self.train_graphs, refit_known=init_from is None
            )
            self.ema = EMA(self.model, config.ema_decay)
        if self.world_size > 1:
            # every rank starts from rank 0's weights, as DistributedDataParallel does
            distributed.broadcast_module(self.model)
            distributed.broadcast_module(self.ema.shadow)
            self.loss_denominators = loss_denominators(
                self.train_graphs, self.config.loss_normalization
            )

    @classmethod
    def resume(cls, out: str | Path, progress: bool = True, **overrides) -> Trainer:
        """Continue the run saved in ``out``, losing no finished epoch.

        The saved config defines the run; only :data:`RESUMABLE_OPTIONS` (``epochs``,
        ``max_minutes``, ``threads``, ``patience``) may be changed through ``overrides``.
        """
        path = Path(out) / "checkpoint.pt"
        if not path.is_file():
            raise ValueError(f"--resume: no {path} to resume from")
        state = read_torch_file(path, "training state")
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path} is not an ase_gnnp training state")
        bad = sorted(set(overrides) - set(RESUMABLE_OPTIONS))
        if bad:
            raise ValueError(
                f"options {bad} cannot change when resuming; only {list(RESUMABLE_OPTIONS)} can"
            )
        config = TrainConfig.from_saved(state["config"]).updated(out=str(out), **overrides)
        return cls(config, progress=progress, state=state)

    # ------------------------------------------------------------------ data
    def _load_data(self) -> None:
        cfg = self.config
        frames = read_frames(cfg)
        if cfg.val_data:
            val_frames = read_frames(cfg, cfg.val_data)
            train_frames = frames
        else:
            train_idx, val_idx = split_indices(config_types(frames), cfg.val_fraction, cfg.seed)
            train_frames = [frames[i] for i in train_idx]
            val_frames = [frames[i] for i in val_idx]
        if not train_frames or not (val_frames or (cfg.val_fraction == 0 and not cfg.val_data)):
            raise ValueError(
                f"need at least one training and one validation structure, got "
                f"{len(train_frames)} and {len(val_frames)} from {cfg.data}"
            )
        found = set(config_types(frames)) | set(config_types(val_frames))
        unknown = sorted(set(cfg.config_type_weights) - found)
        if unknown:
            raise ValueError(
                f"config_type_weights names {unknown}, which no structure in {cfg.data} has; "
                f"config types there: {sorted(found)}"
            )
        cutoff = self.model.cutoff

        fair_args = (cfg.element_weight_exponent, cfg.element_weight_cap)
        drawn = cfg.element_weight_exponent > 0 and cfg.element_weight_scope in (
            "sampling",
            "repeat",
        )

        balance = config_type_balance(config_types(train_frames), cfg.config_type_balance)

        def make(subset: list, in_loss: bool = True) -> list:
            types = config_types(subset)
            weights = [cfg.config_type_weights.get(t, 1.0) * balance.get(t, 1.0) for t in types]
            per_atom = [None] * len(subset)
            if cfg.element_weight_exponent > 0 and cfg.element_weight_scope == "atom":
                per_atom = atom_element_weights(subset, *fair_args, reference=train_frames)
            elif cfg.element_weight_exponent > 0 and in_loss:  # training frequencies
                fair = element_weights(subset, *fair_args, reference=train_frames)
                weights = [w * float(f) for w, f in zip(weights, fair)]
            return [
                labelled_graph(a, cutoff, cfg.keys, self.dtype, weight=w, atom_weight=aw)
                for a, w, aw in zip(subset, weights, per_atom)
            ]

        self.train_graphs = make(train_frames, in_loss=not drawn)
        self.val_graphs = make(val_frames)
        #: drawing weights (scope "sampling", mean 1) or mean repeats per epoch (scope
        #: "repeat", raw weights >= 1) of the training structures, else None
        self.sample_weights = None
        if drawn:
            weigh = (
                element_weights if cfg.element_weight_scope == "sampling" else raw_element_weights
            )
            self.sample_weights = torch.as_tensor(
                weigh(train_frames, *fair_args), dtype=torch.float64
            )
        self.val_groups = config_types(val_frames)
        if cfg.relative_energy_key:
            self._set_energy_groups(train_frames, val_frames)
        # a dropped stress key ("") already leaves every has_stress mask False
        self.use_stress = any(bool(g[K.HAS_STRESS].any()) for g in self.train_graphs)

    def _set_energy_groups(self, train_frames: list, val_frames: list) -> None:
        """Give every graph its relative-energy group (``info[relative_energy_key]``, -1
        without it) and put the validation structures of each group next to each other,
        so that validation batches hold groups as the training batches do."""
        key = self.config.relative_energy_key
        names = sorted({str(a.info[key]) for a in (*train_frames, *val_frames) if key in a.info})
        sizes = {n: sum(str(a.info.get(key)) == n for a in train_frames) for n in names}
        if not any(size >= 2 for size in sizes.values()):
            raise ValueError(
                f"relative_energy_key {key!r}: no group has two training structures "
                f"(groups and their training sizes: {sizes or 'none, no structure has the key'})"
            )
        index = {n: i for i, n in enumerate(names)}
        for frames, graphs in ((train_frames, self.train_graphs), (val_frames, self.val_graphs)):
            for a, g in zip(frames, graphs):
                g[K.ENERGY_GROUP] = torch.tensor([index[str(a.info[key])] if key in a.info else -1])
        val_group = [int(g[K.ENERGY_GROUP]) for g in self.val_graphs]
        order = sorted(range(len(val_group)), key=lambda i: (val_group[i] < 0, val_group[i]))
        self.val_graphs = [self.val_graphs[i] for i in order]
        self.val_groups = [self.val_groups[i] for i in order]

    def _group_batches(self, generator: torch.Generator) -> list[list[int]]:
        """Shuffled batches of training indices in which grouped structures come in
        batches of their own group (the relative-energy loss compares members of a group
        within a batch); the batches themselves are shuffled together."""
        bs = self.config.batch_size
        members: dict[int, list[int]] = {}
        for i, g in enumerate(self.train_graphs):
            members.setdefault(int(g[K.ENERGY_GROUP]), []).append(i)
        batches = []
        for group in sorted(members):
            idx = members[group]
            perm = torch.randperm(len(idx), generator=generator).tolist()
            batches += [[idx[p] for p in perm[k : k + bs]] for k in range(0, len(idx), bs)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def _sampler(self, generator: torch.Generator) -> dict:
        """DataLoader arguments that order one epoch: a shuffle, or (element weight scope
        ``"sampling"``) ``len(train_graphs)`` draws with replacement, with probabilities
        proportional to :attr:`sample_weights`, or (scope ``"repeat"``) every structure
        :attr:`sample_weights` times on average, shuffled."""
        if self.sample_weights is None:
            return {"shuffle": True, "generator": generator}
        if self.config.element_weight_scope == "repeat":
            return {"sampler": RepeatSampler(self.sample_weights.numpy(), generator)}
        sampler = torch.utils.data.WeightedRandomSampler(
            self.sample_weights, len(self.train_graphs), replacement=True, generator=generator
        )
        return {"sampler": sampler}

    def _loader(self, epoch: int) -> DataLoader:
        gen = torch.Generator().manual_seed(self.config.seed * 100003 + epoch)
        if self.config.relative_energy_key:
            return DataLoader(self.train_graphs, batch_sampler=self._group_batches(gen))
        return DataLoader(
            self.train_graphs, batch_size=self.config.batch_size, **self._sampler(gen)
        )

    def _index_loader(self, epoch: int) -> torch.utils.data.DataLoader:
        """:meth:`_loader` yielding lists of indices into ``train_graphs`` instead of batches.

        Same generator, seed and sampler, so the same shuffled global batches, provided it
        is iterated the same way: every iterator a DataLoader creates draws a seed from
        the generator before the shuffle does (``tqdm.auto`` creates two).
        """
        gen = torch.Generator().manual_seed(self.config.seed * 100003 + epoch)
        return torch.utils.data.DataLoader(
            range(len(self.train_graphs)), batch_size=self.config.batch_size,
            collate_fn=list, **self._sampler(gen),
        )  # fmt: skip

    # ------------------------------------------------------------------ state
    def _state(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "best": self.best,
            "since_best": self.since_best,
            "elapsed": self.elapsed,
            "stats": self.stats,
            **self.weights_state(),
            "in_final_stage": self.in_final_stage,
            "guard": self.guard.state_dict(),
        }

    def weights_state(self) -> dict:
        """The model's weights, their average, the optimizer's moments and the LR
        scheduler's state (what an epoch of training changes), as state dicts."""
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
        }

    def load_weights_state(self, state: dict) -> None:
        """Put back what :meth:`weights_state` returned."""
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    def _restore(self, state: dict) -> None:
        self.ema = EMA(self.model, self.config.ema_decay)
        self.load_weights_state(state)
        self.epoch = state["epoch"]
        self.best = state["best"]
        self.since_best = state["since_best"]
        self.elapsed = state["elapsed"]
        self.stats = state["stats"]
        if "guard" in state:  # states saved before the guard existed have none
            self.guard.load_state_dict(state["guard"])
        if state.get("in_final_stage"):
            self._enter_final_stage(restart_average=False)

    # ------------------------------------------------------------------ loop
    def train_epoch(self) -> float:
        """One pass over the training set; the mean training loss per structure.

        Under ``torchrun`` each global batch of ``batch_size`` structures (the same
        shuffled order as a single process) is split into ``world_size`` contiguous,
        near-equal shares by structure count (a share may be empty). Each rank scales
        every loss term of its share by ``Σw(share) / Σw(global batch)`` (the weights
        the term's weighted mean divides by, :func:`loss_denominators`), so the sum of the
        ranks' losses is the global batch's loss and the sum of their gradients, formed
        by one allreduce after ``loss.backward()``, is its gradient. Gradient clipping,
        AdamW, the LR schedule and the EMA then act on identical numbers on every rank.
        """
        if self.world_size > 1:
            return self._train_epoch_distributed()
        self.model.train()
        total, count = 0.0, 0
        loader = self._loader(self.epoch)
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}", leave=False, disable=not self.progress)
        t_start = time.perf_counter()
        for step, data in enumerate(bar):
            self._schedule(step / len(loader), time.perf_counter() - t_start)
            self.optimizer.zero_grad(set_to_none=True)
            options = forward_options(self.model, data) | {"stress": self.use_stress}
            out = self.model(data, create_graph=True, **options)
            loss = self._loss(out, data)
            loss.backward()
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self.ema.update(self.model)
            total += float(loss.detach()) * data.num_graphs
            count += data.num_graphs
            bar.set_postfix(loss=f"{total / count:.4g}")
        return total / max(count, 1)

    def _train_epoch_distributed(self) -> float:
        self.model.train()
        total, count = 0.0, 0
        loader = self._index_loader(self.epoch)
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        # iterated through tqdm exactly as train_epoch iterates _loader: the same batches
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}", leave=False, disable=not self.progress)
        t_start = time.perf_counter()
        for step, indices in enumerate(bar):
            self.optimizer.zero_grad(set_to_none=True)
            mine = distributed.shard(indices, self.world_size, self.rank)
            denominators = self.loss_denominators[indices].sum(0)
            loss_value = 0.0
            if mine:  # an empty share (fewer structures than ranks) adds zero gradients
                data = Batch.from_data_list([self.train_graphs[i] for i in mine])
                share = self.loss_denominators[mine].sum(0) / denominators.clamp_min(1e-300)
                options = forward_options(self.model, data) | {"stress": self.use_stress}
                out = self.model(data, create_graph=True, **options)
                terms = loss_terms(out, data, self.config.loss_normalization, self.huber_delta)
                loss = sum(
                    self.weights[name] * value * float(share[LOSS_TERMS.index(name)])
                    for name, value in terms.items()
                )
                loss.backward()
                loss_value = float(loss.detach())
            # rank 0's clock drives a time-budgeted schedule on every rank
            seconds = time.perf_counter() - t_start if self.is_main else 0.0
            loss_value, seconds = distributed.allreduce_gradients(parameters, [loss_value, seconds])
            self._schedule(step / len(loader), seconds)
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self.ema.update(self.model)
            total += loss_value * len(indices)
            count += len(indices)
            bar.set_postfix(loss=f"{total / count:.4g}")
        return total / max(count, 1)

    def progress_fraction(self, epoch_fraction: float = 0.0, seconds: float = 0.0) -> float:
        """Share of the run done: epochs or wall-time budget, whichever binds first."""
        cfg = self.config
        done = (self.epoch + epoch_fraction) / cfg.epochs
        if cfg.max_minutes:
            done = max(done, (self.elapsed + seconds) / (60.0 * cfg.max_minutes))
        return min(done, 1.0)

    def _schedule(self, epoch_fraction: float, seconds: float) -> None:
        """Before a step: enter the final stage when due, and set a scheduled LR."""
        done = self.progress_fraction(epoch_fraction, seconds)
        if not self.in_final_stage and self.final_stage.due(done):
            self._enter_final_stage()
        if self.in_final_stage and self.config.final_lr is not None:
            return
        if self.config.scheduler in ("cosine", "stable-decay"):
            self._set_cosine_lr(epoch_fraction, seconds)

    def _enter_final_stage(self, restart_average: bool = True) -> None:
        """Final loss weights and LR; model selection starts afresh, and with
        ``final_average="uniform"`` the weight average restarts with the next step."""
        self.in_final_stage = True
        self.weights = self.final_stage.weights(self.weights)
        if self.config.final_lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.final_lr * self.guard.lr_scale
        if restart_average:
            self.best, self.since_best = math.inf, 0
            if self.config.final_average == "uniform":
                self.ema.restart_uniform()

    def _set_cosine_lr(self, epoch_fraction: float, seconds: float) -> None:
        cfg = self.config
        progress = self.progress_fraction(epoch_fraction, seconds)
        done = progress
        if cfg.scheduler == "stable-decay":
            start = 1.0 - cfg.decay_fraction
            done = max(0.0, progress - start) / cfg.decay_fraction
        lr = cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * done))
        if cfg.warmup_fraction > 0:  # linear rise over the first part of the run
            lr *= min(1.0, (progress + 1e-12) / cfg.warmup_fraction)
        lr *= self.guard.lr_scale  # cut by rollbacks after a divergence
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _loss(self, out: dict, data: Batch) -> torch.Tensor:
        terms = loss_terms(out, data, self.config.loss_normalization, self.huber_delta)
        return total_loss(terms, self.weights)

    def validate(self) -> tuple[float, dict]:
        """Loss and error metrics of the EMA model on the validation set (one pass).

        Under ``torchrun`` the validation batches (the same batches as a single process)
        are dealt round-robin to the ranks and every rank gathers all per-structure
        errors and batch losses, reduced in batch order: every rank gets the same loss
        and metrics, so early stopping, the LR plateau and the best model agree.
        """
        if not self.val_graphs:  # val_fraction=0: the last epoch's model is the result
            return math.nan, {}
        if self.world_size > 1:
            return self._validate_distributed()
        bs = self.config.batch_size
        groups = (self.val_groups[i : i + bs] for i in range(0, len(self.val_groups), bs))
        metrics = evaluate_graphs(
            self.ema.shadow,
            DataLoader(self.val_graphs, batch_size=bs),
            groups,
            loss_fn=self._loss,
        )
        return metrics.pop("loss"), metrics

    def _validate_distributed(self) -> tuple[float, dict]:
        bs = self.config.batch_size
        model = self.ema.shadow
        mine = []
        for b, start in enumerate(range(0, len(self.val_graphs), bs)):
            if b % self.world_size != self.rank:
                continue
            data = Batch.from_data_list(self.val_graphs[start : start + bs])
            out = model(data, **forward_options(model, data))
            acc = ErrorAccumulator()
            acc.add(out, data, self.val_groups[start : start + bs])
            loss = float(self._loss(out, data).detach()) * data.num_graphs
            mine.append((b, acc.rows, loss, data.num_graphs))
        done = sorted(
            (item for part in distributed.all_gather_objects(mine) for item in part),
            key=lambda item: item[0],
        )
        acc, loss, count = ErrorAccumulator(), 0.0, 0
        for _, rows, batch_loss, n in done:  # batch order: the single-process sums
            acc.rows.extend(rows)
            loss += batch_loss
            count += n
        return loss / max(count, 1), acc.summary()

    def _synchronise(self) -> None:
        """Take rank 0's wall time and check that no rank's weights drifted."""
        checksum = sum(
            float(p.detach().to(torch.float64).sum())
            for module in (self.model, self.ema.shadow)
            for p in module.parameters()
        )
        gathered = distributed.all_gather_objects((self.elapsed, checksum))
        self.elapsed = gathered[0][0]
        if len({c for _, c in gathered}) != 1:
            raise RuntimeError(
                f"data-parallel ranks hold different weights after epoch {self.epoch} "
                f"(checksums {[c for _, c in gathered]})"
            )

    def run(self) -> dict:
        """Train until ``epochs``, early stopping or ``max_minutes``; return final metrics."""
        cfg = self.config
        metrics_csv = self.out / "metrics.csv"
        if self.is_main:  # under torchrun only rank 0 writes
            self.out.mkdir(parents=True, exist_ok=True)
            cfg.to_yaml(self.out / "config.yaml")
            if self.epoch == 0 or not metrics_csv.exists():
                with open(metrics_csv, "w", newline="") as fh:
                    csv.writer(fh).writerow(METRIC_COLUMNS)
            else:
                self._truncate_metrics(metrics_csv)
        stop_reason = "epochs"
        self.guard.save(self)
        with tqdm(
            total=cfg.epochs, initial=self.epoch, desc="training", disable=not self.progress
        ) as bar:
            while self.epoch < cfg.epochs:
                t0 = time.perf_counter()
                train_loss = self.train_epoch()
                if self.guard.diverged(train_loss, self.in_final_stage):
                    self.elapsed += time.perf_counter() - t0
                    if self.guard.exhausted:
                        stop_reason = "diverged"
                        break
                    self._roll_back(train_loss)
                    if cfg.max_minutes and self.elapsed > 60 * cfg.max_minutes:
                        stop_reason = "time budget"
                        break
                    continue
                val_loss, metrics = self.validate()
                self.epoch += 1
                self.elapsed += time.perf_counter() - t0
                if self.world_size > 1:
                    self._synchronise()
                if self.scheduler is not None and not (
                    self.in_final_stage and cfg.final_lr is not None
                ):
                    self.scheduler.step(val_loss)
                # without validation every epoch's model replaces the last one
                improved = not self.val_graphs or val_loss < self.best
                if improved:
                    self.best, self.since_best = val_loss, 0
                    if self.is_main:
                        self._save_model(metrics)
                else:
                    self.since_best += 1
                row = {
                    "epoch": self.epoch,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "wall_s": round(self.elapsed, 2),
                    **{
                        f"val_{k}": metrics.get(k, "")
                        for k in (
                            "energy_mae_per_atom",
                            "force_mae",
                            "stress_mae",
                            "dipole_mae",
                            "polarizability_mae",
                            "charge_mae",
                        )  # fmt: skip
                    },
                }
                if self.is_main:
                    with open(metrics_csv, "a", newline="") as fh:
                        csv.writer(fh).writerow([row[c] for c in METRIC_COLUMNS])
                    atomic_save(self._state(), self.state_path)
                self.guard.save(self)
                bar.update(1)
                bar.set_postfix(
                    val_F=f"{1000 * metrics.get('force_mae', float('nan')):.1f}meV/Å",
                    val_E=f"{1000 * metrics.get('energy_mae_per_atom', float('nan')):.2f}meV/at",
                )
                if self.since_best >= cfg.patience:
                    stop_reason = "early stopping"
                    break
                if cfg.max_minutes and self.elapsed > 60 * cfg.max_minutes:
                    stop_reason = "time budget"
                    break
        if stop_reason == "diverged" and self.epoch == 0:
            raise RuntimeError(
                f"training diverged in its first epoch {self.guard.rollbacks + 1} times (the "
                f"learning rate cut to x{self.guard.lr_scale:g} of lr={cfg.lr:g}); no model "
                f"was saved: lower lr, or check the labels for outliers"
            )
        metadata = None
        if self.is_main:
            plot_learning_curve(metrics_csv, self.out / "learning_curve.png")
            metadata = load_model(self.out / "model.pt").metadata
        if self.world_size > 1:  # other ranks may not see rank 0's disk (several nodes)
            metadata = distributed.all_gather_objects(metadata)[0]
        return {
            "stop_reason": stop_reason,
            "epochs": self.epoch,
            "wall_s": self.elapsed,
            "rollbacks": self.guard.rollbacks,
            **metadata,
        }

    def _roll_back(self, train_loss: float) -> None:
        """Undo the epoch just trained (its loss ``train_loss`` diverged), cut the LR."""
        self.guard.roll_back(self)
        if self.progress:
            tqdm.write(
                f"epoch {self.epoch + 1}: training loss {train_loss:.4g} diverged (lowest "
                f"{self.guard.lowest:.4g}); undone, learning rate x{self.guard.lr_scale:g} "
                f"from now on (rollback {self.guard.rollbacks} of {self.config.divergence_retries})"
            )

    def _truncate_metrics(self, path: Path) -> None:
        # a kill between the CSV append and the state save must not duplicate epochs
        with open(path) as fh:
            rows = list(csv.reader(fh))
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= self.epoch]
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerows(kept)

    def _save_model(self, metrics: dict) -> None:
        metadata = {
            "epoch": self.epoch,
            "val_metrics": {k: v for k, v in metrics.items() if k != "per_config_type"},
            "train_config": self.config.to_dict(),
            "statistics": {k: v for k, v in self.stats.items() if k != "atomic_reference"},
        }
        save_model(self.ema.shadow, self.out / "model.pt", metadata)
