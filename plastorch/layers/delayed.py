r"""Dense connection with a continuous, learnable delay on every synapse.

Each synapse :math:`(o, i)` has a weight :math:`w_{oi}` and a delay
:math:`d_{oi} \in [0, d_\max]` in ms. A presynaptic spike sent at step :math:`t`
reaches the synapse :math:`n_{oi}` steps later, with

.. math:: n_{oi} = \left\lfloor d_{oi} / \Delta t + \tfrac12 \right\rfloor
    \quad (\text{rounded to the nearest step, ties later}),

so one step of the layer is

.. math::

    \tilde s_{b,oi}(t) = s_{b,i}(t - n_{oi}), \qquad
    y_{b,o}(t) = \sum_i w_{oi}\, \tilde s_{b,oi}(t) + \beta_o .

:math:`\tilde s` is the *delay-adjusted presynaptic activity*. The raw spikes of the
last :math:`N + 1` steps, :math:`N = \lfloor d_\max/\Delta t + \tfrac12\rfloor`, are
kept in a ring buffer ``[N + 1, B, in]``: memory grows with steps x batch x inputs,
never with steps x synapses. Reading it is one gather of ``[B, out, in]`` per step,
which is what per-synapse delays cost.

Delays are clamped to :math:`[0, d_\max]` whenever the layer reads them, and the stored
tensor is clamped in place at every forward pass. Spikes already in flight when a
delay changes arrive when their age equals the new delay (they can be delivered twice
or skipped if a delay jumps by more than a step, as in a simulator's ring buffer).

How the delay-adjusted rules (:mod:`plastorch.rules.kernel`) read this layer is a
small duck-typed protocol, documented in ``docs/architecture.md``: ``delay``, ``dt``,
``max_delay``, ``interp_tolerance``, ``history_steps`` and ``delay_steps`` (the rules
keep their own copy of the ring, so they never depend on the layer's per-step state).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..functional.checks import check_nonnegative, check_positive

__all__ = ["DelayedLinear", "delay_to_steps", "ring_arrivals"]


def delay_to_steps(delay: Tensor, dt: float, max_steps: int) -> Tensor:
    r"""Delays in ms to whole steps, :math:`\min(\lfloor d/\Delta t + 1/2 \rfloor, N)`.

    Negative delays count as 0. Returns a ``long`` tensor shaped like ``delay``.

    Examples
    --------
    >>> delay_to_steps(torch.tensor([0.0, 0.49, 0.5, 2.4, 9.0]), 1.0, 5)
    tensor([0, 0, 1, 2, 5])
    """
    return torch.floor(delay.detach().clamp(min=0) / dt + 0.5).long().clamp(max=max_steps)


def ring_arrivals(ring: Tensor, head: int, delay_steps: Tensor) -> Tensor:
    r"""Delay-adjusted activity ``[B, out, in]`` read from a ring of raw spikes.

    .. math:: \tilde s_{b,oi} = \text{ring}[(h - n_{oi}) \bmod S,\ b,\ i]

    Parameters
    ----------
    ring : Tensor
        ``[S, B, in]``: raw presynaptic spikes of the last ``S`` steps.
    head : int
        Slot of the current step in ``ring``.
    delay_steps : Tensor
        ``[out, in]`` delays in steps, each in ``[0, S - 1]``.

    Examples
    --------
    >>> ring = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # S=2, B=1: slot 0 then slot 1
    >>> ring_arrivals(ring, 1, torch.tensor([[0, 1], [1, 0]]))
    tensor([[[0., 0.],
             [1., 1.]]])
    """
    size, _, features = ring.shape
    slots = (head - delay_steps) % size
    columns = torch.arange(features, device=ring.device).expand_as(slots)
    return ring[slots, :, columns].permute(2, 0, 1)


class DelayedLinear(nn.Linear):
    r"""``nn.Linear`` whose synapses each delay the presynaptic spikes by a learnable time.

    See the module docstring for the equations. With every delay 0 it is exactly
    ``nn.Linear``. Because it *is* an ``nn.Linear`` (same ``weight [out, in]`` and
    ``bias``), :func:`plastorch.functional.correlate` treats it as one: undelayed rules
    (STDP, homeostasis, ...) see the raw presynaptic spikes, and the delay-adjusted
    rules (:class:`~plastorch.rules.DelayAdjustedSTDP`, ...) use the delays.

    Parameters
    ----------
    in_features, out_features : int
        Sizes, as for ``nn.Linear``.
    max_delay : float
        :math:`d_\max` in ms, ``>= 0``.
    dt : float
        Simulation step in ms, ``> 0``.
    learn_delays : bool
        ``delay`` is an ``nn.Parameter`` (listed by ``parameters()``, so a
        :class:`~plastorch.Learner` writing ``.grad`` and an optimizer can train it);
        ``False`` makes it a buffer (saved in ``state_dict``, not trained).
    bias : bool
        Whether the layer has a bias, as for ``nn.Linear``.
    interp_tolerance : float
        Largest time difference in ms at which two events count as co-occurring, ``>= 0``.
        The delay-adjusted rules set :math:`t_\Delta = 0` where
        :math:`|t_\Delta| \le` ``interp_tolerance``. Arrival steps are rounded, so a
        post spike at the arrival step of a pre spike can see
        :math:`t_\Delta \in [-\Delta t/2, 0)`; ``interp_tolerance = dt / 2`` makes every
        such pair co-occurring. Delivery itself is always to the nearest step.
    delay_init : float, optional
        Initial delay of every synapse in ms; ``None`` (default) draws each uniformly
        from :math:`[0, d_\max]` with torch's global generator.

    Attributes
    ----------
    delay : Tensor
        ``[out, in]`` delays in ms.
    history : Tensor
        Ring buffer ``[history_steps + 1, B, in]`` of raw presynaptic spikes (buffer,
        empty until the first call and after :meth:`reset`).
    head : Tensor
        Slot of ``history`` written last (0-d ``long`` buffer).
    delayed_input : Tensor or None
        Delay-adjusted presynaptic activity ``[B, out, in]`` of the last step processed.

    Examples
    --------
    >>> layer = DelayedLinear(2, 1, max_delay=3.0, dt=1.0, bias=False, delay_init=0.0)
    >>> with torch.no_grad():
    ...     _ = layer.weight.fill_(1.0)
    ...     _ = layer.delay.copy_(torch.tensor([[0.0, 2.0]]))
    >>> x = torch.tensor([[[1.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]])  # [T=3, B=1, in=2]
    >>> layer(x).flatten().tolist()  # input 0 arrives at once, input 1 two steps later
    [1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: float,
        dt: float = 1.0,
        *,
        learn_delays: bool = True,
        bias: bool = True,
        interp_tolerance: float = 0.0,
        delay_init: float | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.max_delay = check_nonnegative("max_delay", max_delay)
        self.dt = check_positive("dt", dt)
        self.interp_tolerance = check_nonnegative("interp_tolerance", interp_tolerance)
        if delay_init is not None:
            delay_init = check_nonnegative("delay_init", delay_init)
            if delay_init > self.max_delay:
                raise ValueError(
                    f"delay_init must be <= max_delay={self.max_delay!r}, got {delay_init!r}"
                )
        self.delay_init = delay_init
        self.history_steps = int(math.floor(self.max_delay / self.dt + 0.5))
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        delay = torch.empty(out_features, in_features, device=device, dtype=dtype)
        if learn_delays:
            self.delay = nn.Parameter(delay)
        else:
            self.register_buffer("delay", delay)
        self.learn_delays = bool(learn_delays)
        self.register_buffer("history", torch.empty(0, device=device, dtype=dtype))
        self.register_buffer("head", torch.zeros((), dtype=torch.long, device=device))
        self.delayed_input: Tensor | None = None
        self.reset_delays()

    # -- parameters -------------------------------------------------------------------
    @torch.no_grad()
    def reset_delays(self) -> None:
        """Re-initialise the delays (``delay_init``, or uniform in ``[0, max_delay]``)."""
        if self.delay_init is None:
            self.delay.uniform_(0.0, self.max_delay)
        else:
            self.delay.fill_(self.delay_init)

    @torch.no_grad()
    def clamp_delays_(self) -> None:
        """Clamp the stored delays to ``[0, max_delay]`` in place."""
        self.delay.clamp_(0.0, self.max_delay)

    @property
    def delay_steps(self) -> Tensor:
        """``[out, in]`` delays in whole steps (``long``), see :func:`delay_to_steps`."""
        return delay_to_steps(self.delay, self.dt, self.history_steps)

    def arrivals(self, ring: Tensor, head: int, delay_steps: Tensor | None = None) -> Tensor:
        """Delay-adjusted activity ``[B, out, in]`` of the step in slot ``head`` of ``ring``.

        ``ring`` is ``[history_steps + 1, B, in]``; see :func:`ring_arrivals`.
        ``delay_steps`` defaults to :attr:`delay_steps` (pass it to reuse it over a window).
        """
        return ring_arrivals(ring, head, self.delay_steps if delay_steps is None else delay_steps)

    # -- state ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the spikes in flight (the next call starts from an empty history)."""
        self.history = torch.empty(0, dtype=self.history.dtype, device=self.history.device)
        self.head = torch.zeros((), dtype=torch.long, device=self.head.device)
        self.delayed_input = None

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        saved = state_dict.get(prefix + "history")
        if isinstance(saved, Tensor):  # the ring takes the saved batch size
            self.history = torch.empty_like(saved, device=self.history.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _ring(self, batch: int, like: Tensor) -> Tensor:
        shape = (self.history_steps + 1, batch, self.in_features)
        if self.history.numel() == 0:
            self.history = torch.zeros(shape, dtype=like.dtype, device=like.device)
            self.head = torch.full((), self.history_steps, dtype=torch.long, device=like.device)
        elif tuple(self.history.shape) != shape:
            raise ValueError(
                f"{type(self).__name__} holds spikes in flight for batch {self.history.shape[1]} "
                f"but got input of batch {batch}; call reset() before changing the batch size"
            )
        return self.history

    # -- forward ----------------------------------------------------------------------
    def forward(self, input: Tensor) -> Tensor:
        """``[B, in] -> [B, out]`` (one step) or ``[T, B, in] -> [T, B, out]`` (a window)."""
        if input.dim() not in (2, 3) or input.shape[-1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__}({self.in_features}, {self.out_features}) takes input "
                f"[B, {self.in_features}] or [T, B, {self.in_features}], got {tuple(input.shape)}"
            )
        window = input if input.dim() == 3 else input.unsqueeze(0)
        self.clamp_delays_()
        steps = self.delay_steps
        ring = self._ring(window.shape[1], window)
        head = int(self.head)
        size = ring.shape[0]
        outputs = []
        arrived = None
        for t in range(window.shape[0]):
            head = (head + 1) % size
            ring[head] = window[t].detach()
            arrived = self.arrivals(ring, head, steps)
            outputs.append(torch.einsum("boi,oi->bo", arrived, self.weight))
        self.head.fill_(head)
        self.delayed_input = arrived
        out = torch.stack(outputs)
        if self.bias is not None:
            out = out + self.bias
        return out if input.dim() == 3 else out[0]

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, max_delay={self.max_delay}, dt={self.dt}, "
            f"learn_delays={self.learn_delays}, interp_tolerance={self.interp_tolerance}"
        )
