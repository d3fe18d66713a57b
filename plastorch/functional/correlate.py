r"""Correlation of a presynaptic and a postsynaptic factor, mapped onto a weight.

For a layer :math:`y = f(x; W)` linear in :math:`W`, every pair-based plasticity
term is

.. math:: C(a, b) = \sum_n \frac{\partial \langle b_n, f(a_n; W)\rangle}{\partial W}

i.e. the weight gradient of the layer at input :math:`a` with upstream gradient
:math:`b`. For ``nn.Linear`` that is :math:`b^\top a` (one GEMM); for
convolutions it is the convolution weight gradient, which already handles every
stride, padding, dilation and group layout without a Python loop over kernel
positions; for any other module it is ``torch.func.vjp`` of ``W -> f(a; W)``.

Sparse path
-----------
Spikes are sparse, and in every pair term one factor is a spike tensor. Writing
the correlation of a Linear or convolution layer as

.. math::

    C[m, c, k] = \sum_{n, p} A[n, m, p]\; B[n, g(m) C_g + c,\ p s + k d - \text{pad}]

(:math:`A` the factor on the side of the weight's first dimension: ``post`` for
Linear and ConvNd, ``pre`` for ConvTransposeNd; :math:`g(m)` the group of
:math:`m`), only the non-zero entries of the sparse factor contribute. For each of
them and each kernel offset :math:`k` the sparse path looks up one row of the
other factor (laid out channels-last, so the row is contiguous) and sums the rows
into the weight entry they belong to with ``torch.nn.functional.embedding_bag``
(a segmented, weighted row sum): the arithmetic is
:math:`\text{nnz} \times K \times C_g` instead of the dense
:math:`N \times M \times P \times K \times C_g`.

Which path runs is chosen per call by the ``sparse`` argument or, when that is
``None``, by :func:`sparse_mode` (default ``"auto"``): on CPU, ``"auto"`` counts
the non-zeros of both factors (on a strided sample of at most 2048 entries for
large factors) and takes the sparse path when its estimated time
(:func:`estimate_costs`) is below the dense one. On other devices ``"auto"``
stays dense (counting non-zeros synchronises the device, and the crossover has
not been measured there); ``sparse=True`` or ``sparse_mode("sparse")`` forces it.
Both paths compute the same sum; only the order of the additions differs.
"""

from __future__ import annotations

import contextvars
import functools
import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import compiled
from .checks import check_choice
from .numerics import flush_subnormal_, flushes
from .workspace import Workspace

__all__ = [
    "SPARSE_MODES",
    "correlate",
    "correlate_constant",
    "correlate_per_sample",
    "correlate_sum",
    "correlation_scope",
    "fold_steps",
    "get_sparse_mode",
    "estimate_costs",
    "sparse_mode",
    "uses_sparse_path",
]

SPARSE_MODES: tuple[str, ...] = ("auto", "sparse", "dense")
_MODE: contextvars.ContextVar[str] = contextvars.ContextVar("plastorch_sparse_mode", default="auto")

#: Cost model of the two paths, nanoseconds on one x86 core with AVX2
#: (measured, docs/performance.md "crossover"). The dense path is a GEMM or a
#: oneDNN convolution weight gradient: ``_DENSE_MAC`` per multiply-add (convolutions
#: ``_CONV_FACTOR`` times that). The sparse path reads its factor once to find the
#: non-zeros (``_SCAN`` per entry), costs ``_LOOKUP`` per looked-up row (index
#: arithmetic; more for convolutions), ``_SPARSE_ADD`` per element added, copies
#: the other factor channels-last for convolutions and permutes the result into
#: the weight's layout where needed (``_COPY`` per element), plus ``_FIXED`` (kernel
#: launches and Python; the dense path's is ``_DENSE_FIXED``). ``_SPARSE_ADD`` is per
#: layer kind: a Linear's rows are summed by ``embedding_bag`` straight from the other
#: factor, whose float32 sums measured a quarter of the convolutions' constant
#: (docs/performance.md "Ninth round"). A Linear whose looked-up factor is larger
#: than ``_WARM_TABLE_BYTES`` (past the per-core caches) costs ``_COLD_ADD`` times
#: that per element. bfloat16 GEMMs are fast only where the CPU has bfloat16
#: instructions (AVX512-BF16, AMX): there a multiply-add costs half a float32 one.
_BF16_GEMM = bool(
    getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
)
_DENSE_MAC = {
    torch.float32: 0.03,
    torch.float64: 0.06,
    torch.bfloat16: 0.015 if _BF16_GEMM else 0.1,
    torch.float16: 0.1,
}
_SPARSE_ADD = {
    "linear": {torch.float32: 0.1, torch.float64: 1.0, torch.bfloat16: 0.12, torch.float16: 0.12},
    "conv": {torch.float32: 0.4, torch.float64: 1.0, torch.bfloat16: 0.12, torch.float16: 0.12},
}
_WARM_TABLE_BYTES = 8 << 20
_COLD_ADD = 2.0
_CONV_FACTOR = 1.5
_SCAN = 2.0
_LOOKUP = {"linear": 10.0, "conv": 6.0}
_COPY = 1.5
_FIXED = {"linear": 250_000.0, "conv": 1_300_000.0}
_DENSE_FIXED = 30_000.0
_COUNT_SAMPLE = 1 << 11
#: With the compiled kernels non-zeros are counted exactly up to this many entries
#: (a contiguous loop: ~3 us for 25,600).
_COUNT_EXACT_COMPILED = 1 << 16
#: ``auto`` takes the sparse path only when its estimate is below this fraction of
#: the dense one: the model is rough (the sparse path's scattered reads cost more
#: when the caches are cold, as inside a learner step), and counting non-zeros
#: (~15-35 us) is not worth it for a saving the model cannot resolve.
_MARGIN = 0.8
_PERMUTED_SCAN = 1 << 18
#: Largest Linear factor (bytes) that :func:`_sparse_linear` scans column by column.
#: Past the caches a strided scan costs several times a contiguous one: [6400, 400]
#: float32 (10 MB) at 1-10 % took 9.5-13.5 ms by columns against 4.6-10.6 ms flat
#: plus a sort of the non-zeros, [6400, 784] 31-35 ms against 7.5-18 ms, while
#: [3200, 400] (5 MB) stayed 1.2-2x faster by columns (2 threads, this host).
_COLUMN_SCAN_BYTES = 6 << 20
#: Cost model of the compiled kernel (:func:`~plastorch.functional.compiled.sparse_rows_`,
#: Linear, the factor on the output side sparse), nanoseconds per thread: a strided
#: scan of the sparse factor, a write of the output, one multiply-add per added
#: element, and the call (measured on this host, docs/performance.md "Eighth round").
_COMPILED_SCAN = 3.6
_COMPILED_WRITE = 0.1
_COMPILED_ADD = {torch.float32: 0.1, torch.float64: 0.2}
_COMPILED_FIXED = 25_000.0
#: Largest sparse factor (entries) the compiled kernel scans column by column; past
#: the caches the torch path's contiguous scan wins (measured: [6400, 400] float32
#: at 2 % took 14 ms in the kernel against about 10 ms for the torch path).
_COMPILED_SCAN_NUMEL = 1 << 19


def _compiled_linear(dtype: torch.dtype, sparse_numel: int, per: int, enabled: bool) -> bool:
    """Whether a Linear correlation summed from its output-side factor runs compiled
    (``enabled``: :func:`~plastorch.functional.compiled.available`)."""
    return (
        enabled and per == 1 and dtype in compiled.DTYPES and sparse_numel <= _COMPILED_SCAN_NUMEL
    )


_AS_INT = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LEADING_DIMS = (nn.Linear, *_CONV, *_CONV_T)  # layers correlate takes [*, ...] samples of


@contextmanager
def sparse_mode(mode: str) -> Iterator[None]:
    """Choose how :func:`correlate` and :func:`correlate_per_sample` pick their path.

    Parameters
    ----------
    mode : {"auto", "sparse", "dense"}
        ``"auto"`` (the default outside any ``with``): on CPU, the sparse path when
        :func:`estimate_costs` says it is faster, else dense; dense on other
        devices. ``"sparse"``: always the sparse path (for Linear and
        convolutions; other layers are always dense). ``"dense"``: never.

    Examples
    --------
    >>> fc = nn.Linear(3, 2, bias=False)
    >>> pre, post = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.0, 1.0]])
    >>> with sparse_mode("sparse"):
    ...     correlate(fc, pre, post)
    tensor([[0., 0., 0.],
            [1., 0., 2.]])
    >>> get_sparse_mode()
    'auto'
    """
    token = _MODE.set(check_choice("mode", mode, SPARSE_MODES))
    try:
        yield
    finally:
        _MODE.reset(token)


def get_sparse_mode() -> str:
    """The mode set by the innermost :func:`sparse_mode` (``"auto"`` by default)."""
    return _MODE.get()


def correlate(layer: nn.Module, pre: Tensor, post: Tensor, *, sparse: bool | None = None) -> Tensor:
    r"""Correlate ``pre`` (shaped like the layer's input) with ``post`` (like its output).

    Returns :math:`\sum_n \partial \langle \text{post}_n, f(\text{pre}_n; W)\rangle / \partial W`,
    a tensor shaped like ``layer.weight``, summed over every sample (batch and,
    when time is folded into the batch, time).

    Parameters
    ----------
    layer : nn.Module
        ``nn.Linear``, ``nn.Conv{1,2,3}d`` (any stride, padding, padding mode,
        dilation, groups), ``nn.ConvTranspose{1,2,3}d``, or any module with a
        ``weight`` whose output is linear in it (handled by ``torch.func.vjp``).
    pre : Tensor
        Presynaptic factor, e.g. spike traces, shaped as the layer's input. For
        Linear and convolutions any number of leading sample dimensions is
        allowed (``[T, B, ...]`` included); other modules get ``pre`` as it is.
    post : Tensor
        Postsynaptic factor, shaped as the layer's output for ``pre``.
    sparse : bool, optional
        ``True``: sum over the non-zeros of the sparser factor (Linear and
        convolutions; see the module docstring); ``False``: dense GEMM /
        convolution weight gradient; ``None`` (default): as :func:`sparse_mode` says.

    Returns
    -------
    Tensor
        Shaped like ``layer.weight`` (contiguous).

    Examples
    --------
    >>> fc = nn.Linear(3, 2, bias=False)
    >>> pre = torch.tensor([[1.0, 0.0, 2.0]])
    >>> post = torch.tensor([[0.0, 1.0]])
    >>> correlate(fc, pre, post)
    tensor([[0., 0., 0.],
            [1., 0., 2.]])
    >>> torch.equal(correlate(fc, pre, post, sparse=True), correlate(fc, pre, post, sparse=False))
    True
    """
    weight = _weight_of(layer)
    if isinstance(layer, nn.Linear):
        pre, post, side = _linear_operands(layer, pre, post, sparse)
        if side is None:
            return post.t() @ pre
        if _runs_compiled(post, pre, side):
            dtype = torch.promote_types(post.dtype, pre.dtype)
            out = post.new_empty((post.shape[1], pre.shape[1]), dtype=dtype)
            _compiled_rows(out, post, pre, 1.0, 0.0)
            return out
        return _sparse_linear(post, pre, side)
    if isinstance(layer, _CONV + _CONV_T):
        pre, post, geometry, side = _conv_operands(layer, pre, post, sparse)
        if side is None:
            return _conv_weight_grad(
                layer, pre, post, groups=layer.groups, weight_shape=weight.shape
            )
        a, b = geometry.a_of(pre, post), geometry.b_of(pre, post)
        return _sparse_weight_grad(a, b, geometry, side, None)
    return _vjp_correlate(layer, pre, post)


def correlate_constant(layer: nn.Module, value: float, pre: Tensor, post: Tensor) -> Tensor:
    r""":math:`C(v\,\mathbf 1, \text{post})`: :func:`correlate` of a presynaptic factor
    that is ``value`` everywhere, shaped as ``pre`` (only its shape and dtype are read).

    Every sample then has the same presynaptic factor and a correlation is linear in
    the postsynaptic one, so ``post`` is summed over its samples first and correlated
    once: one sample's weight gradient instead of one per sample (a target trace, a
    homeostatic rate). For ``nn.Linear`` the result is each output's sum times
    ``value`` along the inputs, returned as a read-only broadcast (``expand``) of the
    weight's shape.

    Examples
    --------
    >>> fc = nn.Linear(3, 2, bias=False)
    >>> correlate_constant(fc, 0.5, torch.empty(4, 3), torch.ones(4, 2))
    tensor([[2., 2., 2.],
            [2., 2., 2.]])
    """
    weight = _weight_of(layer)
    dtype = torch.promote_types(pre.dtype, post.dtype)
    if isinstance(layer, nn.Linear):
        rows = post.reshape(-1, post.shape[-1]).sum(0, dtype=dtype).mul_(value)
        return rows.unsqueeze(-1).expand(weight.shape)
    if isinstance(layer, _CONV + _CONV_T):
        sample_dims = len(layer.kernel_size) + 1  # channels and positions
        lead_pre, lead_post = pre.dim() - sample_dims, post.dim() - sample_dims
    else:
        lead_pre = lead_post = 1
    summed = post.sum(tuple(range(lead_post)), dtype=dtype) if lead_post else post.to(dtype)
    ones = torch.full((1, *pre.shape[lead_pre:]), value, dtype=dtype, device=post.device)
    return correlate(layer, ones, summed.unsqueeze(0), sparse=False)


def fold_steps(layer: nn.Module, factor: Tensor) -> Tensor:
    """A ``[T, B, ...]`` factor as :func:`correlate` takes it for ``layer``.

    Linear layers and (transposed) convolutions take any leading sample
    dimensions, so the factor is returned as it is (a view op per factor and step
    saved); other modules get ``[T * B, ...]``.

    Examples
    --------
    >>> x = torch.ones(2, 3, 4)
    >>> fold_steps(nn.Linear(4, 1), x).shape, fold_steps(nn.Identity(), x).shape
    (torch.Size([2, 3, 4]), torch.Size([6, 4]))
    """
    if isinstance(layer, _LEADING_DIMS):
        return factor
    return factor.flatten(0, 1)


def correlate_sum(
    layer: nn.Module,
    items: Sequence[tuple[Tensor, Tensor, float]],
    *,
    sparse: bool | None = None,
    out: Tensor | None = None,
) -> Tensor | None:
    r""":math:`\sum_k c_k\, C(\text{pre}_k, \text{post}_k)`, fused as far as the layer allows.

    ``items`` holds ``(pre, post, c)`` with the factors as :func:`correlate` takes
    them and real (signed) rates ``c``. For ``nn.Linear`` every term on the dense
    path is one GEMM accumulating into the same output (``addmm_``, with the
    rates as its ``alpha`` and ``beta``: no scaled copy of a factor and no
    weight-sized temporary per term). Terms the sparse path makes cheaper (chosen
    per term as in :func:`correlate`), and the terms of other layers, are
    correlated one by one and added in place. ``None`` when ``items`` is empty.

    With ``out`` (a contiguous tensor of the weight's shape and the result's dtype) the
    sum is added into it in place and ``out`` is returned: a carried state (an
    eligibility trace) takes a window's correlations without a weight-sized result of
    its own.

    Examples
    --------
    >>> fc = nn.Linear(2, 1, bias=False)
    >>> a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0]])
    >>> correlate_sum(fc, [(a, b, 0.5), (a, b, -2.0)])  # (0.5 - 2) * [[3, 6]]
    tensor([[-4.5000, -9.0000]])
    >>> correlate_sum(fc, [(a, b, 1.0)], out=torch.ones(1, 2))
    tensor([[4., 7.]])
    """
    weight = _weight_of(layer)
    if out is not None:
        _check_out(out, weight, items)
    if isinstance(layer, nn.Linear):
        return _linear_sum(layer, items, sparse, out)
    total: Tensor | None = out
    for pre, post, rate in items:
        pre, post, rate = fold_rate(pre, post, rate, weight.numel())
        value = correlate(layer, pre, post, sparse=sparse)
        if total is None:
            total = value if rate == 1.0 else value.mul_(rate)
        else:
            total.add_(value, alpha=rate)
    return total


def _check_out(out: Tensor, weight: Tensor, items) -> None:
    """Raise a ValueError naming ``out`` unless it is a contiguous tensor shaped like
    ``weight`` in the dtype (and on the device) of the correlations of ``items``."""
    dtype = weight.dtype
    for pre, post, _ in items:
        dtype = torch.promote_types(dtype, torch.promote_types(pre.dtype, post.dtype))
    if (
        out.shape != weight.shape
        or out.dtype != dtype
        or out.device != weight.device
        or not out.is_contiguous()
    ):
        raise ValueError(
            f"out must be a contiguous {dtype} tensor of the weight's shape "
            f"{list(weight.shape)} on {weight.device}, got {out.dtype} {list(out.shape)} "
            f"on {out.device}{'' if out.is_contiguous() else ' (not contiguous)'}"
        )


def fold_rate(
    pre: Tensor, post: Tensor, rate: float, result_numel: int
) -> tuple[Tensor, Tensor, float]:
    """``(pre, post, leftover)`` with ``rate * C(pre, post) = leftover * C(pre', post')``.

    The rate's magnitude multiplies the smaller factor when that is smaller than the
    result (``result_numel`` entries), else the rate is left over for the result. Its
    sign is left over (the leftover is then ±1): a spike factor times a negative
    number has ``-0.0`` where it has no spike, which the sparse path's scan (the bits
    read as integers) would walk as entries.

    Examples
    --------
    >>> pre, post, left = fold_rate(torch.ones(2, 3), torch.ones(2, 1), -0.5, 3)
    >>> post.flatten().tolist(), left
    ([0.5, 0.5], -1.0)
    """
    if rate != 1.0 and min(pre.numel(), post.numel()) < result_numel:
        sign = -1.0 if rate < 0 else 1.0
        if rate == sign:  # -1: nothing to fold
            return pre, post, rate
        if pre.numel() <= post.numel():
            return pre * (sign * rate), post, sign
        return pre, post * (sign * rate), sign
    return pre, post, rate


def _linear_sum(
    layer: nn.Linear,
    items: Sequence[tuple[Tensor, Tensor, float]],
    sparse: bool | None,
    out: Tensor | None = None,
) -> Tensor | None:
    """:func:`correlate_sum` of a Linear: the GEMMs accumulate into one output.

    The torch sparse path's terms come first: the first result becomes the
    accumulator the GEMMs add into (``addmm_``), so such a term costs no extra
    weight-sized addition. Compiled terms (:func:`_runs_compiled`) run last and add
    into the accumulator in place, touching only the rows that have a non-zero (only
    when no other term wrote the accumulator does the first one write it whole). A
    GEMM followed by a compiled term applies its rate itself (``beta=0``, the rate as
    ``alpha``), so the compiled term need not rescale the whole result. An STDP
    step (784->400; LTD a GEMM, LTP compiled) took 0.87x the time it took with the
    compiled term first at batch 16 and 0.93-0.97x at batch 64 (``bench.before_after``).
    """
    rows = _one_sample_rows(layer, items, sparse, out)
    if rows is not None:
        total = _new_output(rows[0][0], rows[0][1]) if out is None else out
        if compiled._sparse_rows_sum_unchecked(total, rows, 0.0 if out is None else 1.0):
            return total
    prepared = []
    for pre, post, rate in items:
        pre, post, side = _linear_operands(layer, pre, post, sparse)
        kind = _DENSE if side is None else _COMPILED if _runs_compiled(post, pre, side) else _TORCH
        prepared.append((kind, pre, post, side, rate))
    prepared.sort(key=lambda item: item[0])  # stable
    compiled_last = prepared[-1][0] == _COMPILED if prepared else False
    total: Tensor | None = out  # (given: every term adds into it)
    pending = 1.0  # rate still to apply to the accumulator ``total``
    for kind, pre, post, side, rate in prepared:
        if kind == _DENSE:
            if total is None and compiled_last:
                # beta=0: the fresh output is written, never read
                total = _new_output(post, pre).addmm_(post.t(), pre, beta=0, alpha=rate)
            elif total is None:  # (K = 1: 17 us against addmm_'s 21 us for 784->400)
                total, pending = post.t() @ pre, rate
            else:
                total.addmm_(post.t(), pre, beta=pending, alpha=rate)
                pending = 1.0
        elif kind == _COMPILED:
            if total is None:
                total, pending = _new_output(post, pre), 0.0
            _compiled_rows(total, post, pre, rate, pending)
            pending = 1.0
        else:
            value = _sparse_linear(post, pre, side)
            if total is None:
                total, pending = value, rate
                continue
            if pending != 1.0:
                total.mul_(pending)
                pending = 1.0
            total.add_(value, alpha=rate)
    if total is not None and pending != 1.0:
        total.mul_(pending)
    return total


_TORCH, _DENSE, _COMPILED = 0, 1, 2  # the order in which _linear_sum runs its terms


def _one_sample_rows(
    layer: nn.Module, items, sparse: bool | None, out: Tensor | None
) -> list[tuple[Tensor, Tensor, float]] | None:
    """``items`` of a Linear as :func:`~plastorch.functional.compiled.sparse_rows_sum_`
    terms ``(post [1, out], pre [1, in], c)``, where every term is one sample's step
    (rank one) and the compiled kernel can take them; else ``None``.

    A sum of rank-one terms is then one pass writing each output row once (the
    terms' rows added while it is in cache, skipping the zeros of each post factor),
    where a GEMM per term reads and writes the whole output per term: an STDP step of
    784->400 at batch 1 (a ``[400, 784]`` output) went from 538 to 277 us in the
    benchmark suite, and ``bench.before_after`` gave 1.14-2.15x. Not taken where the path is
    forced dense (``sparse=False``, :func:`sparse_mode` ``"dense"``, or ``"auto"``
    off the CPU, as :func:`_choose_path`).
    """
    if (
        not isinstance(layer, nn.Linear)
        or not items
        or items[0][1].numel() != layer.out_features  # (the common reason, first)
        or sparse is False
        or not compiled.available()
        or (sparse is None and _MODE.get() == "dense")
    ):
        return None
    n_in, n_out = layer.in_features, layer.out_features
    dtype = out.dtype if out is not None else layer.weight.dtype
    if dtype not in compiled.DTYPES:
        return None
    rows = []
    for pre, post, rate in items:
        if pre.shape[-1:] != (n_in,) or post.shape[-1:] != (n_out,):
            return None
        if pre.numel() != n_in or post.numel() != n_out:
            return None
        for factor in (pre, post):
            if factor.dtype != dtype or not factor.is_cpu or factor.requires_grad:
                return None
        rows.append((post.reshape(1, n_out).contiguous(), pre.reshape(1, n_in).contiguous(), rate))
    return rows


def _new_output(post: Tensor, pre: Tensor) -> Tensor:
    """An uninitialised ``[M, C]`` result of ``post^T pre`` (``[N, M]``, ``[N, C]``)."""
    dtype = torch.promote_types(post.dtype, pre.dtype)
    return post.new_empty((post.shape[1], pre.shape[1]), dtype=dtype)


def uses_sparse_path(
    layer: nn.Module, pre: Tensor, post: Tensor, *, sparse: bool | None = None
) -> bool:
    """Whether :func:`correlate` with these arguments takes the sparse path.

    Lets a caller that combines several correlations (e.g. stacking the terms
    of a rule into one GEMM) keep the ones the sparse path makes cheaper apart.

    Examples
    --------
    >>> fc = nn.Linear(3, 2, bias=False)
    >>> pre, post = torch.ones(4, 3), torch.ones(4, 2)
    >>> uses_sparse_path(fc, pre, post), uses_sparse_path(fc, pre, post, sparse=True)
    (False, True)
    """
    _weight_of(layer)
    if isinstance(layer, nn.Linear):
        return _linear_operands(layer, pre, post, sparse)[2] is not None
    if isinstance(layer, _CONV + _CONV_T):
        return _conv_operands(layer, pre, post, sparse)[3] is not None
    return False


def _linear_operands(
    layer: nn.Linear, pre: Tensor, post: Tensor, sparse: bool | None, per: int = 1
) -> tuple[Tensor, Tensor, str | None]:
    """``pre [N, in]``, ``post [N, out]`` and the path (:func:`_choose_path`) of a Linear.

    ``per`` is the number of per-sample results (1 when summed over the samples).
    """
    _check_linear(layer, pre, post)
    n_in, n_out = layer.in_features, layer.out_features
    pre = pre if pre.dim() == 2 else pre.reshape(-1, n_in)
    post = post if post.dim() == 2 else post.reshape(-1, n_out)
    return pre, post, _choose_path(sparse, post, pre, (n_out, n_in), 1, per)


def _conv_operands(
    layer: nn.Module, pre: Tensor, post: Tensor, sparse: bool | None, per: int = 1
) -> tuple[Tensor, Tensor, _Geometry, str | None]:
    """Samples, geometry and the path (:func:`_choose_path`) of a (transposed) convolution."""
    weight_shape = layer.weight.shape
    # the checks of the shapes and the geometry depend on the key only: done once per key
    key = (_conv_key(layer, weight_shape, layer.groups), pre.shape, post.shape)
    known = _cached(_GEOMETRIES, key)
    if known is None:
        pre, post = _conv_samples(layer, pre, post)
        geometry = _Geometry.conv(layer, weight_shape, layer.groups, pre, post)
        _remember(_GEOMETRIES, key, (geometry, _explicit_padding(layer)))
    else:  # the shapes passed the checks before: flatten the samples, pad
        geometry, padding = known
        rank = len(weight_shape)
        if pre.dim() != rank:
            pre = pre.reshape(-1, *pre.shape[1 - rank :])
            post = post.reshape(-1, *post.shape[1 - rank :])
        if padding is not None:
            pre = F.pad(pre, padding[0], mode=padding[1])
    a, b = geometry.a_of(pre, post), geometry.b_of(pre, post)
    side = _choose_path(sparse, a, b, weight_shape, geometry.kernel_size, per)
    return pre, post, geometry, side


def _conv_key(layer: nn.Module, weight_shape, groups: int) -> tuple:
    """The layer's type and hyperparameters, as the caches of this module key them."""
    return (
        type(layer),
        weight_shape,
        layer.stride,
        layer.padding,
        layer.dilation,
        groups,
        getattr(layer, "padding_mode", "zeros"),
        getattr(layer, "output_padding", None),
    )


def _cached(cache: dict, key: tuple):
    """``cache[key]``, or ``None`` when it is missing or the key cannot be hashed (a
    layer whose hyperparameters are lists, not tuples: it is simply not cached)."""
    try:
        return cache.get(key)
    except TypeError:
        return None


def _remember(cache: dict, key: tuple, value) -> None:
    """Keep ``value`` under ``key`` (none of it if the key cannot be hashed); at most
    :data:`_GEOMETRIES_SIZE` entries, the oldest dropped all at once."""
    if len(cache) >= _GEOMETRIES_SIZE:
        cache.clear()
    try:
        cache[key] = value
    except TypeError:
        pass


#: (layer type, hyperparameters, factor shapes) -> the checked :class:`_Geometry` and
#: the layer's explicit padding (:func:`_explicit_padding`)
_GEOMETRIES: dict[tuple, tuple[_Geometry, tuple | None]] = {}
_GEOMETRIES_SIZE = 512


def correlate_per_sample(
    layer: nn.Module,
    pre: Tensor,
    post: Tensor,
    *,
    sparse: bool | None = None,
    accumulate: Tensor | None = None,
    beta: float = 1.0,
    weights: Tensor | None = None,
) -> Tensor:
    r"""Like :func:`correlate` but keeps the batch: ``[T, B, ...]`` in, ``[B, *W.shape]`` out.

    Sums over time only. This materialises one weight-shaped tensor per sample,
    so use it only where the math needs per-sample terms (a non-linear batch
    reduction, or a per-sample eligibility carried across windows).

    With ``accumulate`` the result is added in place, ``accumulate <- beta *
    accumulate + C``, and ``accumulate`` is returned. For ``nn.Linear`` no
    ``[B, *W]`` temporary is made then (a batched GEMM into it; on the sparse
    path one sparse CSR ``addmm`` into it, or row sums a few samples at a time
    where that is not available): a fresh tensor of that size costs its page
    faults, which on CPU can take longer than the arithmetic.

    Parameters
    ----------
    pre, post : Tensor
        ``[T, B, *in]`` and ``[T, B, *out]`` (a single step is ``T = 1``).
    sparse : bool, optional
        As in :func:`correlate`.
    accumulate : Tensor, optional
        A contiguous ``[B, *W.shape]`` tensor of the result's dtype to add into.
    beta : float
        Factor of ``accumulate`` before the addition (only with ``accumulate``).
    weights : Tensor, optional
        ``[T, B]`` or ``[T, 1]``: the product of step ``t`` and sample ``b`` counts
        ``weights[t, b]`` times (the same values as ``post`` multiplied by them). On
        the sparse path of a Linear the weights scale the looked-up non-zeros, so
        ``post`` itself is walked (its scan can be shared, :func:`correlation_scope`)
        and no weighted copy of it is made.

    Examples
    --------
    >>> fc = nn.Linear(2, 1, bias=False)
    >>> pre = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # T=1, B=2
    >>> post = torch.tensor([[[1.0], [3.0]]])
    >>> correlate_per_sample(fc, pre, post)
    tensor([[[1., 0.]],
    <BLANKLINE>
            [[0., 3.]]])
    """
    weight = _weight_of(layer)
    if pre.dim() < 2 or post.dim() < 2 or pre.shape[:2] != post.shape[:2]:
        raise ValueError(
            "correlate_per_sample expects pre [T, B, ...] and post [T, B, ...] with equal T and B, "
            f"got pre {tuple(pre.shape)} and post {tuple(post.shape)}"
        )
    steps, batch = pre.shape[:2]
    if accumulate is not None:
        _check_accumulate(accumulate, (batch, *weight.shape), pre, post)
    if weights is not None:
        if weights.dim() != 2 or weights.shape[0] != steps or weights.shape[1] not in (1, batch):
            raise ValueError(
                f"weights must be [T, B]={[steps, batch]} or [T, 1]={[steps, 1]}, got "
                f"{list(weights.shape)}"
            )
        dtype = torch.promote_types(pre.dtype, post.dtype)
        weights = weights.to(dtype)
    if isinstance(layer, nn.Linear):
        pre_f, post_f, side = _linear_operands(layer, pre, post, sparse, batch)
        if side is not None:
            geometry = _Geometry.linear(weight.shape)
            rows = None if weights is None else weights.expand(steps, batch).reshape(-1)
            return _sparse_weight_grad(
                post_f, pre_f, geometry, side, batch, accumulate, beta, row_weights=rows
            )
    if weights is not None:  # the dense paths weight the post factor
        post = post * weights.reshape(steps, -1, *([1] * (post.dim() - 2)))
    if isinstance(layer, nn.Linear):
        post_t = post.reshape(steps, batch, -1).permute(1, 2, 0)  # [B, out, T]
        pre_t = pre.reshape(steps, batch, -1).transpose(0, 1)  # [B, T, in]
        if accumulate is not None:
            return accumulate.baddbmm_(post_t, pre_t, beta=beta)
        return torch.bmm(post_t, pre_t)
    value = _per_sample_any(layer, pre, post, sparse, weight, steps, batch)
    if accumulate is None:
        return value
    return accumulate.mul_(beta).add_(value) if beta != 1.0 else accumulate.add_(value)


def advance_per_sample_(
    layer: nn.Module,
    accumulate: Tensor,
    beta: float,
    parts: Sequence[tuple[Tensor, Tensor, Tensor | None]],
    *,
    read_gain: Tensor | None = None,
    read_pairs: Tensor | None = None,
) -> Tensor | None:
    r"""``accumulate <- beta * accumulate + sum of per-sample correlations``, in place.

    Each part ``(pre, post, weights)`` adds ``correlate_per_sample(layer, pre, post,
    weights=weights)`` (``[B, *W]``). With ``read_gain`` (``[B]``) the sum
    :math:`\sum_b g_b\, \text{accumulate}_b` *before* the update is returned
    (``[*W]``); with ``read_pairs`` (a factor shaped like the first part's ``pre``)
    ``correlate(layer, read_pairs, post)`` of the first part's ``post``, summed over
    the batch, is added to what is returned; without either, ``None``. A subnormal
    ``beta * accumulate`` is flushed to zero on CPU (:mod:`plastorch.functional.numerics`).
    This is how a per-sample eligibility carried across windows advances
    (:class:`~plastorch.rules.MSTDPET`): read out, decayed, and given the window's
    pairs, with the window's own change over the same post spikes.

    For a Linear on CPU with the compiled kernels, a first part on the sparse path
    over ``post`` and at most one more part of one step (a rank-one term per sample)
    it is one pass over ``accumulate``
    (:func:`~plastorch.functional.compiled.advance_`); otherwise a matrix-vector
    product and :func:`correlate_per_sample` per part, the same sums up to the order
    of the additions.

    Examples
    --------
    >>> fc = nn.Linear(2, 1, bias=False)
    >>> z = torch.ones(2, 1, 2)  # B=2
    >>> pre = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # T=1
    >>> post = torch.tensor([[[1.0], [0.0]]])
    >>> advance_per_sample_(fc, z, 0.5, [(pre, post, None)], read_gain=torch.tensor([1.0, 2.0]))
    tensor([[3., 3.]])
    >>> z
    tensor([[[1.5000, 0.5000]],
    <BLANKLINE>
            [[0.5000, 0.5000]]])
    """
    weight = _weight_of(layer)
    if not parts:
        raise ValueError("advance_per_sample_ needs at least one (pre, post, weights) part")
    batch = accumulate.shape[0]
    if read_gain is not None and tuple(read_gain.shape) != (batch,):
        raise ValueError(f"read_gain must be [B]={[batch]}, got {list(read_gain.shape)}")
    if read_pairs is not None and read_pairs.shape != parts[0][0].shape:
        raise ValueError(
            f"read_pairs must be shaped like the first part's pre {list(parts[0][0].shape)}, "
            f"got {list(read_pairs.shape)}"
        )
    for pre, post, _ in parts:
        if pre.dim() < 2 or pre.shape[:2] != post.shape[:2] or pre.shape[1] != batch:
            raise ValueError(
                f"each part must be pre [T, B, ...] and post [T, B, ...] with B = {batch}, "
                f"got pre {tuple(pre.shape)} and post {tuple(post.shape)}"
            )
        _check_accumulate(accumulate, (batch, *weight.shape), pre, post)
    done, read = _advance_compiled(layer, accumulate, beta, parts, read_gain, read_pairs)
    if done:
        return read
    if read_gain is not None:
        flat = accumulate.reshape(batch, -1)
        read = (read_gain.to(accumulate.dtype) @ flat).reshape(weight.shape)
    if read_pairs is not None:
        post = parts[0][1]
        pairs = correlate(layer, fold_steps(layer, read_pairs), fold_steps(layer, post))
        read = pairs if read is None else read.add_(pairs)
    if beta not in (0.0, 1.0) and flushes(accumulate):
        # decayed first, so that its subnormal entries can be flushed, as compiled
        flush_subnormal_(accumulate.mul_(beta))
        beta = 1.0
    for pre, post, weights in parts:
        correlate_per_sample(layer, pre, post, accumulate=accumulate, beta=beta, weights=weights)
        beta = 1.0
    return read


def advance_sum_(
    layer: nn.Module,
    accumulate: Tensor,
    beta: float,
    items: Sequence[tuple[Tensor, Tensor, float]],
    *,
    gain: float | None = None,
    read: Tensor | None = None,
) -> Tensor | None:
    r"""``accumulate <- beta * accumulate + sum_k c_k C(pre_k, post_k)``, in place.

    The summed counterpart of :func:`advance_per_sample_`: ``accumulate`` is a
    contiguous tensor of the weight's shape (a carried eligibility), ``items`` are
    :func:`correlate_sum`'s. A subnormal ``beta * accumulate`` is flushed to zero on
    CPU (:mod:`plastorch.functional.numerics`); with ``beta == 0`` ``accumulate`` is
    not read. With ``gain`` the advanced sum times ``gain`` is returned, as a new
    tensor or added into ``read``; without it, ``None``. This is one step of
    :class:`~plastorch.rules.MSTDPET`'s summed eligibility, :math:`z \leftarrow d z +
    \xi / \tau_z` and its change :math:`M \eta z`.

    For a Linear on CPU with the compiled kernels, where every term is one sample's
    step (rank one, as at batch 1), it is one pass that writes each row of
    ``accumulate`` and of the result once
    (:func:`~plastorch.functional.compiled.sparse_rows_sum_`); otherwise a decay
    pass, :func:`correlate_sum` into ``accumulate`` and one pass for the read-out,
    the same sums up to the order of the additions.

    Examples
    --------
    >>> fc = nn.Linear(2, 1, bias=False)
    >>> z = torch.ones(1, 2)
    >>> pre, post = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0]])
    >>> advance_sum_(fc, z, 0.5, [(pre, post, 1.0)], gain=3.0)
    tensor([[7.5000, 1.5000]])
    >>> z
    tensor([[2.5000, 0.5000]])
    """
    weight = _weight_of(layer)
    _check_out(accumulate, weight, items)
    if read is not None and gain is None:
        raise ValueError("advance_sum_: read takes the read-out, which needs a gain")
    if read is not None and (read.shape != accumulate.shape or read.dtype != accumulate.dtype):
        raise ValueError(
            f"read must be shaped and typed like accumulate ({list(accumulate.shape)}, "
            f"{accumulate.dtype}), got {list(read.shape)} of {read.dtype}"
        )
    rows = _one_sample_rows(layer, items, None, accumulate)
    if rows is not None and not accumulate.requires_grad and (read is None or read.is_contiguous()):
        fresh = read is None
        out = None
        if gain is not None:
            out = torch.empty_like(accumulate) if fresh else read
        if compiled._sparse_rows_sum_unchecked(
            accumulate, rows, beta, flushes(accumulate), out, 0.0 if gain is None else gain, fresh
        ):
            return out
    if beta == 0.0:
        accumulate.zero_()
    elif beta != 1.0:
        flush_subnormal_(accumulate.mul_(beta))
    if items:
        correlate_sum(layer, items, out=accumulate)
    if gain is None:
        return None
    return torch.mul(accumulate, gain) if read is None else read.add_(accumulate, alpha=gain)


def _advance_compiled(
    layer, accumulate, beta, parts, read_gain, read_pairs
) -> tuple[bool, Tensor | None]:
    """:func:`advance_per_sample_` as one compiled pass, where it applies:
    ``(True, read)``, else ``(False, None)`` (nothing written)."""
    dtype = accumulate.dtype
    if not (
        compiled.available()
        and isinstance(layer, nn.Linear)
        and accumulate.is_cpu
        and dtype in compiled.DTYPES
        and accumulate.is_contiguous()
        and not accumulate.requires_grad
        and len(parts) <= 2
    ):
        return False, None
    pre, post, weights = parts[0]
    steps, batch = pre.shape[:2]
    n_out, n_in = layer.out_features, layer.in_features
    if len(parts) == 2:  # one step more, a rank-one term per sample
        pre_1, post_1, weights_1 = parts[1]
        if pre_1.shape[0] != 1 or weights_1 is not None:
            return False, None
        source = pre_1.detach().reshape(batch, n_in).to(dtype).contiguous()
        scale = post_1.detach().reshape(batch, n_out).to(dtype).contiguous()
    else:
        source = scale = None
    pre_f, post_f, side = _linear_operands(layer, pre.detach(), post.detach(), None, batch)
    if side != "a":  # the kernel walks the post spikes
        return False, None
    table = pre_f.to(dtype).contiguous()
    _, lookups, _, values, bag_start = _entries_by_owner(post_f, n_out, 1, batch)
    values = values.to(dtype)
    ones = bool((values == 1).all())
    read_table = read_weights = None
    if read_pairs is not None:  # the post factor's own values weight its lookups
        read_table = read_pairs.detach().reshape(table.shape).to(dtype).contiguous()
        read_weights = None if ones else values.contiguous()
    if weights is not None:
        values = values * weights.detach().to(dtype).expand(steps, batch).reshape(-1)[lookups]
        ones = bool((values == 1).all())
    lookup_weights = None if ones else values.contiguous()
    read = gain = None
    if read_gain is not None:
        gain = read_gain.detach().to(dtype).contiguous()
    if read_gain is not None or read_pairs is not None:
        read = torch.empty((n_out, n_in), dtype=dtype, device=accumulate.device)
    done = compiled._advance_unchecked(
        accumulate.view(batch, n_out, n_in),
        beta,
        table,
        bag_start,
        lookups,
        lookup_weights,
        gain,
        read,
        scale,
        source,
        fresh=True,
        read_table=read_table,
        read_weights=read_weights,
    )
    return (True, read) if done else (False, None)


def _check_accumulate(accumulate: Tensor, shape: tuple[int, ...], pre: Tensor, post: Tensor):
    dtype = torch.promote_types(pre.dtype, post.dtype)
    if tuple(accumulate.shape) != shape or accumulate.dtype != dtype:
        raise ValueError(
            f"accumulate must be a {list(shape)} tensor of {dtype}, got "
            f"{list(accumulate.shape)} of {accumulate.dtype}"
        )
    if not accumulate.is_contiguous():
        raise ValueError("accumulate must be contiguous")


def _per_sample_any(layer, pre, post, sparse, weight, steps, batch) -> Tensor:
    """:func:`correlate_per_sample` of a convolution or any other layer (no accumulate)."""
    if isinstance(layer, _CONV + _CONV_T):
        pre_f, post_f, geometry, side = _conv_operands(
            layer, pre.flatten(0, 1), post.flatten(0, 1), sparse, batch
        )
        if side is not None:
            a, b = geometry.a_of(pre_f, post_f), geometry.b_of(pre_f, post_f)
            return _sparse_weight_grad(a, b, geometry, side, batch)
        # Each sample becomes its own group: channels [B * C] with groups B * g,
        # and time plays the role of the batch that the weight gradient sums over.
        pre_s = pre_f.reshape(steps, batch, *pre_f.shape[1:]).flatten(1, 2)
        post_s = post_f.reshape(steps, batch, *post_f.shape[1:]).flatten(1, 2)
        shape = (batch * weight.shape[0], *weight.shape[1:])
        grad = _conv_weight_grad(
            layer, pre_s, post_s, groups=batch * layer.groups, weight_shape=shape
        )
        return grad.reshape(batch, *weight.shape)
    return torch.func.vmap(lambda p, q: _vjp_correlate(layer, p, q), in_dims=1)(pre, post)


def estimate_costs(
    *,
    dtype: torch.dtype,
    conv: bool,
    dense_macs: int,
    sparse_numel: int,
    nnz: int,
    kernel_size: int,
    row_length: int,
    table_numel: int,
    permuted_numel: int,
    threads: int | None = None,
    compiled: bool = False,
    output_numel: int = 0,
    lookup_bytes: int = 0,
) -> tuple[float, float]:
    r"""Estimated nanoseconds of the dense and the sparse path of one correlation (CPU).

    .. math::

        t_\text{dense} &= c_\text{mac} \cdot \text{MACs} \quad (\times 1.5 \text{ for convolutions})
            + c_\text{dense fixed} \\
        t_\text{sparse} &= c_\text{scan} N_s + L\, (c_\text{lookup} + c_\text{add}\, \ell)
            + c_\text{copy} (N_\text{table} + N_\text{perm}) + c_\text{fixed}

    with :math:`N_s` the size of the sparse factor, :math:`L = \text{nnz} \cdot K` the
    looked-up rows of length :math:`\ell`, :math:`N_\text{table}` the entries of
    the other factor copied channels-last (convolutions) and :math:`N_\text{perm}`
    those of the result permuted into the weight's layout. The constants are the
    module's ``_DENSE_MAC``, ``_DENSE_FIXED``, ``_SPARSE_ADD``, ``_SCAN``, ``_LOOKUP``,
    ``_COPY`` and ``_FIXED``, measured on one x86 core; only their ratios matter for the choice.
    The GEMM and the row sums use all ``threads`` (default
    ``torch.get_num_threads()``); the scan, the index arithmetic and the fixed cost
    are counted as serial. For a Linear, ``lookup_bytes`` is the size of the factor
    whose rows are looked up: past ``_WARM_TABLE_BYTES`` its rows miss the caches and
    :math:`c_\text{add}` is ``_COLD_ADD`` times larger.

    With ``compiled`` (a Linear summed from its output-side factor by
    :func:`~plastorch.functional.compiled.sparse_rows_`) the sparse path is one
    parallel kernel instead:

    .. math::

        t_\text{sparse} = \bigl(c_\text{scan}' N_s + c_\text{write}' N_\text{out}
            + c_\text{add}'\, \text{nnz}\, \ell\bigr) / \text{threads} + c_\text{fixed}'

    (``_COMPILED_SCAN``, ``_COMPILED_WRITE``, ``_COMPILED_ADD``, ``_COMPILED_FIXED``;
    :math:`N_\text{out}` = ``output_numel``).

    Returns
    -------
    (dense, sparse) : tuple of float

    Examples
    --------
    >>> # LTP of STDP, Linear 784 -> 400, batch 64, 2 % post spikes (512 of 25600)
    >>> dense, sparse = estimate_costs(dtype=torch.float32, conv=False,
    ...     dense_macs=64 * 400 * 784, sparse_numel=64 * 400, nnz=512, kernel_size=1,
    ...     row_length=784, table_numel=0, permuted_numel=0, threads=1)
    >>> round(dense), round(sparse)  # one thread: 512 rows summed beat the GEMM
    (632112, 346461)
    """
    threads = max(1, torch.get_num_threads()) if threads is None else threads
    dense = (
        _DENSE_MAC.get(dtype, 0.1) * dense_macs * (_CONV_FACTOR if conv else 1.0) / threads
        + _DENSE_FIXED
    )
    if compiled:
        work = (
            _COMPILED_SCAN * sparse_numel
            + _COMPILED_WRITE * output_numel
            + _COMPILED_ADD.get(dtype, 0.2) * nnz * row_length
        )
        return dense, work / threads + _COMPILED_FIXED
    kind = "conv" if conv else "linear"
    lookups = nnz * kernel_size
    add = _SPARSE_ADD[kind].get(dtype, 1.0) / threads
    if not conv and lookup_bytes > _WARM_TABLE_BYTES:
        add *= _COLD_ADD
    sparse = (
        _SCAN * sparse_numel
        + lookups * (_LOOKUP[kind] + add * row_length)
        + _COPY * (table_numel + permuted_numel)
        + _FIXED[kind]
    )
    return dense, sparse


def _count_nonzero(x: Tensor) -> int:
    """Non-zeros of ``x``: exact up to 2048 entries (``_COUNT_EXACT_COMPILED`` with the
    compiled kernels), else estimated from a strided sample."""
    numel = x.numel()
    # compiled: one loop over the contiguous factor, no slicing (~3 us, not ~20)
    kernel = compiled.available() and x.is_cpu and x.dtype in compiled.DTYPES
    kernel = kernel and x.is_contiguous()
    if kernel and numel <= _COUNT_EXACT_COMPILED:
        return compiled._count_unchecked(x)
    if numel <= _COUNT_SAMPLE:
        return int(torch.count_nonzero(x))
    # an odd prime stride does not lock onto rows or channels
    # (stride 1, the exact count, when even stride 3 would leave less than half a sample)
    stride = next((p for p in (1009, 211, 97, 31, 7, 3) if numel // p >= _COUNT_SAMPLE // 2), 1)
    if kernel:
        return round(compiled._count_unchecked(x, stride) * numel / -(-numel // stride))
    sample = x.reshape(-1)[::stride]
    return round(int(torch.count_nonzero(sample)) * numel / sample.numel())


def _choose_path(
    sparse: bool | None,
    a: Tensor,
    b: Tensor,
    weight_shape: torch.Size,
    kernel_size: int,
    per: int = 1,
) -> str | None:
    """``"a"`` or ``"b"`` (the side whose non-zeros the sparse path walks) or ``None`` (dense)."""
    if sparse is None:
        mode = _MODE.get()
        if mode == "dense" or (mode == "auto" and not a.is_cpu):
            return None
        sparse = True if mode == "sparse" else None
    elif not isinstance(sparse, bool):
        raise TypeError(f"sparse must be None, True or False, got {sparse!r}")
    if sparse is False or a.numel() == 0 or b.numel() == 0:
        return None
    groups = max(1, b.shape[1] // weight_shape[1]) if b.dim() > 1 else 1
    threads = max(1, torch.get_num_threads())
    candidates = _path_candidates(
        a.numel(),
        b.numel(),
        weight_shape,  # a torch.Size hashes and compares as the tuple
        kernel_size,
        per,
        groups,
        torch.promote_types(a.dtype, b.dtype),
        threads,
        sparse is None,
        compiled.available(),
    )
    best = None
    for side, costs in candidates:
        dense, cost = estimate_costs(
            nnz=_count_nonzero(a if side == "a" else b), threads=threads, **dict(costs)
        )
        if best is None or cost < best[1]:
            best = (side, cost, dense)
    if best is None:
        return None
    side, cost, dense = best
    if sparse is None and cost >= _MARGIN * dense:
        return None
    return side


@functools.lru_cache(maxsize=256)
def _path_candidates(
    a_numel: int,
    b_numel: int,
    weight_shape: tuple[int, ...],
    kernel_size: int,
    per: int,
    groups: int,
    dtype: torch.dtype,
    threads: int,
    auto: bool,
    kernels: bool,
) -> tuple[tuple[str, tuple[tuple[str, object], ...]], ...]:
    """Sides worth counting the non-zeros of, with their cost-model arguments.

    Depends on shapes only, so it is cached: with ``auto``, a side whose sparse
    path would not pay even with no non-zero at all is dropped without counting
    (the common case for dense-looking factors; it saves ~30 us of Python per call).
    ``kernels``: the compiled kernels are available (:func:`_compiled_linear`).
    """
    conv = len(weight_shape) > 2
    weight_numel = math.prod(weight_shape) * per
    dense_macs = a_numel * math.prod(weight_shape[1:])  # N P M * Cg K
    out = []
    for side, numel, other, row_length in (
        ("a", a_numel, b_numel, weight_shape[1]),
        ("b", b_numel, a_numel, max(1, weight_shape[0] // groups)),
    ):
        costs = dict(
            dtype=dtype,
            conv=conv,
            dense_macs=dense_macs,
            sparse_numel=numel,
            kernel_size=kernel_size,
            row_length=row_length,
            table_numel=other if conv else 0,
            permuted_numel=weight_numel if (conv or side == "b") else 0,
            lookup_bytes=0 if conv else other * dtype.itemsize,
        )
        if side == "a" and not conv and _compiled_linear(dtype, numel, per, kernels):
            costs.update(compiled=True, output_numel=weight_numel)
        dense, floor = estimate_costs(nnz=0, threads=threads, **costs)
        if auto and floor >= _MARGIN * dense:
            continue  # not even an empty factor would pay: do not count
        out.append((side, tuple(costs.items())))
    return tuple(out)


class _Geometry:
    """Index geometry of ``C[m, c, k] = sum_{n,p} A[n, m, p] B[n, g(m) Cg + c, p s + k d - pad]``."""

    def __init__(
        self, weight_shape, groups, stride, padding, dilation, a_is_post, p_shape, q_shape
    ):
        self.weight_shape = tuple(weight_shape)
        self.groups = groups
        self.stride = tuple(stride)
        self.padding = tuple(padding)
        self.dilation = tuple(dilation)
        self.a_is_post = a_is_post
        self.p_shape = tuple(p_shape)  # spatial shape of A
        self.q_shape = tuple(q_shape)  # spatial shape of B
        self.kernel = self.weight_shape[2:]
        self.kernel_size = math.prod(self.kernel)

    @classmethod
    def linear(cls, weight_shape) -> _Geometry:
        return cls(weight_shape, 1, (), (), (), True, (), ())

    @classmethod
    def conv(cls, layer, weight_shape, groups, pre, post) -> _Geometry:
        spatial = len(weight_shape) - 2
        transposed = isinstance(layer, _CONV_T)
        explicit_pad = isinstance(layer.padding, str) or layer.padding_mode != "zeros"
        padding = (0,) * spatial if explicit_pad else tuple(layer.padding)
        a, b = (pre, post) if transposed else (post, pre)
        geometry = cls(
            weight_shape,
            groups,
            layer.stride,
            padding,
            layer.dilation,
            not transposed,
            a.shape[2:],
            b.shape[2:],
        )
        geometry.check(layer, pre, post, transposed)
        return geometry

    def check(self, layer, pre, post, transposed) -> None:
        """Raise like the dense path if ``post`` is not the layer's output shape for ``pre``."""
        a_shape, b_shape = (pre.shape, post.shape) if transposed else (post.shape, pre.shape)
        ok = a_shape[0] == b_shape[0] and b_shape[1] == self.weight_shape[1] * self.groups
        ok = ok and a_shape[1] == self.weight_shape[0]
        for p, q, k, s, d, pad, extra in zip(
            self.p_shape,
            self.q_shape,
            self.kernel,
            self.stride,
            self.dilation,
            self.padding,
            layer.output_padding if transposed else (0,) * len(self.kernel),
        ):
            if transposed:
                ok = ok and q == (p - 1) * s - 2 * pad + d * (k - 1) + extra + 1
            else:
                ok = ok and p == (q + 2 * pad - d * (k - 1) - 1) // s + 1 and p > 0
        if not ok:
            raise ValueError(
                f"post {tuple(post.shape)} is not the output shape of {layer} for pre "
                f"{tuple(pre.shape)}"
            )

    def a_of(self, pre: Tensor, post: Tensor) -> Tensor:
        return post if self.a_is_post else pre

    def b_of(self, pre: Tensor, post: Tensor) -> Tensor:
        return pre if self.a_is_post else post


def _unravel(flat: Tensor, shape: tuple[int, ...]) -> list[Tensor]:
    """Multi-index of flat positions into ``shape`` (row-major), one tensor per dimension."""
    out = []
    for size in reversed(shape):
        out.append(flat % size)
        flat = flat // size
    return out[::-1]


def _padded_table(
    dense_t: Tensor,
    position: Tensor,
    geo: _Geometry,
    side: str,
    groups: int,
    row_length: int,
    dtype: torch.dtype,
) -> tuple[Tensor, int, Tensor, Tensor]:
    r"""The factor that the sparse path looks rows up in, laid out so no lookup can miss.

    ``dense_t`` (``B`` for side ``"a"``, ``A`` for side ``"b"``) is copied
    channels-last into a zero table ``[samples, groups, *extent, row_length]``
    (flattened to rows) whose spatial coordinate ``u`` of a pairing is always
    inside it:

    * side ``"a"`` (walking ``A``): ``B[q]`` sits at ``u = q + pad``, and the
      non-zero at ``p`` with kernel offset ``k`` reads ``u = p s + k d``;
    * side ``"b"`` (walking ``B``): ``A[p]`` sits at ``u = p s + (K - 1) d`` (zeros
      in between for ``s > 1``), and the non-zero at ``q`` reads
      ``u = q + pad + (K - 1) d - k d``.

    Pairings that fall into padding, between strided positions or past the
    factor's end read zeros, so the row of a lookup is a sum with no bounds test:
    ``block * (sample * groups + group) + position_row[i] + kernel_row[k]``.

    Returns
    -------
    (table, block, position_row, kernel_row)
        The table as rows ``[rows, row_length]``, the rows per ``(sample, group)``,
        the non-zeros' part ``[nnz]`` and the kernel offsets' part ``[K]`` (long).
    """
    spatial = len(geo.kernel)
    own_shape = geo.p_shape if side == "a" else geo.q_shape
    own_idx = _unravel(position, own_shape)
    offsets = torch.stack(
        torch.meshgrid(
            *[torch.arange(k, device=position.device) for k in geo.kernel], indexing="ij"
        )
    ).reshape(spatial, -1)  # [spatial, K]
    extent, spike_u, kernel_u, places, counts = [], [], [], [], []
    for j in range(spatial):
        s, d, pad, k = geo.stride[j], geo.dilation[j], geo.padding[j], geo.kernel[j]
        p_len, q_len = geo.p_shape[j], geo.q_shape[j]
        if side == "a":
            ext = (p_len - 1) * s + (k - 1) * d + 1
            count = max(0, min(q_len, ext - pad))
            places.append(slice(pad, pad + count))
            spike_u.append(own_idx[j] * s)
            kernel_u.append(offsets[j] * d)
        else:
            low = (k - 1) * d
            ext = q_len + pad + low
            count = max(0, min(p_len, -(-(ext - low) // s)))
            places.append(slice(low, low + max(0, count - 1) * s + 1, s))
            spike_u.append(own_idx[j] + (pad + low))
            kernel_u.append(-offsets[j] * d)
        extent.append(ext)
        counts.append(count)
    samples = dense_t.shape[0]
    table = dense_t.new_zeros((samples, groups, *extent, row_length), dtype=dtype)
    # dense_t [N, G * row, *shape] -> channels-last [N, G, *shape, row]
    source = dense_t.reshape(samples, groups, row_length, *dense_t.shape[2:])
    source = source.movedim(2, -1)
    crop = tuple(slice(0, count) for count in counts)
    table[(slice(None), slice(None), *places)] = source[(slice(None), slice(None), *crop)]
    # row-major strides of the spatial coordinates u_j inside one (sample, group) block
    position_row = kernel_row = 0
    for j in range(spatial):
        row_stride = math.prod(extent[j + 1 :])
        position_row = position_row + spike_u[j] * row_stride
        kernel_row = kernel_row + kernel_u[j] * row_stride
    return table.view(-1, row_length), math.prod(extent), position_row, kernel_row


class correlation_scope:  # noqa: N801 (used as a function: ``with correlation_scope():``)
    """A block of correlations that share work: scans, and a workspace for temporaries.

    * Sparse-path correlations that walk the same factor scan it once. "The same"
      is the same memory, dtype, shape and strides, unmodified in between (its
      version counter); the block holds the factors it has scanned, and their
      entries, until it ends (so that memory cannot be reused by another tensor).
    * With ``workspace`` (a :class:`~plastorch.functional.workspace.Workspace`),
      large temporaries of the dense path are written into its buffers instead of
      fresh tensors: the ``unfold`` columns of a small-patch convolution (2.5 MB for
      2->32 k5 on 16x28x28), whose page faults otherwise cost about what the
      product does, and make its speed depend on the allocator's state.
      Results never alias the workspace.

    A :class:`~plastorch.Learner` step enters one around its rule and the update,
    lending its own workspace: an MSTDP-ET window walks its post spikes for the
    in-window change and for each carried eligibility (~5 ms a scan of a
    ``[100, 64, 400]`` window here).

    Examples
    --------
    >>> fc = nn.Linear(3, 2, bias=False)
    >>> post, pre = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0, 3.0]])
    >>> with correlation_scope():
    ...     a = correlate(fc, pre, post, sparse=True)
    ...     b = correlate(fc, 2 * pre, post, sparse=True)  # post is not scanned again
    >>> torch.equal(2 * a, b)
    True
    """

    __slots__ = ("_scope", "_token")

    def __init__(self, workspace: Workspace | None = None) -> None:
        self._scope = _Scope({}, workspace)
        self._token = None

    def __enter__(self) -> None:
        self._token = _SCOPE.set(self._scope)

    def __exit__(self, *exc) -> None:
        _SCOPE.reset(self._token)
        self._scope.memo.clear()


class _Scope(NamedTuple):
    memo: dict
    workspace: Workspace | None


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "plastorch_correlation_scope", default=None
)


def _scratch(name: str, shape: tuple[int, ...], like: Tensor) -> Tensor | None:
    """A buffer of the scope's workspace (``None`` outside a scope or without one)."""
    scope = _SCOPE.get()
    if scope is None or scope.workspace is None:
        return None
    return scope.workspace.get(name, shape, like.dtype, like.device)


def _scan_key(tensor: Tensor) -> tuple:
    return (
        tensor.data_ptr(),
        tensor.device,
        tensor.dtype,
        tuple(tensor.shape),
        tensor.stride(),
        tensor._version,
    )


def _shared(kind: str, factor: Tensor, extra: tuple, compute):
    """``compute()``, once per factor and ``(kind, extra)`` in an open :func:`correlation_scope`.

    Outside a scope, and for inference tensors (no version counter to tell a
    changed one), it is computed every time. The memo keeps ``factor`` alive: its
    memory cannot be reused by another tensor while the block is open, so the key
    (:func:`_scan_key`) cannot name two tensors.
    """
    scope = _SCOPE.get()
    if scope is None or factor.is_inference():
        return compute()
    key = (kind, _scan_key(factor), extra)
    hit = scope.memo.get(key)
    if hit is None:
        hit = scope.memo[key] = (factor, compute())
    return hit[1]


def _entries_by_owner(
    sparse_t: Tensor, channels: int, own_pos: int, batch: int | None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`_scan_entries`, shared in a :func:`correlation_scope`."""
    return _shared(
        "entries",
        sparse_t,
        (channels, own_pos, batch),
        lambda: _scan_entries(sparse_t, channels, own_pos, batch),
    )


def _scan_entries(
    sparse_t: Tensor, channels: int, own_pos: int, batch: int | None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Non-zeros of ``sparse_t`` (``[N, channels, *P]``, ``own_pos`` positions) by owner.

    The owner of an entry is its channel, or with ``batch`` (``N = T B``,
    time-major) its ``(sample in the batch, channel)``. Returns ``(channel, row,
    position, values, owner_start)``: entries ordered by owner, then by row
    ``n`` and position, and the start of each owner's run (``[owners + 1]``).

    Small factors: ``nonzero`` of a view with the owner dimensions leading.
    Large ones: ``nonzero`` of the flat factor, then a stable sort by owner (a
    strided scan costs 2-3x a contiguous one there, more than the sort of the few
    non-zeros). Both give the same order. The scan reads the floats as integers
    of the same size (cheaper than a float comparison), so a ``-0.0`` is an entry
    (looked up with weight ``-0.0``): producers of weighted spike factors keep
    their zeros positive.
    """
    samples = sparse_t.shape[0]
    per = batch if batch is not None else 1
    as_int = _AS_INT[sparse_t.element_size()]
    if sparse_t.numel() <= _PERMUTED_SCAN:
        if batch is None:
            view = sparse_t.reshape(samples, channels, own_pos).transpose(0, 1)
            channel, row, position = view.view(as_int).nonzero(as_tuple=True)
            values = view[channel, row, position]
            owner = channel
        else:
            view = sparse_t.reshape(samples // per, per, channels, own_pos).permute(1, 2, 0, 3)
            which, channel, step, position = view.view(as_int).nonzero(as_tuple=True)
            values = view[which, channel, step, position]
            row = step * per + which
            owner = which * channels + channel
    else:
        flat_sparse = sparse_t.reshape(-1)
        # the flat scan serves every owner layout (with or without batch)
        kernels = (
            compiled.available()
            and flat_sparse.is_cpu
            and flat_sparse.dtype in compiled.DTYPES
            and flat_sparse.is_contiguous()
        )
        flat = _shared("flat", sparse_t, (), lambda: _flat_nonzero(flat_sparse, as_int, kernels))
        if kernels:
            # one counting sort by owner (the stable sort's order) instead of the sort and
            # the index kernels below: 0.3-0.5 ms against 2.5-3 ms for 51k entries
            entries = compiled._entries_unchecked(flat, flat_sparse, channels, own_pos, per)
            if entries is not None:
                return entries
        channel = (flat // own_pos) % channels
        owner = (
            channel if batch is None else (flat // (own_pos * channels) % per) * channels + channel
        )
        owner, order = torch.sort(owner, stable=True)
        flat = flat[order]
        channel = channel[order]
        values = flat_sparse[flat]
        row = flat // (own_pos * channels)
        position = flat % own_pos
    owners = per * channels
    owner_start = torch.zeros(owners + 1, dtype=torch.long, device=sparse_t.device)
    torch.cumsum(torch.bincount(owner, minlength=owners), 0, out=owner_start[1:])
    return channel, row, position, values, owner_start


def _flat_nonzero(flat: Tensor, as_int: torch.dtype, kernels: bool) -> Tensor:
    """Ascending indices of the non-zero bit patterns of the 1-d ``flat``: compiled
    where ``kernels`` says it can be (:func:`~plastorch.functional.compiled.flat_nonzero`),
    else torch's ``nonzero`` of its integer view. The same indices either way."""
    if kernels:
        found = compiled._nonzero_unchecked(flat)
        if found is not None:
            return found
    return flat.view(as_int).nonzero().squeeze(1)


def _by_column(sparse_t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(row, value, column start)`` of the non-zeros of ``sparse_t [N, M]``, column by column.

    A column scan, not :func:`_scan_entries`'s contiguous scan and sort: faster on
    factors that stay in cache (measured 1.4-2.2x at 640k entries, 1-10 % density).
    """
    columns = sparse_t.t()
    owner, sample = columns.view(_AS_INT[sparse_t.element_size()]).nonzero(as_tuple=True)
    # owners come out sorted: bag j holds the lookups owner[offsets[j]:offsets[j+1]]
    offsets = torch.searchsorted(
        owner, torch.arange(sparse_t.shape[1] + 1, device=owner.device, dtype=owner.dtype)
    )
    return sample, columns[owner, sample], offsets


def _runs_compiled(post: Tensor, pre: Tensor, side: str) -> bool:
    """Whether a Linear's sparse correlation of these factors runs the compiled kernel
    (:func:`_compiled_rows`) instead of the torch path (:func:`_sparse_linear`)."""
    return (
        side == "a"
        and post.device.type == "cpu"
        and not (torch.is_grad_enabled() and (post.requires_grad or pre.requires_grad))
        and _compiled_linear(
            torch.promote_types(post.dtype, pre.dtype), post.numel(), 1, compiled.available()
        )
    )


def _compiled_rows(out: Tensor, post: Tensor, pre: Tensor, alpha: float, beta: float) -> None:
    """``out <- beta out + alpha post^T pre`` by the compiled kernel (:func:`_runs_compiled`)."""
    dtype = out.dtype
    post = post if post.dtype == dtype else post.to(dtype)
    pre = pre if pre.dtype == dtype else pre.to(dtype)
    compiled._sparse_rows_unchecked(
        out, post.detach().contiguous(), pre.detach().contiguous(), alpha, beta
    )


def _sparse_linear(post: Tensor, pre: Tensor, side: str) -> Tensor:
    r"""``post^T pre`` (``[N, M]``, ``[N, C]`` -> ``[M, C]``) from the non-zeros of one factor.

    The Linear case of :func:`_sparse_weight_grad` without its index machinery:
    the non-zeros of the sparse factor, ordered by their output row (read column
    by column, or past ``_COLUMN_SCAN_BYTES`` scanned flat and sorted by
    :func:`_entries_by_owner`), name the rows of the other factor that
    ``embedding_bag`` sums into each output row. Walking ``pre`` (side ``"b"``)
    gives ``[C, M]``, transposed into the weight's layout.
    """
    dtype = torch.promote_types(post.dtype, pre.dtype)
    sparse_t, dense_t = (post, pre) if side == "a" else (pre, post)
    if sparse_t.numel() * sparse_t.element_size() <= _COLUMN_SCAN_BYTES:
        sample, values, offsets = _shared("columns", sparse_t, (), lambda: _by_column(sparse_t))
    else:
        _, sample, _, values, offsets = _entries_by_owner(sparse_t, sparse_t.shape[1], 1, None)
    # weighted row sums cost the same as plain ones and need no test of the values
    values = values.to(dtype)
    table = dense_t if dense_t.dtype == dtype else dense_t.to(dtype)
    out = F.embedding_bag(
        sample,
        table if table.is_contiguous() else table.contiguous(),
        offsets,
        mode="sum",
        per_sample_weights=values,
        include_last_offset=True,
    )
    return out if side == "a" else out.t().contiguous()


def _sparse_weight_grad(
    a: Tensor,
    b: Tensor,
    geo: _Geometry,
    side: str,
    batch: int | None,
    accumulate: Tensor | None = None,
    beta: float = 1.0,
    *,
    row_weights: Tensor | None = None,
) -> Tensor:
    r"""``C`` of :class:`_Geometry` from the non-zeros of ``a`` (side ``"a"``) or ``b``.

    ``a`` is ``[N, M, *P]``, ``b`` is ``[N, G Cg, *Q]``; with ``batch`` the samples
    are ``N = T B`` (time-major) and the result is per sample, ``[B, M, Cg, *K]``.

    Every non-zero of the sparse factor (sample ``n``, channel ``c``, position ``p``)
    and kernel offset ``k`` is one *lookup*: the row of the other factor, laid
    out channels-last, at the position ``k`` pairs with ``p``, added with the
    non-zero's value into the *bag* (output row) ``(k, [b,] c)``. Lookups are
    ordered by bag, so one ``embedding_bag`` call sums them. The other factor is
    laid out in a zero-padded table (:func:`_padded_table`) in which a pairing
    that falls outside it (padding, stride) reads a zero row, so a lookup's row
    is one addition and needs no bounds test (``embedding_bag``'s ``padding_idx``,
    the alternative, makes the call about 25x slower on CPU).

    ``accumulate`` (Linear and per-sample only): add the result into this
    ``[B, *W]`` tensor after scaling it by ``beta``, a few samples at a time.
    ``row_weights`` (``[N]``): sample ``n``'s products count ``row_weights[n]`` times
    (each non-zero's value is multiplied by its sample's weight).
    """
    m_total, c_group = geo.weight_shape[:2]
    groups = geo.groups
    m_group = m_total // groups
    kernel, spatial = geo.kernel, len(geo.kernel)
    k_total = geo.kernel_size
    per = batch if batch is not None else 1
    sparse_t, dense_t = (a, b) if side == "a" else (b, a)
    channels = sparse_t.shape[1]  # M for side a, G Cg for side b
    own_shape = geo.p_shape if side == "a" else geo.q_shape
    own_pos = math.prod(own_shape)
    row_length = c_group if side == "a" else m_group
    dtype = torch.promote_types(a.dtype, b.dtype)
    device = a.device

    channel, sample, position, values, owner_start = _entries_by_owner(
        sparse_t, channels, own_pos, batch
    )
    values = values.to(dtype)
    if row_weights is not None:
        values = values * row_weights[sample]
    nnz = values.numel()
    # spikes are 0/1: then the row sums need no per-lookup weights
    weighted = not bool((values == 1).all())

    if spatial == 0:  # Linear: the other factor itself is the table, one lookup per non-zero
        table = dense_t.to(dtype)
        if not table.is_contiguous():
            table = table.contiguous()
        if accumulate is not None:
            return _sum_rows_into(
                accumulate, table, sample, values if weighted else None, owner_start, side, beta
            )
        out = F.embedding_bag(
            sample,
            table,
            owner_start,
            mode="sum",
            per_sample_weights=values if weighted else None,
            include_last_offset=True,
        )
    else:
        group = channel // (m_group if side == "a" else c_group)
        table, block, position_row, kernel_row = _padded_table(
            dense_t, position, geo, side, groups, row_length, dtype
        )
        # one broadcast add over [K, nnz]
        spike_row = (sample * groups + group) * block + position_row
        rows = (kernel_row[:, None] + spike_row[None, :]).reshape(-1)
        weights = values[None, :].expand(k_total, nnz).reshape(-1) if weighted else None
        # bag (k, owner) starts at k * nnz + owner_start[owner]
        starts = torch.arange(k_total, device=device)[:, None] * nnz + owner_start[None, :-1]
        bag_offsets = torch.cat((starts.reshape(-1), torch.tensor([k_total * nnz], device=device)))
        out = F.embedding_bag(
            rows,
            table,
            bag_offsets,
            mode="sum",
            per_sample_weights=weights,
            include_last_offset=True,
        )
    # out: [K, per, channels, row_length] -> [per, M, Cg, K]
    out = out.reshape(k_total, per, channels, row_length)
    if side == "a":  # channels = M, row_length = Cg
        out = out.permute(1, 2, 3, 0)
    else:  # channels = G Cg, row_length = M/G
        out = out.reshape(k_total, per, groups, c_group, m_group).permute(1, 2, 4, 3, 0)
    out = out.reshape(per, m_total, c_group, *kernel).contiguous()
    if spatial == 0:
        out = out.reshape(per, m_total, c_group)
    return out if batch is not None else out[0]


#: Output entries per ``embedding_bag`` call of :func:`_sum_rows_into` (1 MiB of float32).
_ROWS_CHUNK = 1 << 18


def _sum_rows_into(
    accumulate: Tensor,
    table: Tensor,
    lookups: Tensor,
    weights: Tensor | None,
    bag_start: Tensor,
    side: str,
    beta: float,
) -> Tensor:
    """``accumulate <- beta * accumulate + bag sums`` of a per-sample Linear correlation.

    Side ``"a"`` is one CSR product where torch has it (:func:`_csr_addmm`).
    Otherwise: the bags are ``(sample, channel)`` in order, so a run of whole samples is a
    run of bags: each run is summed into a small temporary (reused by the
    allocator, and still in cache when it is added), never into a ``[B, *W]`` one.
    Side ``"b"`` bags are the weight's columns: the run is added transposed.
    """
    batch = accumulate.shape[0]
    channels = (bag_start.numel() - 1) // batch
    if side == "a" and _csr_addmm(accumulate, table, lookups, weights, bag_start, beta):
        return accumulate
    per_run = max(1, _ROWS_CHUNK // max(1, accumulate[0].numel()))
    starts = bag_start.tolist()
    for first in range(0, batch, per_run):
        last = min(batch, first + per_run)
        lo, hi = starts[first * channels], starts[last * channels]
        target = accumulate[first:last]
        if hi == lo:
            if beta != 1.0:
                target.mul_(beta)
            continue
        run = F.embedding_bag(
            lookups[lo:hi],
            table,
            bag_start[first * channels : last * channels + 1] - lo,
            mode="sum",
            per_sample_weights=None if weights is None else weights[lo:hi],
            include_last_offset=True,
        ).view(last - first, channels, -1)
        if side == "b":
            run = run.transpose(1, 2)
        if beta == 1.0:
            target.add_(run)
        else:
            torch.add(run, target, alpha=beta, out=target)
    return accumulate


#: Whether ``torch.addmm`` with a sparse CSR matrix works, per (device type, dtype); a
#: missing key means not tried yet.
_CSR_ADDMM: dict[tuple[str, torch.dtype], bool] = {}


def _csr_addmm(
    accumulate: Tensor,
    table: Tensor,
    lookups: Tensor,
    weights: Tensor | None,
    bag_start: Tensor,
    beta: float,
) -> bool:
    """Side ``"a"`` of :func:`_sum_rows_into` as one sparse-dense product, in place.

    The bags are the rows of a CSR matrix (``bag_start`` its row pointers, the
    looked-up table rows its columns, already ordered within a bag), so
    ``accumulate`` viewed as ``[bags, row]`` is ``beta * accumulate + CSR @ table``:
    one ``addmm`` call (MKL on x86), no temporary and no loop over samples (the
    runs cost ~0.4 ms each inside a learner step, mostly their cold output).
    Returns ``False`` where this build of torch cannot (no sparse ``addmm`` for the
    device or dtype); the caller then sums runs.
    """
    key = (accumulate.device.type, accumulate.dtype)
    if not _CSR_ADDMM.get(key, True) or accumulate.dtype not in (torch.float32, torch.float64):
        return False
    bags = bag_start.numel() - 1
    values = (
        weights.to(accumulate.dtype)
        if weights is not None
        else torch.ones(lookups.numel(), dtype=accumulate.dtype, device=lookups.device)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        matrix = torch.sparse_csr_tensor(
            bag_start,
            lookups,
            values,
            size=(bags, table.shape[0]),
            check_invariants=False,
        )
        flat = accumulate.view(bags, -1)
        try:
            torch.addmm(flat, matrix, table, beta=beta, out=flat)
        except (RuntimeError, NotImplementedError):
            _CSR_ADDMM[key] = False
            return False
    _CSR_ADDMM[key] = True
    return True


def _weight_of(layer: nn.Module) -> Tensor:
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, Tensor):
        raise TypeError(
            f"layer must have a tensor attribute 'weight', {type(layer).__name__} has "
            f"{type(weight).__name__}"
        )
    return weight


def _check_linear(layer: nn.Linear, pre: Tensor, post: Tensor) -> None:
    if (
        pre.shape[-1] != layer.in_features
        or post.shape[-1] != layer.out_features
        or pre.shape[:-1] != post.shape[:-1]
    ):
        raise ValueError(
            f"Linear({layer.in_features}, {layer.out_features}) needs pre [..., "
            f"{layer.in_features}] and post [..., {layer.out_features}] with the same leading "
            f"shape, got pre {tuple(pre.shape)} and post {tuple(post.shape)}"
        )


def _explicit_padding(layer: nn.Module) -> tuple[list[int], str] | None:
    """``(F.pad's padding, mode)`` for a convolution padded by name or not with zeros."""
    if isinstance(layer, _CONV) and (
        isinstance(layer.padding, str) or layer.padding_mode != "zeros"
    ):
        mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        return list(layer._reversed_padding_repeated_twice), mode
    return None


def _conv_samples(layer: nn.Module, pre: Tensor, post: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten leading sample dims to ``[N, C, *spatial]`` and apply non-zero padding modes."""
    spatial = layer.weight.dim() - 2
    rank = spatial + 2
    in_channels, out_channels = layer.in_channels, layer.out_channels
    if (
        pre.dim() < rank - 1
        or pre.dim() != post.dim()
        or pre.shape[: pre.dim() - rank + 1] != post.shape[: post.dim() - rank + 1]
        or pre.shape[-spatial - 1] != in_channels
        or post.shape[-spatial - 1] != out_channels
    ):
        raise ValueError(
            f"{type(layer).__name__}({in_channels}, {out_channels}) needs pre [..., {in_channels}, "
            f"*spatial] and post [..., {out_channels}, *spatial] with the same leading shape, "
            f"got pre {tuple(pre.shape)} and post {tuple(post.shape)}"
        )
    if pre.dim() != rank:
        pre = pre.reshape(-1, *pre.shape[-spatial - 1 :])
        post = post.reshape(-1, *post.shape[-spatial - 1 :])
    padding = _explicit_padding(layer)
    if padding is not None:
        pre = F.pad(pre, padding[0], mode=padding[1])
    return pre, post


#: A convolution weight gradient (1-3 spatial dims, not transposed) whose input patch
#: (``C_in / groups x kernel``) has at most this many entries may be an ``unfold``
#: (:func:`_columns`) and a batched GEMM instead of oneDNN's weight gradient, which can
#: leave most of the machine idle with few input channels. Which one wins depends on
#: the CPU and the shape (unfold / oneDNN, 2 threads): on an AVX2 host Conv1d 4->16 k5
#: (patch 20) 0.60, Conv2d 2->32 k5 (50) 0.51, 8->32 k3 (72) 0.91, 16->32 k3 dilation 2
#: (144) 0.66, 32->64 k3 (288) 1.29, Conv3d 4->16 k3 (108) 0.97; on an AVX512 host
#: Conv1d 0.48-0.62, Conv2d 4->32 k3 (36) 0.45-0.64, 2->16 k3 (18) 1.40-1.59, 2->32 k5
#: 1.55-1.58, 16->32 k3 (144) 1.58-2.12, Conv3d 0.90-0.97. So on CPU both are timed
#: once per geometry (:func:`_unfold_wins`) unless ``PLASTORCH_CONV_AUTOTUNE=0``.
_UNFOLD_PATCH = 192
#: Most groups that path takes: one batched GEMM of small per-group products loses to
#: oneDNN's grouped kernel past them. Conv2d 4->32 k5 groups 2: 0.54, 8->32 k5 groups 2:
#: 0.76; 32->64 k3 groups 4: 1.48, 16->16 k3 depthwise: 2.23 (unfold / oneDNN).
_UNFOLD_GROUPS = 2
#: Largest ``unfold`` result (entries) that path forms, ``N x patch x positions``.
_UNFOLD_NUMEL = 1 << 24


_AUTOTUNE = os.environ.get("PLASTORCH_CONV_AUTOTUNE", "1").strip().lower() not in (
    "0",
    "false",
    "no",
    "off",
)
#: geometry -> whether the unfold kernel was the faster one (:func:`_unfold_wins`)
_UNFOLD_CHOICE: dict[tuple, bool] = {}
_UNFOLD_CHOICE_SIZE = 512


def _unfold_wins(layer, pre: Tensor, post: Tensor, padding, weight_shape, groups: int) -> bool:
    """Whether the unfold kernel beats oneDNN's weight gradient for this geometry.

    On CPU, without grad, each kernel is timed three times, alternating, the first
    time a geometry (layer type and hyperparameters, factor shapes, dtype, threads) is
    seen, and the faster minimum is remembered for the process. Elsewhere, with
    ``PLASTORCH_CONV_AUTOTUNE=0``, or while a factor requires grad: ``True`` (the
    static rule of :data:`_UNFOLD_PATCH`). Both kernels compute the same sum; only the
    order of the additions differs.
    """
    if not (_AUTOTUNE and pre.is_cpu and not pre.requires_grad and not post.requires_grad):
        return True
    key = (
        type(layer),
        tuple(weight_shape),
        tuple(layer.stride),
        tuple(padding),
        tuple(layer.dilation),
        groups,
        tuple(pre.shape),
        tuple(pre.stride()),
        tuple(post.shape),
        tuple(post.stride()),
        pre.dtype,
        torch.get_num_threads(),
    )
    choice = _UNFOLD_CHOICE.get(key)
    if choice is None:
        kernels = (_unfold_weight_grad, _onednn_weight_grad)
        best = [math.inf, math.inf]
        for _ in range(3):
            for k, kernel in enumerate(kernels):
                start = time.perf_counter()
                kernel(layer, pre, post, padding, weight_shape, groups)
                best[k] = min(best[k], time.perf_counter() - start)
        if len(_UNFOLD_CHOICE) >= _UNFOLD_CHOICE_SIZE:
            _UNFOLD_CHOICE.clear()
        choice = _UNFOLD_CHOICE[key] = best[0] <= best[1]
    return choice


def _unfold_fits(pre: Tensor, post: Tensor, weight_shape, groups: int) -> bool:
    """The patch and the columns are within :data:`_UNFOLD_PATCH` and :data:`_UNFOLD_NUMEL`."""
    patch = math.prod(weight_shape[1:])  # C_in / groups x kernel
    numel = pre.shape[0] * groups * patch * math.prod(post.shape[2:])
    return patch <= _UNFOLD_PATCH and numel <= _UNFOLD_NUMEL


def _unfold_weight_grad(
    layer: nn.Module,
    pre: Tensor,
    post: Tensor,
    padding,
    weight_shape: tuple[int, ...],
    groups: int = 1,
) -> Tensor | None:
    r"""``sum_n post_n [C_out, L] @ unfold(pre)_n^T [L, C_in K]``, per group, for a small patch.

    ``pre`` and ``post`` are ``[N, C, *spatial]`` samples whose shapes the caller's
    :class:`_Geometry` has checked against the layer. ``None`` where
    :data:`_UNFOLD_PATCH` or :data:`_UNFOLD_NUMEL` say oneDNN's weight gradient is
    the better kernel (the timed choice, :func:`_unfold_wins`, is the caller's). The
    columns are :func:`_columns` (into the scope's workspace when one is lent); with
    groups, one batched GEMM over samples and groups.
    """
    if not _unfold_fits(pre, post, weight_shape, groups):
        return None
    patch = math.prod(weight_shape[1:])  # C_in / groups x kernel
    positions = math.prod(post.shape[2:])
    samples = pre.shape[0]
    # (out= buffers cannot be part of an autograd graph)
    lend = not (pre.requires_grad or post.requires_grad)
    columns = (
        _scratch("unfold_columns", (samples, groups * patch, positions), pre) if lend else None
    )
    columns = _columns(
        pre, weight_shape[2:], layer.dilation, padding, layer.stride, post.shape[2:], columns
    )
    # [N G, C_out / G, L] @ [N G, L, patch]: channel c = g C_in/G + c' leads each column block
    out_group = weight_shape[0] // groups
    products = (
        _scratch("unfold_products", (samples * groups, out_group, patch), pre) if lend else None
    )
    grad = torch.bmm(
        post.reshape(samples * groups, out_group, positions),
        columns.view(samples * groups, patch, positions).transpose(1, 2),
        out=products,
    )
    return grad.view(samples, weight_shape[0], patch).sum(0).view(weight_shape)


def _columns(
    pre: Tensor,
    kernel: Sequence[int],
    dilation: Sequence[int],
    padding: Sequence[int],
    stride: Sequence[int],
    out_spatial: Sequence[int],
    out: Tensor | None = None,
) -> Tensor:
    """``F.unfold`` of ``pre [N, C, *S]`` for 1-3 spatial dims: ``[N, C prod(kernel), prod(out_spatial)]``.

    One strided view of the zero-padded input, ``[N, C, *kernel, *out_spatial]``
    (kernel offsets step by the dilation, output positions by the stride), copied
    into the result: one vectorized copy instead of ``im2col``'s per-entry index
    arithmetic (Conv2d 2->32 k5 on 16x28x28: 0.09 ms against 0.68 ms here). The
    entries are those of ``F.unfold``, in its order (channel, then kernel offset).
    """
    if any(padding):
        pre = F.pad(pre, [p for p in reversed(padding) for _ in range(2)])
    n, c, *size = pre.shape
    for extent, k, d, s, o in zip(size, kernel, dilation, stride, out_spatial):
        if (o - 1) * s + (k - 1) * d >= extent:  # _Geometry checked it; a view must not overrun
            raise ValueError(f"unfold of {tuple(pre.shape)} does not give {tuple(out_spatial)}")
    strides = pre.stride()
    spatial = strides[2:]
    view = pre.as_strided(
        (n, c, *kernel, *out_spatial),
        (
            strides[0],
            strides[1],
            *(d * t for d, t in zip(dilation, spatial)),
            *(s * t for s, t in zip(stride, spatial)),
        ),
        pre.storage_offset(),
    )
    shape = (n, c * math.prod(kernel), math.prod(out_spatial))
    if out is None:
        return view.reshape(shape)
    out.view(view.shape).copy_(view)
    return out


def _conv_weight_grad(
    layer: nn.Module, pre: Tensor, post: Tensor, *, groups: int, weight_shape: tuple[int, ...]
) -> Tensor:
    pre, post = _one_layout(pre, post)
    # what depends on the geometry, the layouts and the kernel timing only (the padding,
    # oneDNN's arguments, the kernel choice) is worked out once per key
    key = (
        _conv_key(layer, weight_shape, groups),
        pre.shape,
        pre.stride(),
        post.shape,
        post.stride(),
        pre.dtype,
        pre.device,
        pre.requires_grad or post.requires_grad,
        torch.get_num_threads(),
        _AUTOTUNE,
        id(_UNFOLD_CHOICE),  # plans follow the kernel timings they were made from
    )
    plan = _cached(_PLANS, key)
    if plan is None:
        plan = _weight_grad_plan(layer, pre, post, groups, weight_shape)
        _remember(_PLANS, key, plan)
    unfold, padding, arguments = plan
    if unfold:
        return _unfold_weight_grad(layer, pre, post, padding, weight_shape, groups)
    return _convolution_backward(layer, pre, post, weight_shape, arguments)


#: key of :func:`_conv_weight_grad` -> ``(unfold, padding, oneDNN's arguments)``
_PLANS: dict[tuple, tuple[bool, list[int], tuple]] = {}


def _weight_grad_plan(layer, pre, post, groups, weight_shape) -> tuple[bool, list[int], tuple]:
    spatial = len(weight_shape) - 2
    transposed = isinstance(layer, _CONV_T)
    # an explicitly padded input was padded by _conv_samples already
    padding = [0] * spatial if _explicit_padding(layer) is not None else list(layer.padding)
    unfold = (
        not transposed
        and groups <= _UNFOLD_GROUPS
        and _unfold_fits(pre, post, weight_shape, groups)
        and _unfold_wins(layer, pre, post, padding, weight_shape, groups)
    )
    return unfold, padding, _onednn_arguments(layer, padding, spatial, groups)


_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _is_channels_last(x: Tensor) -> bool:
    """``x`` is channels-last (and not also channels-first) contiguous."""
    fmt = _CHANNELS_LAST.get(x.dim())
    return fmt is not None and not x.is_contiguous() and x.is_contiguous(memory_format=fmt)


def _one_layout(pre: Tensor, post: Tensor) -> tuple[Tensor, Tensor]:
    """``pre`` and ``post`` in one memory format: the smaller copied into the other's.

    Given one channels-last and one channels-first factor, oneDNN reorders both
    into a blocked layout on every call (Conv2d 2->32 k5 on 16x28x28: 1.36-1.52 ms
    against 0.74-0.78 ms channels-first and 0.50 ms channels-last); copying the
    smaller factor (into the scope's workspace when one is lent) costs less.
    """
    last = _is_channels_last(pre)
    if last == _is_channels_last(post):
        return pre, post
    small = pre if pre.numel() <= post.numel() else post
    if small.dim() not in _CHANNELS_LAST:
        return pre, post
    to_last = small is pre and not last or small is post and last
    name = f"layout_{'pre' if small is pre else 'post'}_{'last' if to_last else 'first'}"
    lend = not small.requires_grad  # (a lent buffer cannot be part of an autograd graph)
    if to_last:  # an [N, *spatial, C] buffer seen as [N, C, *spatial]
        shape = (small.shape[0], *small.shape[2:], small.shape[1])
        buffer = _scratch(name, shape, small) if lend else None
        if buffer is None:
            moved = small.contiguous(memory_format=_CHANNELS_LAST[small.dim()])
        else:
            moved = buffer.movedim(-1, 1).copy_(small)
    else:
        buffer = _scratch(name, tuple(small.shape), small) if lend else None
        moved = small.contiguous() if buffer is None else buffer.copy_(small)
    return (moved, post) if small is pre else (pre, moved)


def _onednn_weight_grad(
    layer: nn.Module, pre: Tensor, post: Tensor, padding, weight_shape, groups: int
) -> Tensor:
    """The convolution weight gradient by ``aten.convolution_backward`` (oneDNN on CPU)."""
    arguments = _onednn_arguments(layer, padding, len(weight_shape) - 2, groups)
    return _convolution_backward(layer, pre, post, weight_shape, arguments)


def _onednn_arguments(layer: nn.Module, padding, spatial: int, groups: int) -> tuple:
    """``convolution_backward``'s arguments after the bias: stride ... groups, output mask."""
    transposed = isinstance(layer, _CONV_T)
    output_padding = list(layer.output_padding) if transposed else [0] * spatial
    return (
        list(layer.stride),
        list(padding),
        list(layer.dilation),
        transposed,
        output_padding,
        groups,
        (False, True, False),
    )


def _convolution_backward(
    layer: nn.Module, pre: Tensor, post: Tensor, weight_shape, arguments: tuple
) -> Tensor:
    # only its shape is read: the layer's own weight where it has the factors' shape,
    # dtype and device (an expanded stand-in costs a contiguous copy in oneDNN)
    weight = layer.weight
    if weight.shape != weight_shape or weight.dtype != post.dtype or weight.device != post.device:
        weight = post.new_empty(1).expand(weight_shape)
    else:
        weight = weight.detach()
    try:
        return torch.ops.aten.convolution_backward(post, pre, weight, None, *arguments)[1]
    except RuntimeError as error:
        raise ValueError(
            f"post {tuple(post.shape)} is not the output shape of {layer} for pre "
            f"{tuple(pre.shape)}: {error}"
        ) from error


def _vjp_correlate(layer: nn.Module, pre: Tensor, post: Tensor) -> Tensor:
    weight = layer.weight.detach()

    def forward(w: Tensor) -> Tensor:
        return torch.func.functional_call(layer, {"weight": w}, (pre,))

    with torch.enable_grad():
        out, pullback = torch.func.vjp(forward, weight)
    if out.shape != post.shape:
        raise ValueError(
            f"post has shape {tuple(post.shape)} but {type(layer).__name__} maps pre "
            f"{tuple(pre.shape)} to {tuple(out.shape)}"
        )
    return pullback(post.to(out.dtype))[0]
