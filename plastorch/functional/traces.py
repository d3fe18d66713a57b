"""Spike traces and exponential scans over time.

All functions are pure (they return new tensors and never modify their inputs)
except those whose name ends in an underscore, which write into their first
argument, as in torch.
Time is the leading dimension of a window: ``[T, B, ...]``.

Every decayed value is flushed to zero once it is subnormal (on CPU, in float32,
float64 and bfloat16), so the state of a silent neuron reaches 0 instead of
staying in the slow subnormal range: see :mod:`plastorch.functional.numerics`.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
from torch import Tensor

from . import compiled
from .checks import check_choice, check_positive
from .numerics import flush_subnormal_

TraceMode = Literal["cumulative", "nearest"]
TRACE_MODES: tuple[str, ...] = ("cumulative", "nearest")

# Largest step (elements per time step) for which trace_window uses the closed form of
# nearest-spike traces: below it the per-step kernel launches of the scan dominate; above
# it the scans over time (cummax, cumprod) cost more than two kernels per step (measured
# on CPU: 9x faster at 100 elements, 1.3x slower at 1600).
_CLOSED_FORM_MAX_NUMEL = 1024

__all__ = [
    "TRACE_MODES",
    "add_spikes_",
    "decay_",
    "decay_factor",
    "discounted_reverse_sum",
    "trace",
    "trace_",
    "trace_after",
    "trace_after_window",
    "trace_cumulative",
    "trace_nearest",
    "trace_window",
    "trace_window_before",
]


def decay_factor(dt: float, tau: float, *, name: str = "tau") -> float:
    r"""Exact per-step decay of an exponential trace, :math:`e^{-\Delta t / \tau}`.

    Parameters
    ----------
    dt : float
        Simulation step in ms, ``> 0``.
    tau : float
        Time constant in ms, ``> 0``.
    name : str
        Name of the time constant, used in the error message.

    Examples
    --------
    >>> round(decay_factor(1.0, 20.0), 6)
    0.951229
    """
    dt = check_positive("dt", dt)
    tau = check_positive(name, tau)
    return math.exp(-dt / tau)


def trace_cumulative(x: Tensor, spikes: Tensor, decay: float, amplitude: float = 1.0) -> Tensor:
    r"""One step of a cumulative (all-to-all) spike trace.

    .. math:: x(t) = x(t - \Delta t)\, e^{-\Delta t/\tau} + a\, s(t)

    Parameters
    ----------
    x : Tensor
        Trace at the previous step, any shape.
    spikes : Tensor
        Spikes at this step, broadcastable to ``x`` (0/1, or graded).
    decay : float
        :math:`e^{-\Delta t/\tau}` (see :func:`decay_factor`).
    amplitude : float
        Increment :math:`a` per spike.

    Examples
    --------
    >>> trace_cumulative(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), 0.5)
    tensor([1.5000, 1.0000])
    """
    decayed = flush_subnormal_(x * decay)
    return decayed + (spikes if amplitude == 1.0 else amplitude * spikes)


def trace_nearest(x: Tensor, spikes: Tensor, decay: float, amplitude: float = 1.0) -> Tensor:
    r"""One step of a nearest-spike trace: reset to the amplitude on a spike, else decay.

    .. math:: x(t) = \begin{cases} a & s(t) \ne 0 \\ x(t - \Delta t)\, e^{-\Delta t/\tau}
              & \text{otherwise} \end{cases}

    Examples
    --------
    >>> trace_nearest(torch.tensor([0.8, 0.8]), torch.tensor([1.0, 0.0]), 0.5)
    tensor([1.0000, 0.4000])
    """
    decayed = flush_subnormal_(x * decay)
    return torch.where(spikes != 0, torch.full_like(decayed, amplitude), decayed)


@functools.lru_cache(maxsize=64)
def _multiplier(value: float, dtype: torch.dtype) -> Tensor:
    # a 0-d CPU tensor in the compute type of ``dtype`` (float32 for every float
    # type narrower than float64): the kernels read a CPU scalar tensor as they
    # read a Python number, so the product rounds the same, and it skips the
    # wrapping of the number into a tensor at every call (~3 us of a ~5 us mul_)
    return torch.tensor(value, dtype=torch.float64 if dtype == torch.float64 else torch.float32)


def _scalar(value: float, like: Tensor) -> float | Tensor:
    """``value`` as a multiplier of ``like`` (a float tensor): the cached 0-d tensor."""
    if type(value) is not float or not like.is_floating_point():
        return value
    return _multiplier(value, like.dtype)


def decay_(x: Tensor, decay: float) -> Tensor:
    """``x *= decay`` in place (the same values as ``x.mul_(decay)``, subnormal products
    flushed to zero); returns ``x``.

    For the one-step trace updates, where the dispatch of the multiply costs more
    than its arithmetic.

    Examples
    --------
    >>> x = torch.tensor([1.0, 2.0])
    >>> decay_(x, 0.5) is x, x
    (True, tensor([0.5000, 1.0000]))
    """
    return flush_subnormal_(x.mul_(_scalar(decay, x)))


def trace(
    x: Tensor, spikes: Tensor, decay: float, amplitude: float = 1.0, mode: str = "cumulative"
) -> Tensor:
    """One step of a spike trace in ``mode`` ``"cumulative"`` or ``"nearest"``.

    See :func:`trace_cumulative` and :func:`trace_nearest`.
    """
    if check_choice("trace_mode", mode, TRACE_MODES) == "cumulative":
        return trace_cumulative(x, spikes, decay, amplitude)
    return trace_nearest(x, spikes, decay, amplitude)


def add_spikes_(
    x: Tensor, spikes: Tensor, amplitude: float = 1.0, mode: str = "cumulative"
) -> Tensor:
    r"""The spike half of a trace step, written into the decayed trace ``x``; returns ``x``.

    Cumulative: :math:`x + a\, s`; nearest: :math:`a` where :math:`s \ne 0`. With
    ``x`` already multiplied by the decay this completes :func:`trace` with its
    roundings, so a caller can read the decayed trace (the trace *before* a step,
    what the acausal STDP term pairs with) and then finish the step in place.

    Examples
    --------
    >>> x = torch.tensor([0.5, 0.5])
    >>> add_spikes_(x, torch.tensor([1.0, 0.0])) is x, x
    (True, tensor([1.5000, 0.5000]))
    """
    if check_choice("trace_mode", mode, TRACE_MODES) == "cumulative":
        return x.add_(spikes if amplitude == 1.0 else amplitude * spikes)
    return x.masked_fill_(spikes != 0, amplitude)


def trace_(
    x: Tensor, spikes: Tensor, decay: float, amplitude: float = 1.0, mode: str = "cumulative"
) -> Tensor:
    """:func:`trace` written into ``x`` (no new tensor; the same values); returns ``x``.

    Examples
    --------
    >>> x = torch.tensor([1.0, 0.0])
    >>> trace_(x, torch.tensor([1.0, 1.0]), 0.5) is x, x
    (True, tensor([1.5000, 1.0000]))
    """
    return add_spikes_(decay_(x, decay), spikes, amplitude, mode)


def trace_window(
    x: Tensor,
    spikes: Tensor,
    decay: float,
    amplitude: float = 1.0,
    mode: str = "cumulative",
    *,
    out: Tensor | None = None,
) -> Tensor:
    r"""Trace at every step of a window ``[T, ...]``, starting from the state ``x``.

    Returns ``traces`` with ``traces[t]`` the trace after step ``t`` (it includes
    the spike of step ``t``); ``traces[-1]`` is the state to carry into the next
    window. The scan is O(T) elementwise work: one compiled pass on CPU with numba,
    else torch's loop of steps. Without the compiled scan, nearest-spike windows of
    small populations (at most 1024 elements per step) take a closed form with a fixed
    number of kernels instead of three per step (:func:`_nearest_window`), equal to the
    step-by-step recursion (bit for bit in float64).

    Parameters
    ----------
    x : Tensor
        Trace before the window, shape ``[...]``.
    spikes : Tensor
        Spikes ``[T, ...]``.
    out : Tensor, optional
        Where to write the traces (``[T, *x.shape]``, their dtype), e.g. a buffer
        reused across windows; ``traces[-1]`` then lives in it.

    Examples
    --------
    >>> s = torch.tensor([[1.0], [0.0], [1.0]])
    >>> trace_window(torch.zeros(1), s, 0.5).flatten()
    tensor([1.0000, 0.5000, 1.2500])
    >>> trace_window(torch.zeros(1), s, 0.5, mode="nearest").flatten()
    tensor([1.0000, 0.5000, 1.0000])
    """
    mode = check_choice("trace_mode", mode, TRACE_MODES)
    dtype = torch.promote_types(x.dtype, spikes.dtype)
    closed_form = (
        mode == "nearest"
        and x.shape == spikes.shape[1:]
        and dtype.is_floating_point
        and x.numel() <= _CLOSED_FORM_MAX_NUMEL
        # the compiled scan is 5-40x faster than the closed form where it runs (spikes
        # stand in for the out it would fill: their shape, and then the traces' dtype)
        and not (x.dtype == spikes.dtype and _compiled_scan(spikes, spikes, x))
    )
    if out is not None:
        _check_out(out, spikes.shape, dtype)
        if x.shape == spikes.shape[1:] and x.dtype == dtype and not closed_form:
            return _trace_scan(x, spikes, decay, amplitude, mode, out)
        return out.copy_(trace_window(x, spikes, decay, amplitude, mode))
    if spikes.shape[0] == 1 and x.shape == spikes.shape[1:] and x.dtype == spikes.dtype:
        # one step (the common single-step case): no scan
        return trace(x, spikes[0], decay, amplitude, mode).unsqueeze(0)
    if closed_form:
        return _nearest_window(x.to(dtype), spikes, decay, amplitude)
    out = torch.empty(spikes.shape, dtype=dtype, device=spikes.device)
    if (
        x.shape == spikes.shape[1:]
        and x.dtype == out.dtype
        # (the torch loop of a cumulative trace of another amplitude is trace_cumulative's)
        and (mode == "nearest" or amplitude == 1.0 or _compiled_scan(out, spikes, x))
    ):
        return _trace_scan(x, spikes, decay, amplitude, mode, out)
    step = trace_cumulative if mode == "cumulative" else trace_nearest
    for t in range(spikes.shape[0]):
        x = step(x, spikes[t], decay, amplitude)
        out[t] = x
    return out


def trace_window_before(
    x: Tensor,
    spikes: Tensor,
    decay: float,
    amplitude: float = 1.0,
    mode: str = "cumulative",
    *,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The trace just before each step of a window, and the trace after it.

    ``before[t]`` is :math:`d\,x(t-1)`, the decayed trace that a spike of step
    :math:`t` meets (the paper's :math:`x(t - \epsilon)`; ``before[0]`` decays the
    state ``x``), flushed where subnormal as every decayed trace is; ``last`` is
    :math:`x(T-1)`, the state to carry into the next window. The values of
    :func:`trace_window`'s traces shifted by one step and decayed, from one scan that
    writes the decayed values it forms on its way (the compiled kernels), instead of
    the traces and a pass that decays them.

    The arguments are :func:`trace_window`'s; ``out`` receives ``before``.

    Examples
    --------
    >>> s = torch.tensor([[1.0], [0.0], [1.0]])
    >>> before, last = trace_window_before(torch.tensor([4.0]), s, 0.5)
    >>> before.flatten(), last
    (tensor([2.0000, 1.5000, 0.7500]), tensor([1.7500]))
    """
    mode = check_choice("trace_mode", mode, TRACE_MODES)
    dtype = torch.promote_types(x.dtype, spikes.dtype)
    if out is None:  # (in the spikes' memory format, as a one-step trace would be)
        out = torch.empty_like(spikes, dtype=dtype)
    else:
        _check_out(out, spikes.shape, dtype)
    steps = spikes.shape[0]
    if steps == 0:
        return out, x.to(dtype, copy=True)
    x = x.to(dtype).expand(spikes.shape[1:])  # (a broadcast trace, as trace_window takes)
    if (
        steps > 1
        and _compiled_scan(out, spikes, x)
        and compiled._scan_unchecked(
            out,
            spikes,
            decay,
            x,
            amplitude,
            nearest=mode == "nearest",
            end=(last := torch.empty_like(x)),
        )
    ):
        return out, last
    factor = _scalar(decay, out)
    if steps == 1:  # (the one-step case: the spike half of the step on a copy)
        decayed = flush_subnormal_(torch.mul(x, factor, out=out[0]))
        return out, add_spikes_(decayed.clone(), spikes[0], amplitude, mode)
    traces = trace_window(x, spikes, decay, amplitude, mode)
    flush_subnormal_(torch.mul(x, factor, out=out[0]))
    flush_subnormal_(torch.mul(traces[:-1], factor, out=out[1:]))
    return out, traces[-1]


def _check_out(out: Tensor, shape, dtype: torch.dtype) -> None:
    """Raise unless ``out`` (an ``out=`` argument of the window kernels) is ``shape`` of ``dtype``."""
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype:
        raise ValueError(
            f"out must be {list(shape)} of dtype {dtype}, got {list(out.shape)} of {out.dtype}"
        )


def _trace_scan(
    x: Tensor, spikes: Tensor, decay: float, amplitude: float, mode: str, out: Tensor
) -> Tensor:
    """The window scan written into ``out``, step by step, with the roundings of
    :func:`trace_cumulative` (``x * decay``, then ``+ a s``) or :func:`trace_nearest`
    (``x * decay``, then the amplitude where a spike is), the decayed trace flushed
    where subnormal: three or four kernels and no temporaries per step (amplitude 1 for
    cumulative traces); with the compiled kernels, a scan of either mode is one pass of
    the same roundings (:func:`~plastorch.functional.compiled.scan_`)."""
    nearest = mode == "nearest"
    if _compiled_scan(out, spikes, x) and compiled._scan_unchecked(
        out, spikes, decay, x, amplitude, nearest=nearest
    ):
        return out
    previous = x
    factor = _scalar(decay, out)
    for t in range(spikes.shape[0]):
        flush_subnormal_(torch.mul(previous, factor, out=out[t]))
        if mode == "cumulative":
            out[t].add_(spikes[t] if amplitude == 1.0 else amplitude * spikes[t])
        else:
            out[t].masked_fill_(spikes[t] != 0, amplitude)
        previous = out[t]
    return out


def _compiled_scan(out: Tensor, values: Tensor, start: Tensor | None = None) -> bool:
    """Whether :func:`~plastorch.functional.compiled.scan_` takes this window."""
    return (
        compiled.available()
        and out.device.type == "cpu"
        and out.dtype in compiled.DTYPES
        and values.dtype == out.dtype
        and out.dim() > 0
        and (out.shape[0] >= compiled.SCAN_MIN_STEPS or out.numel() >= compiled.SCAN_MIN_NUMEL)
        and out.is_contiguous()
        and values.is_contiguous()
        and not (out.requires_grad or values.requires_grad)
        and (
            start is None
            or (start.dtype == out.dtype and start.is_contiguous() and not start.requires_grad)
        )
    )


def _nearest_window(x: Tensor, spikes: Tensor, decay: float, amplitude: float) -> Tensor:
    r"""Nearest-spike traces of a window in closed form, a fixed number of kernels for any T.

    With :math:`\ell(t)` the latest step :math:`\le t` with a spike (a running maximum
    of the spike steps),

    .. math:: x(t) = a\, d^{\,t - \ell(t)} \text{ if } \ell(t) \text{ exists, else }
              x(-1)\, d^{\,t + 1},

    where both powers are running products (``cumprod``) of ``[a, d, d, ...]`` and
    ``[x(-1), d, d, ...]``: the products the step-by-step recursion forms (in float64
    exactly its roundings; lower dtypes are multiplied in float64 and rounded once).
    """
    steps = spikes.shape[0]
    time = torch.arange(steps, device=spikes.device).view(-1, *([1] * (spikes.dim() - 1)))
    last = torch.where(spikes != 0, time, -1).cummax(0).values
    factors = torch.full((steps + 1, *x.shape), decay, dtype=x.dtype, device=x.device)
    factors[0] = x
    carried = factors.cumprod(0)[1:]  # x(-1) d^(t + 1)
    table = torch.full((steps,), decay, dtype=x.dtype, device=x.device)
    table[0] = amplitude
    gaps = (time - last).clamp_max_(steps - 1)  # t - l(t)
    since = table.cumprod(0).index_select(0, gaps.flatten()).view(gaps.shape)  # a d^(t - l(t))
    # (the products decrease along t: the first flushed one is the recursion's first zero)
    return flush_subnormal_(torch.where(last >= 0, since, carried))


def discounted_reverse_sum(values: Tensor, decay: float, *, out: Tensor | None = None) -> Tensor:
    r"""Reverse discounted sum over the leading (time) dimension.

    .. math:: R(s) = \sum_{t = s}^{T-1} d^{\,t - s}\, v(t)

    computed by the backward recursion :math:`R(s) = v(s) + d\, R(s+1)` in O(T).
    This turns an eligibility-trace rule, :math:`\sum_t M(t) z(t)` with
    :math:`z(t) = d\, z(t-1) + \xi(t)`, into :math:`\sum_s \xi(s) R(s)` with
    :math:`R` the reverse discounted sum of :math:`M`.

    Examples
    --------
    >>> discounted_reverse_sum(torch.tensor([1.0, 0.0, 2.0]), 0.5)
    tensor([1.5000, 1.0000, 2.0000])
    """
    if out is None:
        out = torch.empty_like(values)
    elif out.shape != values.shape:
        raise ValueError(f"out must have the shape of values {list(values.shape)}")
    if values.shape[0] == 0:
        return out
    # (a broadcast signal, say: one copy costs less than torch's loop of steps)
    dense = values.contiguous() if values.is_cpu and compiled.available() else values
    if _compiled_scan(out, dense) and compiled._scan_unchecked(out, dense, decay, reverse=True):
        return out
    out[-1] = values[-1]
    factor = _scalar(decay, out)
    for t in range(values.shape[0] - 2, -1, -1):
        # in place: the roundings of values[t] + decay * R(t + 1)
        flush_subnormal_(torch.mul(out[t + 1], factor, out=out[t]))
        out[t].add_(values[t])
    return out


def trace_after(spikes: Tensor, decay: float, *, out: Tensor | None = None) -> Tensor:
    r"""Anticausal trace of a window: spikes strictly *after* each step, discounted.

    .. math:: y(t) = \sum_{t' > t} d^{\,t' - t}\, s(t')

    over the steps of the window ``[T, ...]`` (``y(T-1) = 0``), computed as
    :math:`y(t) = d\,R(t+1)` with :math:`R` the :func:`discounted_reverse_sum` of
    the spikes (the same roundings as the recursion :math:`y(t) = d\,(y(t+1) +
    s(t+1))`, a subnormal product flushed). Correlating post spikes with
    it gives, within a window, the pairs that a causal post trace gives when
    correlated with pre spikes (:func:`~plastorch.functional.stdp_factors_post_triggered`).
    :func:`trace_after_window` also gives :math:`y(-1)`.

    Examples
    --------
    >>> trace_after(torch.tensor([1.0, 0.0, 1.0]), 0.5)
    tensor([0.2500, 0.5000, 0.0000])
    """
    return trace_after_window(spikes, decay, out=out)[0]


def trace_after_window(
    values: Tensor, decay: float, *, out: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r""":func:`trace_after` of a window and its value one step before the window.

    .. math:: y(-1) = \sum_t d^{\,t + 1}\, v(t)

    is what the window's (graded) values send back to a trace carried into it: the
    pairs of the window's pre spikes with a post trace :math:`x_\text{post}(-1)`
    are :math:`C(y(-1), x_\text{post}(-1))`. Both come from one reverse scan that
    writes the decayed sums it forms on its way (the compiled kernels), or the torch
    loop of :func:`discounted_reverse_sum` and one decay; the same bits either way.

    Returns
    -------
    after, before : Tensor
        :math:`y` ``[T, ...]`` (into ``out`` when given) and :math:`y(-1)` ``[...]``.

    Examples
    --------
    >>> after, before = trace_after_window(torch.tensor([1.0, 0.0, 1.0]), 0.5)
    >>> after, before
    (tensor([0.2500, 0.5000, 0.0000]), tensor(0.6250))
    """
    if out is None:
        out = torch.empty_like(values)
    else:
        _check_out(out, values.shape, values.dtype)
    steps = values.shape[0]
    total = values.new_zeros(values.shape[1:])  # R(0), the sum from step 0
    if steps == 0:
        return out, total
    factor = _scalar(decay, out)
    if not (
        _compiled_scan(out, values)
        and compiled._scan_unchecked(out, values, decay, reverse=True, end=total)
    ):
        out[-1].zero_()
        if steps > 1:
            # R(t + 1) for t < T - 1, formed in place (no second window-sized tensor)
            discounted_reverse_sum(values[1:], decay, out=out[:-1])
            flush_subnormal_(torch.mul(out[0], factor, out=total))
            flush_subnormal_(out[:-1].mul_(factor))
        total.add_(values[0])
    return out, flush_subnormal_(total.mul_(factor))
