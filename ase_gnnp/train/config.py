"""Training options as a frozen dataclass, loadable from YAML and overridable by flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml
from ase.data import chemical_symbols

from ase_gnnp.config import ModelConfig, check_option_names
from ase_gnnp.data import DataKeys


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``ase-gnnp train`` needs.

    Attributes
    ----------
    data : str or list of str
        extxyz training file, or several files read as one set (split into
        train/validation by ``seed``).
    out : str
        Output folder: ``model.pt`` (best EMA weights), ``checkpoint.pt`` (resumable
        state), ``metrics.csv``, ``learning_curve.png``, ``config.yaml``.
    energy_key, forces_key, stress_key, dipole_key, polarizability_key, charges_key : str or None
        Label locations (None: ASE calculator results in the file, ``info["polarizability"]``
        for the polarizability; "": not used), see :class:`ase_gnnp.data.DataKeys`.
    config_types : list of str
        Train (and validate) only on structures with these ``info["config_type"]``
        (empty: all), e.g. ``[md300]`` for the 300 K snapshots of a mixed set.
    elements : list of str
        Keep only structures made of these elements alone (empty: all), e.g. ``[Si]``.
    val_fraction : float
        Share of structures per ``config_type`` held out for validation/early stopping.
        0: no validation; every structure trains and the model of the last epoch (the
        weight average, see ``ema_decay`` and ``final_fraction``) is the result (needs a
        schedule that ends by itself: ``cosine`` or ``stable-decay``).
    val_data : str or None
        Separate validation file instead of a split.
    seed : int
        Seeds the split, the initial weights and the shuffling.
    epochs, batch_size, lr, weight_decay : training loop and AdamW options.
    energy_weight, forces_weight, stress_weight : float
        Weights of the per-atom energy (eV²), force ((eV/Å)²) and stress ((eV/Å³)²) MSEs.
    config_type_weights : dict of str to float
        Per-structure loss weight by ``info["config_type"]`` (others weigh 1), as MACE's
        ``config_type_weights``: raises the share of a rare group (e.g. dislocation cores
        among bulk snapshots) in every term of the training and validation losses.
    config_type_balance : float
        Exponent ``γ`` of a per-structure loss weight ``(n_max / n_t)^γ`` by config type
        (``n_t``: training structures of type ``t``), normalised to mean 1 over the
        training structures and multiplied with ``config_type_weights``: 1 gives every
        config type the same total weight, 0 (default) leaves them as counted
        (:func:`ase_gnnp.train.weighting.config_type_balance`). Types only in the
        validation data weigh 1.
    relative_energy_key : str or None
        ``atoms.info`` key naming a group of structures whose energy *differences* are
        the target (the images of one NEB path, the snapshots of one defect cell with its
        fixed shell, conformers), e.g. ``cylinder`` in ``data/w_marinica_*.extxyz``.
        Structures without the key belong to no group.
    relative_energy_weight : float
        Weight of the relative-energy MSE (eV², total energy, not per atom): each grouped
        structure's residual ``E_model - E_ref`` minus the mean residual of its group's
        members in the batch. Grouped structures are batched with members of their own
        group (``batch_size`` at a time; ungrouped ones as usual), validation structures
        sorted by group. A per-atom energy loss weighs a 40 meV difference between two
        243-atom cells as (0.16 meV)²; this term weighs it as (40 meV)². 0 (default)
        disables it. Not under ``torchrun``, whose ranks split batches.
    element_weight_exponent, element_weight_cap : float
        Fair element weighting: with ``element_weight_scope="structure"`` each
        structure's loss weight is multiplied by ``min(cap, max_e (f_max /
        f_e)^exponent)`` (``f_e``: share of training structures holding element ``e``),
        normalised to mean 1 (:func:`ase_gnnp.train.weighting.element_weights`); 0
        (default) disables it. Choose them on the validation split.
    element_weight_scope : str
        ``"structure"`` (default): the weight above multiplies every loss term of a
        structure. ``"atom"``: each atom's force (and charge) error is multiplied by
        ``min(cap, (f_max / f_Z)^exponent)`` with ``f_Z`` the share of training *atoms*
        of its element, normalised to mean 1 over the training atoms
        (:func:`ase_gnnp.train.weighting.atom_element_weights`); the common atoms of a
        structure holding a rare element, and energies and stresses, keep their weight.
        ``"sampling"``: the structure weight is not in the training loss; instead each
        epoch draws as many structures as the training set has, with replacement, with
        probabilities proportional to it (oversampling: in expectation the same
        weighted loss, but rare structures come as more frequent batches of ordinary
        size rather than as rare large gradients, which Adam's second moment and
        gradient clipping damp). Validation losses keep the weight, so model selection
        sees the same weighted risk. Not with ``relative_energy_key``.
        ``"repeat"``: as ``"sampling"``, but every structure comes once per epoch and a
        structure of raw weight ``w = min(cap, max_e (f_max / f_e)^exponent)`` (>= 1)
        ``w`` times on average (``floor(w)`` and one more with probability
        ``w - floor(w)``, :func:`ase_gnnp.train.weighting.repeat_counts`): the rare
        elements gain updates while the common ones lose none, at the cost of an epoch
        ``mean(w)`` times longer (with the same ``epochs``, that many more steps).
    loss_normalization : str
        What each loss term's weighted sum over a batch is divided by. ``"labels"``
        (default, as MACE): the number of labelled structures (atoms for forces and
        charges), so a structure of weight ``w`` counts ``w`` times wherever it is.
        ``"weights"``: the batch's sum of weights, so weights only set shares *within*
        a batch; a structure of weight 10 among three of weight 1 then gets 77 % of its
        batch instead of 25 %, a 3-fold rise, not 10-fold (the behaviour before
        2026-11-25, kept so that earlier recipes, e.g. ``w-eam``'s, reproduce).
    dipole_weight, polarizability_weight, charges_weight : float
        Weights of the dipole ((e·Å)²), polarizability ((e·Å²/V)²) and charge (e²) MSEs;
        used where the data hold these labels and the model gives them (dipoles and
        polarizabilities need ``field=True``, charges ``long_range``).
    loss : str
        Penalty of each residual component: ``"mse"`` (squares) or ``"huber"`` (squares up
        to ``huber_delta``, linear beyond: outliers pull less), see
        :func:`ase_gnnp.train.loss.penalty`.
    huber_delta : float
        Where the Huber penalty turns linear, in each term's unit (eV/atom, eV/Å, eV/Å³).
    final_fraction : float
        Share of the run (epochs or ``max_minutes``, whichever ends it) spent in a final
        stage, as MACE's second stage: the loss weights become ``final_energy_weight`` /
        ``final_forces_weight`` / ``final_stress_weight``, the LR ``final_lr``, and the
        model kept is the ``final_average`` of the weights over the stage; model selection
        starts afresh. 0 (default): no final stage.
    final_energy_weight, final_forces_weight, final_stress_weight : float or None
        Loss weights of the final stage (None: the first stage's).
    final_lr : float or None
        Constant LR of the final stage (None: the schedule goes on).
    final_average : str
        ``"uniform"``: the mean of the weights after every step of the final stage
        (stochastic weight averaging); ``"ema"``: the exponential average goes on.
    ema_decay : float
        Exponential moving average of weights (0 disables).
    grad_clip : float
        Max gradient norm (0 disables).
    scheduler : str
        ``"plateau"`` (multiply the LR by ``lr_factor`` after ``lr_patience`` epochs without
        improvement) or ``"cosine"`` (anneal from ``lr`` to ``min_lr`` every step over the
        run's length: ``epochs`` or the ``max_minutes`` budget, whichever ends it first), or
        ``"stable-decay"`` (``lr`` held constant, then annealed to ``min_lr`` by a cosine
        over the last ``decay_fraction`` of the run: plateau-free training that still ends
        with a small step).
    decay_fraction : float
        Share of the run over which ``"stable-decay"`` anneals.
    warmup_fraction : float
        With ``"cosine"`` or ``"stable-decay"``: share of the run at its start over which the
        LR rises linearly to its scheduled value (0: none).
    divergence_factor : float
        An epoch whose mean training loss is not finite or exceeds this multiple of the
        lowest epoch loss of its stage is undone (weights, averages, optimizer back to the
        previous epoch) and trained again with half the learning rate, see
        :class:`ase_gnnp.train.guard.DivergenceGuard` (0: off). Stable runs never come
        near it (at most 3.6x on mlearn Si); a spike that wrecks a run goes 10-80x.
    divergence_retries : int
        Rollbacks allowed per run; the next divergence ends it (stop reason
        ``"diverged"``; the best model saved so far is the result).
    patience : int
        Early stopping after this many epochs without validation improvement.
    max_minutes : float
        Wall-time budget; training stops after the epoch that exceeds it (0: none).
    threads : int
        Torch intra-op threads (0: leave torch's default).
    dtype : str
        ``"float32"`` or ``"float64"``.
    freeze : str
        Parameters kept fixed, for fine-tuning (``--init-from``): ``"none"`` (default),
        ``"equivariant"`` (the geometric layers; the readout, per-element embedding and
        charge head train), ``"equivariant-but-last"``, ``"readout"`` (only the readout
        trains). See :func:`ase_gnnp.train.freeze.freeze`.
    gradient_checkpointing : bool
        Recompute each interaction layer in the backward pass instead of storing it: about
        a quarter less memory for about a fifth more time (``ase-gnnp bench
        checkpointing``); the same gradients.
    model : ModelConfig
        Architecture.
    """

    data: str | list[str] = ""
    out: str = "run"
    energy_key: str | None = None
    forces_key: str | None = None
    stress_key: str | None = None
    dipole_key: str | None = None
    polarizability_key: str | None = None
    charges_key: str | None = None
    config_types: list[str] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    val_data: str | None = None
    seed: int = 0
    epochs: int = 100
    batch_size: int = 8
    lr: float = 5e-3
    weight_decay: float = 1e-6
    energy_weight: float = 10.0
    forces_weight: float = 1.0
    stress_weight: float = 1000.0
    dipole_weight: float = 10.0
    polarizability_weight: float = 10.0
    charges_weight: float = 0.0
    config_type_weights: dict[str, float] = field(default_factory=dict)
    config_type_balance: float = 0.0
    relative_energy_key: str | None = None
    relative_energy_weight: float = 0.0
    element_weight_exponent: float = 0.0
    element_weight_cap: float = 10.0
    element_weight_scope: str = "structure"
    loss_normalization: str = "labels"
    loss: str = "mse"
    huber_delta: float = 0.01
    final_fraction: float = 0.0
    final_energy_weight: float | None = None
    final_forces_weight: float | None = None
    final_stress_weight: float | None = None
    final_lr: float | None = None
    final_average: str = "uniform"
    ema_decay: float = 0.99
    grad_clip: float = 10.0
    scheduler: str = "plateau"
    decay_fraction: float = 0.25
    warmup_fraction: float = 0.0
    divergence_factor: float = 10.0
    divergence_retries: int = 5
    lr_patience: int = 5
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    patience: int = 25
    max_minutes: float = 0.0
    threads: int = 0
    dtype: str = "float32"
    freeze: str = "none"
    gradient_checkpointing: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", ModelConfig.from_dict(self.model))
        if not isinstance(self.gradient_checkpointing, bool):
            raise TypeError(
                f"gradient_checkpointing must be true or false, got {self.gradient_checkpointing!r}"
            )
        if self.scheduler not in ("plateau", "cosine", "stable-decay"):
            raise ValueError(
                f"scheduler must be 'plateau', 'cosine' or 'stable-decay', got {self.scheduler!r}"
            )
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in (0, 1], got {self.decay_fraction!r}")
        if not isinstance(self.config_type_weights, dict):
            raise TypeError(
                f"config_type_weights must map config_type names to weights, got "
                f"{type(self.config_type_weights).__name__}"
            )
        bad = {k: v for k, v in self.config_type_weights.items() if not float(v) > 0}
        if bad:
            raise ValueError(f"config_type_weights must be positive, got {bad}")
        if isinstance(self.config_type_balance, bool) or not self.config_type_balance >= 0:
            raise ValueError(
                f"config_type_balance must be a number >= 0, got {self.config_type_balance!r}"
            )
        if not self.relative_energy_weight >= 0:
            raise ValueError(
                f"relative_energy_weight must be >= 0, got {self.relative_energy_weight!r}"
            )
        if self.relative_energy_key is not None and (
            not isinstance(self.relative_energy_key, str) or not self.relative_energy_key
        ):
            raise TypeError(
                f"relative_energy_key must be an atoms.info key (a non-empty string) or None, "
                f"got {self.relative_energy_key!r}"
            )
        if (self.relative_energy_weight > 0) != (self.relative_energy_key is not None):
            raise ValueError(
                f"relative_energy_weight ({self.relative_energy_weight!r}) and "
                f"relative_energy_key ({self.relative_energy_key!r}) go together: give both "
                f"(a weight > 0 and the atoms.info key of the groups) or neither"
            )
        for name in ("config_types", "elements"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"{name} must be a list of names, got {value!r}")
        unknown = [e for e in self.elements if e not in chemical_symbols[1:]]
        if unknown:
            raise ValueError(f"elements must be chemical symbols, got {unknown}")
        if self.element_weight_exponent < 0 or not self.element_weight_cap >= 1:
            raise ValueError(
                f"element_weight_exponent must be >= 0 and element_weight_cap >= 1, got "
                f"{self.element_weight_exponent!r} and {self.element_weight_cap!r}"
            )
        from ase_gnnp.train.weighting import SCOPES

        if self.element_weight_scope not in SCOPES:
            raise ValueError(
                f"element_weight_scope must be one of {SCOPES}, got {self.element_weight_scope!r}"
            )
        if self.element_weight_scope in ("sampling", "repeat") and self.relative_energy_key:
            raise ValueError(
                f"element_weight_scope={self.element_weight_scope!r} cannot be combined with "
                "a relative-energy loss (its batches are drawn per group); use scope "
                "'structure' or 'atom'"
            )
        from ase_gnnp.train.loss import check_normalization

        check_normalization(self.loss_normalization, "loss_normalization")
        from ase_gnnp.train.freeze import FREEZE_MODES

        if self.freeze not in FREEZE_MODES:
            raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {self.freeze!r}")
        from ase_gnnp.train.loss import PENALTIES

        if self.loss not in PENALTIES:
            raise ValueError(f"loss must be one of {PENALTIES}, got {self.loss!r}")
        if not self.huber_delta > 0:
            raise ValueError(f"huber_delta must be positive, got {self.huber_delta!r}")
        if not 0.0 <= self.final_fraction < 1.0:
            raise ValueError(f"final_fraction must be in [0, 1), got {self.final_fraction!r}")
        finals = ("final_energy_weight", "final_forces_weight", "final_stress_weight", "final_lr")
        for name in finals:
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be None or >= 0, got {value!r}")
        if self.final_average not in ("uniform", "ema"):
            raise ValueError(
                f"final_average must be 'uniform' or 'ema', got {self.final_average!r}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.val_fraction == 0 and not self.val_data and self.scheduler == "plateau":
            raise ValueError(
                "val_fraction=0 (no validation) needs a schedule that ends by itself: "
                "scheduler 'cosine' or 'stable-decay', not 'plateau'"
            )
        if not (self.divergence_factor == 0 or self.divergence_factor > 1):
            raise ValueError(
                f"divergence_factor must be 0 (off) or > 1, got {self.divergence_factor!r}"
            )
        if not (isinstance(self.divergence_retries, int) and self.divergence_retries >= 0):
            raise ValueError(
                f"divergence_retries must be an integer >= 0, got {self.divergence_retries!r}"
            )
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError(
                f"batch_size and epochs must be >= 1, got {self.batch_size} and {self.epochs}"
            )

    @property
    def keys(self) -> DataKeys:
        return DataKeys(
            self.energy_key,
            self.forces_key,
            self.stress_key,
            self.dipole_key,
            self.polarizability_key,
            self.charges_key,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return cls(**check_option_names(cls, values, "training"))

    @classmethod
    def from_yaml(cls, path: str | Path, saved: bool = False) -> TrainConfig:
        """Options from a YAML file; ``saved=True`` for a run's own ``config.yaml``
        (see :meth:`from_saved`)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} does not exist")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a mapping of options, got {type(values).__name__}")
        return cls.from_saved(values) if saved else cls.from_dict(values)

    @classmethod
    def from_saved(cls, values: dict) -> TrainConfig:
        """The config a run saved (every option written out): a run saved before
        ``loss_normalization`` existed divided its loss terms by the sum of weights."""
        return cls.from_dict({"loss_normalization": "weights", **values})

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def updated(self, **changes) -> TrainConfig:
        """Copy with ``changes`` applied; ``model_<name>`` entries change the model config."""
        model_changes = {k[6:]: v for k, v in changes.items() if k.startswith("model_")}
        rest = {k: v for k, v in changes.items() if not k.startswith("model_")}
        model = rest.pop("model", self.model)
        if isinstance(model, dict):
            model = ModelConfig.from_dict(model)
        model = replace(model, **model_changes) if model_changes else model
        return replace(self, model=model, **rest)


def read_frames(config: TrainConfig, data: str | list[str] | None = None) -> list:
    """The labelled structures of ``data`` (default ``config.data``; one file or several)
    that ``config`` trains on: its labels required (energy and forces unless their keys are
    ``""``) and its ``config_types`` / ``elements`` selection applied."""
    from ase_gnnp.data import read_structures, select_frames

    data = config.data if data is None else data
    paths = [data] if isinstance(data, str) else list(data)
    labels = (("energy", config.energy_key), ("forces", config.forces_key))
    require = [name for name, key in labels if key != ""]
    frames = [a for path in paths for a in read_structures(path, config.keys, require)]
    return select_frames(frames, config.config_types, config.elements, " + ".join(map(str, paths)))
