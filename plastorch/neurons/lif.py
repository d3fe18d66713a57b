"""Leaky integrate-and-fire neurons, plain and with Diehl & Cook's adaptive threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from plastorch.neurons.base import (
    SpikingNeuron,
    _as_float,
    _check_nonnegative,
    _check_positive,
)

__all__ = ["LIF", "AdaptiveLIF"]

# A refractory countdown below this fraction of a step counts as over, so that float
# rounding in ``refractory - k * dt`` never adds a step (5 ms at dt = 0.1 is 50 steps).
_REFRACTORY_TOLERANCE = 1e-3


class LIF(SpikingNeuron):
    r"""Leaky integrate-and-fire neurons with exact exponential decay and a refractory period.

    The input is a voltage increment already integrated over the step by the caller (for
    example the output of a ``Linear`` layer fed with spikes), added to the membrane
    potential once per step, as in BindsNET's ``LIFNodes``. One step of ``dt`` ms is

    .. math::

        r(t) &= [\,\rho(t-1) > 0\,]                       && \text{refractory?} \\
        v'(t) &= v_{rest} + (v(t-1) - v_{rest})\, e^{-\Delta t / \tau_{mem}} + I(t)
              && \text{if not } r(t), \text{ else } v_{reset} \\
        s(t) &= [\,v'(t) \ge v_{threshold}\,] \wedge \neg r(t) \\
        v(t) &= v_{reset} \text{ if } s(t) \text{ else } v'(t) \\
        \rho(t) &= \tau_{ref} \text{ if } s(t) \text{ else } \max(\rho(t-1) - \Delta t, 0)

    where ``rho`` is the remaining refractory time in ms. After a spike the neuron is
    refractory for ``ceil(refractory / dt)`` steps (5 steps for the defaults): its input
    is ignored and ``v`` is held at ``v_reset``, as Brian2's ``(unless refractory)`` does
    in Diehl & Cook's original code. ``refractory = 0`` disables it.

    Parameters
    ----------
    shape : int or tuple of int
        Per-sample shape of the population, e.g. ``400`` or ``(16, 12, 12)``.
    tau_mem : float
        Membrane time constant in ms, > 0.
    v_rest, v_reset, v_threshold : float
        Resting, reset and threshold potentials in mV; ``v_reset < v_threshold``.
    refractory : float
        Refractory period in ms, >= 0.
    dt : float
        Time step in ms, > 0.
    step_mode : {"single", "multi"}
        ``"single"``: input ``[B, *shape]`` -> spikes ``[B, *shape]``; ``"multi"``:
        input ``[T, B, *shape]`` -> spikes ``[T, B, *shape]``.

    Attributes
    ----------
    v : Tensor
        Membrane potential ``[B, *shape]`` in mV (buffer, empty until the first call).
    refractory_remaining : Tensor
        Remaining refractory time ``[B, *shape]`` in ms (buffer).

    Examples
    --------
    >>> lif = LIF(3, tau_mem=10.0, v_rest=0.0, v_reset=0.0, v_threshold=1.0, refractory=0.0)
    >>> lif(torch.tensor([[0.5, 1.0, 2.0]]))
    tensor([[0., 1., 1.]])
    >>> lif.v
    tensor([[0.5000, 0.0000, 0.0000]])
    """

    _state_names = ("v", "refractory_remaining")

    def __init__(
        self,
        shape: int | Sequence[int],
        *,
        tau_mem: float = 100.0,
        v_rest: float = -65.0,
        v_reset: float = -65.0,
        v_threshold: float = -52.0,
        refractory: float = 5.0,
        dt: float = 1.0,
        step_mode: str = "single",
    ) -> None:
        super().__init__(shape, dt=dt, step_mode=step_mode)
        self.tau_mem = _check_positive("tau_mem", tau_mem)
        self.v_rest = _as_float("v_rest", v_rest)
        self.v_reset = _as_float("v_reset", v_reset)
        self.v_threshold = _as_float("v_threshold", v_threshold)
        if self.v_reset >= self.v_threshold:
            raise ValueError(
                f"v_reset must be below v_threshold, got v_reset={v_reset!r} and "
                f"v_threshold={v_threshold!r}"
            )
        self.refractory = _check_nonnegative("refractory", refractory)
        self.decay_mem = math.exp(-self.dt / self.tau_mem)

    def _init_state(self, like: Tensor) -> None:
        self.v = torch.full_like(like, self.v_rest)
        self.refractory_remaining = torch.zeros_like(like)

    def _integrate(self, step_input: Tensor, threshold: float | Tensor) -> Tensor:
        """One LIF step against ``threshold`` (a float or a tensor broadcastable to v)."""
        refractory = self.refractory_remaining > _REFRACTORY_TOLERANCE * self.dt
        v = self.v_rest + (self.v - self.v_rest) * self.decay_mem + step_input
        v = torch.where(refractory, self.v_reset, v)
        spikes = (v >= threshold) & ~refractory
        self.v = torch.where(spikes, self.v_reset, v)
        self.refractory_remaining = torch.where(
            spikes, self.refractory, (self.refractory_remaining - self.dt).clamp_min(0.0)
        )
        return spikes.to(step_input.dtype)

    def _step(self, step_input: Tensor) -> Tensor:
        return self._integrate(step_input, self.v_threshold)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, tau_mem={self.tau_mem}, v_rest={self.v_rest}, "
            f"v_reset={self.v_reset}, v_threshold={self.v_threshold}, "
            f"refractory={self.refractory}"
        )


class AdaptiveLIF(LIF):
    r"""LIF neurons with Diehl & Cook's (2015) adaptive threshold ``theta``.

    Each neuron fires at ``v_threshold + theta``; ``theta`` grows by ``theta_plus`` per
    spike and decays exactly with ``tau_theta``, which spreads the firing over a
    competing population. With ``learning`` on, one step is

    .. math::

        \theta'(t) &= \theta(t-1)\, e^{-\Delta t / \tau_\theta} \\
        s_b(t) &= \mathrm{LIF}_b(t) \text{ with threshold } v_{threshold} + \theta'(t) \\
        \theta(t) &= \theta'(t) + \theta_{plus} \sum_b s_b(t)

    where ``LIF_b`` is the :class:`LIF` step of sample ``b`` (same refractory and reset
    rules). ``theta`` has shape ``shape``: it is a learned property of each neuron, shared
    by every sample of the batch, and it grows by the *sum* of the batch's spikes (as
    BindsNET's ``DiehlAndCookNodes``), so a batch of B samples moves it as B consecutive
    single samples would to first order. With ``learning = False`` (evaluation, as in the
    original code's test phase) ``theta`` is frozen: neither decayed nor increased.

    ``theta`` is a persistent buffer kept in float64 by default: with ``tau_theta = 1e7``
    the per-step decay ``1 - 1e-7`` is below float32 resolution, so float32 would decay it
    at the wrong rate. ``reset()`` clears ``v`` and the refractory state but keeps
    ``theta``; :meth:`reset_theta` zeroes it.

    Parameters
    ----------
    shape : int or tuple of int
        Per-sample shape of the population.
    theta_plus : float
        Threshold increment in mV per spike, >= 0.
    tau_theta : float
        Time constant of the threshold decay in ms, > 0.
    tau_mem, v_rest, v_reset, v_threshold, refractory, dt, step_mode
        As in :class:`LIF`.

    Attributes
    ----------
    theta : Tensor
        Adaptive threshold ``[*shape]`` in mV (persistent buffer, float64).
    learning : bool
        Whether ``theta`` adapts (True) or is frozen (False).

    Examples
    --------
    >>> alif = AdaptiveLIF(2, theta_plus=0.5, v_rest=0.0, v_reset=0.0, v_threshold=1.0,
    ...                    refractory=0.0, tau_theta=1e7)
    >>> alif(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # both samples fire neuron 0
    tensor([[1., 0.],
            [1., 0.]])
    >>> alif.theta  # 0.5 per spike, summed over the batch of 2
    tensor([1., 0.], dtype=torch.float64)
    """

    def __init__(
        self,
        shape: int | Sequence[int],
        *,
        theta_plus: float = 0.05,
        tau_theta: float = 1e7,
        tau_mem: float = 100.0,
        v_rest: float = -65.0,
        v_reset: float = -65.0,
        v_threshold: float = -52.0,
        refractory: float = 5.0,
        dt: float = 1.0,
        step_mode: str = "single",
    ) -> None:
        super().__init__(
            shape,
            tau_mem=tau_mem,
            v_rest=v_rest,
            v_reset=v_reset,
            v_threshold=v_threshold,
            refractory=refractory,
            dt=dt,
            step_mode=step_mode,
        )
        self.theta_plus = _check_nonnegative("theta_plus", theta_plus)
        self.tau_theta = _check_positive("tau_theta", tau_theta)
        self.decay_theta = math.exp(-self.dt / self.tau_theta)
        self.learning: bool = True
        self.register_buffer("theta", torch.zeros(self.shape, dtype=torch.float64))

    def reset_theta(self) -> None:
        """Set the adaptive threshold ``theta`` of every neuron back to 0."""
        self.theta.zero_()

    def _step(self, step_input: Tensor) -> Tensor:
        if self.learning:
            self.theta.mul_(self.decay_theta)
        spikes = self._integrate(step_input, self.v_threshold + self.theta.to(step_input.dtype))
        if self.learning:
            self.theta.add_(spikes.sum(0).to(self.theta.dtype), alpha=self.theta_plus)
        return spikes

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, theta_plus={self.theta_plus}, "
            f"tau_theta={self.tau_theta}, learning={self.learning}"
        )
