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
    """

    cutoff: float = 5.0
    channels: int = 32
    lmax: int = 1
    num_layers: int = 2
    num_radial: int = 8
    radial_hidden: int = 64
    readout_hidden: int = 32
    cutoff_p: int = 6

    def __post_init__(self) -> None:
        for name in ("channels", "num_layers", "num_radial", "radial_hidden", "readout_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.lmax, int) or not 0 <= self.lmax <= 4:
            raise ValueError(f"lmax must be an integer in 0..4, got {self.lmax!r}")
        if not isinstance(self.cutoff_p, int) or self.cutoff_p < 2:
            raise ValueError(f"cutoff_p must be an integer >= 2, got {self.cutoff_p!r}")
        if not self.cutoff > 0:
            raise ValueError(f"cutoff must be positive (Å), got {self.cutoff!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        return cls(**check_option_names(cls, values, "model"))
