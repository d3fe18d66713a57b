r"""Data-parallel plasticity over ``torch.distributed``.

Each rank (process) runs the same model on its shard of the batch. Plasticity
state that is per sample (spike traces, membrane potentials, per-sample
eligibility) stays on the rank that owns the sample; what is shared (the weight
update, population statistics) is reduced across ranks before it is used, so
that every rank applies the update a single process would compute on the whole
batch.

For a rule with batch reduction ``r`` and ranks :math:`k = 1..K` holding local
batches :math:`\mathcal{B}_k` (global batch :math:`B = \sum_k |\mathcal{B}_k|`),
each half :math:`h \in \{\text{potentiation}, \text{depression}\}` of the
update is reduced as

=====================  ====================================  ==============================================
``batch_reduction``    local half :math:`h_k`                global half
=====================  ====================================  ==============================================
``"sum"``              :math:`\sum_{b \in \mathcal{B}_k} h_b`  :math:`\sum_k h_k` (all-reduce SUM)
``"mean"``             :math:`h_k^\Sigma / |\mathcal{B}_k|`  :math:`\sum_k |\mathcal{B}_k|\, h_k / B` (SUM)
``torch.amax``         :math:`\max_{b \in \mathcal{B}_k} h_b`  :math:`\max_k h_k` (all-reduce MAX)
=====================  ====================================  ==============================================

A half that is ``None`` on one rank and a tensor on another counts as zeros
(both halves are non-negative magnitudes, so zeros are neutral for SUM and MAX);
a half that is ``None`` on every rank stays ``None``. Any other callable batch
reduction has no known global form and raises (pass ``batch_reduction=`` to
:class:`SynchronizeUpdate` to declare one).

Everything here is a no-op when ``torch.distributed`` is not initialised, so the
same script runs in one process or under ``torchrun``. Collectives run on the
tensors' device: CPU tensors with gloo, CUDA tensors with NCCL (CPU tensors are
staged through the current CUDA device when the backend is NCCL). A collective
that fails because a peer rank exited or did not reach it within the process
group's timeout raises :class:`DistributedError` naming the collective and the
rank, instead of hanging.

Examples
--------
>>> import torch, plastorch
>>> from plastorch import distributed
>>> distributed.is_distributed(), distributed.rank(), distributed.world_size()
(False, 0, 1)
>>> list(distributed.shard(10, rank=1, world_size=3))  # contiguous blocks of 4, 3, 3
[4, 5, 6]
>>> fc = torch.nn.Linear(4, 2, bias=False)
>>> learner = distributed.data_parallel(
...     plastorch.Learner(fc, torch.nn.Identity(), plastorch.STDP(1e-2, -1e-2)))
>>> type(learner.synchronize).__name__
'SynchronizeUpdate'
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .functional.checks import check_choice, check_positive
from .functional.update import Update
from .learner import Learner

__all__ = [
    "DistributedError",
    "SynchronizeUpdate",
    "all_gather_rows",
    "all_reduce_tensor",
    "broadcast_module",
    "data_parallel",
    "initialize",
    "is_distributed",
    "rank",
    "reduce_update",
    "same_on_all_ranks",
    "shard",
    "shutdown",
    "sum_increments",
    "world_size",
]

REDUCE_OPS = ("sum", "mean", "max", "min")

_Items = TypeVar("_Items", Sequence, Tensor)


class DistributedError(RuntimeError):
    """A collective failed: a peer rank exited, raised, or did not reach it in time."""


# -- process group ---------------------------------------------------------------------


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is available and its default process group initialised.

    Examples
    --------
    >>> is_distributed()
    False
    """
    return dist.is_available() and dist.is_initialized()


def rank(group: dist.ProcessGroup | None = None) -> int:
    """This process's rank in ``group`` (the default group if ``None``); 0 when not distributed.

    Examples
    --------
    >>> rank()
    0
    """
    return dist.get_rank(group) if is_distributed() else 0


def world_size(group: dist.ProcessGroup | None = None) -> int:
    """Number of ranks in ``group`` (the default group if ``None``); 1 when not distributed.

    Examples
    --------
    >>> world_size()
    1
    """
    return dist.get_world_size(group) if is_distributed() else 1


def initialize(backend: str | None = None, *, timeout: float = 300.0) -> bool:
    """Initialise the default process group from ``torchrun``'s environment, if there is one.

    Reads ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` (set by
    ``torchrun``); without ``WORLD_SIZE`` (a plain ``python`` run) it does
    nothing and returns ``False``. With NCCL it also selects the GPU
    ``LOCAL_RANK`` as the current CUDA device.

    Parameters
    ----------
    backend : {"gloo", "nccl"}, optional
        Defaults to ``"nccl"`` when CUDA is available, else ``"gloo"``.
    timeout : float
        Seconds a collective may wait for the other ranks before it fails with
        :class:`DistributedError` (so a crashed rank cannot hang the others).

    Returns
    -------
    bool
        Whether the process runs distributed (a group is initialised) after the call.

    Examples
    --------
    >>> initialize() if "WORLD_SIZE" not in os.environ else False
    False
    """
    timeout = check_positive("timeout", timeout)
    if is_distributed():
        return True
    if "WORLD_SIZE" not in os.environ:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE is set but this torch build has no torch.distributed")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    backend = check_choice("backend", backend, ("gloo", "nccl"))
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    return True


def shutdown() -> None:
    """Destroy the default process group if one is initialised (a no-op otherwise)."""
    if is_distributed():
        dist.destroy_process_group()


# -- data ------------------------------------------------------------------------------


def shard(
    items: int | _Items, *, rank: int | None = None, world_size: int | None = None
) -> range | _Items:
    r"""This rank's contiguous block of ``items``.

    ``n`` items are split into ``world_size`` blocks in order, the first
    ``n mod K`` of size :math:`\lceil n/K \rceil` and the rest of size
    :math:`\lfloor n/K \rfloor` (as ``torch.tensor_split``); concatenating the
    blocks of ranks ``0..K-1`` gives ``items`` back. Use it on each global batch
    (every rank draws the same batch indices, then keeps its block) so every
    rank runs the same number of steps, or on a data set's index list.

    Parameters
    ----------
    items : int, sequence or Tensor
        A length ``n`` (returns ``range``), a sequence (returns a slice of it)
        or a tensor (returns its rows along dim 0, a view).
    rank, world_size : int, optional
        Default to this process's rank and the world size (0 and 1 when not
        distributed).

    Examples
    --------
    >>> [list(shard(5, rank=r, world_size=2)) for r in range(2)]
    [[0, 1, 2], [3, 4]]
    >>> shard(torch.arange(6), rank=1, world_size=2)
    tensor([3, 4, 5])
    """
    rank_ = (dist.get_rank() if is_distributed() else 0) if rank is None else rank
    size = (dist.get_world_size() if is_distributed() else 1) if world_size is None else world_size
    for name, value in (("rank", rank_), ("world_size", size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if size < 1 or not 0 <= rank_ < size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank_}, world_size={size}")
    if isinstance(items, bool) or not isinstance(items, (int, Sequence, Tensor)):
        raise TypeError(
            f"items must be a length, a sequence or a tensor, got {type(items).__name__}"
        )
    count = items if isinstance(items, int) else len(items)
    if count < 0:
        raise ValueError(f"items must be >= 0, got {items}")
    base, extra = divmod(count, size)
    start = rank_ * base + min(rank_, extra)
    stop = start + base + (rank_ < extra)
    if isinstance(items, int):
        return range(start, stop)
    return items[start:stop]


# -- collectives -----------------------------------------------------------------------


def _collective(what: str, call: Callable[[], object]) -> None:
    try:
        call()
    except RuntimeError as error:  # gloo/NCCL errors (DistBackendError is a RuntimeError)
        raise DistributedError(
            f"rank {rank()} of {world_size()}: {what} failed; another rank exited, raised, or "
            f"did not reach the same call within the process group timeout ({error})"
        ) from error


def _on_backend_device(tensor: Tensor, group) -> Tensor:
    """A contiguous copy on a device the group's backend can reduce (CUDA for NCCL)."""
    if tensor.device.type == "cpu" and dist.get_backend(group) == "nccl":
        return tensor.to(torch.device("cuda", torch.cuda.current_device()))
    return tensor.clone(memory_format=torch.contiguous_format)


def all_reduce_tensor(
    tensor: Tensor, op: str = "sum", *, group: dist.ProcessGroup | None = None
) -> Tensor:
    r"""A copy of ``tensor`` reduced element-wise over the ranks; ``tensor`` is not modified.

    Every rank must call it, in the same order, with a tensor of the same shape and dtype.

    Parameters
    ----------
    tensor : Tensor
        Local value, e.g. a spike count ``[N]`` or per-class response sums ``[C, N]``.
    op : {"sum", "mean", "max", "min"}
        ``"mean"`` is the sum divided by the number of ranks (a floating result;
        for a mean over samples, reduce sums and counts with ``"sum"`` instead).

    Returns
    -------
    Tensor
        Same shape, dtype and device as ``tensor``; a plain copy when not distributed.

    Examples
    --------
    >>> all_reduce_tensor(torch.tensor([1.0, 2.0]), "max")  # one process: a copy
    tensor([1., 2.])
    """
    op = check_choice("op", op, REDUCE_OPS)
    if not isinstance(tensor, Tensor):
        raise TypeError(f"tensor must be a Tensor, got {type(tensor).__name__}")
    if op == "mean" and not (tensor.is_floating_point() or tensor.is_complex()):
        raise TypeError(f"op='mean' needs a floating tensor, got dtype {tensor.dtype}")
    if not is_distributed():
        return tensor.clone()
    work = _on_backend_device(tensor, group)
    reduce_op = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM}.get(
        op, dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.MIN
    )
    _collective(
        f"all_reduce({op}) of a {tuple(tensor.shape)} tensor",
        lambda: dist.all_reduce(work, reduce_op, group=group),
    )
    if op == "mean":
        work = work / world_size(group)
    return work.to(tensor.device)


def all_gather_rows(tensor: Tensor, *, group: dist.ProcessGroup | None = None) -> Tensor:
    r"""Concatenate every rank's ``tensor`` along dim 0, in rank order, on every rank.

    The blocks may differ in length (as :func:`shard` blocks do), so the
    concatenation of each rank's block of a batch is the whole batch again,
    e.g. per-sample spike counts ``[B_k, N]`` -> ``[B, N]`` for label statistics
    or votes. Trailing dimensions and dtype must agree across ranks. Costs two
    collectives (the lengths, then the padded blocks).

    Examples
    --------
    >>> all_gather_rows(torch.tensor([[1, 2], [3, 4]]))  # one process: a copy
    tensor([[1, 2],
            [3, 4]])
    """
    if not isinstance(tensor, Tensor) or tensor.dim() < 1:
        raise ValueError(f"tensor must be a Tensor with at least one dimension, got {tensor!r}")
    if not is_distributed():
        return tensor.clone()
    size = world_size(group)
    lengths = torch.zeros(size, dtype=torch.int64, device=tensor.device)
    lengths[rank(group)] = tensor.shape[0]
    lengths = all_reduce_tensor(lengths, "sum", group=group).tolist()
    longest = max(lengths)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    work = _on_backend_device(padded, group)
    blocks = [torch.empty_like(work) for _ in range(size)]
    _collective(
        f"all_gather of [{tensor.shape[0]}, ...] blocks",
        lambda: dist.all_gather(blocks, work, group=group),
    )
    return torch.cat([block[:n] for block, n in zip(blocks, lengths)]).to(tensor.device)


def sum_increments(
    tensor: Tensor, baseline: Tensor, *, group: dist.ProcessGroup | None = None
) -> Tensor:
    r"""Combine what each rank added to a shared quantity since a common ``baseline``.

    .. math:: x = x_0 + \sum_k \bigl(x^{(k)} - x_0\bigr)

    For state that every rank updates additively from its own samples (an
    adaptive threshold growing by ``theta_plus`` per spike, spike counts of a
    rate monitor), with :math:`x_0` the value every rank would hold without
    any local contribution (the state before the window, already decayed).

    Examples
    --------
    >>> sum_increments(torch.tensor([1.5]), torch.tensor([1.0]))  # one process: unchanged
    tensor([1.5000])
    """
    if tensor.shape != baseline.shape:
        raise ValueError(
            f"tensor {tuple(tensor.shape)} and baseline {tuple(baseline.shape)} differ in shape"
        )
    if not is_distributed():
        return tensor.clone()
    return baseline + all_reduce_tensor(tensor - baseline, "sum", group=group)


@torch.no_grad()
def same_on_all_ranks(module: nn.Module, *, group: dist.ProcessGroup | None = None) -> bool:
    """Whether every parameter and buffer of ``module`` is bit-identical on all ranks.

    A check for data-parallel training (every rank applies the same updates, so
    the weights must agree): one all-reduce MAX and one MIN of the module's
    values (as float64, exact for float32/float16 and integers below
    :math:`2^{53}`); empty and ``None`` tensors are skipped. Always ``True`` in
    one process.

    Examples
    --------
    >>> same_on_all_ranks(torch.nn.Linear(3, 2))
    True
    """
    if not is_distributed():
        return True
    values = [t.detach().reshape(-1) for t in (*module.parameters(), *module.buffers())]
    values = [t.to(torch.float64) for t in values if t.numel() > 0]
    if not values:
        return True
    flat = torch.cat(values)
    high = all_reduce_tensor(flat, "max", group=group)
    low = all_reduce_tensor(flat, "min", group=group)
    return bool(torch.equal(high, low))


@torch.no_grad()
def broadcast_module(module: nn.Module, src: int = 0, *, group=None) -> nn.Module:
    """Copy every parameter and buffer of ``module`` from rank ``src`` to all ranks, in place.

    Call it once after building the model so every rank starts from the same
    weights (DistributedDataParallel does the same for the modules it wraps).
    Lazily sized buffers must have the same shapes on every rank. Returns ``module``.

    Examples
    --------
    >>> fc = broadcast_module(torch.nn.Linear(2, 1))  # one process: unchanged
    """
    if not is_distributed():
        return module
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.numel() > 0]
    for tensor in tensors:
        work = _on_backend_device(tensor, group)
        _collective(
            f"broadcast of a {tuple(tensor.shape)} tensor from rank {src}",
            lambda work=work: dist.broadcast(work, src, group=group),
        )
        tensor.copy_(work)
    return module


# -- updates ---------------------------------------------------------------------------


def _global_form(batch_reduction) -> str:
    if isinstance(batch_reduction, str) and batch_reduction.lower() in ("sum", "mean", "max"):
        return batch_reduction.lower()
    if batch_reduction is torch.amax:
        return "max"
    raise ValueError(
        f"batch_reduction {batch_reduction!r} has no known reduction across ranks; use "
        "'sum', 'mean' or torch.amax, or declare its global form with "
        "SynchronizeUpdate(batch_reduction='sum'|'mean'|'max')"
    )


def reduce_update(
    update: Update,
    like: Tensor,
    *,
    batch_reduction: str | Callable = "sum",
    batch_size: int = 1,
    several_windows: bool = False,
    group: dist.ProcessGroup | None = None,
) -> Update:
    r"""Reduce the two halves of a locally computed update over the ranks (see the module table).

    Costs two collectives: one of 5 integers (which halves exist, the batch
    sizes, flags) and one of the present halves concatenated. Every rank must
    call it at the same point.

    Parameters
    ----------
    update : Update
        This rank's update; halves shaped like ``like`` or ``None``.
    like : Tensor
        The tensor the update targets: its shape, dtype and device are used for
        halves that are ``None`` here but not on another rank.
    batch_reduction : {"sum", "mean", "max"} or torch.amax
        How the rule reduced the batch.
    batch_size : int
        Local batch size :math:`|\mathcal{B}_k|` (used by ``"mean"``).
    several_windows : bool
        Whether ``update`` sums several windows; refused with ``torch.amax``,
        whose per-window maximum does not commute with that sum.

    Returns
    -------
    Update
        The global update, identical on every rank (``update`` itself when not distributed).

    Examples
    --------
    >>> u = Update(torch.tensor([0.5]), None)
    >>> reduce_update(u, torch.zeros(1), batch_reduction="mean", batch_size=4) is u
    True
    """
    if not is_distributed():
        return update
    form = _global_form(batch_reduction)
    halves = (update.potentiation, update.depression)
    bad_shape = any(h is not None and h.shape != like.shape for h in halves)
    meta = torch.tensor(
        [*(int(h is not None) for h in halves), int(batch_size), int(several_windows), bad_shape],
        dtype=torch.int64,
        device=like.device,
    )
    meta = all_reduce_tensor(meta, "sum", group=group).tolist()
    present, global_batch, windows, bad = meta[:2], meta[2], meta[3], meta[4]
    if bad:
        shapes = [None if h is None else tuple(h.shape) for h in halves]
        raise ValueError(
            f"update halves must be shaped like the target {tuple(like.shape)} on every rank; "
            f"rank {rank(group)} has {shapes} ({bad} rank(s) differ)"
        )
    if form == "max" and windows:
        raise ValueError(
            "a torch.amax batch reduction is per window; with data parallelism call step() "
            "after every window (the max over the batch does not commute with the sum over "
            "the windows accumulated since the previous step)"
        )
    if not any(present):
        return Update(None, None)
    parts = [
        (like.new_zeros(like.shape) if h is None else h.to(like.dtype)).reshape(-1)
        for h, p in zip(halves, present)
        if p
    ]
    flat = torch.cat(parts)
    if form == "mean":
        flat = flat * batch_size
    flat = all_reduce_tensor(flat, "max" if form == "max" else "sum", group=group)
    if form == "mean":
        flat = flat / global_batch
    out = iter(flat.split(like.numel()))
    return Update(
        *(next(out).reshape(like.shape) if p else None for p in present),
    )


class SynchronizeUpdate:
    r"""Learner hook that makes a data-parallel update equal the whole-batch one.

    Pass it as ``Learner(..., synchronize=SynchronizeUpdate())`` or attach it
    with :func:`data_parallel`. At every :meth:`plastorch.Learner.step` it
    reduces the halves of the update learned since the previous step over the
    ranks (:func:`reduce_update`) before ``scale``, the bound and the
    application, so every rank applies the same :math:`\Delta w` to the same
    weight. Outside ``torch.distributed`` it returns the update unchanged.

    Every rank must call ``step()`` the same number of times; per-sample state
    (traces, eligibility, neurons) stays local, which is what the whole-batch
    computation does too.

    Parameters
    ----------
    group : ProcessGroup, optional
        Ranks to reduce over (the default group if ``None``).
    batch_reduction : {"sum", "mean", "max"}, optional
        Global form of the rule's batch reduction. Defaults to the rule's
        ``batch_reduction`` attribute (``"sum"`` if it has none); set it for a
        custom callable whose global form you know.

    Examples
    --------
    >>> from plastorch.rules import STDP
    >>> fc, neuron = torch.nn.Linear(3, 2, bias=False), torch.nn.Identity()
    >>> learner = Learner(fc, neuron, STDP(0.1, -0.1), synchronize=SynchronizeUpdate())
    >>> _ = neuron(fc(torch.ones(1, 3)))
    >>> learner.step().shape  # one process: the plain update
    torch.Size([2, 3])
    """

    def __init__(self, group: dist.ProcessGroup | None = None, *, batch_reduction=None):
        if batch_reduction is not None:
            _global_form(batch_reduction)
        self.group = group
        self.batch_reduction = batch_reduction

    def __call__(self, update: Update, learner: Learner) -> Update:
        reduction = self.batch_reduction
        if reduction is None:
            reduction = getattr(learner.rule, "batch_reduction", "sum")
        batch = getattr(learner, "batch_size", None)
        several = (
            getattr(learner, "accumulated_potentiation", None) is not None
            or getattr(learner, "accumulated_depression", None) is not None
        )
        return reduce_update(
            update,
            learner.target.detach(),
            batch_reduction=reduction,
            batch_size=1 if batch is None else int(batch),
            several_windows=several,
            group=self.group,
        )

    def __repr__(self) -> str:
        return f"SynchronizeUpdate(group={self.group!r}, batch_reduction={self.batch_reduction!r})"


def data_parallel(
    learner: Learner, *, group: dist.ProcessGroup | None = None, batch_reduction=None
) -> Learner:
    """Attach a :class:`SynchronizeUpdate` to ``learner`` (replacing any hook) and return it.

    For learners built inside a model; a no-op at run time when not distributed.

    Examples
    --------
    >>> from plastorch.rules import STDP
    >>> fc = torch.nn.Linear(3, 2, bias=False)
    >>> learner = data_parallel(Learner(fc, torch.nn.Identity(), STDP(0.1, -0.1)))
    >>> learner.synchronize
    SynchronizeUpdate(group=None, batch_reduction=None)
    """
    if not isinstance(learner, Learner):
        raise TypeError(f"learner must be a plastorch Learner, got {type(learner).__name__}")
    learner.synchronize = SynchronizeUpdate(group, batch_reduction=batch_reduction)
    return learner
