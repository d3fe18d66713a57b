r"""Triplet STDP (Pfister & Gerstner 2006), all-to-all and nearest-spike.

Two presynaptic traces :math:`r_1` (:math:`\tau_+`), :math:`r_2` (:math:`\tau_x`) and
two postsynaptic traces :math:`o_1` (:math:`\tau_-`), :math:`o_2` (:math:`\tau_y`),
each decaying exactly and jumping by 1 at a spike (``"cumulative"``, all-to-all) or
reset to 1 (``"nearest"``, the paper's nearest-spike model). At a post spike the
synapse is potentiated, at a pre spike depressed:

.. math::

    \Delta w^+ &= s_\text{post}(t) \otimes r_1(t)\,
        \bigl[A_2^+ + A_3^+\, \tilde o_2(t)\bigr] \\
    \Delta w^- &= \tilde o_1(t) \otimes s_\text{pre}(t)\,
        \bigl[A_2^- + A_3^-\, \tilde r_2(t)\bigr]

with the traces read as in the paper's :math:`t - \epsilon`: :math:`\tilde o_2`,
:math:`\tilde r_2` exclude the spike of step :math:`t` (the value just before it), and
the pair terms follow the project's event order (pre before post within a step:
:math:`r_1(t)` includes a same-step pre spike, :math:`\tilde o_1(t)` is the post trace
before step :math:`t`). So the change of one window is four correlations,

.. math::

    \Delta w = A_2^+ C(r_1, s_\text{post}) + A_3^+ C(r_1, s_\text{post}\tilde o_2)
             - A_2^- C(s_\text{pre}, \tilde o_1) - A_3^- C(s_\text{pre}\tilde r_2, \tilde o_1).

The pair and triplet terms of one side share a factor (:math:`r_1`, :math:`\tilde
o_1`); of one sign they are one half, and one correlation each:
:math:`C(r_1, s_\text{post}(A_2^+ + A_3^+ \tilde o_2))` and
:math:`C(f, \tilde o_1)` with :math:`f = s_\text{pre}(A_2^- + A_3^- \tilde r_2)`.
A cumulative window (``T > 1``) sums the LTD pairs over the post spikes instead, as
:class:`~plastorch.rules.STDP` does (post spikes are the sparser factor):
:math:`C(y, s_\text{post}) + C(y(-1), o_1(-1))` with :math:`y` the anticausal trace
of :math:`f` (:func:`~plastorch.functional.trace_after_window`); without the triplet
term of LTP, both sides then share :math:`s_\text{post}`, one correlation for the net
change.

With :math:`A_3^\pm = 0` this is pair STDP
(:class:`~plastorch.rules.STDP` with ``lr_post = A2+``, ``lr_pre = -A2-``,
``tau_pre = tau_plus``, ``tau_post = tau_minus``). The amplitudes are non-negative in
the paper; a negative one moves its term to the other half of the update.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..functional.checks import check_choice, check_real
from ..functional.stdp import cumulative_trace_at_end
from ..functional.traces import (
    TRACE_MODES,
    decay_factor,
    trace_after_window,
    trace_window,
    trace_window_before,
)
from .base import (
    BatchReduction,
    Halves,
    Rule,
    Term,
    check_batch_reduction,
    route_terms,
    scratch,
)

__all__ = ["TripletSTDP"]


def _pair_and_triplet(
    spikes: Tensor, pair: float, triplet: float, trace_before: Tensor
) -> list[tuple[Tensor, float]]:
    """The spike factors and rates of ``pair C(., s) + triplet C(., s y~)`` (one side).

    Both terms share the other factor (``r1`` for LTP, ``o1~`` for LTD). Of one sign
    they are one half: one correlation of ``s (1 + triplet/pair y~)`` at rate ``pair``.
    ``trace_before`` is :math:`\tilde y`, which this may overwrite.
    """
    if triplet == 0.0:
        return [(spikes, pair)]
    if pair * triplet > 0.0:  # s + (triplet/pair) s y~, one pass written over y~
        merged = torch.addcmul(spikes, spikes, trace_before, value=triplet / pair, out=trace_before)
        return [(merged, pair)]
    return [(spikes, pair), (spikes * trace_before, triplet)]


class TripletSTDP(Rule):
    r"""Triplet spike-timing-dependent plasticity, Pfister & Gerstner (2006) minimal model.

    See :mod:`plastorch.rules.triplet` for the equations and event order.

    Parameters
    ----------
    a2_plus, a3_plus : float
        :math:`A_2^+`, :math:`A_3^+`: pair and triplet potentiation amplitudes.
    a2_minus, a3_minus : float
        :math:`A_2^-`, :math:`A_3^-`: pair and triplet depression amplitudes.
    tau_plus, tau_x : float
        Time constants of :math:`r_1`, :math:`r_2` in ms (> 0).
    tau_minus, tau_y : float
        Time constants of :math:`o_1`, :math:`o_2` in ms (> 0). The defaults are the
        paper's fit to visual-cortex data (16.8, 101, 33.7, 125 ms).
    dt : float
        Simulation step in ms (> 0).
    trace_mode : {"cumulative", "nearest"}
        All-to-all or nearest-spike interactions.
    batch_reduction : {"sum", "mean"} or callable
        See :mod:`plastorch.rules.base`.

    Examples
    --------
    >>> fc = nn.Linear(1, 1, bias=False)
    >>> rule = TripletSTDP(a2_plus=0.0, a3_plus=1.0, a2_minus=0.0, a3_minus=0.0,
    ...                    tau_plus=10.0, tau_y=10.0)
    >>> pre = torch.tensor([[[0.0]], [[1.0]], [[0.0]]])   # post, pre, post
    >>> post = torch.tensor([[[1.0]], [[0.0]], [[1.0]]])
    >>> update, _ = rule(fc, pre, post, rule.initial_state(fc, pre[0], post[0]))
    >>> round(update.potentiation.item(), 6)  # r1 = exp(-1/10), o2 = exp(-2/10)
    0.740818

    References
    ----------
    Pfister, J.-P. & Gerstner, W. (2006). Triplets of spikes in a model of spike
    timing-dependent plasticity. J. Neurosci. 26(38), 9673-9682.
    """

    def __init__(
        self,
        a2_plus: float,
        a3_plus: float,
        a2_minus: float,
        a3_minus: float,
        tau_plus: float = 16.8,
        tau_x: float = 101.0,
        tau_minus: float = 33.7,
        tau_y: float = 125.0,
        *,
        dt: float = 1.0,
        trace_mode: str = "cumulative",
        batch_reduction: BatchReduction = "sum",
    ):
        super().__init__()
        self.a2_plus = check_real("a2_plus", a2_plus)
        self.a3_plus = check_real("a3_plus", a3_plus)
        self.a2_minus = check_real("a2_minus", a2_minus)
        self.a3_minus = check_real("a3_minus", a3_minus)
        self.decay_plus = decay_factor(dt, tau_plus, name="tau_plus")
        self.decay_x = decay_factor(dt, tau_x, name="tau_x")
        self.decay_minus = decay_factor(dt, tau_minus, name="tau_minus")
        self.decay_y = decay_factor(dt, tau_y, name="tau_y")
        self.taus = (float(tau_plus), float(tau_x), float(tau_minus), float(tau_y))
        self.dt = float(dt)
        self.trace_mode = check_choice("trace_mode", trace_mode, TRACE_MODES)
        self.batch_reduction = check_batch_reduction(batch_reduction)

    def extra_repr(self) -> str:
        tau_plus, tau_x, tau_minus, tau_y = self.taus
        return (
            f"a2_plus={self.a2_plus}, a3_plus={self.a3_plus}, a2_minus={self.a2_minus}, "
            f"a3_minus={self.a3_minus}, tau_plus={tau_plus}, tau_x={tau_x}, "
            f"tau_minus={tau_minus}, tau_y={tau_y}, dt={self.dt}, "
            f"trace_mode={self.trace_mode!r}, batch_reduction={self.batch_reduction!r}"
        )

    def initial_state(self, layer: nn.Module, pre: Tensor, post: Tensor) -> dict[str, Tensor]:
        dtype = layer.weight.dtype
        # in the spikes' memory format, as pair_trace_state
        zeros_pre = torch.zeros_like(pre, dtype=dtype)
        zeros_post = torch.zeros_like(post, dtype=dtype)
        return {
            "r1": zeros_pre,
            "r2": zeros_pre.clone(),
            "o1": zeros_post,
            "o2": zeros_post.clone(),
        }

    def forward(self, layer, pre, post, state, signal=None):
        if signal is not None:
            raise TypeError("TripletSTDP takes no signal")
        dtype = state["r1"].dtype
        pre, post = pre.to(dtype), post.to(dtype)
        mode, window = self.trace_mode, pre.shape[0] > 1

        def buffer(name: str, like: Tensor) -> Tensor | None:
            # a window's factors live in the caller's workspace (reused across windows)
            return scratch(name, like.shape, dtype, like.device) if window else None

        # r1 in full, the others just before each step (the paper's t - epsilon)
        lent = buffer("r1", pre)
        r1 = trace_window(state["r1"], pre, self.decay_plus, 1.0, mode, out=lent)
        # a cumulative window writes its LTD pairs over the post spikes
        post_triggered = window and mode == "cumulative"
        names = ("r2", "o2") if post_triggered else ("r2", "o1", "o2")
        sources = {
            "r2": (pre, self.decay_x),
            "o1": (post, self.decay_minus),
            "o2": (post, self.decay_y),
        }
        before, new_state = {}, {}
        for name in names:
            spikes, decay = sources[name]
            out = buffer(f"{name}_before", spikes)
            before[name], new_state[name] = trace_window_before(
                state[name], spikes, decay, 1.0, mode, out=out
            )
        ltp = _pair_and_triplet(post, self.a2_plus, self.a3_plus, before["o2"])
        ltd = _pair_and_triplet(pre, -self.a2_minus, -self.a3_minus, before["r2"])
        terms = [Term(r1, factor, rate) for factor, rate in ltp]
        if post_triggered:
            o1 = state["o1"].to(dtype)
            new_state["o1"] = cumulative_trace_at_end(o1, post, self.decay_minus)
            for k, (factor, rate) in enumerate(ltd):
                # C(f, o1~) = C(y, s_post) + C(y(-1), o1(-1)), y the anticausal trace of f
                out = buffer(f"ltd_after{k}", factor)
                after, carried = trace_after_window(factor, self.decay_minus, out=out)
                terms += [Term(after, post, rate), Term(carried[None], o1[None], rate)]
        else:
            terms += [Term(factor, before["o1"], rate) for factor, rate in ltd]
        halves = Halves(self.batch_reduction, pre.shape[1])
        route_terms(layer, terms, None, halves)
        # (a lent r1 is overwritten by the next window: its last step is carried as a copy)
        new_state["r1"] = r1[-1] if lent is None else r1[-1].clone()
        return halves.result(), new_state
