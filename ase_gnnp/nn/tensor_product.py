"""Tensor products of the interaction layers as a few dense contractions.

e3nn's :class:`~e3nn.o3.TensorProduct` generates one small einsum per path and slices its
inputs per irrep; on a CPU, force training (a double backward through every path) then
spends most of a step in those small kernels and in the zero-filled gradients of the
slices. The two products the interactions need have a simple structure: every irrep of
the node features has the same multiplicity ``C``, and each channel couples only with
itself. All their paths fit in one Clebsch–Gordan table ``T[i, j, q]`` (input component
``i``, second-input component ``j``, output component ``q`` of every path), so a product is
one matrix product plus one batched matrix product, whatever the number of paths.

Both modules give e3nn's results (same path normalisation, same weight and output layout,
checked in ``tests/test_tensor_product.py``), so a model trained with either loads into
the other.
"""

from __future__ import annotations

from math import sqrt

import torch
from e3nn import o3
from torch import nn

__all__ = ["ChannelTensorProduct", "EdgeTensorProduct", "clebsch_gordan_table"]


def _uniform_mul(irreps: o3.Irreps, what: str) -> int:
    muls = {mul for mul, _ in irreps}
    if len(muls) != 1:
        raise ValueError(f"{what} must have one multiplicity for every irrep, got {irreps}")
    return muls.pop()


def clebsch_gordan_table(
    irreps1: o3.Irreps, irreps2: o3.Irreps, irreps_out: o3.Irreps, instructions: list[tuple]
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Dense coupling table of the paths ``instructions`` of a channel-wise product.

    Parameters
    ----------
    irreps1, irreps2, irreps_out
        Irreps of the two inputs and of the output (one output irrep per path).
    instructions
        ``(i1, i2, i_out, mode, has_weight)`` tuples as for e3nn's ``TensorProduct``.

    Returns
    -------
    table : torch.Tensor
        (M1, M2, Q) float64: ``Σ_paths sqrt(α_p) w3j(l1, l2, l_out)`` placed at the rows of
        the input components (``M1 = Σ (2 l1 + 1)`` over ``irreps1``, ``M2`` likewise) and
        the columns of the path's output (``Q = Σ_paths (2 l_out + 1)``), where ``α_p`` is
        e3nn's ``component`` / ``element`` normalisation.
    path_of : torch.Tensor
        (Q,) int64: the path each output column belongs to.
    dims : list of int
        ``2 l_out + 1`` per path.
    """
    offsets1 = [0]
    for _, ir in irreps1:
        offsets1.append(offsets1[-1] + ir.dim)
    offsets2 = [0]
    for _, ir in irreps2:
        offsets2.append(offsets2[-1] + ir.dim)
    dims = [irreps_out[ins[2]].ir.dim for ins in instructions]
    table = torch.zeros(offsets1[-1], offsets2[-1], sum(dims), dtype=torch.float64)
    path_of = torch.repeat_interleave(torch.arange(len(dims)), torch.tensor(dims))
    q = 0
    for i1, i2, i_out, _mode, _weight in instructions:
        ir1, ir2, ir_out = irreps1[i1].ir, irreps2[i2].ir, irreps_out[i_out].ir
        # e3nn's "component" / "element" normalisation: alpha = dim(out) / Σ over the paths
        # into this output of mul2 ('uvu') or 1 ('uuu'), the inputs' variances being 1
        fan_in = sum(
            irreps2[j2].mul if m == "uvu" else 1 for _, j2, jo, m, _ in instructions if jo == i_out
        )
        alpha = ir_out.dim / fan_in
        w3j = o3.wigner_3j(ir1.l, ir2.l, ir_out.l, dtype=torch.float64)
        table[
            offsets1[i1] : offsets1[i1 + 1], offsets2[i2] : offsets2[i2 + 1], q : q + ir_out.dim
        ] += sqrt(alpha) * w3j
        q += ir_out.dim
    return table, path_of, dims


def _output_order(channels: int, dims: list[int], channel_major: bool = True) -> torch.Tensor:
    """Index into the flattened product giving e3nn's layout: path by path, each
    ``C x (2l+1)`` channel-major. The product is flattened from (C, Q) (``channel_major``)
    or from (Q, C)."""
    q_total = sum(dims)
    order, q = [], 0
    for d in dims:
        for c in range(channels):
            if channel_major:
                order.extend(c * q_total + q + m for m in range(d))
            else:
                order.extend((q + m) * channels + c for m in range(d))
        q += d
    return torch.tensor(order)


class _DenseProduct(nn.Module):
    """Shared set-up: the table, the input splitting and the output permutation."""

    def __init__(
        self, irreps1, irreps2, irreps_out, instructions, channels, channel_major=True
    ) -> None:
        super().__init__()
        self.irreps_in1, self.irreps_in2 = o3.Irreps(irreps1), o3.Irreps(irreps2)
        self.irreps_out = o3.Irreps(irreps_out)
        self.instructions = [tuple(ins[:5]) for ins in instructions]
        table, path_of, dims = clebsch_gordan_table(
            self.irreps_in1, self.irreps_in2, self.irreps_out, self.instructions
        )
        self.channels = channels
        self.num_paths = len(dims)
        self.in_dims = [ir.dim for _, ir in self.irreps_in1]
        # functions of the irreps, rebuilt on construction and never saved; the table is
        # kept in float64 (not a buffer, which .float() would round) and cast per call
        self._table64 = table
        self._tables: dict = {}
        self.register_buffer("path_of", path_of, persistent=False)
        order = _output_order(channels, dims, channel_major)
        self.register_buffer("order", order, persistent=False)

    def table(self, like: torch.Tensor) -> torch.Tensor:
        """The coupling table in the dtype and on the device of ``like``: (M1, M2, Q) as
        :func:`clebsch_gordan_table` gives it, (M2, Q, M1) in :class:`EdgeTensorProduct`."""
        key = (like.dtype, like.device)
        if torch.compiler.is_compiling():  # no cache mutation inside a traced graph
            return self._table64.to(dtype=like.dtype, device=like.device)
        if key not in self._tables:
            self._tables[key] = self._table64.to(dtype=like.dtype, device=like.device)
        return self._tables[key]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # checkpoints written with e3nn's TensorProduct here hold its empty weight, output
        # mask and Clebsch-Gordan buffers: nothing this module needs
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix) :]
            if rest in ("weight", "output_mask") or rest.startswith("_compiled_main"):
                del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(Z, C·M) in e3nn's layout (irrep by irrep, channel-major) -> (Z, C, M)."""
        c = self.channels
        if len(self.in_dims) == 1:
            return x.reshape(x.shape[0], c, self.in_dims[0])
        blocks = torch.split(x, [c * d for d in self.in_dims], dim=-1)
        return torch.cat([b.reshape(x.shape[0], c, d) for b, d in zip(blocks, self.in_dims)], -1)

    def join(self, out: torch.Tensor) -> torch.Tensor:
        """The product in this module's layout, (Z, C, Q) or (Z, C·Q) (Q, C and Q·C for
        :class:`EdgeTensorProduct`), -> (Z, irreps_out.dim) in e3nn's layout."""
        return out.reshape(out.shape[0], self.order.numel()).index_select(1, self.order)


class EdgeTensorProduct(_DenseProduct):
    """``'uvu'`` product of node features (``C`` channels per irrep) with edge harmonics
    (multiplicity 1) and per-edge weights, as ``o3.TensorProduct(irreps1, irreps_sh,
    irreps_out, [(i1, i2, p, "uvu", True), ...], shared_weights=False,
    internal_weights=False)`` with one output irrep per path.

    ``out[e, q, c] = w[e, p(q), c] Σ_ij S[e, q, i] x[e, i, c]`` with
    ``S[e, q, i] = Σ_j Y[e, j] T[i, j, q]``: one matrix product and one batched matrix
    product. The channels are the fastest axis of the node input (``split``), of the
    weights and of the messages, so that gathering the weights of each output column
    copies whole rows; with channels first (as the other product), a force-training step
    on mlearn Si took about 10 % longer (``tutorials/train_step_profile.py``).
    """

    def __init__(self, irreps1, irreps_sh, irreps_out, instructions) -> None:
        irreps1, irreps_sh = o3.Irreps(irreps1), o3.Irreps(irreps_sh)
        if any(mul != 1 for mul, _ in irreps_sh):
            raise ValueError(f"irreps_sh must have multiplicity 1, got {irreps_sh}")
        if any(ins[3] != "uvu" for ins in instructions):
            raise ValueError("EdgeTensorProduct takes 'uvu' instructions only")
        channels = _uniform_mul(irreps1, "irreps1")
        super().__init__(irreps1, irreps_sh, irreps_out, instructions, channels, False)
        self.weight_numel = self.num_paths * self.channels
        # (M2, Q, M1): contracted with the harmonics, it gives S as (E, Q, M1) directly
        self._table64 = self._table64.permute(1, 2, 0).contiguous()

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(Z, C·M) in e3nn's layout (irrep by irrep, channel-major) -> (Z, M, C)."""
        c = self.channels
        if len(self.in_dims) == 1:
            return x.reshape(x.shape[0], c, self.in_dims[0]).transpose(1, 2).contiguous()
        blocks = torch.split(x, [c * d for d in self.in_dims], dim=-1)
        return torch.cat(
            [b.reshape(x.shape[0], c, d).transpose(1, 2) for b, d in zip(blocks, self.in_dims)],
            1,
        )

    def forward(self, x: torch.Tensor, sh: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(E, irreps1.dim), (E, irreps_sh.dim), (E, weight_numel) -> (E, irreps_out.dim)."""
        return self.join(self.messages(self.split(x), sh, weight))

    def messages(self, xs: torch.Tensor, sh: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The product in this module's own layout, for sums over edges before :meth:`join`.

        Parameters
        ----------
        xs : (E, M1, C)
            First input as :meth:`split` gives it (split per atom, then gathered per edge).
        sh : (E, irreps_sh.dim)
        weight : (E, weight_numel)
            Path by path, ``C`` weights each.

        Returns
        -------
        torch.Tensor
            (E, Q·C), channels fastest; :meth:`join` orders it as e3nn does.
        """
        num = xs.shape[0]
        table = self.table(xs)
        m2, q, m1 = table.shape
        s = (sh @ table.reshape(m2, q * m1)).reshape(num, q, m1)
        out = s * xs if m1 == 1 else torch.bmm(s, xs)  # (E, Q, C)
        w = weight.reshape(num, self.num_paths, self.channels)
        return (out * w.index_select(1, self.path_of)).reshape(num, q * self.channels)


class ChannelTensorProduct(_DenseProduct):
    """``'uuu'`` product of two node features with the same irreps (``C`` channels each),
    without weights, as ``o3.TensorProduct(irreps, irreps, irreps_out, [(i1, i2, p, "uuu",
    False), ...])``: ``out[n, c, q] = Σ_ij x[n, c, i] y[n, c, j] T[i, j, q]``."""

    def __init__(self, irreps, irreps_out, instructions) -> None:
        irreps = o3.Irreps(irreps)
        if any(ins[3] != "uuu" or ins[4] for ins in instructions):
            raise ValueError("ChannelTensorProduct takes unweighted 'uuu' instructions only")
        super().__init__(irreps, irreps, irreps_out, instructions, _uniform_mul(irreps, "irreps"))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, irreps.dim) twice -> (N, irreps_out.dim)."""
        table = self.table(x)
        m1, m2, q = table.shape
        outer = self.split(x).unsqueeze(-1) * self.split(y).unsqueeze(-2)  # (N, C, M, M)
        out = outer.reshape(-1, m1 * m2) @ table.reshape(m1 * m2, q)
        return self.join(out.reshape(x.shape[0], self.channels, q))
