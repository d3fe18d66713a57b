r"""Lateral inhibition: a population's own spikes inhibit its other neurons.

Two pieces:

- :class:`LateralInhibition`, the connection: spikes in, inhibitory input out,
  :math:`I_i = -w_\text{inh} \sum_{j \ne i} s_j` within each competing group, computed
  with one sum and one subtraction (no ``[N, N]`` matrix);
- :class:`InhibitedPopulation`, the recurrent loop: a spiking neuron model whose input
  at step :math:`t` is the feed-forward current plus the inhibition from its own spikes
  at step :math:`t - 1`. Over a ``[T, B, ...]`` window the loop over time is
  elementwise work only; the feed-forward current is computed beforehand for the whole
  window (one GEMM for a ``Linear`` layer).

This is the *direct* form of the soft winner-take-all of Diehl & Cook (2015). Their
network routes inhibition through a second population: each excitatory neuron drives
one inhibitory neuron, which inhibits every excitatory neuron except its partner. With
inhibitory neurons that fire on every input spike, that is the same connectivity
:math:`-w_\text{inh}(\mathbf{1}\mathbf{1}^\top - \mathbf{I})` with one extra step of
delay; the direct form drops the inhibitory population (as does BindsNET's
``DiehlAndCook2015v2``) and delivers the inhibition one step after the spike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..functional.checks import check_nonnegative

__all__ = ["InhibitedPopulation", "LateralInhibition"]


class LateralInhibition(nn.Module):
    r"""Every spike inhibits the other neurons of its group by ``strength``.

    For spikes :math:`s` of one sample, with the group the set of neurons that compete,

    .. math::

        I_i = -w_\text{inh} \Bigl(\sum_{j \in \text{group}(i)} s_j - s_i\Bigr)
        \qquad (\text{or } -w_\text{inh} \textstyle\sum_j s_j
        \text{ with } \texttt{self\_inhibition=True}),

    i.e. the dense connection :math:`W = -w_\text{inh}(\mathbf{1}\mathbf{1}^\top -
    \mathbf{I})` (see :meth:`matrix`) applied in :math:`O(N)` instead of :math:`O(N^2)`.

    Parameters
    ----------
    strength : float
        :math:`w_\text{inh} \ge 0`, the inhibitory input (in the neuron's input units,
        e.g. mV for :class:`~plastorch.neurons.LIF`) that one spike sends to each other
        neuron.
    dims : int or sequence of int, optional
        Dimensions of one sample that form a competing group, counted without the batch
        (``0`` is the first dimension after it). ``None`` (default): the whole sample,
        all its neurons compete. For a ``[B, C, H, W]`` convolutional population,
        ``dims=0`` makes the ``C`` channels at each position compete.
    self_inhibition : bool
        Whether a spike also inhibits its own neuron.

    Examples
    --------
    >>> inhibition = LateralInhibition(2.0)
    >>> inhibition(torch.tensor([[1.0, 0.0, 1.0]]))  # neurons 0 and 2 fired
    tensor([[-2., -4., -2.]])
    >>> inhibition.matrix(3)
    tensor([[-0., -2., -2.],
            [-2., -0., -2.],
            [-2., -2., -0.]])
    """

    def __init__(
        self,
        strength: float,
        *,
        dims: int | Sequence[int] | None = None,
        self_inhibition: bool = False,
    ) -> None:
        super().__init__()
        self.strength = check_nonnegative("strength", strength)
        if dims is None:
            self.dims: tuple[int, ...] | None = None
        else:
            dims = (dims,) if isinstance(dims, int) else tuple(dims)
            if not dims or any(
                isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in dims
            ):
                raise ValueError(
                    f"dims must be None or non-negative ints (sample dimensions, batch "
                    f"excluded), got {dims!r}"
                )
            self.dims = dims
        self.self_inhibition = bool(self_inhibition)

    def forward(self, spikes: Tensor) -> Tensor:
        """Inhibitory input ``[B, *shape]`` for spikes ``[B, *shape]`` (any leading batch dims).

        With ``dims`` given, the leading dimension is the batch and ``dims`` index the
        rest.
        """
        if spikes.dim() < 2:
            raise ValueError(
                f"spikes must be [B, *shape] with at least one sample dimension, got "
                f"{tuple(spikes.shape)}"
            )
        if self.dims is None:
            dims = tuple(range(1, spikes.dim()))
        else:
            if max(self.dims) >= spikes.dim() - 1:
                raise ValueError(
                    f"dims {self.dims} do not exist in samples of shape "
                    f"{tuple(spikes.shape[1:])} (spikes {tuple(spikes.shape)})"
                )
            dims = tuple(d + 1 for d in self.dims)
        total = spikes.sum(dim=dims, keepdim=True)
        if self.self_inhibition:
            return total.expand_as(spikes) * -self.strength
        return (total - spikes) * -self.strength

    def matrix(self, n: int) -> Tensor:
        """The equivalent dense weight ``[n, n]`` of one group of ``n`` neurons (for reference)."""
        eye = torch.eye(n)
        return -self.strength * (torch.ones(n, n) - (0.0 if self.self_inhibition else eye))

    def extra_repr(self) -> str:
        return f"strength={self.strength}, dims={self.dims}, self_inhibition={self.self_inhibition}"


class InhibitedPopulation(nn.Module):
    r"""A spiking population inhibited by its own spikes of the previous step.

    .. math::

        s(t) = \text{neuron}\bigl(c(t) + \text{inhibition}(s(t - \Delta t))\bigr),
        \qquad s(-\Delta t) = 0 \text{ after } \texttt{reset()}

    where :math:`c` is the feed-forward input. A step's inhibition arrives one step after
    the spikes that cause it, so the loop over time needs no matrix product: with
    :class:`LateralInhibition` each step is a sum over the population and elementwise
    work. The last spikes are kept as state, so consecutive windows (or single steps)
    continue seamlessly; :meth:`reset` clears them together with the neuron's state.

    Parameters
    ----------
    neuron : nn.Module
        A single-step neuron model (``[B, *shape]`` in, spikes out), e.g.
        :class:`~plastorch.neurons.AdaptiveLIF` with ``step_mode="single"``.
    inhibition : nn.Module
        Maps spikes ``[B, *shape]`` to the recurrent input ``[B, *shape]``, e.g.
        :class:`LateralInhibition`.
    step_mode : {"single", "multi"}
        Whether :meth:`forward` takes one step ``[B, *shape]`` or a window
        ``[T, B, *shape]``.

    Examples
    --------
    >>> from plastorch.neurons import LIF
    >>> neuron = LIF(2, tau_mem=10.0, v_rest=0.0, v_reset=0.0, v_threshold=1.0, refractory=0.0)
    >>> population = InhibitedPopulation(neuron, LateralInhibition(0.8))
    >>> current = torch.tensor([[1.0, 0.9]]).expand(4, 1, 2)  # [T, B, N]
    >>> population(current)[:, 0]  # neuron 0 wins; neuron 1 is held down by 0.8 per spike
    tensor([[1., 0.],
            [1., 0.],
            [1., 0.],
            [1., 0.]])
    """

    def __init__(self, neuron: nn.Module, inhibition: nn.Module, *, step_mode: str = "multi"):
        super().__init__()
        if not isinstance(neuron, nn.Module) or not isinstance(inhibition, nn.Module):
            raise TypeError(
                f"neuron and inhibition must be nn.Modules, got {type(neuron).__name__} and "
                f"{type(inhibition).__name__}"
            )
        if getattr(neuron, "step_mode", "single") != "single":
            raise ValueError(
                f"neuron must be in single-step mode (InhibitedPopulation loops over time "
                f"itself), got step_mode={neuron.step_mode!r}"
            )
        if step_mode not in ("single", "multi"):
            raise ValueError(f"step_mode must be 'single' or 'multi', got {step_mode!r}")
        self.neuron = neuron
        self.inhibition = inhibition
        self.step_mode = step_mode
        self.register_buffer("last_spikes", torch.empty(0))

    def reset(self) -> None:
        """Forget the last spikes and reset the neuron's state (``neuron.reset()``)."""
        self.last_spikes = torch.empty(
            0, dtype=self.last_spikes.dtype, device=self.last_spikes.device
        )
        reset = getattr(self.neuron, "reset", None)
        if callable(reset):
            reset()

    def _previous(self, current: Tensor) -> Tensor | None:
        last = self.last_spikes
        if last.numel() == 0:
            return None
        if last.shape != current.shape:
            raise ValueError(
                f"the population's last spikes have shape {tuple(last.shape)} but one step "
                f"of input has shape {tuple(current.shape)}; call reset() before changing "
                "the batch size"
            )
        return last

    def _fusable(self) -> bool:
        """Whether the window can run as the neuron's fused loop (no hooks to bypass)."""
        neuron, inhibition = self.neuron, self.inhibition
        return (
            callable(getattr(neuron, "_window", None))
            and type(inhibition) is LateralInhibition
            and inhibition.dims is None
            and not (neuron._forward_hooks or neuron._forward_pre_hooks)
            and not (inhibition._forward_hooks or inhibition._forward_pre_hooks)
        )

    def forward(self, current: Tensor) -> Tensor:
        """Spikes for the feed-forward input ``current``.

        Parameters
        ----------
        current : Tensor
            ``[B, *shape]`` (single step) or ``[T, B, *shape]`` (multi step).

        Returns
        -------
        Tensor
            Spikes shaped like ``current``.
        """
        if not isinstance(current, Tensor):
            raise TypeError(f"current must be a torch.Tensor, got {type(current).__name__}")
        if self.step_mode == "single":
            steps = current.unsqueeze(0)
        elif current.dim() < 3 or current.shape[0] == 0:
            raise ValueError(
                f"multi-step input must be [T, B, *shape] with T >= 1, got {tuple(current.shape)}"
            )
        else:
            steps = current
        last = self._previous(steps[0])
        if self._fusable():
            # One compiled loop over the window with the inhibition inlined (the neuron's
            # _window, see plastorch.neurons.LIF); same equations as the loop below.
            spikes = self.neuron._window(
                steps.detach(),
                inhibition=self.inhibition.strength,
                self_inhibition=self.inhibition.self_inhibition,
                previous=last,
            )
            self.last_spikes = spikes[-1]
            return spikes[0] if self.step_mode == "single" else spikes
        spikes = torch.empty_like(steps)
        for t in range(steps.shape[0]):
            drive = steps[t] if last is None else steps[t] + self.inhibition(last)
            last = self.neuron(drive)
            spikes[t] = last
        self.last_spikes = last
        return spikes[0] if self.step_mode == "single" else spikes

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode!r}"
