r"""Linear homeostatic plasticity: move weights, biases or delays so a neuron fires at a target rate.

With :math:`r` the firing-rate estimate of :mod:`plastorch.monitors` (Hz, updated every
step from the postsynaptic spikes), :math:`r^*` the target and
:math:`e = (r^* - r) / r^*`, each step changes

.. math::

    \Delta w &= \lambda\, \bar e_w
        && \text{(each weight: mean of } e \text{ over the outputs that use it)} \\
    \Delta b &= \frac{\lambda}{L} \sum_{L \text{ outputs sharing } b} e \\
    \Delta d &= -\lambda\, \bar e_d
        && \text{(delays: sign reversed)}

so a rate above its target lowers the weights and the bias and lengthens the delays,
and a rate below raises / shortens them (for :math:`\lambda > 0`). A window sums its
steps. Per step and sample, the order is: reduce over the receptive outputs, split
into positive (potentiation) and negative (depression) parts, then reduce over the
batch (``"mean"`` by default, as in reference 003).

Receptive outputs. A weight's are the output elements it contributes to, found with
:func:`~plastorch.functional.correlate`:
:math:`\bar e_w = C(\mathbf 1, e)_w / C(\mathbf 1, \mathbf 1)_w` (one output per weight
for ``Linear``, a channel's positions within reach for a convolution, edges
included). When every weight reaches at most one output per sample (``Linear``,
:class:`~plastorch.layers.DelayedLinear`), the split commutes with that mean and the
update is two correlations; otherwise per-sample, per-step means are formed
(``[T B, *W]``). A bias is shared by the outputs of its channel, the first
per-sample output dimension (``[out]`` for ``Linear``, ``[C, *spatial]`` for
convolutions). The delays of a :class:`~plastorch.layers.DelayedLinear` follow its
weights.

Difference from reference 003: its code routes the depression half with the wrong
sign, so a rate above target raises the weights there; here the documented formula
holds. The rate estimator is this project's (bias-corrected exponential average).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..functional import correlate, correlate_per_sample
from ..functional.checks import check_choice, check_finite, check_positive, check_real
from ..functional.traces import decay_factor
from ..functional.update import Update
from ..monitors import firing_rate_traces
from .base import BatchReduction, Halves, Rule, check_batch_reduction, current_state_use

__all__ = ["LinearHomeostasis"]

_PARAMS = ("weight", "bias", "delay")


class LinearHomeostasis(Rule):
    r"""Linear homeostasis of weights, biases or delays toward a target firing rate.

    See :mod:`plastorch.rules.homeostasis` for the equations.

    Parameters
    ----------
    plasticity : float
        :math:`\lambda`, the learning rate.
    target : float or Tensor, optional
        :math:`r^*` in Hz (> 0): a number, or a tensor broadcastable to one step of
        postsynaptic spikes ``[B, *out]`` (e.g. one target per output ``[*out]``).
        Saved in ``state_dict`` as ``target_rate``. ``None``: the rule is modulated and
        the target is passed on every update, ``learner.step(signal=target)`` (a
        window settled without one changes nothing; the rate estimate still advances).
    param : {"weight", "bias", "delay"}
        The layer tensor to update (the rule's ``target`` attribute).
    tau_rate : float
        Time constant of the rate estimate in ms (> 0), see :mod:`plastorch.monitors`.
    dt : float
        Simulation step in ms (> 0).
    batch_reduction : {"mean", "sum"} or callable
        Reduction over the batch of the per-sample halves (default ``"mean"``).

    Examples
    --------
    >>> fc = nn.Linear(2, 1, bias=False)
    >>> rule = LinearHomeostasis(0.1, target=250.0, tau_rate=20.0)
    >>> pre = torch.ones(1, 1, 2)
    >>> post = torch.ones(1, 1, 1)  # fires on the first step: rate 1000 Hz
    >>> update, _ = rule(fc, pre, post, rule.initial_state(fc, pre[0], post[0]))
    >>> update.depression  # 0.1 * (1000 - 250) / 250 on every weight
    tensor([[0.3000, 0.3000]])

    References
    ----------
    inferno ``LinearHomeostasis`` (reference 003); Turrigiano (2008), homeostatic
    synaptic scaling.
    """

    def __init__(
        self,
        plasticity: float,
        target: float | Tensor | None = None,
        param: str = "weight",
        *,
        tau_rate: float = 100.0,
        dt: float = 1.0,
        batch_reduction: BatchReduction = "mean",
    ):
        super().__init__()
        self.plasticity = check_real("plasticity", plasticity)
        self.target = check_choice("param", param, _PARAMS)
        self.decay = decay_factor(dt, tau_rate, name="tau_rate")
        self.tau_rate, self.dt = float(tau_rate), float(dt)
        self.batch_reduction = check_batch_reduction(batch_reduction)
        self.modulated = target is None
        self.target_rate: Tensor | None
        self.register_buffer("target_rate", None if target is None else _check_target(target))

    def extra_repr(self) -> str:
        target = None if self.target_rate is None else self.target_rate.tolist()
        return (
            f"plasticity={self.plasticity}, target={target}, param={self.target!r}, "
            f"tau_rate={self.tau_rate}, dt={self.dt}, batch_reduction={self.batch_reduction!r}"
        )

    def initial_state(self, layer, pre, post):
        dtype = layer.weight.dtype
        return {
            "rate_trace": torch.zeros_like(post, dtype=dtype),  # (the spikes' memory format)
            "rate_norm": torch.zeros((), dtype=dtype, device=post.device),
        }

    def forward(self, layer, pre, post, state, signal=None):
        trace, norm = state["rate_trace"], state["rate_norm"]
        traces, norms = firing_rate_traces(
            trace, norm, post.to(trace.dtype), decay=self.decay, dt=self.dt
        )
        # (a copy: the change below is written over the traces)
        new_state = {"rate_trace": traces[-1].clone(), "rate_norm": norms[-1]}
        steps, batch = post.shape[:2]
        halves = Halves(self.batch_reduction, batch)
        if self.modulated:
            if signal is None:
                return halves.result(), new_state
            target = _check_target(signal, name="signal (the target rate)")
        elif signal is not None:
            raise TypeError(
                "LinearHomeostasis was given a target at construction and takes no signal; "
                "construct it with target=None to pass the target on every step"
            )
        else:
            target = self.target_rate
        target = target.to(device=traces.device, dtype=traces.dtype)
        try:
            shape = torch.broadcast_shapes(target.shape, traces.shape[1:])
        except RuntimeError:
            shape = None
        if shape != traces.shape[1:]:
            raise ValueError(
                f"target rate of shape {tuple(target.shape)} does not broadcast to the "
                f"postsynaptic spikes [B, *out] = {tuple(traces.shape[1:])}"
            )
        # per step and sample, signed by the parameter: weight/bias follow e, delays -e;
        # e = (target - q/c) k/target, written over the traces (a rate at its target
        # gives exactly 0, and equal distances from it cancel exactly)
        coefficient = (-1.0 if self.target == "delay" else 1.0) * self.plasticity
        rates = torch.div(traces, norms.reshape(-1, *([1] * (traces.dim() - 1))), out=traces)
        change = torch.sub(target, rates, out=traces).mul_(coefficient / target)  # [T, B, *out]
        tensor = getattr(layer, self.target)
        if self.target == "bias":
            parts = _bias_parts(change, tensor, halves.per_sample)
        else:
            if tensor.shape != layer.weight.shape:
                raise ValueError(
                    f"layer.{self.target} has shape {tuple(tensor.shape)}, not the weight's "
                    f"{tuple(layer.weight.shape)}; LinearHomeostasis maps it like the weight"
                )
            if _one_output_per_weight(layer, pre, change):
                return _row_update(change, pre.shape[-1], self.batch_reduction), new_state
            parts = _weight_parts(layer, pre, change, halves.per_sample)
        for value, potentiative in zip(parts, (True, False)):
            if value is not None and bool(value.ne(0).any()):
                halves.add(value, potentiative)
        return halves.result(), new_state


def _check_target(target, name: str = "target") -> Tensor:
    if isinstance(target, Tensor):
        if not target.is_floating_point():
            target = target.to(torch.get_default_dtype())
        check_finite(name, target)
        if bool((target <= 0).any()):
            raise ValueError(f"{name} must be > 0 everywhere, got {target}")
        return target.detach().clone()
    return torch.tensor(check_positive(name, target), dtype=torch.float64)


def _split_sum(values: Tensor) -> tuple[Tensor, Tensor]:
    """Positive and negative parts of ``[T, B, ...]`` values, summed over time."""
    return values.clamp(min=0).sum(0), (-values).clamp(min=0).sum(0)


def _bias_parts(change: Tensor, bias: Tensor | None, per_sample: bool):
    if bias is None:
        raise TypeError("LinearHomeostasis(param='bias') needs a layer with a bias")
    channels = change.shape[2] if change.dim() > 2 else 1
    if change.dim() < 3 or tuple(bias.shape) != (channels,):
        raise ValueError(
            f"bias of shape {tuple(bias.shape)} must index the first per-sample output "
            f"dimension of postsynaptic spikes {tuple(change.shape)} ([T, B, C, ...])"
        )
    shared = change.flatten(3).mean(-1) if change.dim() > 3 else change  # [T, B, C]
    positive, negative = _split_sum(shared)  # [B, C]
    if not per_sample:
        positive, negative = positive.sum(0), negative.sum(0)
    return positive, negative


def _one_output_per_weight(layer: nn.Module, pre: Tensor, change: Tensor) -> bool:
    """Whether weight ``[o, i]`` reaches output ``o`` alone, once per sample: an
    ``nn.Linear`` (or :class:`~plastorch.layers.DelayedLinear`) on ``[T, B, in]``."""
    return isinstance(layer, nn.Linear) and pre.dim() == 3 and change.dim() == 3


def _row_update(change: Tensor, n_in: int, reduction: BatchReduction) -> Update:
    r"""The update of such a layer: :math:`C(\mathbf 1, e)_{oi} = \sum e_o` for every input
    ``i``, a broadcast of each output's sum, not a GEMM.

    The split sums over the steps (and the batch, divided by it for ``"mean"``) are
    formed on ``[out]`` (``[B, out]`` per sample) and broadcast once each; a caller that
    reads only the delta gets their difference broadcast alone (one weight-sized
    tensor, against the halves' two and their difference).
    """
    batch = change.shape[1]
    per_sample = callable(reduction)
    sums = [
        part.sum(0) if per_sample else part.sum((0, 1))
        for part in (change.clamp(min=0), (-change).clamp(min=0))
    ]
    if reduction == "mean":
        sums = [total / batch for total in sums]
    halves = Halves(reduction if per_sample else "sum", batch)

    def broadcast(rows: Tensor) -> Tensor:
        return rows.unsqueeze(-1).expand(*rows.shape, n_in).contiguous()

    if current_state_use().delta_only and not per_sample:
        net = sums[0] - sums[1]
        if bool(net.ne(0).any()):
            halves.add_net(broadcast(net))
        return halves.result()
    for rows, potentiative in zip(sums, (True, False)):
        if bool(rows.ne(0).any()):
            halves.add(broadcast(rows), potentiative)
    return halves.result()


def _weight_parts(layer: nn.Module, pre: Tensor, change: Tensor, per_sample: bool):
    steps, batch = change.shape[:2]
    ones_pre = torch.ones(pre.shape[2:], dtype=change.dtype, device=change.device)
    ones_post = torch.ones(change.shape[2:], dtype=change.dtype, device=change.device)
    reach = correlate(layer, ones_pre.unsqueeze(0), ones_post.unsqueeze(0))  # outputs per weight
    used = reach > 0
    if bool((reach <= 1).all()):
        # each weight reaches at most one output per sample: split first, then map
        ones = ones_pre.expand(steps, batch, *ones_pre.shape)
        parts = []
        for part in (change.clamp(min=0), (-change).clamp(min=0)):
            if per_sample:
                parts.append(correlate_per_sample(layer, ones, part))
            else:
                parts.append(correlate(layer, ones.flatten(0, 1), part.flatten(0, 1)))
        return parts
    # from an all-ones input every input channel of a weight reaches the same outputs:
    # a convolution's per-sample sums are those of one input channel, broadcast
    single, weight_shape = _one_input_channel(layer), layer.weight.shape
    if single is not None:
        layer, ones_pre = single, ones_pre[:1]
        reach, used = reach[:, :1], used[:, :1]
    ones = ones_pre.expand(1, steps * batch, *ones_pre.shape)
    sums = correlate_per_sample(layer, ones, change.flatten(0, 1).unsqueeze(0))  # [T B, *W]
    means = torch.where(used, sums / torch.where(used, reach, 1), 0)
    positive, negative = _split_sum(means.reshape(steps, batch, *means.shape[1:]))
    if not per_sample:
        positive, negative = positive.sum(0), negative.sum(0)
    if single is not None:  # the one channel's halves, for every input channel
        lead = positive.shape[: positive.dim() - len(weight_shape)]  # ([B] per sample)
        positive, negative = (
            half.expand(*lead, *weight_shape).contiguous() for half in (positive, negative)
        )
    return positive, negative


def _one_input_channel(layer: nn.Module) -> nn.Module | None:
    """A convolution of one input channel with ``layer``'s geometry (``None`` unless
    ``layer`` is an ``nn.Conv1d/2d/3d``): its correlations with an all-ones input are
    those of every input channel of ``layer``, at ``1 / (in_channels / groups)`` the cost.

    Built on the meta device and given uninitialised memory: only its weight's shape,
    dtype and device are read, and an initialisation would draw from the global random
    generator at every step."""
    if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return None
    make = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[len(layer.kernel_size) - 1]
    single = make(
        1,
        layer.out_channels,
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        bias=False,
        padding_mode=layer.padding_mode,
        device="meta",
        dtype=layer.weight.dtype,
    )
    return single.to_empty(device=layer.weight.device)
