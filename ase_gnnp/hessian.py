"""Analytic second derivatives of the energy (force constants) by double backward."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_geometric.data import Data

from ase_gnnp import keys as K
from ase_gnnp.model import GNNPModel

__all__ = ["hessian_rows"]


def hessian_rows(
    model: GNNPModel, data: Data, atoms: Sequence[int] | None = None, chunk: int = 24
) -> torch.Tensor:
    """Rows of the Hessian ``Φ[i, j, α, β] = ∂²E/∂r_iα ∂r_jβ = -∂F_jβ/∂r_iα`` (eV/Å²).

    The derivative is that of the whole periodic structure: moving atom ``i`` moves all of
    its periodic images, exactly as a finite displacement in a phonopy supercell does.
    A field on a periodic cell adds the non-conservative force ``q_j 𝓔`` (see
    :class:`~ase_gnnp.model.GNNPModel`); there is no energy Hessian then and a
    ``ValueError`` is raised (use finite displacements).

    Parameters
    ----------
    model
        The potential.
    data
        One structure (graph from :func:`ase_gnnp.graph.atoms_to_graph`).
    atoms
        Indices ``i`` of the rows wanted (default: all atoms), e.g. the atoms of the
        primitive cell inside a supercell, which with translational symmetry determine
        the rest.
    chunk
        Number of derivative rows computed per vectorised backward pass (memory vs speed).

    Returns
    -------
    torch.Tensor
        ``(len(atoms), N, 3, 3)``, in the model's dtype, detached.
    """
    if data[K.CELL].shape[0] != 1:
        raise ValueError(f"hessian_rows takes one structure, got {data[K.CELL].shape[0]}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    n = int(data[K.NUM_ATOMS].sum())
    rows = list(range(n)) if atoms is None else [int(i) for i in atoms]
    bad = [i for i in rows if not 0 <= i < n]
    if bad:
        raise ValueError(f"atom indices {bad} are out of range for {n} atoms")
    field = data[K.FIELD] if K.FIELD in data else None
    if field is not None and bool(data[K.PBC].any()) and bool(field.abs().max() > 0):
        raise ValueError(
            f"a field {field.view(-1).tolist()} V/Å on a periodic cell makes the forces "
            "non-conservative (q_i 𝓔): no energy Hessian; use finite displacements"
        )
    data = data.clone()
    pos = data[K.POSITIONS].detach().clone().requires_grad_(True)
    data[K.POSITIONS] = pos
    out = model(data, forces=False)
    (grad,) = torch.autograd.grad(out[K.ENERGY].sum(), pos, create_graph=True)
    flat = grad.reshape(-1)  # ∂E/∂r = -F, (3N,)
    wanted = torch.tensor([3 * i + a for i in rows for a in range(3)], device=flat.device)
    result = []
    for start in range(0, len(wanted), chunk):
        idx = wanted[start : start + chunk]
        # one-hot cotangents e_iα: ∂²E/∂r_iα∂r for each wanted component, batched by vmap
        eye = torch.zeros(len(idx), flat.numel(), dtype=flat.dtype, device=flat.device)
        eye[torch.arange(len(idx)), idx] = 1.0
        (block,) = torch.autograd.grad(
            flat, pos, grad_outputs=eye, retain_graph=True, is_grads_batched=True
        )
        result.append(block.detach())  # (chunk, N, 3): [iα, j, β]
    phi = torch.cat(result).reshape(len(rows), 3, n, 3).permute(0, 2, 1, 3)
    return phi.contiguous()
