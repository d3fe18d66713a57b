"""Leaky integrate-and-fire neurons, plain and with Diehl & Cook's adaptive threshold."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from plastorch.functional import compiled
from plastorch.functional.checks import check_nonnegative as _check_nonnegative
from plastorch.functional.checks import check_positive as _check_positive
from plastorch.functional.checks import check_real as _as_float
from plastorch.functional.numerics import flush_subnormal_, flushes, largest_subnormal
from plastorch.neurons.base import SpikingNeuron

__all__ = ["LIF", "AdaptiveLIF"]

# A refractory countdown below this fraction of a step counts as over, so that float
# rounding in ``refractory - k * dt`` never adds a step (5 ms at dt = 0.1 is 50 steps).
_REFRACTORY_TOLERANCE = 1e-3

# Longest block of steps over which the adaptive threshold's increments are accumulated
# against one reference step: their scale factor exp(steps * dt / tau_theta) stays below
# e^20, far from float32 overflow (a window longer than that is run block by block).
_MAX_LOG_GROWTH = 20.0


def _refractory_steps(refractory: float, dt: float) -> int:
    """Steps a spike keeps the neuron refractory: ``ceil(refractory / dt - tolerance)``."""
    return max(math.ceil(refractory / dt - _REFRACTORY_TOLERANCE), 0)


def _lif_block(
    drive: Tensor,
    v: Tensor,
    last_spike: Tensor,
    spikes: Tensor,
    flags: Tensor,
    previous: Tensor,
    threshold: Tensor,
    increments: Tensor,
    growth: list[float],
    scale: list[float],
    start: int,
    decay: float,
    v_reset: float,
    refractory_steps: int,
    inhibition: float,
    self_inhibition: bool,
    exclusive: bool,
    floor: float,
) -> None:
    """Steps ``start .. start + len(growth) - 1`` of a LIF window, in place (see LIF._window).

    ``drive [T, B, N]`` is the input plus ``v_rest (1 - decay)``; ``v [B, N]``, the step of
    each neuron's last spike ``last_spike [B, N]`` (int64) and ``increments`` (the
    threshold growth of this block, ``[1, N]`` or ``[N]``, 0 at its start) are updated in
    place; ``spikes [T, B, N]`` (uint8, with ``flags`` its bool view) receives the spikes;
    ``previous [B, N]`` (uint8) are the spikes of the step before the window. The
    threshold of step ``t`` is ``threshold[t] + scale[t - start] * increments`` and a
    spike adds ``growth[t - start]`` to its neuron's increment (when ``growth`` is empty
    the threshold is ``threshold[t]`` and the block runs to the end of the window).
    ``exclusive``: ``v_reset`` is below every threshold, so a refractory neuron (held at
    ``v_reset``) cannot cross it and needs no extra mask.

    Operations that would change nothing are skipped: the inhibition after a step without
    spikes, the refractory mask when no neuron is refractory, the resets and threshold
    increments after a step without spikes.

    ``floor > 0``: the potential after the decay and the input is flushed to 0 where its
    magnitude is at most
    ``floor`` (the dtype's largest subnormal, for ``v_rest = 0``:
    :mod:`plastorch.functional.numerics`).
    """
    adaptive = len(scale) > 0
    steps = len(scale) if adaptive else drive.shape[0] - start
    batch_one = v.shape[0] == 1
    blocked = torch.empty_like(last_spike, dtype=torch.bool)
    level = torch.empty_like(increments)
    busy_until = int(last_spike.max()) + refractory_steps
    fired_before = bool(previous.any()) if start == 0 else bool(spikes[start - 1].any())
    for k in range(steps):
        t = start + k
        torch.add(drive[t], v, alpha=decay, out=v)  # v_rest + (v - v_rest) decay + input
        if floor > 0.0:
            torch.hardshrink(v, floor, out=v)
        if inhibition != 0.0 and fired_before:
            last = spikes[t - 1] if t > 0 else previous
            total = last.sum(1, keepdim=True)
            # -w (sum_j s_j - s_i): exactly 0 where only the neuron itself fired
            v.add_(total if self_inhibition else total - last, alpha=-inhibition)
        refractory = t <= busy_until
        if refractory:  # held at v_reset
            torch.gt(last_spike, t - refractory_steps - 1, out=blocked)
            v.masked_fill_(blocked, v_reset)
        fired = flags[t]
        if adaptive:
            torch.add(threshold[t], increments, alpha=scale[k], out=level)
            torch.ge(v, level, out=fired)
        else:
            torch.ge(v, threshold[t], out=fired)
        if refractory and not exclusive:
            fired.logical_and_(blocked.logical_not())
        fired_before = bool(fired.any())
        if fired_before:
            v.masked_fill_(fired, v_reset)
            last_spike.masked_fill_(fired, t)
            busy_until = t + refractory_steps
            if adaptive:
                increments.add_(spikes[t] if batch_one else spikes[t].sum(0), alpha=growth[k])


_BLOCK_KERNEL: Callable[..., None] | None = None


def _run_block(*args) -> None:
    """:func:`_lif_block` (the same arguments) as one numba loop on CPU, else
    :func:`_block_kernel`.

    The same values: its additions with a coefficient are fused multiply-adds, as those
    of torch's vectorised ``add(..., alpha=)`` on CPUs with FMA (AVX2 and later, what
    torch's CPU kernels are built for); the step-by-step path is torch's.

    A Diehl & Cook sample (100 neurons, 250 steps, batch 1) spent 1.3 ms in the
    TorchScript loop, about 5 us per step of dispatches."""
    drive, v, last_spike, spikes, flags, previous, threshold, increments = args[:8]
    tensors = (drive, v, last_spike, spikes, previous, threshold, increments)
    if (
        compiled.available()
        and v.device.type == "cpu"
        and v.dtype in compiled.DTYPES
        and drive.dtype == threshold.dtype == increments.dtype == v.dtype
        and not (drive.requires_grad or v.requires_grad or threshold.requires_grad)
        and compiled._lif_block_unchecked(*tensors, *args[8:])  # (no bool view of spikes)
    ):
        return
    _block_kernel()(*args)


def _block_kernel() -> Callable[..., None]:
    """:func:`_lif_block` compiled by TorchScript (no Python per step), else the eager one.

    TorchScript is deprecated but still removes the interpreter's cost per operation,
    about two thirds of a small population's step; ``PLASTORCH_NO_SCRIPT=1`` or any
    failure to compile keeps the eager function, which computes the same values.
    """
    global _BLOCK_KERNEL
    if _BLOCK_KERNEL is None:
        kernel: Callable[..., None] = _lif_block
        if os.environ.get("PLASTORCH_NO_SCRIPT", "") in ("", "0"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    kernel = torch.jit.script(_lif_block)
            except Exception:  # noqa: BLE001 - any TorchScript failure: run eagerly
                kernel = _lif_block
        _BLOCK_KERNEL = kernel
    return _BLOCK_KERNEL


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

    def _flush_floor(self, v: Tensor) -> float:
        """What the window kernel flushes the decayed potential below: the largest
        subnormal where it decays towards 0 (``v_rest = 0``) on CPU, else 0 (nothing)."""
        return largest_subnormal(v.dtype) if self.v_rest == 0.0 and flushes(v) else 0.0

    def _integrate(self, step_input: Tensor, threshold: float | Tensor) -> Tensor:
        """One LIF step against ``threshold`` (a float or a tensor broadcastable to v)."""
        refractory = self.refractory_remaining > _REFRACTORY_TOLERANCE * self.dt
        drive = step_input
        if self.v_rest != 0.0:
            drive = step_input + self.v_rest * (1.0 - self.decay_mem)
        # v_rest + (v - v_rest) decay + I, rounded as the window kernel rounds it
        v = torch.add(drive, self.v, alpha=self.decay_mem)
        if self._flush_floor(v) > 0.0:  # a silent neuron's potential decays towards 0
            v = flush_subnormal_(v)
        v.masked_fill_(refractory, self.v_reset)
        spikes = (v >= threshold).logical_and_(refractory.logical_not())
        self.v = v.masked_fill_(spikes, self.v_reset)
        remaining = (self.refractory_remaining - self.dt).clamp_min_(0.0)
        self.refractory_remaining = remaining.masked_fill_(spikes, self.refractory)
        return spikes.to(step_input.dtype)

    def _window(
        self,
        current: Tensor,
        *,
        inhibition: float = 0.0,
        self_inhibition: bool = False,
        previous: Tensor | None = None,
    ) -> Tensor:
        """Run a whole window ``[T, B, *shape]`` (already validated); return its spikes.

        The same equations as ``T`` calls of :meth:`_step`, computed by one compiled
        loop (:func:`_block_kernel`) with the state unpacked once per window: the
        refractory countdown becomes the step of each neuron's last spike (an integer,
        no float countdown), ``v_rest`` is folded into the input once, and the spikes
        are written into one preallocated boolean window. With ``inhibition = w`` the
        input of step ``t`` also gets ``-w (sum_j s_j(t-1) - s_i(t-1))`` (``-w sum_j
        s_j(t-1)`` with ``self_inhibition``), ``s(-1) = previous`` ([B, *shape] or None
        for none): the lateral inhibition of
        :class:`~plastorch.layers.InhibitedPopulation`, fused into the same loop.
        """
        if current.dim() != 2 + len(self.shape) or tuple(current.shape[2:]) != self.shape:
            raise ValueError(
                f"{type(self).__name__} expects a window of shape [T, B, "
                f"{', '.join(map(str, self.shape))}], got {tuple(current.shape)}"
            )
        if not current.is_floating_point():
            raise TypeError(f"input must be a floating point tensor, got dtype {current.dtype}")
        steps, batch = current.shape[0], current.shape[1]
        self._check_state(current[0])
        if batch == 0:  # e.g. a data-parallel rank without samples: only time passes
            self._idle(steps)
            return torch.zeros_like(current)
        flat = current.reshape(steps, batch, -1)
        decay = self.decay_mem
        drive = flat + self.v_rest * (1.0 - decay) if self.v_rest != 0.0 else flat
        v = self.v.reshape(batch, -1).clone()
        refractory_steps = _refractory_steps(self.refractory, self.dt)
        remaining = torch.ceil(self.refractory_remaining / self.dt - _REFRACTORY_TOLERANCE)
        last_spike = remaining.reshape(batch, -1).clamp_min(0).long() - (refractory_steps + 1)
        spikes = torch.empty(flat.shape, dtype=torch.uint8, device=flat.device)
        if previous is None:
            previous = torch.zeros(v.shape, dtype=torch.uint8, device=v.device)
        else:
            previous = (previous.reshape(v.shape) != 0).to(torch.uint8)
        self._run_blocks(
            drive, v, last_spike, spikes, previous, float(inhibition), bool(self_inhibition)
        )
        self.v = v.reshape(self.v.shape)
        left = (last_spike + (refractory_steps + 1 - steps)).clamp_min_(0)
        # the countdown in ms that _step would hold: refractory - dt * (steps since spike)
        remaining_ms = self.refractory - (refractory_steps - left).to(flat.dtype) * self.dt
        self.refractory_remaining = torch.where(left > 0, remaining_ms, 0.0).reshape(
            self.refractory_remaining.shape
        )
        return spikes.reshape(current.shape).to(current.dtype)

    def _idle(self, steps: int) -> None:
        """Advance the per-neuron (not per-sample) state by ``steps`` steps without samples."""

    def _run_blocks(
        self,
        drive: Tensor,
        v: Tensor,
        last_spike: Tensor,
        spikes: Tensor,
        previous: Tensor,
        inhibition: float,
        self_inhibition: bool,
    ) -> None:
        """Run :func:`_lif_block` over the window with a fixed threshold ``v_threshold``."""
        threshold = torch.full((1, 1), self.v_threshold, dtype=drive.dtype, device=drive.device)
        threshold = threshold.expand(drive.shape[0], drive.shape[2])
        _run_block(
            drive, v, last_spike, spikes, spikes.view(torch.bool), previous, threshold,
            threshold[0], [], [], 0, self.decay_mem, self.v_reset,
            _refractory_steps(self.refractory, self.dt), inhibition, self_inhibition, True,
            self._flush_floor(v),
        )  # fmt: skip

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

    def _idle(self, steps: int) -> None:
        if self.learning:  # theta decays with or without samples
            self.theta.mul_(self.decay_theta**steps)

    def _run_blocks(
        self,
        drive: Tensor,
        v: Tensor,
        last_spike: Tensor,
        spikes: Tensor,
        previous: Tensor,
        inhibition: float,
        self_inhibition: bool,
    ) -> None:
        r"""Run the window with the adaptive threshold, converting ``theta`` once per block.

        With :math:`d = e^{-\Delta t/\tau_\theta}`, :math:`n(u) = \sum_b s_b(u)` and a
        block starting at step :math:`t_0` with :math:`\theta_0`, step :math:`t = t_0 + k`
        fires against

        .. math::

            v_{th} + \theta'(t) = \underbrace{v_{th} + d^{k+1} \theta_0}_{\text{float64,
            cast once}} + d^{k} A(t), \qquad
            A(t) = \sum_{u = t_0}^{t-1} \theta_{plus} d^{-(u - t_0)} n(u)

        (:math:`A` in the input's dtype, one ``add`` per step), and at the end of the
        block :math:`\theta \leftarrow d^{L} \theta_0 + \theta_{plus} \sum_u d^{L-1-u+t_0}
        n(u)` in float64. Blocks are as long as :math:`d^{-k}` allows (the whole window
        for the default :math:`\tau_\theta = 10^7` ms).
        """
        steps, neurons = drive.shape[0], drive.shape[2]
        kernel = _run_block
        refractory_steps = _refractory_steps(self.refractory, self.dt)
        common = (self.decay_mem, self.v_reset, refractory_steps, inhibition, self_inhibition)
        flags = spikes.view(torch.bool)
        theta = self.theta.reshape(neurons).to(drive.device)
        if not self.learning:  # frozen: the threshold _step uses, cast once
            threshold = (self.v_threshold + theta.to(drive.dtype)).expand(steps, neurons)
            exclusive = bool(threshold[0].min() > self.v_reset)
            kernel(drive, v, last_spike, spikes, flags, previous, threshold, threshold[0],
                   [], [], 0, *common, exclusive, self._flush_floor(v))  # fmt: skip
            return
        decay, rate = self.decay_theta, self.dt / self.tau_theta
        block = steps if rate * steps <= _MAX_LOG_GROWTH else max(int(_MAX_LOG_GROWTH / rate), 1)
        threshold = torch.empty(steps, neurons, dtype=drive.dtype, device=drive.device)
        increments = torch.zeros(
            (1, neurons) if v.shape[0] == 1 else (neurons,), dtype=drive.dtype, device=v.device
        )
        for start in range(0, steps, block):
            length = min(block, steps - start)
            ks = torch.arange(length + 1, dtype=torch.float64, device=theta.device)
            powers = torch.pow(decay, ks)  # d^0 .. d^length
            threshold[start : start + length] = self.v_threshold + powers[1:, None] * theta
            scale = powers[:-1].tolist()
            growth = [self.theta_plus / power for power in scale]
            increments.zero_()
            # theta_plus >= 0: the threshold only grows within the block
            exclusive = bool(threshold[start : start + length].min() > self.v_reset)
            kernel(drive, v, last_spike, spikes, flags, previous, threshold, increments,
                   growth, scale, start, *common, exclusive, self._flush_floor(v))  # fmt: skip
            counts = spikes[start : start + length].sum(1, dtype=torch.float64)  # n(u), [L, N]
            theta = powers[-1] * theta + self.theta_plus * (powers[:-1].flip(0) @ counts)
        self.theta.copy_(theta.reshape(self.theta.shape))

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, theta_plus={self.theta_plus}, "
            f"tau_theta={self.tau_theta}, learning={self.learning}"
        )
