"""Izhikevich (2003) simple spiking neurons."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from plastorch.functional import compiled
from plastorch.functional.checks import check_positive as _check_positive
from plastorch.functional.checks import check_real as _as_float
from plastorch.neurons.base import SpikingNeuron

__all__ = ["Izhikevich", "IZHIKEVICH_PRESETS"]

#: ``(a, b, c, d)`` of the cell classes in Izhikevich (2003), Fig. 2.
IZHIKEVICH_PRESETS: dict[str, tuple[float, float, float, float]] = {
    "regular_spiking": (0.02, 0.2, -65.0, 8.0),
    "intrinsically_bursting": (0.02, 0.2, -55.0, 4.0),
    "chattering": (0.02, 0.2, -50.0, 2.0),
    "fast_spiking": (0.1, 0.2, -65.0, 2.0),
    "low_threshold_spiking": (0.02, 0.25, -65.0, 2.0),
    "thalamo_cortical": (0.02, 0.25, -65.0, 0.05),
    "resonator": (0.1, 0.26, -65.0, 2.0),
}


class Izhikevich(SpikingNeuron):
    r"""Izhikevich's (2003) simple model, integrated as in his reference code.

    The model is

    .. math::

        \dot v = 0.04 v^2 + 5 v + 140 - u + I, \qquad \dot u = a (b v - u),

        \text{if } v \ge v_{peak}: \quad v \leftarrow c, \quad u \leftarrow u + d,

    with ``v`` in mV, time in ms and ``I`` the input (held constant over the step). One
    step of ``dt`` ms takes two Euler half-steps for ``v`` and one step for ``u`` with the
    new ``v``, exactly as Izhikevich's ``net.m`` does for ``dt = 1``:

    .. math::

        v &\leftarrow v + \tfrac{\Delta t}{2} (0.04 v^2 + 5 v + 140 - u + I) \quad
            \text{(twice)} \\
        u &\leftarrow u + \Delta t\, a (b v - u) \\
        s &= [\,v \ge v_{peak}\,]; \quad \text{where } s:\ v \leftarrow c,\ u \leftarrow u + d

    ``net.m`` detects ``v >= 30`` at the *start* of the next step and reports the spike
    there; here the spike is emitted (and the reset applied) at the end of the step in
    which ``v`` crossed ``v_peak``, one step earlier, with the same ``v, u`` trajectory.
    There is no clipping: ``v`` may overshoot ``v_peak`` before the reset, as in the
    reference.

    Parameters
    ----------
    shape : int or tuple of int
        Per-sample shape of the population.
    a, b, c, d : float
        Recovery rate (1/ms, > 0), recovery sensitivity, reset potential (mV, below
        ``v_peak``) and recovery increment. See :data:`IZHIKEVICH_PRESETS` and
        :meth:`from_preset`.
    v_peak : float
        Spike cut-off in mV (30 in the paper).
    v_init : float
        Initial membrane potential in mV (-65 in ``net.m``).
    u_init : float, optional
        Initial recovery variable; ``b * v_init`` when omitted, as in ``net.m``.
    dt : float
        Time step in ms, > 0.
    step_mode : {"single", "multi"}
        ``"single"``: ``[B, *shape]`` -> ``[B, *shape]``; ``"multi"``:
        ``[T, B, *shape]`` -> ``[T, B, *shape]``.

    Attributes
    ----------
    v, u : Tensor
        Membrane potential and recovery variable ``[B, *shape]`` (buffers, empty until
        the first call).

    Examples
    --------
    >>> rs = Izhikevich.from_preset("regular_spiking", 1, step_mode="multi")
    >>> spikes = rs(torch.full((100, 1, 1), 10.0))
    >>> spikes.nonzero()[0, 0].item()  # step of the first spike (0-based)
    3
    """

    _state_names = ("v", "u")

    def __init__(
        self,
        shape: int | Sequence[int],
        *,
        a: float,
        b: float,
        c: float,
        d: float,
        v_peak: float = 30.0,
        v_init: float = -65.0,
        u_init: float | None = None,
        dt: float = 1.0,
        step_mode: str = "single",
    ) -> None:
        super().__init__(shape, dt=dt, step_mode=step_mode)
        self.a = _check_positive("a", a)
        self.b = _as_float("b", b)
        self.c = _as_float("c", c)
        self.d = _as_float("d", d)
        self.v_peak = _as_float("v_peak", v_peak)
        if self.c >= self.v_peak:
            raise ValueError(f"c must be below v_peak, got c={c!r} and v_peak={v_peak!r}")
        self.v_init = _as_float("v_init", v_init)
        self.u_init = self.b * self.v_init if u_init is None else _as_float("u_init", u_init)

    @classmethod
    def from_preset(cls, name: str, shape: int | Sequence[int], **kwargs: object) -> Izhikevich:
        """Build neurons of a named cell class of Izhikevich (2003).

        Parameters
        ----------
        name : str
            A key of :data:`IZHIKEVICH_PRESETS`, e.g. ``"regular_spiking"``.
        shape : int or tuple of int
            Per-sample shape of the population.
        **kwargs
            Other constructor arguments (``dt``, ``step_mode``, ...).

        Examples
        --------
        >>> Izhikevich.from_preset("fast_spiking", 10).a
        0.1
        """
        if name not in IZHIKEVICH_PRESETS:
            raise ValueError(f"name must be one of {sorted(IZHIKEVICH_PRESETS)}, got {name!r}")
        a, b, c, d = IZHIKEVICH_PRESETS[name]
        return cls(shape, a=a, b=b, c=c, d=d, **kwargs)

    def _init_state(self, like: Tensor) -> None:
        self.v = torch.full_like(like, self.v_init)
        self.u = torch.full_like(like, self.u_init)

    def _step(self, step_input: Tensor) -> Tensor:
        spikes = self._compiled_steps(step_input.unsqueeze(0))
        if spikes is not None:  # one call where the ~12 kernels below cost ~60 us
            return spikes[0]
        half_dt = 0.5 * self.dt
        v, u = self.v, self.u
        # Same operation order as net.m (0.04*v.^2 + 5*v + 140 - u + I): with 1 ms steps the
        # overshoot past v_peak feeds u, so last-bit differences can move spikes later on.
        v = v + half_dt * (0.04 * v.square() + 5.0 * v + 140.0 - u + step_input)
        v = v + half_dt * (0.04 * v.square() + 5.0 * v + 140.0 - u + step_input)
        u = u + self.dt * self.a * (self.b * v - u)
        spikes = v >= self.v_peak
        self.v = torch.where(spikes, self.c, v)
        self.u = torch.where(spikes, u + self.d, u)
        return spikes.to(step_input.dtype)

    def _window(self, current: Tensor) -> Tensor:
        """A window ``[T, B, *shape]`` (validated by ``forward``): one compiled loop on CPU
        with numba (:meth:`_compiled_steps`), else the steps.

        One step of ~12 torch kernels costs ~40-60 us whatever the population; the loop
        costs a few ns per neuron and step."""
        self._check_state(current[0])
        spikes = self._compiled_steps(current)
        if spikes is not None:
            return spikes
        return torch.stack([self._step(step_input) for step_input in current])

    def _compiled_steps(self, current: Tensor) -> Tensor | None:
        """The steps of ``current [T, B, *shape]`` as one numba loop, with the values of
        the torch step operation by operation; ``None`` where it does not run (no numba,
        another device or dtype), and then nothing has changed."""
        v, u = self.v, self.u
        if not (
            compiled.available()
            and current.device.type == "cpu"
            and current.dtype in compiled.DTYPES
            and v.dtype == u.dtype == current.dtype
        ):
            return None
        # the constants as the torch step rounds them: scalars in the tensors' dtype
        constants = (0.5 * self.dt, 0.04, 5.0, 140.0, self.b, self.dt * self.a,
                     self.v_peak, self.c, self.d)  # fmt: skip
        v_new, u_new = v.reshape(-1).clone(), u.reshape(-1).clone()
        flat = current.reshape(current.shape[0], -1).contiguous()
        spikes = compiled._izhikevich_unchecked(flat, v_new, u_new, constants)
        if spikes is None:
            return None
        self.v, self.u = v_new.reshape(v.shape), u_new.reshape(u.shape)
        return spikes.reshape(current.shape)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, a={self.a}, b={self.b}, c={self.c}, d={self.d}, "
            f"v_peak={self.v_peak}"
        )
