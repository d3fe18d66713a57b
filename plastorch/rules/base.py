r"""What every rule shares: the ``Update`` it returns and how signed terms are routed.

A pair-based rule is a sum of *terms*, each a correlation of a presynaptic and
a postsynaptic factor times a signed learning rate :math:`\eta` and, for
modulated rules, a signal :math:`M`. A term's magnitude
:math:`|\eta M| C(a, b)` is non-negative; the sign of :math:`\eta M` says which
half of the update it belongs to: potentiation if :math:`\eta M \ge 0`,
depression otherwise (as in inferno's trainers). Weight dependence
(:mod:`plastorch.bounds`) scales each half by the current weight, and the
learner applies :math:`\Delta w = \text{potentiation} - \text{depression}`.

Batch reduction
---------------
``"sum"`` (default) sums each half over the batch, ``"mean"`` divides that sum
by the batch size :math:`B` (so a per-sample signal of ones equals the scalar
signal 1), and a callable ``f(tensor, dim)`` (``torch.amax``, ...) is applied
to the per-sample halves ``[B, *W]`` (each sample's potentiation is the sum of
its terms that are potentiative). Time is always summed. Sum and mean never
materialise per-sample halves; a callable does, by necessity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..functional import Update, correlate, correlate_per_sample
from ..functional.checks import check_finite
from ..functional.update import add_optional as _add

BatchReduction = str | Callable[[Tensor, int], Tensor]

__all__ = ["BatchReduction", "Rule", "Term", "Update", "pair_trace_state", "route_terms"]


class Term(NamedTuple):
    """One pair term: ``rate * C(pre, post)``; ``pre [T, B, *in]``, ``post [T, B, *out]``."""

    pre: Tensor
    post: Tensor
    rate: float


def check_batch_reduction(batch_reduction: BatchReduction) -> BatchReduction:
    """Validate ``batch_reduction``: ``"sum"``, ``"mean"`` or a callable ``f(tensor, dim)``."""
    if callable(batch_reduction):
        return batch_reduction
    if isinstance(batch_reduction, str) and batch_reduction.lower() in ("sum", "mean"):
        return batch_reduction.lower()
    raise ValueError(
        f"batch_reduction must be 'sum', 'mean' or a callable f(tensor, dim), got {batch_reduction!r}"
    )


class Halves:
    """Accumulates routed term magnitudes, then applies the batch reduction."""

    def __init__(self, batch_reduction: BatchReduction, batch_size: int):
        self.reduction = batch_reduction
        self.batch_size = batch_size
        self.per_sample = callable(batch_reduction)
        self.potentiation: Tensor | None = None
        self.depression: Tensor | None = None

    def add(self, value: Tensor, potentiative: bool) -> None:
        """Add a magnitude (``[B, *W]`` when per-sample, else ``[*W]``) to one half."""
        if potentiative:
            self.potentiation = _add(self.potentiation, value)
        else:
            self.depression = _add(self.depression, value)

    def result(self) -> Update:
        def reduce(half: Tensor | None) -> Tensor | None:
            if half is None:
                return None
            if self.per_sample:
                return self.reduction(half, 0)
            if self.reduction == "mean":
                return half / self.batch_size
            return half

        return Update(reduce(self.potentiation), reduce(self.depression))


def _weighted(tensor: Tensor, weights: Tensor) -> Tensor:
    """``tensor [T, B, ...]`` times ``weights [T, B]`` broadcast over the trailing dims."""
    return tensor * weights.reshape(*weights.shape, *([1] * (tensor.dim() - 2))).to(tensor.dtype)


def correlate_weighted(
    layer: nn.Module,
    term: Term,
    weights: Tensor | None,
    per_sample: bool,
    scale: float = 1.0,
) -> Tensor:
    """:math:`c \\sum_{t,b} w(t,b)\\, C(\\text{pre}(t,b), \\text{post}(t,b))`, per sample if asked.

    ``weights`` is ``[T, B]`` or ``[T, 1]`` (``None`` means all ones) and ``scale``
    is :math:`c`. Both multiply the cheapest operand: the weights go into the
    smaller of the two factors, and a scale without weights into that factor or,
    when the result is smaller than it, into the result. Samples whose weights
    are all zero are skipped before the correlation.
    """
    pre, post = term.pre, term.post
    steps, batch = pre.shape[:2]
    index = None
    if weights is not None:
        if scale != 1.0:
            weights = weights * scale
            scale = 1.0
        if weights.shape[1] == batch and batch > 1 and not per_sample:
            active = weights.ne(0).any(0)
            if not bool(active.all()):
                index = active.nonzero().flatten()
                pre, post, weights = pre[:, index], post[:, index], weights[:, index]
        if pre[0, 0].numel() <= post[0, 0].numel():
            pre = _weighted(pre, weights)
        else:
            post = _weighted(post, weights)
    elif scale != 1.0:
        result_size = layer.weight.numel() * (batch if per_sample else 1)
        if min(pre.numel(), post.numel()) < result_size:
            if pre.numel() <= post.numel():
                pre = pre * scale
            else:
                post = post * scale
            scale = 1.0
    if per_sample:
        value = correlate_per_sample(layer, pre, post)
    else:
        value = correlate(layer, pre.flatten(0, 1), post.flatten(0, 1))
    return value if scale == 1.0 else value.mul_(scale)


def route_terms(
    layer: nn.Module,
    terms: list[Term],
    modulation: float | tuple[Tensor, Tensor] | None,
    halves: Halves,
) -> None:
    """Correlate each term and add its magnitude to the half its sign selects.

    Parameters
    ----------
    modulation
        ``None`` (unmodulated, :math:`M = 1`), a scalar :math:`M`, or a pair
        ``(w_pos, w_neg)`` of non-negative per-step weights ``[T, B]`` (or
        ``[T, 1]``) for the steps where the signal is positive and negative.
    """
    for term in terms:
        if term.rate == 0.0:
            continue
        magnitude = abs(term.rate)
        if modulation is None or isinstance(modulation, float):
            signal = 1.0 if modulation is None else modulation
            if signal == 0.0:
                continue
            value = correlate_weighted(
                layer, term, None, halves.per_sample, magnitude * abs(signal)
            )
            halves.add(value, term.rate * signal >= 0)
            continue
        for weights, sign in zip(modulation, (1.0, -1.0)):
            if not bool(weights.ne(0).any()):
                continue
            value = correlate_weighted(layer, term, weights, halves.per_sample, magnitude)
            halves.add(value, term.rate * sign >= 0)


def parse_signal(
    signal: float | Tensor | None,
    steps: int,
    batch: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> float | Tensor | None:
    """Validate a modulation signal and bring it to a float or a ``[T, B|1]`` tensor.

    Accepted: a number or 0-d tensor (one value for every step and sample), a
    ``[B]`` tensor (per sample, the same at every step), a ``[T, B]`` tensor
    (per step and sample) or ``[T, 1]`` (per step). NaN or inf raises.
    """
    if signal is None:
        return None
    if isinstance(signal, Tensor) and signal.dim() == 0:
        signal = signal.item()
    if isinstance(signal, bool) or not isinstance(signal, (int, float, Tensor)):
        raise TypeError(f"signal must be a number or a tensor, got {type(signal).__name__}")
    if not isinstance(signal, Tensor):
        signal = float(signal)
        if signal != signal or signal in (float("inf"), float("-inf")):
            raise ValueError(f"signal must be finite, got {signal!r}")
        return signal
    check_finite("signal", signal)
    if signal.device != device:
        raise ValueError(f"signal is on {signal.device} but the spikes are on {device}")
    if signal.dim() == 1 and signal.shape[0] == batch:
        return signal.to(dtype).reshape(1, batch).expand(steps, batch)
    if signal.dim() == 2 and signal.shape[0] == steps and signal.shape[1] in (batch, 1):
        return signal.to(dtype)
    raise ValueError(
        f"signal must be a scalar, [B]={[batch]}, [T, B]={[steps, batch]} or [T, 1]={[steps, 1]}, "
        f"got shape {list(signal.shape)}"
    )


def split_signal(signal: Tensor) -> tuple[Tensor, Tensor]:
    """Positive and negative parts, ``(max(M, 0), max(-M, 0))``."""
    return signal.clamp(min=0), (-signal).clamp(min=0)


def pair_trace_state(layer: nn.Module, pre: Tensor, post: Tensor) -> dict[str, Tensor]:
    """Zero pre and post traces ``{"trace_pre": [B, *in], "trace_post": [B, *out]}``.

    The initial state of every pair-trace rule, in the dtype of the layer's weight.
    """
    dtype = layer.weight.dtype
    return {
        "trace_pre": torch.zeros(pre.shape, dtype=dtype, device=pre.device),
        "trace_post": torch.zeros(post.shape, dtype=dtype, device=post.device),
    }


class Rule(nn.Module):
    """Base class of plasticity rules.

    A rule holds hyperparameters and turns one window of recorded spikes into
    an :class:`Update`. It is pure: ``forward`` returns the new state instead of
    modifying it, so the :class:`plastorch.Learner` owns all state (as buffers).

    Subclasses set ``modulated`` (whether ``step`` needs a signal) and ``target``
    (the layer tensor the update applies to, ``"weight"`` by default) and
    implement :meth:`initial_state` and :meth:`forward`.
    """

    modulated: bool = False
    #: Name of the layer tensor the update is applied to ("weight", "bias", "delay", ...).
    target: str = "weight"

    def initial_state(self, layer: nn.Module, pre: Tensor, post: Tensor) -> dict[str, Tensor]:
        """Zero state for one step of spikes ``pre [B, *in]``, ``post [B, *out]``."""
        raise NotImplementedError

    def forward(
        self,
        layer: nn.Module,
        pre: Tensor,
        post: Tensor,
        state: dict[str, Tensor],
        signal: float | Tensor | None = None,
    ) -> tuple[Update, dict[str, Tensor]]:
        """Update for the window ``pre [T, B, *in]``, ``post [T, B, *out]`` and the new state."""
        raise NotImplementedError
