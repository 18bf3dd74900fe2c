"""Data-parallel training under ``torchrun``: launch detection, process group, collectives.

``torchrun --nproc_per_node N -m ase_gnnp.cli train ...`` starts ``N`` processes with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and the rendezvous ``MASTER_ADDR`` /
``MASTER_PORT``) in their environment. :class:`ase_gnnp.train.Trainer` reads them through
:func:`launch_info`, joins the process group with :func:`init` (gloo for CPU tensors,
NCCL for CUDA tensors) and uses the collectives below; without ``torchrun`` (or with
``WORLD_SIZE=1``) nothing here does anything and every helper answers as for one process.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "LaunchInfo",
    "all_gather_objects",
    "allreduce_gradients",
    "barrier",
    "broadcast_module",
    "default_backend",
    "destroy",
    "init",
    "is_distributed",
    "is_main_process",
    "launch_info",
    "rank",
    "rank_zero_only",
    "session",
    "shard",
    "world_size",
]

T = TypeVar("T")


@dataclass(frozen=True)
class LaunchInfo:
    """Where this process stands in a ``torchrun`` launch.

    Attributes
    ----------
    world_size : int
        Number of processes (1 without ``torchrun``).
    rank : int
        Global rank of this process, ``0 <= rank < world_size``.
    local_rank : int
        Rank on this node (selects the CUDA device with NCCL).
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def launched(self) -> bool:
        """True when several processes train together (``world_size > 1``)."""
        return self.world_size > 1


def _env_int(environ: Mapping[str, str], name: str, default: int | None) -> int:
    text = environ.get(name)
    if text is None or text.strip() == "":
        if default is None:
            raise ValueError(
                f"{name} is not set although WORLD_SIZE={environ.get('WORLD_SIZE')!r} is: "
                f"launch data-parallel training with torchrun"
            )
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def launch_info(environ: Mapping[str, str] | None = None) -> LaunchInfo:
    """Read ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` as set by ``torchrun``.

    Parameters
    ----------
    environ
        Environment to read (default: ``os.environ``).

    Returns
    -------
    LaunchInfo
        ``LaunchInfo(1, 0, 0)`` when ``WORLD_SIZE`` is unset or 1.

    Raises
    ------
    ValueError
        A non-integer value, ``WORLD_SIZE < 1``, a rank outside ``[0, WORLD_SIZE)`` or, with
        ``WORLD_SIZE > 1``, a missing ``RANK``.
    """
    environ = os.environ if environ is None else environ
    size = _env_int(environ, "WORLD_SIZE", 1)
    if size < 1:
        raise ValueError(f"WORLD_SIZE must be >= 1, got {size}")
    if size == 1:  # a single process, whatever stray RANK variables say
        return LaunchInfo()
    global_rank = _env_int(environ, "RANK", None)
    local = _env_int(environ, "LOCAL_RANK", global_rank)
    if not 0 <= global_rank < size:
        raise ValueError(f"RANK must be in [0, WORLD_SIZE={size}), got {global_rank}")
    if local < 0:
        raise ValueError(f"LOCAL_RANK must be >= 0, got {local}")
    return LaunchInfo(size, global_rank, local)


def default_backend(device: str | torch.device = "cpu") -> str:
    """``"nccl"`` for CUDA tensors (when NCCL is available), ``"gloo"`` otherwise."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def init(device: str | torch.device = "cpu", backend: str | None = None) -> LaunchInfo:
    """Join the process group of a ``torchrun`` launch (no-op for a single process).

    Idempotent: an already initialised group is kept.

    Parameters
    ----------
    device
        Where the training tensors live: CPU tensors need gloo, CUDA tensors NCCL (the
        device is then ``cuda:LOCAL_RANK``).
    backend
        Override the backend (default: :func:`default_backend` of ``device``).

    Returns
    -------
    LaunchInfo
        This process's place in the launch.
    """
    info = launch_info()
    if not info.launched:
        return info
    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed: cannot train under torchrun")
    if dist.is_initialized():
        return info
    backend = backend or default_backend(device)
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, world_size=info.world_size, rank=info.rank)
    return info


def destroy() -> None:
    """Leave the process group, if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device: str | torch.device = "cpu") -> Iterator[LaunchInfo]:
    """``init`` on entry and, if this call initialised the group, ``destroy`` on exit."""
    owned = launch_info().launched and not (dist.is_available() and dist.is_initialized())
    info = init(device)
    try:
        yield info
    finally:
        if owned:
            destroy()


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Processes in the group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a group)."""
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """True on rank 0, the only rank that writes files, logs and progress bars."""
    return rank() == 0


def rank_zero_only(fn: Callable[..., T]) -> Callable[..., T | None]:
    """Decorator: run ``fn`` on rank 0 only; other ranks get ``None``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T | None:
        return fn(*args, **kwargs) if is_main_process() else None

    return wrapper


def barrier() -> None:
    """Wait for every rank (no-op without a group)."""
    if is_distributed():
        dist.barrier()


def shard(items: Sequence[T], num_shards: int, index: int) -> list[T]:
    """Contiguous, near-equal part ``index`` of ``items`` split ``num_shards`` ways.

    The first ``len(items) % num_shards`` parts hold one item more (``numpy.array_split``
    order); parts may be empty when there are fewer items than shards.
    """
    if num_shards < 1 or not 0 <= index < num_shards:
        raise ValueError(f"need 0 <= index < num_shards, got index {index} of {num_shards}")
    size, extra = divmod(len(items), num_shards)
    start = index * size + min(index, extra)
    return list(items[start : start + size + (index < extra)])


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src`` to all ranks."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in module.state_dict(keep_vars=True).values():
            data = tensor.data
            if data.dtype == torch.bool:  # not every backend reduces/broadcasts bool
                carrier = data.to(torch.uint8)
                dist.broadcast(carrier, src)
                data.copy_(carrier.bool())
            else:
                dist.broadcast(data, src)


def allreduce_gradients(
    parameters: Sequence[torch.Tensor], extras: Sequence[float] = ()
) -> list[float]:
    """Sum ``.grad`` of ``parameters`` over ranks (one collective per dtype and device).

    A parameter without a gradient counts as zero; it keeps ``grad = None`` only when it
    has none on every rank, as in a single process that saw the whole batch (AdamW then
    skips it). ``extras`` (e.g. each rank's loss) are summed in float64 in one more small
    collective.

    Parameters
    ----------
    parameters
        Same list, in the same order, on every rank.
    extras
        Numbers to sum over ranks.

    Returns
    -------
    list of float
        ``extras`` summed over ranks (unchanged for a single process).
    """
    if not is_distributed():
        return [float(x) for x in extras]
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in parameters:
        groups.setdefault((p.dtype, p.device), []).append(p)
    for (dtype, device), params in groups.items():
        parts = [
            p.grad.detach().reshape(-1) if p.grad is not None else p.new_zeros(p.numel())
            for p in params
        ]
        # one more entry per parameter: on how many ranks it has a gradient
        has = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=device)
        flat = torch.cat(parts + [has])
        dist.all_reduce(flat)
        offset = 0
        for p, seen in zip(params, flat[-len(params) :].tolist()):
            n = p.numel()
            if seen > 0:
                grad = flat[offset : offset + n].view_as(p)
                if p.grad is None:
                    p.grad = grad.clone()
                else:
                    p.grad.copy_(grad)
            offset += n
    if not extras:
        return []
    device = next(iter(groups))[1] if groups else torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    summed = torch.tensor([float(x) for x in extras], dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    return summed.tolist()


def all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` for a single process)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
