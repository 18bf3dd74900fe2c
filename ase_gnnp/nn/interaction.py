"""Equivariant interaction block: tensor-product convolution, gate, residual."""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn
from torch.utils.checkpoint import checkpoint

from ase_gnnp.nn.tensor_product import ChannelTensorProduct, EdgeTensorProduct

_ACTS = {1: torch.nn.functional.silu, -1: torch.tanh}


def hidden_irreps(channels: int, lmax: int) -> o3.Irreps:
    """``C x 0e + C x 1o + C x 2e + ...`` up to ``lmax`` (natural parity)."""
    return o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])


class ChannelProduct(nn.Module):
    """Channel-wise ('uuu') tensor product of two node features, then a linear map.

    ``out = W · (x ⊗ y)`` where channel ``u`` of ``x`` couples only with channel ``u`` of
    ``y`` through every Clebsch–Gordan path that lands in ``irreps``. Applied per node to the
    aggregated neighbour basis ``A_i`` it raises the body order of a layer by one (the
    product-basis idea of MACE and ACE) at a cost that scales with atoms, not edges.

    Parameters
    ----------
    irreps
        Irreps of both inputs and of the output, all with the same multiplicity.
    symmetric
        Both inputs are the same tensor: keep only one of each pair ``(l1, l2)``, ``(l2, l1)``.
    """

    def __init__(self, irreps: o3.Irreps, symmetric: bool) -> None:
        super().__init__()
        irreps = o3.Irreps(irreps)
        targets = [ir for _, ir in irreps]
        mid, instructions = [], []
        for i1, (mul, ir1) in enumerate(irreps):
            for i2, (_, ir2) in enumerate(irreps):
                if symmetric and i2 < i1:
                    continue
                for ir_out in ir1 * ir2:
                    if ir_out in targets:
                        instructions.append((i1, i2, len(mid), "uuu", False))
                        mid.append((mul, ir_out))
        self.tp = ChannelTensorProduct(irreps, o3.Irreps(mid), instructions)
        self.linear = o3.Linear(self.tp.irreps_out, irreps)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, irreps.dim) x (N, irreps.dim) -> (N, irreps.dim).

        Under ``torch.autocast`` the product runs in the module's own dtype: e3nn's
        generated code contracts with Clebsch–Gordan buffers through ``tensordot``, which
        autocast does not cast. It is a per-atom cost, small beside the edges'.
        """
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = self.linear.weight.dtype
            with torch.autocast(device, enabled=False):
                return self.linear(self.tp(x.to(dtype), y.to(dtype)))
        return self.linear(self.tp(x, y))


class Interaction(nn.Module):
    """One message-passing layer (NequIP-style).

    ``m_i = 1/n_avg Σ_j TP(W h_j, Y(r̂_ij); R(r_ij))``, then a linear map, a gated
    nonlinearity and a linear residual connection.

    Parameters
    ----------
    irreps_in, irreps_out
        Node feature irreps before and after the layer.
    irreps_sh
        Spherical-harmonics irreps of the edge directions.
    num_radial
        Size of the radial embedding fed to the MLP that produces the tensor-product weights.
    radial_hidden
        Hidden width of that MLP.
    avg_num_neighbors
        Normalisation of the neighbour sum.
    correlation
        Body order added per layer. 1: the aggregated two-body messages go straight to the
        gate (NequIP). ``nu > 1``: the aggregated basis ``A_i`` (all irreps up to
        ``product_lmax``) is enriched with ``A ⊗ A``, ``A ⊗ A ⊗ A``, ... up to ``nu`` factors
        (:class:`ChannelProduct`) before the gate, as in MACE.
    product_lmax
        Largest l kept in ``A_i`` and its products (``correlation > 1`` only); defaults to
        the largest l of ``irreps_sh``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        num_radial: int,
        radial_hidden: int = 64,
        avg_num_neighbors: float = 1.0,
        correlation: int = 1,
        product_lmax: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(correlation, int) or correlation < 1:
            raise ValueError(f"correlation must be an integer >= 1, got {correlation!r}")
        self.correlation = correlation
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        # a buffer, so statistics fitted after construction travel with the checkpoint
        self.register_buffer("avg_num_neighbors", torch.tensor(float(avg_num_neighbors)))

        self.linear_up = o3.Linear(self.irreps_in, self.irreps_in)
        # 'uvu' paths from every input irrep and edge harmonic to every allowed output l
        irreps_sh = o3.Irreps(irreps_sh)
        mul_out = self.irreps_out[0].mul
        if correlation > 1:
            lmax = irreps_sh.lmax if product_lmax is None else product_lmax
            irreps_basis = hidden_irreps(mul_out, lmax)
        else:
            irreps_basis = self.irreps_out
        wanted = [ir for _, ir in irreps_basis]
        mid, instructions = [], []
        for i_in, (mul, ir_in) in enumerate(self.irreps_in):
            for i_sh, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in wanted:
                        instructions.append((i_in, i_sh, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid = o3.Irreps(mid)
        self.tp = EdgeTensorProduct(self.irreps_in, irreps_sh, irreps_mid, instructions)
        self.radial = FullyConnectedNet(
            [num_radial, radial_hidden, self.tp.weight_numel], torch.nn.functional.silu
        )
        #: width of the per-edge messages (a plain int: no irreps work in forward)
        self.message_dim = irreps_mid.dim

        scalars = o3.Irreps([(m, ir) for m, ir in self.irreps_out if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in self.irreps_out if ir.l > 0])
        gates = o3.Irreps([(m, "0e") for m, _ in gated])
        self.gate = Gate(
            scalars,
            [_ACTS[ir.p] for _, ir in scalars],
            gates,
            [torch.sigmoid] * len(gates),
            gated,
        )
        if correlation > 1:
            self.linear_basis = o3.Linear(irreps_mid, irreps_basis)
            self.products = nn.ModuleList(
                ChannelProduct(irreps_basis, symmetric=(nu == 2))
                for nu in range(2, correlation + 1)
            )
            irreps_mid = irreps_basis
        self.linear_down = o3.Linear(irreps_mid, self.gate.irreps_in)
        self.self_connection = o3.Linear(self.irreps_in, self.gate.irreps_out)

    def forward(
        self,
        h: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        edge_index: torch.Tensor,
        edge_chunk: int | None = None,
    ) -> torch.Tensor:
        """Update node features.

        Parameters
        ----------
        h : (N, irreps_in.dim)
        edge_sh : (E, irreps_sh.dim)
        edge_radial : (E, num_radial)
        edge_index : (2, E), row 0 the receiving centre atom
        edge_chunk
            Build and sum the messages of at most this many edges at a time, each chunk
            recomputed in the backward pass instead of stored: the per-edge tensor-product
            weights and messages (the largest tensors of the model) then never exist for
            all edges at once. Same result; for large systems. ``None``: all edges at once.

        Notes
        -----
        Messages are summed in the dtype of ``edge_radial`` (the model's dtype), also when
        the features run in a lower precision under ``torch.autocast``.
        """
        centre, neighbour = edge_index
        # split into (N, M, C) per atom, gathered per edge; messages are summed in the
        # product's own layout and put into e3nn's by one permutation per atom
        x = self.tp.split(self.linear_up(h))
        agg = torch.zeros(h.shape[0], self.message_dim, dtype=edge_radial.dtype,
                          device=h.device)  # fmt: skip
        num_edges = centre.shape[0]
        if edge_chunk is None or edge_chunk >= num_edges:
            agg.index_add_(0, centre, self._messages(x, edge_sh, edge_radial, neighbour))
        else:
            for start in range(0, num_edges, edge_chunk):
                part = slice(start, start + edge_chunk)
                args = (x, edge_sh[part], edge_radial[part], neighbour[part])
                if torch.is_grad_enabled():
                    messages = checkpoint(self._messages, *args, use_reentrant=False,
                                          preserve_rng_state=False)  # fmt: skip
                else:
                    messages = self._messages(*args)
                agg.index_add_(0, centre[part], messages)
        return self.update(h, self.tp.join(agg) / self.avg_num_neighbors.to(agg.dtype))

    def update(self, h: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        """Node update from the normalised message sum ``agg`` (N, message_dim): the
        product basis (``correlation > 1``), linear map, gate and self-connection."""
        if self.correlation > 1:
            basis = self.linear_basis(agg)
            term, agg = basis, basis
            for product in self.products:
                term = product(term, basis)
                agg = agg + term
        return self.gate(self.linear_down(agg)) + self.self_connection(h)

    def _messages(
        self,
        x: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        neighbour: torch.Tensor,
    ) -> torch.Tensor:
        """Per-edge messages (E, message_dim) in the product's layout (see
        :meth:`EdgeTensorProduct.messages`), in the dtype of ``edge_radial``; ``x`` is the
        split node input (N, M, C)."""
        messages = self.tp.messages(x[neighbour], edge_sh, self.radial(edge_radial))
        return messages.to(edge_radial.dtype)
