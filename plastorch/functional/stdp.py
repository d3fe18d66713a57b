r"""Time-fused factors of pair-based STDP.

For a window of spikes ``pre [T, B, *in]`` and ``post [T, B, *out]`` the two
pair terms of STDP are correlations (see :func:`plastorch.functional.correlate`)

.. math::

    \Pi = \sum_t C\bigl(x_\text{pre}(t),\ s_\text{post}(t)\bigr) \qquad
    \Delta = \sum_t C\bigl(s_\text{pre}(t),\ \tilde x_\text{post}(t)\bigr)

with the presynaptic trace :math:`x_\text{pre}(t)` already including the spike of
step :math:`t` and :math:`\tilde x_\text{post}(t) = e^{-\Delta t/\tau_\text{post}}
x_\text{post}(t - \Delta t)` the postsynaptic trace *before* step :math:`t`.
This is Brian2's and NEST's event order: presynaptic events of a step are
handled before postsynaptic ones, so a post spike pairs with pre spikes at or
before it (:math:`\Pi`, causal) and a pre spike pairs with post spikes strictly
before it (:math:`\Delta`, acausal); a same-step pair counts once, in :math:`\Pi`.
Folding time into the batch makes each term a single correlation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from . import compiled
from .checks import check_choice
from .numerics import flush_subnormal_
from .traces import (
    TRACE_MODES,
    _check_out,
    _scalar,
    decay_,
    trace_after_window,
    trace_window,
    trace_window_before,
)

__all__ = [
    "PostTriggeredFactors",
    "STDPFactors",
    "cumulative_trace_at_end",
    "stdp_factors",
    "stdp_factors_post_triggered",
    "weighted_acausal_factors",
]


class STDPFactors(NamedTuple):
    """Per-step factors of a window and the traces to carry into the next one.

    Attributes
    ----------
    trace_pre : Tensor
        :math:`x_\\text{pre}(t)` including the spike at ``t``, ``[T, B, *in]``.
    trace_post_before : Tensor
        :math:`e^{-\\Delta t/\\tau_\\text{post}} x_\\text{post}(t-\\Delta t)`, ``[T, B, *out]``.
    next_trace_pre, next_trace_post : Tensor
        Traces after the last step, ``[B, *in]`` and ``[B, *out]``.
    """

    trace_pre: Tensor
    trace_post_before: Tensor
    next_trace_pre: Tensor
    next_trace_post: Tensor


def stdp_factors(
    pre: Tensor,
    post: Tensor,
    trace_pre: Tensor,
    trace_post: Tensor,
    *,
    decay_pre: float,
    decay_post: float,
    trace_mode: str = "cumulative",
    inplace: bool = False,
) -> STDPFactors:
    r"""Scan the pre and post traces over a window (unit amplitude).

    Parameters
    ----------
    pre, post : Tensor
        Spikes ``[T, B, *in]`` and ``[T, B, *out]``.
    trace_pre, trace_post : Tensor
        Traces before the window, ``[B, *in]`` and ``[B, *out]``.
    decay_pre, decay_post : float
        :math:`e^{-\Delta t/\tau_\text{pre}}`, :math:`e^{-\Delta t/\tau_\text{post}}`.
    trace_mode : {"cumulative", "nearest"}
    inplace : bool
        The caller no longer needs ``trace_pre`` and ``trace_post``: a one-step
        window (``T = 1``, spikes of the traces' dtype) may write into them.
        ``next_trace_pre`` is then ``trace_pre`` itself and ``trace_post`` holds
        ``trace_post_before``; the values are the same as without (same roundings),
        with no temporary and one new tensor (``next_trace_post``) instead of five.

    Examples
    --------
    >>> pre = torch.tensor([[[1.0]], [[0.0]]])   # pre spike at step 0
    >>> post = torch.tensor([[[0.0]], [[1.0]]])  # post spike at step 1
    >>> f = stdp_factors(pre, post, torch.zeros(1, 1), torch.zeros(1, 1),
    ...                  decay_pre=0.5, decay_post=0.5)
    >>> f.trace_pre.flatten(), f.trace_post_before.flatten()
    (tensor([1.0000, 0.5000]), tensor([0., 0.]))
    """
    if _one_step(pre, trace_pre) and _one_step(post, trace_post):
        return _one_step_factors(
            pre, post, trace_pre, trace_post, decay_pre, decay_post, trace_mode, inplace
        )
    x_pre = trace_window(trace_pre, pre, decay_pre, 1.0, trace_mode)
    x_post_before, next_post = trace_window_before(trace_post, post, decay_post, 1.0, trace_mode)
    return STDPFactors(x_pre, x_post_before, x_pre[-1], next_post)


def _one_step(spikes: Tensor, trace: Tensor) -> bool:
    return spikes.shape[0] == 1 and spikes.shape[1:] == trace.shape and spikes.dtype == trace.dtype


def _one_step_factors(
    pre: Tensor,
    post: Tensor,
    trace_pre: Tensor,
    trace_post: Tensor,
    decay_pre: float,
    decay_post: float,
    trace_mode: str,
    inplace: bool,
) -> STDPFactors:
    """:func:`stdp_factors` of a one-step window (``pre [1, B, *in]``, ``post [1, B, *out]``).

    The post trace after the step is the decayed one plus the spike, so the
    decay is computed once; the roundings are those of :func:`trace_window`
    (``x * decay``, then the spike). The window-shaped factors are ``[None]``
    views of the traces (one step costs a dispatch per tensor op, more than its
    arithmetic, so it has as few as the result needs).
    """
    check_choice("trace_mode", trace_mode, TRACE_MODES)
    if inplace:
        x_pre, before = decay_(trace_pre, decay_pre), decay_(trace_post, decay_post)
    else:
        x_pre = flush_subnormal_(trace_pre * decay_pre)
        before = flush_subnormal_(trace_post * decay_post)
    window_pre, window_before = x_pre[None], before[None]
    if trace_mode == "cumulative":  # as add_spikes_; the post trace into a new tensor
        window_pre.add_(pre)
        x_post = before + post[0]
    else:
        window_pre.masked_fill_(pre != 0, 1.0)
        x_post = before.masked_fill(post[0] != 0, 1.0)
    return STDPFactors(window_pre, window_before, x_pre, x_post)


class PostTriggeredFactors(NamedTuple):
    """Factors of a window with both pair terms triggered by post spikes.

    Attributes
    ----------
    trace_pre : Tensor
        :math:`x_\\text{pre}(t)`, ``[T, B, *in]`` (as in :class:`STDPFactors`).
    after_pre : Tensor
        :math:`y_\\text{pre}(t) = \\sum_{t' > t} d_\\text{post}^{t'-t} s_\\text{pre}(t')`,
        ``[T, B, *in]``.
    carried_pre : Tensor
        :math:`g = \\sum_t d_\\text{post}^{t+1} s_\\text{pre}(t)`, ``[1, B, *in]``: the
        pre spikes of the window as the post trace carried into it sees them.
    carried_post : Tensor
        That carried post trace, ``[1, B, *out]``.
    next_trace_pre, next_trace_post : Tensor
        Traces after the last step.
    """

    trace_pre: Tensor
    after_pre: Tensor
    carried_pre: Tensor
    carried_post: Tensor
    next_trace_pre: Tensor
    next_trace_post: Tensor


def stdp_factors_post_triggered(
    pre: Tensor,
    post: Tensor,
    trace_pre: Tensor,
    trace_post: Tensor,
    *,
    decay_pre: float,
    decay_post: float,
    out_trace_pre: Tensor | None = None,
    out_after_pre: Tensor | None = None,
) -> PostTriggeredFactors:
    r"""Cumulative-trace factors that write both terms of a window over the post spikes.

    The acausal term :math:`\Delta` of :func:`stdp_factors` pairs every pre
    spike with the post spikes strictly before it. Summing the same pairs the
    other way round, over post spikes, gives

    .. math::

        \Delta = \sum_t C\bigl(y_\text{pre}(t),\ s_\text{post}(t)\bigr)
                + C\bigl(g,\ x_\text{post}(-1)\bigr)

    (pairs inside the window, then the window's pre spikes with the post trace
    carried into it), so :math:`\Pi` and :math:`\Delta` share the factor
    :math:`s_\text{post}`: a learner that needs only the net change correlates
    it once, with :math:`\eta_\text{post} x_\text{pre} + \eta_\text{pre}
    y_\text{pre}`, and sparse post spikes make that one correlation a row sum
    over the spikes. Only for cumulative (all-to-all) traces: a nearest-spike
    pairing depends on both neurons' spikes and does not separate.

    ``out_trace_pre`` and ``out_after_pre`` (``[T, B, *in]``, the traces' dtype)
    receive ``trace_pre`` and ``after_pre`` instead of new tensors, e.g. buffers a
    caller reuses across windows (``next_trace_pre`` is then a copy, not a view).

    Examples
    --------
    >>> pre = torch.tensor([[[0.0]], [[1.0]]])   # pre spike at step 1
    >>> post = torch.tensor([[[1.0]], [[0.0]]])  # post spike at step 0
    >>> f = stdp_factors_post_triggered(pre, post, torch.zeros(1, 1), torch.zeros(1, 1),
    ...                                 decay_pre=0.5, decay_post=0.5)
    >>> f.after_pre.flatten()  # the post spike at 0 sees the pre spike at 1
    tensor([0.5000, 0.0000])
    """
    dtype = trace_pre.dtype
    x_pre = trace_window(trace_pre, pre, decay_pre, 1.0, "cumulative", out=out_trace_pre)
    after, carried_pre = trace_after_window(pre.to(dtype), decay_post, out=out_after_pre)
    next_post = cumulative_trace_at_end(trace_post.to(dtype), post.to(dtype), decay_post)
    # a trace written into a caller's buffer is carried out as a copy of its last step
    next_pre = x_pre[-1] if out_trace_pre is None else x_pre[-1].clone()
    return PostTriggeredFactors(
        x_pre, after, carried_pre[None], trace_post.to(dtype).unsqueeze(0), next_pre, next_post
    )


def cumulative_trace_at_end(trace: Tensor, spikes: Tensor, decay: float) -> Tensor:
    r"""The cumulative trace after a window without scanning it.

    .. math:: x(T-1) = d^T x(-1) + \sum_t d^{T-1-t} s(t)

    with a subnormal result flushed to zero, as the scan would
    (:mod:`plastorch.functional.numerics`).

    Examples
    --------
    >>> cumulative_trace_at_end(torch.tensor([1.0]), torch.tensor([[1.0], [0.0]]), 0.5)
    tensor([0.7500])
    """
    steps = spikes.shape[0]
    to_end = decay ** torch.arange(steps - 1, -1, -1, dtype=trace.dtype, device=spikes.device)
    end = torch.tensordot(to_end, spikes, dims=1).add_(trace, alpha=decay**steps)
    return flush_subnormal_(end)


def weighted_acausal_factors(
    pre: Tensor,
    weights: Tensor,
    decay_post: float,
    *,
    out: Tensor | None = None,
    causal: tuple[Tensor, Tensor] | None = None,
) -> tuple[list[Tensor], Tensor]:
    r"""Post-triggered factors of acausal terms weighted per step and sample.

    For each of ``K`` weightings :math:`w_k(t, b)` the weighted acausal term
    :math:`\sum_t w_k(t)\, C\bigl(s_\text{pre}(t),\ \tilde x_\text{post}(t)\bigr)`
    (as in :func:`stdp_factors`) sums the same pairs over post spikes:

    .. math::

        \sum_t C\bigl(y_k(t),\ s_\text{post}(t)\bigr) + C\bigl(g_k,\ x_\text{post}(-1)\bigr),
        \quad y_k(t) = \sum_{t' > t} d_\text{post}^{t'-t} w_k(t') s_\text{pre}(t'),
        \quad g_k = \sum_t d_\text{post}^{t+1} w_k(t) s_\text{pre}(t)

    (:func:`stdp_factors_post_triggered` is the case :math:`w = 1`). Reward-modulated
    rules weight their terms by a reverse discounted sum of the signal
    (:class:`~plastorch.rules.MSTDPET`); written this way every term pairs with the
    sparse ``post`` spikes.

    Parameters
    ----------
    pre : Tensor
        Spikes ``[T, B, *in]``.
    weights : Tensor
        ``[K, T, B]`` or ``[K, T, 1]``.
    decay_post : float
        :math:`e^{-\Delta t/\tau_\text{post}}`.
    out : Tensor, optional
        ``[K, T, B, *in]`` to write the :math:`y_k` into (e.g. a buffer reused
        across windows); ``after`` is then its ``K`` views. With the compiled kernels
        (numba, CPU) the scan into ``out`` is one pass per sample: the same values
        as the step-by-step torch loop for 0/1 spikes, within a rounding of them
        for graded factors (torch's ``addcmul`` may fuse its multiply-add).
    causal : (Tensor, Tensor), optional
        ``(x, r)``: a trace ``x [T, B, *in]`` and rates ``r [K, T, B]`` or ``[K, T,
        1]``. Each factor is then :math:`y_k(t) + r_k(t)\, x(t)`: with the
        presynaptic trace, the post-triggered factor of both pair terms of a
        weighted STDP window (the causal pairs :math:`C(x(t), s_\text{post}(t))`
        share the post spikes), written in the same pass where it is compiled, in
        place of a ``mul`` and an ``addcmul`` per factor over ``[T, B, *in]``
        (within a rounding of them).

    Returns
    -------
    after : list of Tensor
        :math:`y_k` for each weighting, ``[T, B, *in]``.
    carried : Tensor
        :math:`g` as ``[K, B, *in]``.

    Examples
    --------
    >>> pre = torch.tensor([[[0.0]], [[1.0]]])  # pre spike at step 1
    >>> after, carried = weighted_acausal_factors(pre, torch.tensor([[[1.0], [3.0]]]), 0.5)
    >>> after[0].flatten(), carried.flatten()  # 3 * 1/2 seen from step 0; 3 * 1/4 carried
    (tensor([1.5000, 0.0000]), tensor([0.7500]))
    """
    if weights.dim() != 3 or weights.shape[1] != pre.shape[0]:
        raise ValueError(
            f"weights must be [K, T, B] or [K, T, 1] with T = {pre.shape[0]}, got "
            f"{list(weights.shape)}"
        )
    dtype = torch.promote_types(pre.dtype, weights.dtype)
    steps, count = pre.shape[0], weights.shape[0]
    if causal is not None:
        trace, rates = causal
        if tuple(trace.shape) != tuple(pre.shape):
            raise ValueError(
                f"causal: the trace must be shaped like pre {list(pre.shape)}, got "
                f"{list(trace.shape)}"
            )
        if (
            rates.dim() != 3
            or rates.shape[:2] != (count, steps)
            or rates.shape[2] not in (1, pre.shape[1])
        ):
            raise ValueError(
                f"causal: the rates must be [K, T, B] or [K, T, 1] = [{count}, {steps}, "
                f"{pre.shape[1]} or 1], got {list(rates.shape)}"
            )
        dtype = torch.promote_types(dtype, torch.promote_types(trace.dtype, rates.dtype))
        trace = trace.to(dtype)
        rates = rates.to(dtype).reshape(count, steps, -1, *([1] * (pre.dim() - 2)))
    pre = pre.to(dtype)
    weights = weights.to(dtype).reshape(count, steps, -1, *([1] * (pre.dim() - 2)))
    # with ``out``, all K weightings advance together (two ops per step); without,
    # one tensor per weighting, each the size of a factor (none K times that)
    if out is None:
        ys = [torch.empty(pre.shape, dtype=dtype, device=pre.device)[None] for _ in range(count)]
        chunks = [(y, weights[k : k + 1]) for k, y in enumerate(ys)]
    else:
        _check_out(out, (count, *pre.shape), dtype)
        chunks = [(out, weights)]
    carried = torch.empty((count, *pre.shape[1:]), dtype=dtype, device=pre.device)
    after = [factor for y, _ in chunks for factor in y.unbind(0)]
    if steps == 0:
        return after, carried.zero_()
    if out is not None and _compiled_acausal(out, weights, pre, carried, decay_post, causal):
        return after, carried
    # y(t) = d (y(t+1) + w(t+1) s(t+1)): the roundings of trace_after of w s (addcmul
    # rounds w s, then the sum; no temporary); one step further, d (y(0) + w(0) s(0)) = g.
    start, decay = 0, _scalar(decay_post, carried)
    for y, w in chunks:
        y[:, -1].zero_()
        g = carried[start : start + y.shape[0]]
        for t in range(steps - 1, -1, -1):
            target = y[:, t - 1] if t > 0 else g
            torch.addcmul(y[:, t], w[:, t], pre[t], out=target).mul_(decay)
        start += y.shape[0]
    if causal is not None:
        for factor, rate in zip(after, rates):
            factor.addcmul_(trace, rate)
    return after, carried


def _compiled_acausal(
    out: Tensor,
    weights: Tensor,
    pre: Tensor,
    carried: Tensor,
    decay: float,
    causal: tuple[Tensor, Tensor] | None,
) -> bool:
    """:func:`weighted_acausal_factors`' scan as one compiled pass (numba), where it
    applies (CPU, a float dtype of the kernels, contiguous factors, not tiny)."""
    if not (
        compiled.available()
        and out.is_cpu
        and out.dtype in compiled.DTYPES
        and out.numel() >= compiled.SCAN_MIN_NUMEL
        and out.is_contiguous()
        and pre.is_contiguous()
        and not out.requires_grad
    ):
        return False
    count, steps, batch = out.shape[:3]
    flat_weights = weights.reshape(count, steps, weights.shape[2]).contiguous()
    trace = rates = None
    if causal is not None:
        trace, rates = causal
        if not trace.is_contiguous():
            return False
        trace = trace.detach().view(steps, batch, -1)
        rates = rates.detach().reshape(count, steps, rates.shape[2]).contiguous()
    return compiled._weighted_acausal_unchecked(
        out.view(count, steps, batch, -1),
        carried.view(count, batch, -1),
        flat_weights.detach(),
        pre.detach().view(steps, batch, -1),
        decay,
        trace,
        rates,
    )
