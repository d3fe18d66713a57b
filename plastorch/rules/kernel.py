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

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..functional.checks import check_positive, check_real
from .base import (
    BatchReduction,
    Halves,
    Rule,
    Term,
    check_batch_reduction,
    parse_signal,
    route_terms,
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

#: What a delay-adjusted rule reads from its layer (see docs/architecture.md).
DELAYED_LAYER_PROTOCOL = (
    "delay",
    "dt",
    "max_delay",
    "interp_tolerance",
    "history_steps",
    "delay_steps",
    "arrivals",
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
    magnitude = t_delta.abs()
    return torch.where(
        t_delta >= 0,
        lr_causal * torch.exp(-magnitude / tau_causal),
        lr_acausal * torch.exp(-magnitude / tau_acausal),
    )


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
    out = torch.empty(spikes.shape, dtype=age.dtype, device=spikes.device)
    for t in range(spikes.shape[0]):
        age = torch.where(spikes[t] != 0, torch.zeros_like(age), age + 1)
        out[t] = age
    return out


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


def _evaluate(kernel: nn.Module, name: str, t_delta: Tensor, valid: Tensor) -> Tensor:
    """``kernel(t_delta)`` where ``valid``, 0 elsewhere (``t_delta`` may hold inf there)."""
    safe = torch.where(valid, t_delta, torch.zeros_like(t_delta))
    value = kernel(safe)
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must return a tensor, got {type(value).__name__}")
    if value.shape != safe.shape:
        try:
            value = value.expand_as(safe)
        except RuntimeError:
            raise ValueError(
                f"{name} returned shape {tuple(value.shape)} for t_delta of shape "
                f"{tuple(safe.shape)}; a kernel must be elementwise"
            ) from None
    return torch.where(valid, value.to(safe.dtype), torch.zeros_like(safe))


def _signed_terms(factor: Tensor, spikes: Tensor, factor_is_pre: bool) -> list[Term]:
    """Terms ``+C(factor+, spikes)`` and ``-C(factor-, spikes)`` (skipping empty parts)."""
    terms = []
    for part, rate in ((factor.clamp(min=0), 1.0), ((-factor).clamp(min=0), -1.0)):
        if bool(part.ne(0).any()):
            terms.append(Term(part, spikes, rate) if factor_is_pre else Term(spikes, part, rate))
    return terms


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
        since_pre = steps_since_window(since_pre0, pre)
        since_post = steps_since_window(since_post0, post)
        new_state = {"steps_since_pre": since_pre[-1], "steps_since_post": since_post[-1]}
        halves = Halves(self.batch_reduction, pre.shape[1])
        if signal is None:
            return halves.result(), new_state
        post_before = torch.cat((since_post0.unsqueeze(0), since_post[:-1])) + 1
        k_post = _evaluate(
            self.kernel_post, "kernel_post", since_pre * self.dt, torch.isfinite(since_pre)
        )
        k_pre = _evaluate(
            self.kernel_pre, "kernel_pre", -post_before * self.dt, torch.isfinite(post_before)
        )
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
    ``layer.interp_tolerance`` is set to 0. Cost per step: a few elementwise
    ``[B, out, in]`` operations (per-synapse delays need them); memory: the
    ``[B, out, in]`` arrival times plus the ring ``[N + 1, B, in]``.

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
            "head": torch.tensor(size - 1, dtype=torch.long, device=device),
            "steps_since_arrival": torch.full(
                (batch, out_features, in_features), float("inf"), dtype=dtype, device=device
            ),
            "steps_since_post": torch.full(
                (batch, out_features), float("inf"), dtype=dtype, device=device
            ),
        }

    def forward(self, layer, pre, post, state, signal=None):
        _check_delayed_layer(layer, self)
        ring = state["ring"].clone()
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
        delay_steps = layer.delay_steps.to(dtype)
        head, size = int(state["head"]), ring.shape[0]
        since_arrival = state["steps_since_arrival"]
        since_post = state["steps_since_post"]
        potentiation = torch.zeros_like(since_arrival)
        depression = torch.zeros_like(since_arrival)

        def add(value: Tensor, gain) -> None:
            value = value * gain
            potentiation.add_(value.clamp(min=0))
            depression.add_((-value).clamp(min=0))

        for t in range(steps):
            head = (head + 1) % size
            ring[head] = pre[t]
            arrived = layer.arrivals(ring, head)  # [B, out, in]
            post_before = since_post + 1
            since_arrival = torch.where(arrived != 0, delay_steps, since_arrival + 1)
            since_post = torch.where(post[t] != 0, torch.zeros_like(post_before), post_before)
            if signal is None:
                continue
            gain = signal if isinstance(signal, float) else signal[t].reshape(-1, 1, 1)
            # facilitate/depress on arrivals: pair with the latest post strictly before
            valid = (arrived != 0) & torch.isfinite(post_before).unsqueeze(-1)
            if bool(valid.any()):
                t_delta = (delay_steps - post_before.unsqueeze(-1)) * dt - delay
                t_delta = _co_occurring(t_delta, tolerance)
                add(_evaluate(self.kernel_pre, "kernel_pre", t_delta, valid) * arrived, gain)
            # on post spikes: pair with the latest arrival at or before this step
            fired = post[t].unsqueeze(-1)
            valid = (fired != 0) & torch.isfinite(since_arrival)
            if bool(valid.any()):
                t_delta = _co_occurring(since_arrival * dt - delay, tolerance)
                add(_evaluate(self.kernel_post, "kernel_post", t_delta, valid) * fired, gain)

        new_state = {
            "ring": ring,
            "head": torch.tensor(head, dtype=torch.long, device=ring.device),
            "steps_since_arrival": since_arrival,
            "steps_since_post": since_post,
        }
        halves = Halves(self.batch_reduction, batch)
        for half, potentiative in ((potentiation, True), (depression, False)):
            if bool(half.ne(0).any()):
                halves.add(half if halves.per_sample else half.sum(0), potentiative)
        return halves.result(), new_state


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
