"""Spike encoders: turn intensities in [0, 1] into spike trains ``[T, *shape]``.

- :func:`poisson` / :class:`PoissonEncoder`: rate coding with independent Bernoulli draws
  per step (a discrete Poisson process), as Diehl & Cook (2015) feed MNIST pixels.
- :func:`latency` / :class:`LatencyEncoder`: time-to-first-spike coding, one spike per
  input, earlier for brighter inputs.

Time is in ms and ``dt`` is the step; rates are in Hz.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from torch import Tensor, nn

__all__ = ["poisson", "PoissonEncoder", "latency", "LatencyEncoder"]

#: Diehl & Cook's (2015) maximum input rate: pixel 255 / 4 = 63.75 Hz.
DIEHL_COOK_MAX_RATE = 63.75


def _check_time_steps(time_steps: object) -> int:
    if isinstance(time_steps, bool) or not isinstance(time_steps, Integral):
        raise TypeError(f"time_steps must be an int, got {time_steps!r}")
    if time_steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {time_steps!r}")
    return int(time_steps)


def _check_real(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or result < 0 or (positive and result == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return result


def _check_intensity(intensity: object, *, upper: float | None = None) -> Tensor:
    if not isinstance(intensity, Tensor):
        raise TypeError(f"intensity must be a torch.Tensor, got {type(intensity).__name__}")
    if intensity.is_complex():
        raise TypeError(f"intensity must be real, got dtype {intensity.dtype}")
    if not intensity.is_floating_point():
        intensity = intensity.to(torch.get_default_dtype())
    if intensity.numel() > 0:
        if not bool((intensity >= 0).all()):  # also catches NaN
            raise ValueError(
                f"intensity must be >= 0 (and not NaN), got min {intensity.min().item()!r}"
            )
        if upper is not None and bool((intensity > upper).any()):
            raise ValueError(
                f"intensity must be in [0, {upper:g}], got max {intensity.max().item()!r}"
            )
    return intensity


def poisson(
    intensity: Tensor,
    time_steps: int,
    *,
    dt: float = 1.0,
    max_rate: float = DIEHL_COOK_MAX_RATE,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Rate-code ``intensity`` as independent Bernoulli spikes per time step.

    Each input fires at ``rate = intensity * max_rate`` Hz; in each step of ``dt`` ms it
    spikes with probability

    .. math::

        p = \text{intensity} \cdot \text{max\_rate} \cdot \Delta t / 1000,
        \qquad s(t) \sim \mathrm{Bernoulli}(p) \text{ i.i.d. over } t,

    so the expected spike count over the window is ``time_steps * p``. With the default
    ``max_rate = 63.75`` Hz an intensity of 1 matches Diehl & Cook's pixel 255 / 4.
    Intensities above 1 are allowed as long as ``p <= 1``.

    Parameters
    ----------
    intensity : Tensor
        Any shape, values >= 0 (normally in [0, 1]).
    time_steps : int
        Number of steps ``T``, >= 1.
    dt : float
        Step in ms, > 0.
    max_rate : float
        Rate in Hz of an intensity of 1, >= 0.
    generator : torch.Generator, optional
        Source of randomness on ``intensity``'s device; the global one when omitted.
        The same generator state gives the same spikes.

    Returns
    -------
    Tensor
        ``[T, *intensity.shape]`` of 0.0/1.0 in ``intensity``'s floating dtype (the
        default dtype for integer input), on its device.

    Raises
    ------
    ValueError
        If ``intensity`` has negative or NaN values, ``time_steps < 1``, ``dt <= 0``,
        ``max_rate < 0``, or some ``p`` exceeds 1.

    Examples
    --------
    >>> generator = torch.Generator().manual_seed(0)
    >>> spikes = poisson(torch.tensor([0.0, 1.0]), 1000, generator=generator)
    >>> spikes.shape
    torch.Size([1000, 2])
    >>> spikes[:, 0].sum().item()  # intensity 0 never fires; intensity 1: ~63.75 spikes
    0.0
    """
    time_steps = _check_time_steps(time_steps)
    dt = _check_real("dt", dt, positive=True)
    max_rate = _check_real("max_rate", max_rate, positive=False)
    intensity = _check_intensity(intensity)
    probability = intensity * (max_rate * dt / 1000.0)
    if probability.numel() > 0 and bool((probability > 1).any()):
        raise ValueError(
            "spike probability per step intensity * max_rate * dt / 1000 must be <= 1, got "
            f"{probability.max().item():g} (max intensity {intensity.max().item():g}, "
            f"max_rate={max_rate:g} Hz, dt={dt:g} ms)"
        )
    uniform = torch.rand(
        (time_steps, *intensity.shape),
        generator=generator,
        dtype=intensity.dtype,
        device=intensity.device,
    )
    return (uniform < probability).to(intensity.dtype)


class PoissonEncoder(nn.Module):
    r"""Module form of :func:`poisson` with its own seeded generator.

    ``forward(intensity, intensity_scale=1.0)`` returns ``poisson(intensity *
    intensity_scale, time_steps, dt=dt, max_rate=max_rate)``. ``intensity_scale`` is how
    Diehl & Cook raise the input when the excitatory layer stays silent: their
    ``input_intensity`` goes 2 -> 3 -> ... with rate ``pixel / 8 * input_intensity``, i.e.
    ``intensity_scale = input_intensity / 2`` here (+32 Hz at full intensity per step).

    Parameters
    ----------
    time_steps : int
        Number of steps ``T`` per call, >= 1.
    dt : float
        Step in ms, > 0.
    max_rate : float
        Rate in Hz of an intensity of 1 (scale 1), >= 0.
    seed : int, optional
        Seed of the encoder's generator (one per device, created on first use). Two
        encoders with the same seed produce the same sequence of spike trains; successive
        calls of one encoder draw fresh spikes. ``None`` uses torch's global generator.

    Examples
    --------
    >>> encoder = PoissonEncoder(time_steps=350, seed=0)
    >>> images = torch.rand(4, 8, 8)
    >>> encoder(images).shape
    torch.Size([350, 4, 8, 8])
    >>> more = encoder(images, intensity_scale=1.5)  # max rate 95.6 Hz
    """

    def __init__(
        self,
        time_steps: int,
        dt: float = 1.0,
        max_rate: float = DIEHL_COOK_MAX_RATE,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.time_steps = _check_time_steps(time_steps)
        self.dt = _check_real("dt", dt, positive=True)
        self.max_rate = _check_real("max_rate", max_rate, positive=False)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, Integral)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def manual_seed(self, seed: int) -> None:
        """Restart the encoder's random stream(s) from ``seed``."""
        self.seed = int(seed)
        self._generators.clear()

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def forward(self, intensity: Tensor, intensity_scale: float = 1.0) -> Tensor:
        """Encode ``intensity`` ``[*shape]`` into spikes ``[T, *shape]``."""
        scale = _check_real("intensity_scale", intensity_scale, positive=False)
        intensity = _check_intensity(intensity)
        return poisson(
            intensity * scale,
            self.time_steps,
            dt=self.dt,
            max_rate=self.max_rate,
            generator=self._generator(intensity.device),
        )

    def extra_repr(self) -> str:
        return (
            f"time_steps={self.time_steps}, dt={self.dt}, max_rate={self.max_rate}, "
            f"seed={self.seed}"
        )


def latency(intensity: Tensor, time_steps: int, *, dt: float = 1.0) -> Tensor:
    r"""Time-to-first-spike code: one spike per input, earlier for higher intensity.

    An input of intensity ``x`` in (0, 1] fires once, at step

    .. math::

        k(x) = \operatorname{round}\big((1 - x)(T - 1)\big),

    so ``x = 1`` fires at step 0 and intensities near 0 at step ``T - 1``. An intensity of
    exactly 0 never fires (the train is all zeros). ``round`` is half-to-even, like
    Python's ``round`` and ``torch.round`` (with ``T = 4``, ``x = 0.5`` gives 1.5 -> 2).
    The step index does not depend on ``dt``; in ms the spike is at ``k(x) * dt``.

    Parameters
    ----------
    intensity : Tensor
        Any shape, values in [0, 1].
    time_steps : int
        Number of steps ``T``, >= 1.
    dt : float
        Step in ms, > 0 (only sets the time unit of the window, ``T * dt`` ms).

    Returns
    -------
    Tensor
        ``[T, *intensity.shape]`` of 0.0/1.0 in ``intensity``'s floating dtype, with at
        most one spike per input.

    Raises
    ------
    ValueError
        If an intensity is outside [0, 1] or NaN, ``time_steps < 1`` or ``dt <= 0``.

    Examples
    --------
    >>> latency(torch.tensor([1.0, 0.5, 0.25, 0.0]), 5).T
    tensor([[1., 0., 0., 0., 0.],
            [0., 0., 1., 0., 0.],
            [0., 0., 0., 1., 0.],
            [0., 0., 0., 0., 0.]])
    """
    time_steps = _check_time_steps(time_steps)
    _check_real("dt", dt, positive=True)
    intensity = _check_intensity(intensity, upper=1.0)
    spike_step = torch.round((1.0 - intensity) * (time_steps - 1))
    steps = torch.arange(time_steps, dtype=intensity.dtype, device=intensity.device)
    steps = steps.reshape(time_steps, *([1] * intensity.dim()))
    return ((steps == spike_step) & (intensity > 0)).to(intensity.dtype)


class LatencyEncoder(nn.Module):
    """Module form of :func:`latency`: ``forward(intensity)`` -> ``[T, *intensity.shape]``.

    Parameters
    ----------
    time_steps : int
        Number of steps ``T``, >= 1.
    dt : float
        Step in ms, > 0.

    Examples
    --------
    >>> LatencyEncoder(time_steps=11)(torch.tensor([[0.9]])).flatten().nonzero().item()
    1
    """

    def __init__(self, time_steps: int, dt: float = 1.0) -> None:
        super().__init__()
        self.time_steps = _check_time_steps(time_steps)
        self.dt = _check_real("dt", dt, positive=True)

    def forward(self, intensity: Tensor) -> Tensor:
        """Encode ``intensity`` ``[*shape]`` into spikes ``[T, *shape]``."""
        return latency(intensity, self.time_steps, dt=self.dt)

    def extra_repr(self) -> str:
        return f"time_steps={self.time_steps}, dt={self.dt}"
