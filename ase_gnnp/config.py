"""Model hyper-parameters as a frozen dataclass that round-trips through YAML/dicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


def check_option_names(cls, values: dict, what: str) -> dict:
    """Return ``values`` if every key is a field of dataclass ``cls``, else raise ValueError."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; expected some of {sorted(known)}")
    return values


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`ase_gnnp.model.GNNPModel`.

    Attributes
    ----------
    cutoff : float
        Radial cutoff in Å.
    channels : int
        Multiplicity ``C`` of every irrep of the hidden features.
    lmax : int
        Largest angular momentum of spherical harmonics and hidden features.
    num_layers : int
        Number of interaction blocks.
    num_radial : int
        Number of Bessel functions.
    radial_hidden : int
        Width of the MLP mapping radial features to tensor-product weights.
    readout_hidden : int
        Width of the per-atom energy readout MLP.
    cutoff_p : int
        Exponent of the polynomial cutoff envelope.
    correlation : int
        Body order added per interaction layer: 1 is NequIP-style two-body messages; 2 or
        3 adds channel-wise products of the aggregated neighbour basis (MACE-style), which
        buys many-body accuracy at a per-atom (not per-edge) cost.
    last_lmax : int or None
        With ``correlation > 1``: largest l of the neighbour basis (and its products) in the
        last layer, whose output is scalars only. ``None`` means ``lmax``; 1 keeps the
        angular three-body products (l=1 · l=1) and costs about half as much per edge.
    long_range : str
        ``"none"``; or ``"ewald"`` / ``"pme"``: a charge head (charge equilibration on the
        latent features, total charge conserved) and a Coulomb energy through torch-pme,
        damped inside ``coulomb_damping`` (:class:`ase_gnnp.longrange.Coulomb`). Molecules
        use a direct sum.
    field : bool
        Take a uniform electric field (``atoms.info["electric_field"]``, V/Å) as an l=1
        input of the network, and, with charges, couple it as ``-Σ q_i r_i·𝓔``, so that
        dipoles, polarizabilities and Born charges are derivatives of the energy.
    coulomb_accuracy : float
        Relative accuracy of the periodic Coulomb sum.
    coulomb_cutoff : float
        Real-space cutoff (Å) of the periodic Coulomb sum.
    coulomb_damping : float or None
        Radius (Å) inside which the Coulomb interaction fades smoothly to zero and the
        network alone describes the pair; ``None`` means ``cutoff``. A shorter radius
        (e.g. half the cutoff) lets the Coulomb term carry more of the physics, which makes
        the charge scale easier to learn; it must not exceed ``cutoff``.
    """

    cutoff: float = 5.0
    channels: int = 32
    lmax: int = 1
    num_layers: int = 2
    num_radial: int = 8
    radial_hidden: int = 64
    readout_hidden: int = 32
    cutoff_p: int = 6
    correlation: int = 1
    last_lmax: int | None = None
    long_range: str = "none"
    field: bool = False
    coulomb_accuracy: float = 1e-6
    coulomb_cutoff: float = 8.0
    coulomb_damping: float | None = None

    def __post_init__(self) -> None:
        for name in ("channels", "num_layers", "num_radial", "radial_hidden", "readout_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.lmax, int) or not 0 <= self.lmax <= 4:
            raise ValueError(f"lmax must be an integer in 0..4, got {self.lmax!r}")
        if not isinstance(self.correlation, int) or not 1 <= self.correlation <= 4:
            raise ValueError(f"correlation must be an integer in 1..4, got {self.correlation!r}")
        if self.last_lmax is not None and (
            not isinstance(self.last_lmax, int) or not 0 <= self.last_lmax <= self.lmax
        ):
            raise ValueError(
                f"last_lmax must be None or an integer in 0..lmax, got {self.last_lmax!r}"
            )
        if self.long_range not in ("none", "ewald", "pme"):
            raise ValueError(
                f"long_range must be 'none', 'ewald' or 'pme', got {self.long_range!r}"
            )
        if not isinstance(self.field, bool):
            raise TypeError(f"field must be True or False, got {self.field!r}")
        if not 0.0 < self.coulomb_accuracy < 1e-2:
            raise ValueError(
                f"coulomb_accuracy must be in (0, 0.01), got {self.coulomb_accuracy!r}"
            )
        if not self.coulomb_cutoff > 0.0:
            raise ValueError(f"coulomb_cutoff must be positive (Å), got {self.coulomb_cutoff!r}")
        if self.coulomb_damping is not None and not 0.0 < self.coulomb_damping <= self.cutoff:
            raise ValueError(
                f"coulomb_damping must be None or in (0, cutoff={self.cutoff}] Å, "
                f"got {self.coulomb_damping!r}"
            )
        if not isinstance(self.cutoff_p, int) or self.cutoff_p < 2:
            raise ValueError(f"cutoff_p must be an integer >= 2, got {self.cutoff_p!r}")
        if not self.cutoff > 0:
            raise ValueError(f"cutoff must be positive (Å), got {self.cutoff!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        return cls(**check_option_names(cls, values, "model"))
