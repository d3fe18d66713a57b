r"""Firing-rate monitor: an exponentially weighted rate estimate of a spike source, in Hz.

The estimate after step :math:`t` (the same one :class:`~plastorch.rules.LinearHomeostasis`
keeps in its state) is a normalised exponential moving average of the spikes,

.. math::

    q(t) &= e^{-\Delta t/\tau}\, q(t - \Delta t) + \bigl(1 - e^{-\Delta t/\tau}\bigr)\,
            \frac{1000}{\Delta t}\, s(t), \qquad
    c(t) = e^{-\Delta t/\tau}\, c(t - \Delta t) + \bigl(1 - e^{-\Delta t/\tau}\bigr) \\
    r(t) &= q(t) / c(t)

starting from :math:`q = c = 0` (``dt`` and ``tau`` in ms, so :math:`1000/\Delta t`
turns spikes per step into spikes per second). :math:`c(t) = 1 - e^{-t/\tau}` corrects
the start-up bias, so :math:`r` is the weighted mean rate of the steps seen so far from
the first step on (a neuron spiking every :math:`k`-th step reads about
:math:`1000/(k\Delta t)` Hz), and it forgets with time constant :math:`\tau`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .functional.checks import check_choice, check_finite
from .functional.traces import decay_factor, trace_window

__all__ = ["FiringRateMonitor", "firing_rate_traces", "firing_rate_window"]


def firing_rate_window(
    trace: Tensor, norm: Tensor, spikes: Tensor, *, decay: float, dt: float
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Rate estimates in Hz at every step of a window, and the state after it.

    Parameters
    ----------
    trace : Tensor
        :math:`q` before the window, ``[B, ...]``.
    norm : Tensor
        :math:`c` before the window (0-d).
    spikes : Tensor
        ``[T, B, ...]``.
    decay : float
        :math:`e^{-\Delta t/\tau}`.
    dt : float
        Step in ms.

    Returns
    -------
    rates, trace, norm : Tensor
        :math:`r(t)` ``[T, B, ...]``, and :math:`q`, :math:`c` after the last step.

    Examples
    --------
    >>> s = torch.tensor([[1.0], [0.0], [1.0], [0.0]])  # every other 1 ms step
    >>> rates, q, c = firing_rate_window(torch.zeros(1), torch.zeros(()), s, decay=0.5, dt=1.0)
    >>> rates.flatten()
    tensor([1000.0000,  333.3333,  714.2857,  333.3333])
    """
    traces, norms = firing_rate_traces(trace, norm, spikes, decay=decay, dt=dt)
    rates = traces / norms.reshape(-1, *([1] * (traces.dim() - 1)))
    return rates, traces[-1], norms[-1]


def firing_rate_traces(
    trace: Tensor, norm: Tensor, spikes: Tensor, *, decay: float, dt: float
) -> tuple[Tensor, Tensor]:
    r""":math:`q(t)` ``[T, B, ...]`` and :math:`c(t)` ``[T]`` of a window, whose ratio is
    :func:`firing_rate_window`'s rates: for a caller that folds the division into its own
    pass (or needs only the state, ``q(T-1)`` and ``c(T-1)``). ``q`` is a new tensor.

    Examples
    --------
    >>> s = torch.tensor([[1.0], [0.0]])
    >>> q, c = firing_rate_traces(torch.zeros(1), torch.zeros(()), s, decay=0.5, dt=1.0)
    >>> q.flatten(), c
    (tensor([500., 250.]), tensor([0.5000, 0.7500]))
    """
    traces = trace_window(trace, spikes, decay, (1.0 - decay) * 1000.0 / dt)
    powers = decay ** torch.arange(1, spikes.shape[0] + 1, dtype=traces.dtype, device=traces.device)
    norms = 1.0 - (1.0 - norm.to(traces.dtype)) * powers
    return traces, norms


class FiringRateMonitor(nn.Module):
    r"""Watch a spike source and keep its firing rate (Hz) as a buffer.

    A forward hook on ``source`` updates the estimate of the module docstring with
    every output: ``[B, ...]`` per call (``step_mode="single"``) or a ``[T, B, ...]``
    window (``"multi"``). The state (``rate_trace`` :math:`q`, ``rate_norm``
    :math:`c`) lives in registered buffers created on the first call, so
    ``state_dict()`` saved mid-run and loaded into a fresh monitor resumes
    bit-identically, as for the :class:`~plastorch.Learner`.

    Parameters
    ----------
    source : nn.Module
        Module whose output holds the spikes (a tuple uses its first element unless
        ``post_from`` says otherwise).
    tau : float
        Averaging time constant in ms (> 0).
    dt : float
        Simulation step in ms (> 0).
    step_mode : {"single", "multi"}
    post_from : callable, optional
        Extracts the spike tensor from the source's output.

    Attributes
    ----------
    rate : Tensor or None
        Current estimate ``[B, ...]`` in Hz (``None`` before the first call).

    Examples
    --------
    >>> import math
    >>> neuron = nn.Identity()
    >>> monitor = FiringRateMonitor(neuron, tau=1 / math.log(2), dt=1.0)
    >>> for s in (1.0, 0.0, 1.0, 0.0):
    ...     _ = neuron(torch.tensor([[s]]))
    >>> monitor.rate
    tensor([[333.3333]])
    """

    def __init__(
        self,
        source: nn.Module,
        tau: float = 100.0,
        dt: float = 1.0,
        *,
        step_mode: str = "single",
        post_from: Callable[[object], Tensor] | None = None,
    ):
        super().__init__()
        if not isinstance(source, nn.Module):
            raise TypeError(f"source must be an nn.Module, got {type(source).__name__}")
        self.decay = decay_factor(dt, tau, name="tau")
        self.tau, self.dt = float(tau), float(dt)
        self.step_mode = check_choice("step_mode", step_mode, ("single", "multi"))
        self.post_from = post_from
        self._source = (source,)  # not a submodule: the state_dict holds the rates only
        self._handle = source.register_forward_hook(self._record)
        self.rate_trace: Tensor | None
        self.rate_norm: Tensor | None
        self.register_buffer("rate_trace", None)
        self.register_buffer("rate_norm", None)

    def _record(self, module, args, output) -> None:
        spikes = self.post_from(output) if self.post_from is not None else output
        if isinstance(spikes, (tuple, list)):
            spikes = spikes[0]
        if not isinstance(spikes, Tensor):
            raise TypeError(
                f"the source returned {type(spikes).__name__}; pass post_from=callable that "
                "extracts the spike tensor"
            )
        spikes = check_finite("spikes", spikes.detach())
        if not spikes.is_floating_point():
            spikes = spikes.float()
        window = spikes.unsqueeze(0) if self.step_mode == "single" else spikes
        if self.rate_trace is None:
            self.rate_trace = torch.zeros_like(window[0])
            self.rate_norm = torch.zeros((), dtype=window.dtype, device=window.device)
        elif self.rate_trace.shape != window.shape[1:]:
            raise ValueError(
                f"the monitor holds rates of shape {tuple(self.rate_trace.shape)} but one step "
                f"of spikes has shape {tuple(window.shape[1:])}; call reset() first"
            )
        traces, norms = firing_rate_traces(
            self.rate_trace,
            self.rate_norm,
            window.to(self.rate_trace.dtype),
            decay=self.decay,
            dt=self.dt,
        )
        # (a copy: a view would keep the window's traces alive)
        self.rate_trace, self.rate_norm = traces[-1].clone(), norms[-1]

    @property
    def rate(self) -> Tensor | None:
        """Firing-rate estimate in Hz, shaped like one step of spikes."""
        if self.rate_trace is None:
            return None
        return self.rate_trace / self.rate_norm

    def reset(self) -> None:
        """Forget the estimate (the next call sizes it to its batch)."""
        self.rate_trace = None
        self.rate_norm = None

    def remove(self) -> None:
        """Detach the hook from the source for good."""
        self._handle.remove()

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        for name in ("rate_trace", "rate_norm"):
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor) and getattr(self, name) is None:
                self._buffers[name] = torch.empty_like(saved)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return f"tau={self.tau}, dt={self.dt}, step_mode={self.step_mode!r}"
