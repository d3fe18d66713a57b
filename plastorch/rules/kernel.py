r"""Spike-time STDP with any kernel, undelayed and delay-adjusted.

Instead of traces, these rules keep the time of each neuron's (or synapse's) latest
spike and evaluate a kernel :math:`K` on the spike-time difference
:math:`t_\Delta = t_\text{post} - t_\text{pre}` when a spike happens (nearest-spike
pairing, Brian2 / NEST event order: presynaptic events of a step before postsynaptic
ones):

.. math::

    \Delta w = \sum_{t:\ \text{post spike}} s_\text{post}(t)\, K_\text{post}\bigl(t - t^f_\text{pre}(\le t)\bigr)
             + \sum_{t:\ \text{pre spike}} s_\text{pre}(t)\, K_\text{pre}\bigl(t^f_\text{post}(< t) - t\bigr)

where :math:`t^f_\text{pre}(\le t)` is the latest presynaptic spike at or before
:math:`t` and :math:`t^f_\text{post}(< t)` the latest postsynaptic spike strictly
before it (no term while a neuron has not spiked yet). A same-step pair is seen once,
by :math:`K_\text{post}(0)`. With :math:`K(t_\Delta) = \eta_\text{post}
e^{-t_\Delta/\tau_\text{pre}}` for :math:`t_\Delta \ge 0` and :math:`\eta_\text{pre}
e^{t_\Delta/\tau_\text{post}}` for :math:`t_\Delta < 0` this is exactly
:class:`~plastorch.rules.STDP` with ``trace_mode="nearest"``.

The kernel's output is signed: where :math:`K \cdot M > 0` (:math:`M` the signal of a
modulated rule, 1 otherwise) the term is potentiation, where it is negative
depression; each term is split elementwise before the batch reduction.

Delay-adjusted rules (:class:`DelayAdjustedKernelSTDP`, :class:`DelayAdjustedKernelSTDPD`)
read the layer's per-synapse delays :math:`d_{oi}` (for example
:class:`plastorch.layers.DelayedLinear`). A presynaptic spike sent at :math:`t^f_\text{pre}`
*arrives* at the synapse :math:`n_{oi} = \lfloor d_{oi}/\Delta t + 1/2\rfloor` steps
later, and the pairs are between post spikes and arrivals:

.. math::

    t_\Delta = t^f_\text{post} - t^f_\text{pre} - d_{oi}, \qquad
    \Delta w_{oi} = \sum_{t:\ \text{post spike}} s_{\text{post},o}(t)\, K_\text{post}(t_\Delta)
                  + \sum_{t:\ \text{arrival}} \tilde s_{oi}(t)\, K_\text{pre}(t_\Delta)

with, in the first sum, the latest arrival at or before :math:`t` and, in the second,
the latest post spike strictly before the arrival step. :math:`|t_\Delta| \le`
``layer.interp_tolerance`` counts as co-occurring (:math:`t_\Delta = 0`). The
delay-adjusted state is per synapse and sample (``[B, out, in]``, the time of the
latest arrival) plus a copy of the layer's ring buffer of raw presynaptic spikes, so
the rule stays pure and does not depend on when the learner settles a window.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..functional import compiled, flush_subnormal_
from ..functional.checks import check_positive, check_real
from ..functional.traces import _compiled_scan
from .base import (
    BatchReduction,
    Halves,
    Rule,
    Term,
    check_batch_reduction,
    parse_signal,
    route_terms,
    scratch,
    split_signal,
)

__all__ = [
    "DelayAdjustedKernelSTDP",
    "DelayAdjustedKernelSTDPD",
    "Kernel",
    "KernelSTDP",
    "exponential_window",
    "steps_since_window",
]

#: Step index standing for "no spike yet" in the delay-adjusted rules' state.
_NEVER = -(2**62)

#: Expected arrivals processed at once by the delay-adjusted rules (bounds their memory).
_ARRIVALS_PER_CHUNK = 1 << 20

#: What a delay-adjusted rule reads from its layer (see docs/architecture.md).
DELAYED_LAYER_PROTOCOL = (
    "delay",
    "dt",
    "max_delay",
    "interp_tolerance",
    "history_steps",
    "delay_steps",
)


def exponential_window(
    t_delta: Tensor,
    lr_causal: float | Tensor,
    lr_acausal: float | Tensor,
    tau_causal: float | Tensor,
    tau_acausal: float | Tensor,
) -> Tensor:
    r"""Two-sided exponential STDP window.

    .. math::

        K(t_\Delta) = \begin{cases}
            \eta_c\, e^{-|t_\Delta| / \tau_c} & t_\Delta \ge 0 \\
            \eta_a\, e^{-|t_\Delta| / \tau_a} & t_\Delta < 0
        \end{cases}

    Examples
    --------
    >>> exponential_window(torch.tensor([0.0, 1.0, -1.0]), 1.0, -0.5, 1.0, 2.0)
    tensor([ 1.0000,  0.3679, -0.3033])
    """
    parameters = (lr_causal, lr_acausal, tau_causal, tau_acausal)
    magnitude = t_delta.abs()
    causal = t_delta >= 0
    scalars = all(not isinstance(value, Tensor) or value.numel() == 1 for value in parameters)
    small = t_delta.numel() < _IN_PLACE_MIN_NUMEL  # (a delay rule's per-event values)
    if small or not scalars or (torch.is_grad_enabled() and _needs_grad(t_delta, *parameters)):
        return torch.where(
            causal,
            lr_causal * torch.exp(-magnitude / tau_causal),
            lr_acausal * torch.exp(-magnitude / tau_acausal),
        )
    # the same values in place (a factor of a conv window is tens of MB: each fresh
    # temporary costs its page faults), and a side no t_delta is on not computed
    if bool(causal.all()):
        return magnitude.div_(tau_causal).neg_().exp_().mul_(lr_causal)
    if not bool(causal.any()):
        return magnitude.div_(tau_acausal).neg_().exp_().mul_(lr_acausal)
    acausal = torch.div(magnitude, tau_acausal).neg_().exp_().mul_(lr_acausal)
    value = magnitude.div_(tau_causal).neg_().exp_().mul_(lr_causal)
    return torch.where(causal, value, acausal, out=value)


#: below this many entries exponential_window takes the formula: its temporaries are
#: small, and the in-place path's checks of the sides cost a host sync each
_IN_PLACE_MIN_NUMEL = 1 << 16


def _needs_grad(*values) -> bool:
    return any(isinstance(value, Tensor) and value.requires_grad for value in values)


def steps_since_window(age: Tensor, spikes: Tensor) -> Tensor:
    r"""Steps since the latest spike, at every step of a window.

    .. math:: a(t) = \begin{cases} 0 & s(t) \ne 0 \\ a(t-1) + 1 & \text{otherwise} \end{cases}

    ``inf`` means "never spiked". Returns ``[T, ...]``; ``out[-1]`` is the state to
    carry into the next window.

    Examples
    --------
    >>> s = torch.tensor([[0.0], [1.0], [0.0], [0.0]])
    >>> steps_since_window(torch.full((1,), float("inf")), s).flatten()
    tensor([inf, 0., 1., 2.])
    """
    return _steps_since_after(age, spikes)


def _steps_since_after(age: Tensor, spikes: Tensor, out: Tensor | None = None) -> Tensor:
    """:func:`steps_since_window` into ``out`` when given."""
    if out is None:
        out = torch.empty(spikes.shape, dtype=age.dtype, device=spikes.device)
    if _compiled_ages(out, spikes, age, before=False) is not None:
        return out
    # a(t) is the age just before step t, reset where it spikes
    return _steps_since_before(age, spikes, out)[0].masked_fill_(spikes != 0, 0)


class Kernel(nn.Module):
    r"""A kernel ``function(t_delta, **parameters)`` whose parameters live in ``state_dict``.

    Each keyword parameter becomes a buffer (a float is stored as a float64 0-d
    tensor, a tensor as a copy), so a rule's kernel parameters are saved and loaded
    with the :class:`~plastorch.Learner` (under ``rule.kernel_post.<name>``) and
    move with ``.to()``. They are cast to the dtype of ``t_delta`` when the kernel is
    evaluated.

    Parameters
    ----------
    function : callable
        ``function(t_delta: Tensor, **parameters) -> Tensor``, elementwise in
        ``t_delta`` (ms), returning the signed update per pair.
    **parameters : float or Tensor
        Keyword parameters of ``function``.

    Examples
    --------
    >>> def triangle(t, height, width):
    ...     return height * (1 - t.abs() / width).clamp(min=0)
    >>> kernel = Kernel(triangle, height=2.0, width=4.0)
    >>> kernel(torch.tensor([0.0, 2.0, -8.0]))
    tensor([2., 1., 0.])
    >>> sorted(kernel.state_dict())
    ['height', 'width']
    """

    def __init__(self, function: Callable[..., Tensor], /, **parameters: float | Tensor):
        super().__init__()
        if not callable(function):
            raise TypeError(f"function must be callable, got {type(function).__name__}")
        self.function = function
        names = []
        for name, value in parameters.items():
            if hasattr(self, name) or name == "parameter_names":
                raise ValueError(f"kernel parameter name {name!r} clashes with a Kernel attribute")
            if isinstance(value, Tensor):
                tensor = value.detach().clone()
            else:
                tensor = torch.tensor(check_real(name, value), dtype=torch.float64)
            self.register_buffer(name, tensor)
            names.append(name)
        self.parameter_names = tuple(names)

    def forward(self, t_delta: Tensor) -> Tensor:
        parameters = {
            name: getattr(self, name).to(dtype=t_delta.dtype) for name in self.parameter_names
        }
        return self.function(t_delta, **parameters)

    def extra_repr(self) -> str:
        name = getattr(self.function, "__name__", type(self.function).__name__)
        values = ", ".join(f"{n}={getattr(self, n).tolist()!r}" for n in self.parameter_names)
        return f"{name}, {values}" if values else name


def _as_kernel(kernel: object, name: str) -> nn.Module:
    if isinstance(kernel, nn.Module):
        return kernel
    if callable(kernel):
        return Kernel(kernel)
    raise TypeError(f"{name} must be a callable or a Kernel, got {type(kernel).__name__}")


def _where_finite(start: Tensor, ages: Tensor) -> Tensor | None:
    """Where the (non-negative) ``ages`` are finite, or ``None`` when the ages carried
    in are all finite (a window's ages then are too: they count up from finite ages or
    restart at 0). Ages are never NaN, so a comparison with infinity tells (3x faster
    than ``isfinite`` here)."""
    if bool(start.lt(math.inf).all()):
        return None
    return ages.lt(math.inf)


def _steps_since_before(
    age: Tensor, spikes: Tensor, out: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r""":math:`a(t-1) + 1` at every step of a window (the steps since the latest spike
    strictly before :math:`t`), into ``out`` when given, and :math:`a(T-1)` (see
    :func:`steps_since_window`)."""
    if out is None:
        out = torch.empty(spikes.shape, dtype=age.dtype, device=spikes.device)
    last = _compiled_ages(out, spikes, age, before=True)
    if last is not None:
        return out, last
    for t in range(spikes.shape[0]):  # (each step written into the window)
        age = torch.add(age, 1, out=out[t]).masked_fill(spikes[t] != 0, 0)
    return out, age


def _compiled_ages(out: Tensor, spikes: Tensor, age: Tensor, before: bool) -> Tensor | None:
    """The window's ages by the compiled pass (the last ages), or ``None`` where it does
    not take the tensors (then the torch loop, of the same values, runs)."""
    if not (_compiled_scan(out, spikes, age) and age.shape == spikes.shape[1:]):
        return None
    return compiled._ages_unchecked(out, spikes, age, before)


def _evaluate(
    kernel: nn.Module,
    name: str,
    t_delta: Tensor,
    valid: Tensor | None = None,
    fill: float = 0.0,
    *,
    owned: bool = False,
) -> Tensor:
    """``kernel(t_delta)`` where ``valid``, 0 elsewhere (``t_delta`` may hold inf there);
    everywhere without ``valid``. The kernel sees ``fill`` where not ``valid`` (a point on
    the side of 0 the valid values are on: a two-sided kernel then computes one side).
    ``owned``: ``t_delta``, ``valid`` and the kernel's value are the caller's
    temporaries, written in place (the kernel's value may be ``t_delta`` itself)."""
    if valid is None:
        safe = t_delta
    elif owned:
        invalid = valid.logical_not_()  # (the caller's mask, now of the other entries)
        safe = t_delta.masked_fill_(invalid, fill)
    else:
        safe = torch.where(valid, t_delta, fill)
    value = kernel(safe)
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must return a tensor, got {type(value).__name__}")
    if value.shape != safe.shape:
        try:
            value = value.expand_as(safe).contiguous()  # (a copy the caller may write)
        except RuntimeError:
            raise ValueError(
                f"{name} returned shape {tuple(value.shape)} for t_delta of shape "
                f"{tuple(safe.shape)}; a kernel must be elementwise"
            ) from None
    value = value.to(safe.dtype)
    if valid is None:
        return value
    if owned:
        return value.masked_fill_(invalid, 0.0)
    return torch.where(valid, value, 0.0)


def _signed_terms(factor: Tensor, spikes: Tensor, factor_is_pre: bool) -> list[Term]:
    """Terms ``+C(factor+, spikes)`` and ``-C(factor-, spikes)`` (skipping empty parts).

    A factor of one sign (a kernel of one sign on each side of 0, the usual STDP
    window) is one term: the factor itself, or its negation. The negative part's zeros
    are made ``+0.0`` (``-0`` would be an entry to the sparse scans, which read floats
    as integers). A NaN keeps both parts, so it reaches the update.
    """
    if factor.numel() == 0:
        return []
    low, high = (float(value) for value in torch.aminmax(factor))
    if low != low or high != high:  # NaN
        low, high = -math.inf, math.inf
    parts = []
    if high > 0:
        parts.append((factor if low >= 0 else factor.clamp(min=0), 1.0))
    if low < 0:
        negative = torch.neg(factor) if high <= 0 else factor.neg().clamp_(min=0)
        parts.append((negative.add_(0.0), -1.0))
    return [
        Term(part, spikes, rate) if factor_is_pre else Term(spikes, part, rate)
        for part, rate in parts
    ]


class _KernelRule(Rule):
    """Kernels, batch reduction and signal handling shared by the kernel rules."""

    def __init__(
        self,
        kernel_post: Callable[[Tensor], Tensor],
        kernel_pre: Callable[[Tensor], Tensor] | None = None,
        *,
        batch_reduction: BatchReduction = "sum",
        modulated: bool = False,
    ):
        super().__init__()
        self.kernel_post = _as_kernel(kernel_post, "kernel_post")
        self.kernel_pre = (
            self.kernel_post if kernel_pre is None else _as_kernel(kernel_pre, "kernel_pre")
        )
        self.batch_reduction = check_batch_reduction(batch_reduction)
        self.modulated = bool(modulated)

    def _signal(self, signal, pre: Tensor, dtype: torch.dtype):
        """``None`` (no update), a float, or a ``[T, B|1]`` tensor; raises if not allowed."""
        if not self.modulated:
            if signal is not None:
                raise TypeError(
                    f"{type(self).__name__} takes no signal; construct it with modulated=True "
                    "(or use its modulated variant) for reward-modulated learning"
                )
            return 1.0
        return parse_signal(signal, pre.shape[0], pre.shape[1], dtype=dtype, device=pre.device)

    def extra_repr(self) -> str:
        return f"batch_reduction={self.batch_reduction!r}, modulated={self.modulated}"


class KernelSTDP(_KernelRule):
    r"""Spike-time STDP with arbitrary kernels, for any layer :func:`~plastorch.functional.correlate` supports.

    .. math::

        \Delta w = \sum_t M(t) \Bigl[ s_\text{post}(t) \otimes K_\text{post}\bigl(\Delta t\, a_\text{pre}(t)\bigr)
                 + K_\text{pre}\bigl(-\Delta t\, \tilde a_\text{post}(t)\bigr) \otimes s_\text{pre}(t) \Bigr]

    with :math:`a_\text{pre}(t)` the steps since the latest pre spike at or before
    :math:`t` and :math:`\tilde a_\text{post}(t)` the steps since the latest post spike
    strictly before :math:`t` (see :mod:`plastorch.rules.kernel`). Both kernel factors
    are shaped like one side of the layer (``[T, B, *in]`` and ``[T, B, *out]``), so a
    window costs at most four correlations (positive and negative part of each) and no
    ``[B, out, in]`` tensor. :math:`M = 1` unless ``modulated=True``, where :math:`M`
    is the signal (scalar, ``[B]``, ``[T, B]`` or ``[T, 1]``, as for
    :class:`~plastorch.rules.MSTDP`; no signal means :math:`M = 0`).

    Parameters
    ----------
    kernel_post : callable or Kernel
        :math:`K_\text{post}(t_\Delta)`, evaluated at post spikes on
        :math:`t_\Delta = t_\text{post} - t_\text{pre} \ge 0` (ms). A plain callable is
        wrapped in :class:`Kernel`; pass ``Kernel(f, **params)`` to keep parameters in
        ``state_dict``.
    kernel_pre : callable or Kernel, optional
        :math:`K_\text{pre}(t_\Delta)`, evaluated at pre spikes on
        :math:`t_\Delta < 0`; defaults to ``kernel_post`` (one two-sided window).
    dt : float
        Simulation step in ms (> 0).
    batch_reduction : {"sum", "mean"} or callable
        See :mod:`plastorch.rules.base`.
    modulated : bool
        Whether the update is multiplied by a signal given to ``step``.

    Examples
    --------
    >>> fc = nn.Linear(1, 1, bias=False)
    >>> window = Kernel(exponential_window, lr_causal=1.0, lr_acausal=-1.0,
    ...                 tau_causal=20.0, tau_acausal=20.0)
    >>> rule = KernelSTDP(window)
    >>> pre = torch.tensor([[[1.0]], [[0.0]]])   # pre at step 0, post at step 1
    >>> post = torch.tensor([[[0.0]], [[1.0]]])
    >>> update, state = rule(fc, pre, post, rule.initial_state(fc, pre[0], post[0]))
    >>> round(update.delta().item(), 6)  # exp(-1/20)
    0.951229

    References
    ----------
    Morrison, Diesmann & Gerstner (2008), nearest-spike interaction; inferno's
    spike-time trainers (reference 000).
    """

    def __init__(
        self,
        kernel_post: Callable[[Tensor], Tensor],
        kernel_pre: Callable[[Tensor], Tensor] | None = None,
        *,
        dt: float = 1.0,
        batch_reduction: BatchReduction = "sum",
        modulated: bool = False,
    ):
        super().__init__(
            kernel_post, kernel_pre, batch_reduction=batch_reduction, modulated=modulated
        )
        self.dt = check_positive("dt", dt)

    def extra_repr(self) -> str:
        return f"dt={self.dt}, {super().extra_repr()}"

    def initial_state(self, layer, pre, post):
        dtype = layer.weight.dtype
        return {
            "steps_since_pre": torch.full(pre.shape, float("inf"), dtype=dtype, device=pre.device),
            "steps_since_post": torch.full(
                post.shape, float("inf"), dtype=dtype, device=post.device
            ),
        }

    def forward(self, layer, pre, post, state, signal=None):
        since_pre0, since_post0 = state["steps_since_pre"], state["steps_since_post"]
        dtype = since_pre0.dtype
        pre, post = pre.to(dtype), post.to(dtype)
        signal = self._signal(signal, pre, dtype)
        # the window's ages in the caller's workspace (a fresh window-sized tensor costs
        # its page faults): the steps since the latest pre spike at or before each step,
        # and since the latest post spike strictly before it (and the last post age)
        lent = scratch("steps_since_pre", pre.shape, dtype, pre.device)
        since_pre = _steps_since_after(since_pre0, pre, lent)
        lent = scratch("steps_since_post", post.shape, dtype, post.device)
        post_before, since_post = _steps_since_before(since_post0, post, lent)
        # (a copy: since_pre becomes the kernel's argument in place below)
        new_state = {"steps_since_pre": since_pre[-1].clone(), "steps_since_post": since_post}
        halves = Halves(self.batch_reduction, pre.shape[1])
        if signal is None:
            return halves.result(), new_state
        # a neuron that never spiked has an infinite age; once every neuron of the state
        # has spiked, no age is infinite and the kernels need no mask (a factor of a conv
        # window is tens of MB: each mask and temporary costs its passes and page faults)
        valid_pre = _where_finite(since_pre0, since_pre)
        valid_post = _where_finite(since_post0, post_before)
        k_post = _evaluate(
            self.kernel_post, "kernel_post", since_pre.mul_(self.dt), valid_pre, owned=True
        )
        k_pre = _evaluate(
            self.kernel_pre,
            "kernel_pre",
            post_before.mul_(-self.dt),
            valid_post,
            -self.dt,  # (the pre kernel's arguments are all < 0)
            owned=True,
        )
        # a decaying kernel long after its spike is subnormal (exp(-95) in float32): the
        # factors of two correlations, flushed (functional.numerics). The delay rules'
        # per-event values are not GEMM factors, and are left as they are.
        k_post, k_pre = flush_subnormal_(k_post), flush_subnormal_(k_pre)
        terms = _signed_terms(k_post, post, True) + _signed_terms(k_pre, pre, False)
        if isinstance(signal, Tensor):
            signal = split_signal(signal)
        route_terms(layer, terms, None if signal == 1.0 else signal, halves)
        return halves.result(), new_state


class DelayAdjustedKernelSTDP(_KernelRule):
    r"""Kernel STDP of the weights on :math:`t_\Delta = t_\text{post} - t_\text{pre} - d`.

    For a layer with per-synapse delays (:class:`plastorch.layers.DelayedLinear`):

    .. math::

        \Delta w_{oi} = \sum_t M(t) \Bigl[ s_{\text{post},o}(t)\, K_\text{post}\bigl(\Delta t\, \alpha_{oi}(t) - d_{oi}\bigr)
            + \tilde s_{oi}(t)\, K_\text{pre}\bigl(\Delta t\,(n_{oi} - \tilde a_{\text{post},o}(t)) - d_{oi}\bigr) \Bigr]

    where :math:`\tilde s_{oi}(t) = s_{\text{pre},i}(t - n_{oi})` is the arrival at the
    synapse, :math:`\alpha_{oi}(t)` the steps since the *send* time of the latest
    arrival at or before :math:`t`, and :math:`\tilde a_{\text{post},o}(t)` the steps
    since the latest post spike strictly before :math:`t`; :math:`|t_\Delta| \le`
    ``layer.interp_tolerance`` is set to 0. Cost per step: the layer's gather of the
    arrivals ``[B, out, in]`` and a scan for the nonzero ones; the kernels are
    evaluated at the events only (arrivals, and post spikes x inputs). State: the
    step at which the latest arrival of each synapse and sample was sent
    (``[B, out, in]``, ``long``), the step of each output's latest spike, and a copy
    of the ring ``[N + 1, B, in]``.

    The delays :math:`d` are read (clamped to ``[0, layer.max_delay]``) when the
    window is settled; within a :class:`~plastorch.Learner` they only change at
    ``step``, so that is the delay the window's spikes travelled with.

    Parameters
    ----------
    kernel_post, kernel_pre, batch_reduction, modulated
        As for :class:`KernelSTDP` (no ``dt``: the layer's is used).

    Examples
    --------
    >>> from plastorch.layers import DelayedLinear
    >>> layer = DelayedLinear(1, 1, max_delay=4.0, bias=False, delay_init=2.0)
    >>> rule = DelayAdjustedKernelSTDP(Kernel(exponential_window, lr_causal=1.0,
    ...     lr_acausal=-1.0, tau_causal=10.0, tau_acausal=10.0))
    >>> pre = torch.zeros(6, 1, 1); pre[0] = 1    # sent at 0, arrives at 2
    >>> post = torch.zeros(6, 1, 1); post[5] = 1  # t_delta = 5 - 0 - 2 = 3
    >>> update, _ = rule(layer, pre, post, rule.initial_state(layer, pre[0], post[0]))
    >>> round(update.potentiation.item(), 6)  # exp(-3/10)
    0.740818
    """

    def initial_state(self, layer, pre, post):
        _check_delayed_layer(layer, self)
        dtype, device = layer.weight.dtype, layer.weight.device
        batch = pre.shape[0]
        size = layer.history_steps + 1
        out_features, in_features = layer.delay.shape
        return {
            "ring": torch.zeros(size, batch, in_features, dtype=dtype, device=device),
            "clock": torch.tensor(-1, dtype=torch.long, device=device),
            "arrival_sent_at": torch.full(
                (batch, out_features, in_features), _NEVER, dtype=torch.long, device=device
            ),
            "post_at": torch.full((batch, out_features), _NEVER, dtype=torch.long, device=device),
        }

    def forward(self, layer, pre, post, state, signal=None):
        _check_delayed_layer(layer, self)
        ring = state["ring"]
        dtype = ring.dtype
        steps, batch = pre.shape[:2]
        if pre.dim() != 3 or post.dim() != 3 or ring.shape[1] != batch:
            raise ValueError(
                f"{type(self).__name__} expects pre [T, B, in] and post [T, B, out] with the "
                f"batch of its state ({ring.shape[1]}), got pre {tuple(pre.shape)} and post "
                f"{tuple(post.shape)}"
            )
        pre, post = pre.to(dtype), post.to(dtype)
        signal = self._signal(signal, pre, dtype)
        dt, tolerance = float(layer.dt), float(layer.interp_tolerance)
        delay = layer.delay.detach().clamp(0.0, float(layer.max_delay)).to(dtype)
        delay_steps = layer.delay_steps
        clock0 = int(state["clock"])
        sent_at = state["arrival_sent_at"].clone()
        post_at = state["post_at"].clone()
        potentiation = torch.zeros(sent_at.shape, dtype=dtype, device=ring.device)
        depression = torch.zeros_like(potentiation)
        out_features, in_features = delay.shape
        # Flat views: one index per lookup or write instead of three (torch's advanced
        # indexing with several index tensors costs several times one flat index).
        sent_flat, sent_rows = sent_at.view(-1), sent_at.view(-1, in_features)
        post_flat, delay_flat = post_at.view(-1), delay.reshape(-1)
        # The pairs' values are accumulated once per batch of events (index_add_ of the
        # concatenated values): per step, an accumulating index_put_ costs ~0.2 ms.
        pending = _PendingPairs(potentiation, depression)

        def gain_of(t: int, samples: Tensor):
            return signal if isinstance(signal, float) else signal[t].expand(batch)[samples]

        # sub-windows of about _ARRIVALS_PER_CHUNK expected arrivals bound the memory
        synapses = sent_at.numel()
        density = float(pre.count_nonzero()) / max(pre.numel(), 1)
        chunk = int(min(steps, max(1, _ARRIVALS_PER_CHUNK // max(density * synapses, 1.0))))
        for start in range(0, steps, chunk):
            stop = min(start + chunk, steps)
            clock = clock0 + start
            events = _window_arrivals(ring, pre[start:stop], clock, delay_steps)
            bounds, b_all, synapse_all, sent_all, amplitude_all = events
            entry_all = b_all * (out_features * in_features) + synapse_all  # into [B, out, in]
            row_all = entry_all // in_features  # (sample, output): a row of sent_rows
            for t in range(start, stop):
                now = clock0 + 1 + t
                # arrivals at this step: pair with the latest post spike strictly before it
                lo, hi = (bounds[t - start - 1] if t > start else 0), bounds[t - start]
                if hi > lo:
                    entry, sent = entry_all[lo:hi], sent_all[lo:hi]
                    last_post = post_flat.index_select(0, row_all[lo:hi])
                    paired = last_post != _NEVER
                    if signal is not None and bool(paired.any()):
                        # every arrival of the step, unpaired ones valued 0 by _evaluate
                        # (masking them out costs more than adding their zeros)
                        t_delta = (last_post - sent).to(dtype) * dt
                        t_delta = t_delta - delay_flat.index_select(0, synapse_all[lo:hi])
                        value = _evaluate(
                            self.kernel_pre, "kernel_pre", _co_occurring(t_delta, tolerance), paired
                        )
                        gain = gain_of(t, b_all[lo:hi])
                        pending.entries(entry, value * amplitude_all[lo:hi] * gain)
                    # a synapse receives at most one spike per step: the entries are distinct
                    # (index_select / scatter_ / index_fill_: ~2x faster than [] on 16k entries)
                    sent_flat.scatter_(0, entry, sent)
                # post spikes: pair with the latest arrival at or before this step
                b, o = post[t].nonzero(as_tuple=True)
                if b.numel():
                    row = b * out_features + o
                    if signal is not None:
                        last_sent = sent_rows.index_select(0, row)  # [P, in]
                        paired = last_sent != _NEVER
                        if bool(paired.any()):
                            t_delta = (now - last_sent).to(dtype) * dt - delay[o]
                            value = _evaluate(
                                self.kernel_post,
                                "kernel_post",
                                _co_occurring(t_delta, tolerance),
                                paired,
                            )
                            scale = post[t, b, o] * gain_of(t, b)
                            pending.rows(row, value * scale.unsqueeze(-1))
                    post_flat.index_fill_(0, row, now)
            pending.flush()
            ring = _ring_after(ring, pre[start:stop], clock)

        new_state = {
            "ring": ring,
            "clock": torch.tensor(clock0 + steps, dtype=torch.long, device=ring.device),
            "arrival_sent_at": sent_at,
            "post_at": post_at,
        }
        halves = Halves(self.batch_reduction, batch)
        for half, potentiative in ((potentiation, True), (depression, False)):
            if bool(half.ne(0).any()):
                halves.add(half if halves.per_sample else half.sum(0), potentiative)
        return halves.result(), new_state


def _ring_after(ring: Tensor, pre: Tensor, clock: int) -> Tensor:
    """The ring (slot ``s % S`` holds step ``s``) after writing the window's steps."""
    size, steps = ring.shape[0], pre.shape[0]
    kept = torch.arange(max(steps - size, 0), steps, device=ring.device)
    slots = (clock + 1 + kept) % size
    return ring.index_copy(0, slots, pre[kept])


def _window_arrivals(ring: Tensor, pre: Tensor, clock: int, delay_steps: Tensor):
    """Every arrival at a synapse during the window, sorted by step.

    ``ring`` holds the raw spikes of steps ``clock - S + 1 .. clock`` (slot ``s % S``),
    ``pre`` those of steps ``clock + 1 .. clock + T``. A spike sent at step ``s`` by input
    ``i`` arrives at synapse ``(o, i)`` at ``s + n[o, i]``. Returns ``(bounds, b,
    synapse, sent, amplitude)`` for the arrivals at steps ``clock + 1 .. clock + T`` in
    step order (stable): ``synapse = o * in + i`` is the flat synapse, and the arrivals
    of window step ``t`` are ``bounds[t - 1]:bounds[t]`` (``bounds`` a list; 0 before
    the first). The synapses are sorted by (input, delay) once, so each spike finds the
    outputs it reaches within the window as one contiguous range: the work is
    proportional to the number of arrivals, never to steps x synapses.
    """
    size, steps = ring.shape[0], pre.shape[0]
    history = size - 1
    out_features, in_features = delay_steps.shape
    device = ring.device
    # raw spikes that can still arrive: sent at clock - history + 1 .. clock + T
    past = (clock - history + 1 + torch.arange(history, device=device)) % size
    spikes = torch.cat((ring[past], pre))
    j, b, i = spikes.nonzero(as_tuple=True)
    amplitude = spikes[j, b, i]
    sent = j + (clock - history + 1)
    lowest = (clock + 1 - sent).clamp(min=0)  # delays that land inside the window
    highest = (clock + steps - sent).clamp(max=history)
    # synapses sorted by (input, delay): key i * S + n
    flat_delays = delay_steps.reshape(-1)
    keys = (torch.arange(in_features, device=device) * size + delay_steps).flatten()
    order = torch.argsort(keys, stable=True)
    starts = torch.zeros(in_features * size + 1, dtype=torch.long, device=device)
    starts[1:] = torch.cumsum(torch.bincount(keys, minlength=in_features * size), 0)
    first = starts[i * size + lowest]
    count = (starts[i * size + highest + 1] - first).clamp(min=0)
    step0 = sent - (clock + 1)  # window step of a spike's zero-delay arrival
    if compiled.available() and device.type == "cpu":
        # one counting sort over the arrivals instead of the torch expansion below
        result = compiled._expand_by_step_unchecked(step0, first, count, order, flat_delays, steps)
        if result is not None:
            bounds, spike, synapse = result
            b, sent, amplitude = (x.index_select(0, spike) for x in (b, sent, amplitude))
            return bounds, b, synapse, sent, amplitude
    spike = torch.repeat_interleave(torch.arange(count.numel(), device=device), count)
    # arrival k of spike p is synapse order[first[p] + k]; k = position - (events before p)
    shift = first - (torch.cumsum(count, 0) - count)  # per spike: one gather, not two
    synapse = order[torch.arange(spike.numel(), device=device) + shift[spike]]
    # window step of each arrival, 0 .. T-1: a small integer type sorts several times
    # faster (radix) than int64 (1M arrivals: 2-3 ms instead of 10)
    step = step0[spike] + flat_delays[synapse]
    small = torch.uint8 if steps <= 256 else torch.int16 if steps <= 32768 else torch.long
    by_step = torch.argsort(step.to(small), stable=True)
    bounds = torch.cumsum(torch.bincount(step, minlength=steps), 0).tolist()
    # gather the per-spike values through the sorted spike index (small tables)
    spike, synapse = spike[by_step], synapse[by_step]
    return bounds, b[spike], synapse, sent[spike], amplitude[spike]


class DelayAdjustedKernelSTDPD(DelayAdjustedKernelSTDP):
    r"""Kernel STDP of the *delays*: the update of :class:`DelayAdjustedKernelSTDP` applied to ``layer.delay``.

    .. math::

        \Delta d_{oi} = \sum_t M(t) \Bigl[ s_{\text{post},o}(t)\, K_\text{post}(t_\Delta)
            + \tilde s_{oi}(t)\, K_\text{pre}(t_\Delta) \Bigr],
        \qquad t_\Delta = t^f_\text{post} - t^f_\text{pre} - d_{oi}

    A positive kernel output lengthens the delay (the ``potentiation`` half of the
    returned update, on the delay tensor), a negative one shortens it. Keep the delays
    in range with a bound on ``[0, layer.max_delay]`` (e.g.
    ``Hard(0, layer.max_delay)``); the layer also clamps them whenever it reads them.

    Examples
    --------
    >>> from plastorch.layers import DelayedLinear
    >>> layer = DelayedLinear(1, 1, max_delay=9.0, bias=False, delay_init=2.0)
    >>> rule = DelayAdjustedKernelSTDPD(lambda t: 0.1 * t)  # move d toward t_post - t_pre
    >>> rule.target
    'delay'
    >>> pre = torch.zeros(6, 1, 1); pre[0] = 1; post = torch.zeros(6, 1, 1); post[5] = 1
    >>> update, _ = rule(layer, pre, post, rule.initial_state(layer, pre[0], post[0]))
    >>> round(update.delta().item(), 6)  # 0.1 * (5 - 0 - 2)
    0.3
    """

    target = "delay"


class _PendingPairs:
    """Signed pair values waiting to be split into the two halves and added.

    Values arrive in event order, as single synapses (:meth:`entries`, flat indices
    into ``[B, out, in]``) or whole ``[in]`` rows (:meth:`rows`, flat ``(sample,
    output)`` indices). :meth:`flush` (and every ``_ARRIVALS_PER_CHUNK`` held values)
    adds the positive parts to ``potentiation`` and the negated negative parts to
    ``depression`` with one ``index_add_`` each, in event order, so where the flushes
    fall does not change a bit of the sums.
    """

    def __init__(self, potentiation: Tensor, depression: Tensor):
        self.halves = (potentiation.view(-1), depression.view(-1))
        self.columns = torch.arange(potentiation.shape[-1], device=potentiation.device)
        self.held: list[tuple[Tensor, Tensor]] = []
        self.size = 0

    def entries(self, index: Tensor, value: Tensor) -> None:
        self._hold(index, value)

    def rows(self, index: Tensor, value: Tensor) -> None:
        width = self.columns.numel()
        self._hold((index[:, None] * width + self.columns).reshape(-1), value.reshape(-1))

    def _hold(self, index: Tensor, value: Tensor) -> None:
        self.held.append((index, value))
        self.size += value.numel()
        if self.size >= _ARRIVALS_PER_CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.held:
            return
        index = torch.cat([i for i, _ in self.held])
        value = torch.cat([v for _, v in self.held])
        self.halves[0].index_add_(0, index, value.clamp(min=0))
        self.halves[1].index_add_(0, index, value.neg().clamp_(min=0))
        self.held.clear()
        self.size = 0


def _co_occurring(t_delta: Tensor, tolerance: float) -> Tensor:
    if tolerance <= 0.0:
        return t_delta
    return torch.where(t_delta.abs() <= tolerance, torch.zeros_like(t_delta), t_delta)


def _check_delayed_layer(layer: nn.Module, rule: Rule) -> None:
    missing = [name for name in DELAYED_LAYER_PROTOCOL if not hasattr(layer, name)]
    if missing:
        raise TypeError(
            f"{type(rule).__name__} needs a layer with per-synapse delays (e.g. "
            f"plastorch.layers.DelayedLinear); {type(layer).__name__} lacks {missing}"
        )
