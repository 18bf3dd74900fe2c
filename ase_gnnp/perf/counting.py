"""Count the floating-point operations and the memory traffic of eager PyTorch code.

:class:`OpCounter` is a ``TorchDispatchMode``: every aten operation run inside it (forward
and autograd backward alike) adds to its totals. FLOPs of matrix products (``mm``,
``addmm``, ``bmm``, ``baddbmm``, convolutions; e3nn's tensor products and linear maps end
in these) come from ``torch.utils.flop_counter``'s formulas; every other arithmetic
operation is counted analytically as one FLOP per output element (per input element for
reductions, per source element for ``index_add``/``scatter_add``); views, copies, gathers
and allocations count zero FLOPs. Bytes moved assume eager execution without fusion: each
kernel reads its tensor inputs and writes its outputs once (views and empty allocations
move nothing), an upper bound on the traffic of a fused or cached kernel.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

__all__ = ["OpCounter"]

aten = torch.ops.aten

# data movement only: no arithmetic
_MOVE = {
    aten._to_copy, aten.copy_, aten.clone, aten.cat, aten.stack, aten.index, aten.index_select,
    aten.gather, aten.scatter, aten.index_put, aten.index_put_, aten.contiguous, aten.repeat,
    aten.new_zeros, aten.zeros, aten.zeros_like, aten.ones, aten.ones_like, aten.full,
    aten.full_like, aten.fill_, aten.zero_, aten.new_full, aten.new_ones, aten.lift_fresh,
    aten.arange, aten.scalar_tensor, aten.where, aten.masked_fill, aten._unsafe_index,
    aten.constant_pad_nd, aten.embedding, aten.embedding_dense_backward,
    aten.select_backward, aten.slice_backward, aten.expand_copy, aten.flip, aten.roll,
    aten.tril, aten.triu, aten.eye,
}  # fmt: skip
_FREE = {aten.empty, aten.empty_strided, aten.new_empty, aten.detach, aten.alias, aten.view,
         aten._unsafe_view, aten._reshape_alias, aten.as_strided, aten.empty_like,
         aten.new_empty_strided,
         aten._local_scalar_dense, aten.sym_size, aten.sym_stride, aten.sym_numel}  # fmt: skip
# FLOPs per element of the input (reductions) or of the scattered source
_REDUCE = {aten.sum, aten.mean, aten.amax, aten.amin, aten.max, aten.min, aten.prod,
           aten.linalg_vector_norm, aten.norm, aten.var, aten.std, aten.cumsum, aten.logsumexp,
           aten._softmax, aten.softmax}  # fmt: skip
_SCATTER_ADD = {aten.index_add, aten.index_add_, aten.scatter_add, aten.scatter_add_,
                aten.scatter_reduce, aten.scatter_reduce_, aten.index_reduce}  # fmt: skip


def _bytes(t: torch.Tensor) -> int:
    """Bytes a kernel touches in ``t``: its elements, at most its storage (broadcasts)."""
    size = t.numel() * t.element_size()
    try:
        return min(size, t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):  # tensors without storage
        return size


class OpCounter(TorchDispatchMode):
    """FLOPs and bytes of every aten operation run inside the context.

    Attributes
    ----------
    flops : int
        All floating-point operations (matrix products + analytic elementwise counts).
    matmul_flops : int
        The part from matrix-product formulas.
    bytes : int
        Bytes read and written, one pass per kernel (see the module docstring).
    kernels : int
        Number of aten operations that did work (not views).

    Examples
    --------
    >>> a = torch.ones(64, 32)
    >>> with OpCounter() as count:
    ...     _ = a @ a.T
    >>> count.flops
    262144
    """

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0
        self.matmul_flops = 0
        self.bytes = 0
        self.kernels = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in _FREE or getattr(func, "is_view", False):
            return out
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if packet in flop_registry:
            flops = int(flop_registry[packet](*args, **kwargs, out_val=out))
            self.matmul_flops += flops
        elif packet in _SCATTER_ADD:
            source = args[3] if len(args) > 3 else None  # (self, dim, index, source/src, ...)
            flops = source.numel() if isinstance(source, torch.Tensor) else 0
        elif packet in (aten.index_put, aten.index_put_) and (
            kwargs.get("accumulate") or (len(args) > 3 and args[3] is True)
        ):  # scatter-add of the values (e.g. the backward of a gather)
            flops = args[2].numel()
        elif packet in _REDUCE:
            flops = max((t.numel() for t in inputs if t.is_floating_point()), default=0)
        elif packet in _MOVE:
            flops = 0
        else:  # elementwise arithmetic: one operation per output element
            flops = sum(t.numel() for t in outputs if t.is_floating_point())
        self.flops += flops
        self.bytes += sum(_bytes(t) for t in inputs) + sum(_bytes(t) for t in outputs)
        self.kernels += 1
        return out
