"""Which parameters fine-tuning trains: freeze the geometric (equivariant) layers."""

from __future__ import annotations

from torch import nn

__all__ = ["FREEZE_MODES", "freeze"]

#: ``none``: train everything; ``equivariant``: freeze the descriptor embedding network,
#: the radial basis network, the field embedding and every interaction layer, and train
#: the per-element embedding (so new elements adapt), the readout and the charge head;
#: ``equivariant-but-last``: the same with the last interaction layer trainable;
#: ``readout``: only the readout MLP.
FREEZE_MODES = ("none", "equivariant", "equivariant-but-last", "readout")


def freeze(model: nn.Module, mode: str) -> list[str]:
    """Set ``requires_grad`` by ``mode`` (see :data:`FREEZE_MODES`); the trainable names."""
    if mode not in FREEZE_MODES:
        raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {mode!r}")
    last = f"layers.{len(model.layers) - 1}."

    def trainable(name: str) -> bool:
        if mode == "none":
            return True
        if mode == "readout":
            return name.startswith("readout.")
        if name.startswith(("readout.", "charge_head.", "embedding.learned.")):
            return True
        return mode == "equivariant-but-last" and name.startswith(last)

    names = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(trainable(name))
        if parameter.requires_grad:
            names.append(name)
    return names
