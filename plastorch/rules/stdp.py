r"""Pair-based STDP and its reward-modulated relatives (MSTDP, MSTDP-ET).

Shared discrete semantics (Brian2 / NEST event order, exact trace decay):

.. math::

    x_\text{pre}(t) &= x_\text{pre}(t-\Delta t)\, e^{-\Delta t/\tau_\text{pre}} + s_\text{pre}(t)
        \quad\text{(cumulative; nearest: } x = 1 \text{ on a spike)} \\
    x_\text{post}(t) &= x_\text{post}(t-\Delta t)\, e^{-\Delta t/\tau_\text{post}} + s_\text{post}(t) \\
    \xi_\text{post}(t) &= s_\text{post}(t) \otimes x_\text{pre}(t)
        \quad\text{(post-triggered: pairs with pre spikes at or before } t) \\
    \xi_\text{pre}(t) &= \tilde x_\text{post}(t) \otimes s_\text{pre}(t),\quad
        \tilde x_\text{post}(t) = e^{-\Delta t/\tau_\text{post}} x_\text{post}(t-\Delta t)
        \quad\text{(pre-triggered: post spikes strictly before } t)

where :math:`\otimes` is the layer's correlation
(:func:`plastorch.functional.correlate`). A rule's change is
:math:`\eta_\text{post}\,\xi_\text{post} + \eta_\text{pre}\,\xi_\text{pre}` (times the
signal :math:`M` for modulated rules), and the signs select the mode:

=================  =========================  ========================  ============================  ============================
mode               :math:`\eta_\text{post}`   :math:`\eta_\text{pre}`   potentiation                  depression
=================  =========================  ========================  ============================  ============================
Hebbian            :math:`+`                  :math:`-`                 :math:`\xi_\text{post}`       :math:`\xi_\text{pre}`
anti-Hebbian       :math:`-`                  :math:`+`                 :math:`\xi_\text{pre}`        :math:`\xi_\text{post}`
potentiative only  :math:`+`                  :math:`+`                 both                          none
depressive only    :math:`-`                  :math:`-`                 none                          both
=================  =========================  ========================  ============================  ============================

A negative signal swaps a term's half. Differences from the references: the
pre-triggered term uses the post trace *before* the step (inferno and
SpikingJelly use the trace after it, so a same-step pair both potentiates and
depresses there; here it potentiates once, as in Brian2 and NEST); SpikingJelly's
STDP decays traces by Euler (``x - x/tau``), here decay is exact.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..functional import (
    advance_per_sample_,
    advance_sum_,
    correlate,
    correlate_sum,
    cumulative_trace_at_end,
    discounted_reverse_sum,
    flush_subnormal_,
    fold_steps,
    stdp_factors,
    stdp_factors_post_triggered,
    trace_,
    trace_window,
    weighted_acausal_factors,
)
from ..functional.checks import check_choice, check_real
from ..functional.traces import TRACE_MODES, add_spikes_, decay_, decay_factor
from .base import (
    BatchReduction,
    Halves,
    Rule,
    Term,
    broadcast_steps,
    check_batch_reduction,
    correlate_weighted,
    current_state_use,
    pair_trace_state,
    parse_signal,
    route_terms,
    scratch,
    split_signal,
)

__all__ = ["MSTDP", "MSTDPET", "STDP"]


class _PairRule(Rule):
    """Hyperparameters and trace scan shared by STDP, MSTDP and MSTDP-ET."""

    def __init__(
        self,
        lr_post: float,
        lr_pre: float,
        tau_post: float = 20.0,
        tau_pre: float = 20.0,
        *,
        dt: float = 1.0,
        trace_mode: str = "cumulative",
        batch_reduction: BatchReduction = "sum",
    ):
        super().__init__()
        self.lr_post = check_real("lr_post", lr_post)
        self.lr_pre = check_real("lr_pre", lr_pre)
        self.decay_post = decay_factor(dt, tau_post, name="tau_post")
        self.decay_pre = decay_factor(dt, tau_pre, name="tau_pre")
        self.tau_post, self.tau_pre, self.dt = float(tau_post), float(tau_pre), float(dt)
        self.trace_mode = check_choice("trace_mode", trace_mode, TRACE_MODES)
        self.batch_reduction = check_batch_reduction(batch_reduction)

    def extra_repr(self) -> str:
        return (
            f"lr_post={self.lr_post}, lr_pre={self.lr_pre}, tau_post={self.tau_post}, "
            f"tau_pre={self.tau_pre}, dt={self.dt}, trace_mode={self.trace_mode!r}, "
            f"batch_reduction={self.batch_reduction!r}"
        )

    def initial_state(self, layer: nn.Module, pre: Tensor, post: Tensor) -> dict[str, Tensor]:
        return pair_trace_state(layer, pre, post)

    def _terms(self, pre: Tensor, post: Tensor, state: dict[str, Tensor]):
        pre = _as(pre, state["trace_pre"].dtype)
        factors = stdp_factors(
            pre,
            _as(post, state["trace_post"].dtype),
            state["trace_pre"],
            state["trace_post"],
            decay_pre=self.decay_pre,
            decay_post=self.decay_post,
            trace_mode=self.trace_mode,
            inplace=current_state_use().reusable,
        )
        terms = [
            Term(factors.trace_pre, _as(post, factors.trace_pre.dtype), self.lr_post),
            Term(_as(pre, factors.trace_pre.dtype), factors.trace_post_before, self.lr_pre),
        ]
        new_state = {"trace_pre": factors.next_trace_pre, "trace_post": factors.next_trace_post}
        return terms, new_state

    def _route(self, layer, pre, post, state, modulation, halves: Halves) -> dict[str, Tensor]:
        """Route the window's pair terms into ``halves`` (:func:`route_terms`); the new state.

        A one-step window whose state the caller lets it reuse, with a post trace
        larger than the weight (a convolution's feature map), advances both traces
        in place: the acausal term reads the decayed post trace, so it is evaluated
        first (a weight-sized addition later), then the spikes complete the trace.
        On CPU a fresh trace-sized tensor costs its page faults: ~0.4 ms per step
        for the 401k-element map of a Conv2d 2->32 on 16x28x28, more than the
        arithmetic of the trace.
        """
        trace_pre, trace_post = state["trace_pre"], state["trace_post"]
        if not (
            current_state_use().reusable
            and pre.shape[0] == 1
            and pre.shape[1:] == trace_pre.shape
            and post.shape[1:] == trace_post.shape
            and trace_post.numel() > layer.weight.numel()
            and trace_pre.is_contiguous()
            and trace_post.is_contiguous()
        ):
            terms, new_state = self._terms(pre, post, state)
            signal = _net_only_signal(modulation, halves)
            if signal is not None:
                # only the net change is read: one correlate_sum of the signed rates
                # (for a Linear one GEMM accumulator), without the term routing
                items = [
                    (fold_steps(layer, t.pre), fold_steps(layer, t.post), t.rate * signal)
                    for t in terms
                    if t.rate * signal != 0.0
                ]
                net = correlate_sum(layer, items) if items else None
                if net is not None:
                    halves.add_net(net)
            else:
                route_terms(layer, terms, modulation, halves)
            return new_state
        pre, post = _as(pre, trace_pre.dtype), _as(post, trace_post.dtype)
        x_pre = trace_(trace_pre, pre[0], self.decay_pre, 1.0, self.trace_mode)
        before = decay_(trace_post, self.decay_post)
        signal = _net_only_signal(modulation, halves)
        if signal is not None:
            # only the net change is read: the two correlations, their rates as the
            # coefficients of one in-place sum (what the routing below would compute,
            # without its bookkeeping: ~60 us of Python per step)
            if signal != 0.0:
                spikes_pre, spikes_post = pre[0], post[0]  # (one step: no time to fold)
                net = correlate(layer, spikes_pre, before)
                net.mul_(self.lr_pre * signal)
                net.add_(correlate(layer, x_pre, spikes_post), alpha=self.lr_post * signal)
                halves.add_net(net)
        else:
            ltd = Term(pre, before.unsqueeze(0), self.lr_pre)
            if isinstance(modulation, tuple) and _net_only_signal(1.0, halves) is not None:
                # only the net change is read: the acausal term's two signs are one
                # correlation weighted by the signed signal M = w+ - w-, evaluated now
                signed = modulation[0] - modulation[1]
                if self.lr_pre != 0.0 and bool(signed.ne(0).any()):
                    net = correlate_weighted(layer, ltd, signed, False, self.lr_pre)
                    halves.add_net(net, owned=True)
            else:
                route_terms(layer, [ltd], modulation, halves)
                halves.evaluate()
            route_terms(layer, [Term(x_pre.unsqueeze(0), post, self.lr_post)], modulation, halves)
        x_post = add_spikes_(before, post[0], 1.0, self.trace_mode)
        return {"trace_pre": x_pre, "trace_post": x_post}

    def _route_window(self, layer, pre, post, state, modulation, halves: Halves):
        """:meth:`_route`, with a cumulative window (``T > 1``) of a signal constant
        over it (none, a non-zero scalar, or per-sample weights the same at every step)
        summed over the post spikes (:meth:`_post_triggered_terms`); the new state.

        A weight constant over time is the same at a pair's pre spike (where the
        pre-triggered form reads it) and at its post spike (where the post-triggered
        form reads it); the carried-trace term takes the weights of one step."""
        if self.trace_mode != "cumulative" or pre.shape[0] == 1:
            return self._route(layer, pre, post, state, modulation, halves)
        if isinstance(modulation, tuple):
            constant = all(bool((weights == weights[:1]).all()) for weights in modulation)
        else:
            constant = modulation is None or modulation != 0.0
        if not constant:
            return self._route(layer, pre, post, state, modulation, halves)
        terms, new_state = self._post_triggered_terms(pre, post, state)
        if isinstance(modulation, tuple):
            *in_window, carried = terms
            route_terms(layer, in_window, modulation, halves)
            route_terms(layer, [carried], tuple(weights[:1] for weights in modulation), halves)
        else:
            route_terms(layer, terms, modulation, halves)
        return new_state

    def _post_triggered_terms(self, pre: Tensor, post: Tensor, state: dict[str, Tensor]):
        """The pair terms of a cumulative window with the acausal one summed over post
        spikes (:func:`~plastorch.functional.stdp_factors_post_triggered`): the same
        pairs as :meth:`_terms`, with ``post`` shared by both in-window terms."""
        dtype, device = state["trace_pre"].dtype, pre.device
        factors = stdp_factors_post_triggered(
            pre.to(dtype),
            post.to(dtype),
            state["trace_pre"],
            state["trace_post"],
            decay_pre=self.decay_pre,
            decay_post=self.decay_post,
            out_trace_pre=scratch("trace_pre", pre.shape, dtype, device),
            out_after_pre=scratch("after_pre", pre.shape, dtype, device),
        )
        post = post.to(dtype)
        terms = [
            Term(factors.trace_pre, post, self.lr_post),
            Term(factors.after_pre, post, self.lr_pre),
            Term(factors.carried_pre, factors.carried_post, self.lr_pre),
        ]
        new_state = {"trace_pre": factors.next_trace_pre, "trace_post": factors.next_trace_post}
        return terms, new_state


class STDP(_PairRule):
    r"""Pair-based spike-timing-dependent plasticity.

    .. math::

        \Delta w = \sum_t \eta_\text{post}\, s_\text{post}(t) \otimes x_\text{pre}(t)
                 + \eta_\text{pre}\, \tilde x_\text{post}(t) \otimes s_\text{pre}(t)

    with the traces, event order and sign-mode table of :mod:`plastorch.rules.stdp`.
    A window of ``T`` steps costs two correlations (time folded into the batch).
    With cumulative traces and ``T > 1`` the acausal term is summed over post
    spikes instead (:func:`~plastorch.functional.stdp_factors_post_triggered`, the
    same pairs), so both in-window terms share ``s_post``: the net change is then
    one correlation of ``s_post`` (a row sum over its spikes when they are sparse)
    plus a ``[B]``-sample one for the post trace carried into the window.

    Parameters
    ----------
    lr_post : float
        :math:`\eta_\text{post}`, rate of the post-triggered term (> 0 for Hebbian LTP).
    lr_pre : float
        :math:`\eta_\text{pre}`, rate of the pre-triggered term (< 0 for Hebbian LTD).
    tau_post, tau_pre : float
        Trace time constants in ms (> 0).
    dt : float
        Simulation step in ms (> 0).
    trace_mode : {"cumulative", "nearest"}
        All-to-all or nearest-spike pairing.
    batch_reduction : {"sum", "mean"} or callable
        See :mod:`plastorch.rules.base`.

    Examples
    --------
    >>> fc = nn.Linear(1, 1, bias=False)
    >>> rule = STDP(lr_post=1.0, lr_pre=-1.0, tau_post=20.0, tau_pre=20.0)
    >>> pre = torch.tensor([[[1.0]], [[0.0]]])   # pre at step 0, post at step 1
    >>> post = torch.tensor([[[0.0]], [[1.0]]])
    >>> update, state = rule(fc, pre, post, rule.initial_state(fc, pre[0], post[0]))
    >>> round(update.delta().item(), 6)  # exp(-1/20)
    0.951229

    References
    ----------
    Bi & Poo (1998); Song, Miller & Abbott (2000); Morrison, Diesmann & Gerstner (2008).
    """

    def forward(self, layer, pre, post, state, signal=None):
        if signal is not None:
            raise TypeError("STDP takes no signal; use MSTDP or MSTDPET for modulated learning")
        halves = Halves(self.batch_reduction, pre.shape[1])
        new_state = self._route_window(layer, pre, post, state, None, halves)
        return halves.result(), new_state


class MSTDP(_PairRule):
    r"""Reward-modulated STDP (Florian 2007), no eligibility trace.

    .. math::

        \Delta w = \sum_t M(t) \bigl[\eta_\text{post}\, s_\text{post}(t) \otimes x_\text{pre}(t)
                 + \eta_\text{pre}\, \tilde x_\text{post}(t) \otimes s_\text{pre}(t)\bigr]

    :math:`M` is the ``signal`` given to :meth:`plastorch.Learner.step`: a scalar,
    per sample ``[B]``, per step and sample ``[T, B]`` or per step ``[T, 1]``; it
    applies to the steps of the window being settled (a window settled without a
    signal, because another forward came first, has :math:`M = 0`). Where
    :math:`\eta M \ge 0` a term is potentiation, else depression (see the mode
    table in :mod:`plastorch.rules.stdp`). A ``[T, B]`` signal costs at most two
    correlations per term, one per sign, each over only the samples that have it. A
    scalar signal scales :class:`STDP`'s window, whose pairs (cumulative traces, ``T >
    1``) are summed over the post spikes.

    Parameters are those of :class:`STDP`.

    Examples
    --------
    >>> fc = nn.Linear(1, 1, bias=False)
    >>> rule = MSTDP(lr_post=1.0, lr_pre=-1.0)
    >>> pre = torch.tensor([[[1.0]], [[0.0]]]); post = torch.tensor([[[0.0]], [[1.0]]])
    >>> update, _ = rule(fc, pre, post, rule.initial_state(fc, pre[0], post[0]), signal=-2.0)
    >>> round(update.depression.item(), 6)  # a negative reward turns LTP into LTD
    1.902459

    References
    ----------
    Florian, R. V. (2007). Reinforcement learning through modulation of
    spike-timing-dependent synaptic plasticity. Neural Computation 19(6).
    """

    modulated = True

    def forward(self, layer, pre, post, state, signal=None):
        dtype = state["trace_pre"].dtype  # the factors' dtype
        signal = parse_signal(signal, pre.shape[0], pre.shape[1], dtype=dtype, device=pre.device)
        if signal is None:  # M = 0: the traces advance, nothing is learned
            modulation = 0.0
        else:
            modulation = signal if isinstance(signal, float) else split_signal(signal)
        halves = Halves(self.batch_reduction, pre.shape[1])
        new_state = self._route_window(layer, pre, post, state, modulation, halves)
        return halves.result(), new_state


class MSTDPET(_PairRule):
    r"""Reward-modulated STDP with eligibility trace (Florian 2007, MSTDP-ET).

    .. math::

        z_\text{post}(t) &= e^{-\Delta t/\tau_z} z_\text{post}(t-\Delta t)
                            + \xi_\text{post}(t) / \tau_z \\
        z_\text{pre}(t) &= e^{-\Delta t/\tau_z} z_\text{pre}(t-\Delta t)
                           + \xi_\text{pre}(t) / \tau_z \\
        \Delta w &= \sum_t M(t) \bigl[\eta_\text{post}\, z_\text{post}(t)
                    + \eta_\text{pre}\, z_\text{pre}(t)\bigr]

    As in inferno and SpikingJelly the step :math:`\Delta t` of Florian's
    :math:`\gamma M z \Delta t` is not applied: fold it into ``scale``.

    Time fusion: with :math:`d = e^{-\Delta t/\tau_z}`, a window of steps
    :math:`k = 0..T-1` starting from the carried :math:`z_0` gives

    .. math::

        \sum_k M(k) z(k) = z_0 \sum_k M(k)\, d^{k+1} + \sum_j \frac{\xi(j)}{\tau_z} R(j),
        \qquad R(j) = \sum_{k \ge j} M(k)\, d^{k-j}

    so the in-window part is one correlation per term and sign (``R`` is a
    reverse scan over the positive or negative part of ``M``), and no
    ``[B, out, in]`` tensor is formed inside the window. Only the eligibility
    carried to the next window, :math:`z(T) = d^T z_0 + \sum_j d^{T-1-j}\xi(j)/\tau_z`,
    is weight-shaped; it is per sample (``[B, *W]``) only with
    ``per_sample_signal=True``, which is required for ``[B]`` and ``[T, B]``
    signals and for a callable ``batch_reduction``. With cumulative traces the
    acausal pairs, in the change and in :math:`z(T)`, are summed over post spikes
    (:func:`~plastorch.functional.weighted_acausal_factors`), so every term pairs
    with the sparse :math:`s_\text{post}`; a signal constant over the window
    (scalar or ``[B]``) shares one such factor between both signs. Where only the net
    change is read (``eligibility="combined"``, or a caller that reads the delta
    alone, as a Learner without a bound) the causal pairs are written into that
    factor by the same scan (one factor per weighting, :math:`R` signed), and per
    sample the window's change is read in the pass that advances :math:`z(T)`
    (:func:`~plastorch.functional.advance_per_sample_`). When the caller
    allows it (:func:`~plastorch.rules.base.state_use`, as a
    :class:`~plastorch.Learner` does) :math:`z(T)` is accumulated into the given
    :math:`z_0` instead of a new tensor; at the end of an episode
    (``Learner.step(reset=True)``) it is not formed at all, and after a reset
    the carried :math:`z_0 = 0` is not read.

    With ``eligibility="combined"`` one trace :math:`z = \eta_\text{post} z_\text{post}
    + \eta_\text{pre} z_\text{pre}` is carried (Florian's single :math:`z`, as
    SpikingJelly's ``trace_e``): both obey the same recursion, so every window's net
    change is the same, at half the carried state and half its passes (per sample,
    ``[B, *W]`` is the largest tensor of the rule). The terms are then not apart in
    the carried state, so the update's halves are the positive and the negative part
    of the net change (per sample before a callable ``batch_reduction``): a
    weight-dependent bound scales those, where with ``"split"`` (the default, as
    inferno's trainer) it scales the LTP and the LTD pairs.

    Parameters
    ----------
    tau_eligibility : float
        :math:`\tau_z` in ms (> 0).
    per_sample_signal : bool
        Carry one eligibility trace per sample so per-sample signals work
        across windows.
    eligibility : {"split", "combined"}
        Carry ``eligibility_post`` and ``eligibility_pre`` apart, or their
        rate-weighted sum as one ``eligibility``.
    Other parameters are those of :class:`STDP`.

    Examples
    --------
    >>> fc = nn.Linear(1, 1, bias=False)
    >>> rule = MSTDPET(lr_post=1.0, lr_pre=-1.0, tau_eligibility=25.0)
    >>> pre = torch.tensor([[[1.0]], [[0.0]]]); post = torch.tensor([[[0.0]], [[1.0]]])
    >>> update, _ = rule(fc, pre, post, rule.initial_state(fc, pre[0], post[0]), signal=1.0)
    >>> round(update.potentiation.item(), 6)  # exp(-1/20) / 25
    0.038049

    References
    ----------
    Florian, R. V. (2007). Neural Computation 19(6), eqs. for MSTDPET.
    """

    modulated = True

    def __init__(
        self,
        lr_post: float,
        lr_pre: float,
        tau_post: float = 20.0,
        tau_pre: float = 20.0,
        tau_eligibility: float = 25.0,
        *,
        dt: float = 1.0,
        trace_mode: str = "cumulative",
        batch_reduction: BatchReduction = "sum",
        per_sample_signal: bool = False,
        eligibility: str = "split",
    ):
        super().__init__(
            lr_post,
            lr_pre,
            tau_post,
            tau_pre,
            dt=dt,
            trace_mode=trace_mode,
            batch_reduction=batch_reduction,
        )
        self.decay_eligibility = decay_factor(dt, tau_eligibility, name="tau_eligibility")
        self.tau_eligibility = float(tau_eligibility)
        self.per_sample_signal = bool(per_sample_signal)
        self.eligibility = check_choice("eligibility", eligibility, ("split", "combined"))
        if callable(self.batch_reduction) and not self.per_sample_signal:
            raise ValueError(
                "a callable batch_reduction needs per-sample eligibility: pass "
                "per_sample_signal=True to MSTDPET"
            )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, tau_eligibility={self.tau_eligibility}, "
            f"per_sample_signal={self.per_sample_signal}, eligibility={self.eligibility!r}"
        )

    def initial_state(self, layer, pre, post):
        state = super().initial_state(layer, pre, post)
        weight = layer.weight
        for name in self._eligibility_names():
            zeros = torch.zeros(weight.shape, dtype=weight.dtype, device=weight.device)
            # Per sample: a broadcast view of one zero [*W], made a real [B, *W] by
            # the first window that carries eligibility out. A zeroed [B, *W] costs
            # its page faults (~40 ms for 77 MiB here), for nothing when an episode
            # ends after one window (Learner.step(reset=True)).
            batch = pre.shape[0]
            state[name] = zeros.expand(batch, *weight.shape) if self.per_sample_signal else zeros
        return state

    def _eligibility_names(self) -> tuple[str, ...]:
        if self.eligibility == "combined":
            return ("eligibility",)
        return ("eligibility_post", "eligibility_pre")

    def forward(self, layer, pre, post, state, signal=None):
        steps, batch = pre.shape[:2]
        dtype = state["trace_pre"].dtype
        device = pre.device
        combined = self.eligibility == "combined"
        signal = parse_signal(signal, steps, batch, dtype=dtype, device=device)
        if isinstance(signal, Tensor) and signal.shape[1] == batch and batch > 1:
            if not self.per_sample_signal:
                raise ValueError(
                    f"signal of shape {list(signal.shape)} varies over the batch; construct "
                    "MSTDPET(per_sample_signal=True) to carry per-sample eligibility"
                )
        use = current_state_use()
        halves = Halves(self.batch_reduction, batch, signed=combined)
        if steps == 1 and type(signal) is float and not self.per_sample_signal:
            return self._one_step(layer, pre, post, state, signal, halves)
        if isinstance(signal, float):
            signal = torch.full((steps, 1), signal, dtype=dtype, device=device)
        decay, tau = self.decay_eligibility, self.tau_eligibility
        # Where only the window's net change is read (combined: its halves are the parts
        # of it; or a caller that reads the delta alone) and the acausal pairs are
        # written over the post spikes, the window's pairs are one factor paired with
        # s_post: eta_post R x_pre + the acausal factor weighted by eta_pre R, with R
        # the signed reverse sum of M, written by the acausal scan itself.
        net_only = signal is not None and (combined or use.delta_only) and not halves.per_sample
        net = net_only and self.trace_mode == "cumulative"
        # Weights of step j's pairs: R(j) / tau_z in this window's change, for the
        # positive and the negative part of M (net: for M itself), and d^(T-1-j) /
        # tau_z in z(T).
        weights = []
        if net:
            weights = [discounted_reverse_sum(signal, decay) / tau]
        elif signal is not None:
            positive, negative = split_signal(signal)
            # both parts in one scan over time (each entry's recursion is its own)
            both = discounted_reverse_sum(torch.stack((positive, negative), 1), decay) / tau
            weights = list(both.unbind(1))
        tail = (decay ** torch.arange(steps - 1, -1, -1, dtype=dtype, device=device) / tau)[:, None]
        # A signal constant over the window (scalar, [B]) factors as R(j) = m r(j):
        # one acausal factor serves both signs, with m as the weight of its terms.
        constant = not net and signal is not None and bool((signal == signal[:1]).all())
        rates = None  # net: the rates of x_pre written into each factor
        if net:
            scans, rates = [weights[0] * self.lr_pre], [weights[0] * self.lr_post]
        elif constant:
            profile = discounted_reverse_sum(torch.ones_like(tail), decay) / tau
            scans = [profile]
        else:
            scans = list(weights)
        if not use.discarded:  # the pairs weighted for z(T), last (combined: with eta_pre)
            scans.append(tail * self.lr_pre if combined else tail)
            if rates is not None:  # combined: its LTP pairs too, with eta_post
                rates.append(tail * self.lr_post if combined else torch.zeros_like(tail))
        if self.trace_mode == "cumulative":
            # acausal pairs written over the post spikes: every term pairs with the
            # sparse s_post (one list of terms per weighting in ``scans``)
            ltp, acausal, new_state = self._weighted_terms(pre, post, state, scans, rates)
        else:
            (ltp, ltd), new_state = self._terms(pre, post, state)
            acausal = [[Term(ltd.pre, ltd.post * broadcast_steps(w, post), 1.0)] for w in scans]

        names = self._eligibility_names()
        if any(name not in state for name in names):
            raise ValueError(
                f"MSTDPET(eligibility={self.eligibility!r}) carries {list(names)}, but the "
                f"state holds {sorted(state)}: a state (or checkpoint) of the other layout"
            )
        carried = [state[name] for name in names]
        # A per-sample eligibility advanced in place is read out in the same pass that
        # decays it and adds the window's pairs (advance_per_sample_), not before it:
        # where only its net change is read (combined, or a delta-only caller), one
        # signed gain per eligibility, as _carried_change would take
        read_gains = None
        if (
            net_only
            and self.per_sample_signal
            and not use.initial
            and not use.discarded
            and all(self._advances_in_place(z0, dtype) for z0 in carried)
        ):
            gain = self._net_gain(signal, steps)
            carried_rates = (1.0,) if combined else (self.lr_post, self.lr_pre)
            read_gains = [
                None if gain is None or rate == 0.0 else (gain * rate).expand(batch).contiguous()
                for rate in carried_rates
            ]
        read_pairs = None  # the window's change over s_post, taken by the carried pass
        if net:
            if bool(weights[0].ne(0).any()):  # the LTP pairs are in the first factor
                pairs, rank_one = acausal[0]
                if self.per_sample_signal and not use.discarded:
                    # the pass that advances z(T) walks the same post spikes
                    read_pairs = pairs.pre
                else:
                    halves.add_net_term(layer, pairs)
                halves.add_net_term(layer, rank_one)
        elif signal is not None:
            route_terms(layer, [ltp], (weights[0], weights[1]), halves)
            if constant:
                parts = split_signal(signal[:1])
                for term in acausal[0]:
                    lead = term.pre.shape[0]
                    route_terms(
                        layer,
                        [Term(term.pre, term.post, self.lr_pre)],
                        tuple(part.expand(lead, -1) for part in parts),
                        halves,
                    )
            else:
                for k, sign in enumerate((1.0, -1.0)):
                    if self.lr_pre != 0.0 and bool(weights[k].ne(0).any()):
                        for term in acausal[k]:
                            potentiative = self.lr_pre * sign >= 0
                            halves.add_term(layer, term, None, abs(self.lr_pre), potentiative)
        if signal is not None and not use.initial and read_gains is None:
            # initial: zero, nothing carried in
            self._carried_change(halves, carried, signal, steps, batch)

        if use.discarded:  # the end of an episode: no next window reads z(T)
            new_state.update(zip(names, carried))
            return halves.result(), new_state
        # Eligibility carried to the next window: z(T) = d^T z_0 + this window's pairs.
        # The LTP pairs weighted by d^(T-1-j) / tau_z. Per sample, the weights scale the
        # looked-up post spikes, so every part walks the same s_post (one shared scan);
        # the summed correlation takes no weights, so there they go into a copy of s_post.
        # Combined: eta_post on the LTP pairs (eta_pre is in the acausal ones' weights).
        ltp_tail = tail * self.lr_post if combined else tail
        acausal_parts = [(part, None) for part in acausal[-1]]
        if combined and self.trace_mode == "cumulative":
            # both pair with s_post: one correlation of the summed pre factors
            # y + eta_post d^(T-1-j)/tau_z x_pre, written into y (a temporary; net:
            # by the scan)
            first = acausal[-1][0]
            if net:
                folded = first.pre
            else:
                folded = first.pre.addcmul_(ltp.pre, broadcast_steps(ltp_tail, ltp.pre))
            parts = [(Term(folded, first.post, 1.0), None), *acausal_parts[1:]]
            fresh_parts = (("eligibility", carried[0], parts),)
        else:
            if self.per_sample_signal:
                tail_part = (Term(ltp.pre, ltp.post, 1.0), ltp_tail)
            elif ltp.pre[0, 0].numel() < ltp.post[0, 0].numel():
                # the per-step weights go into the smaller factor (a conv's pre trace)
                tail_pre = scratch("tail_pre", ltp.pre.shape, ltp.pre.dtype, ltp.pre.device)
                tail_pre = torch.mul(ltp.pre, broadcast_steps(ltp_tail, ltp.pre), out=tail_pre)
                tail_part = (Term(tail_pre, ltp.post, 1.0), None)
            else:
                tail_post = scratch("tail_post", ltp.post.shape, ltp.post.dtype, ltp.post.device)
                tail_post = torch.mul(ltp.post, broadcast_steps(ltp_tail, post), out=tail_post)
                tail_part = (Term(ltp.pre, tail_post, 1.0), None)
            if combined:
                fresh_parts = (("eligibility", carried[0], [tail_part, *acausal_parts]),)
            else:
                fresh_parts = (
                    ("eligibility_post", carried[0], [tail_part]),
                    ("eligibility_pre", carried[1], acausal_parts),
                )
        for index, (name, z0, parts) in enumerate(fresh_parts):
            if self.per_sample_signal:
                # [B, *W]: accumulated into z_0 itself when the caller lets the rule
                # reuse its state (z_0 has been read above, unless read_gains read it
                # in the same pass), else into a scaled copy
                if self._advances_in_place(z0, dtype):
                    target, beta = z0, decay**steps
                else:
                    target, beta = flush_subnormal_(z0 * decay**steps), 1.0
                read = advance_per_sample_(
                    layer,
                    target,
                    beta,
                    [(part.pre, part.post, step_weights) for part, step_weights in parts],
                    read_gain=None if read_gains is None else read_gains[index],
                    read_pairs=read_pairs if index == 0 else None,
                )
                if read is not None:
                    halves.add_net(read)
                new_state[name] = target
            else:
                # decayed in place when the caller lets the rule reuse its state (z_0
                # has been read above), and the pairs added into it (no weight-sized
                # result per part)
                if self._advances_in_place(z0, dtype):
                    fresh = flush_subnormal_(z0.mul_(decay**steps))
                else:
                    fresh = flush_subnormal_(z0 * decay**steps)
                terms = [
                    (fold_steps(layer, part.pre), fold_steps(layer, part.post), 1.0)
                    for part, _ in parts
                ]
                new_state[name] = correlate_sum(layer, terms, out=fresh)
        return halves.result(), new_state

    def _one_step(self, layer, pre, post, state, signal: float, halves: Halves):
        r"""One step with one signal :math:`M` for every sample, summed eligibility: the
        window's algebra at :math:`T = 1` without its scans. Each eligibility is decayed
        and takes this step's pairs in place when the caller lets the rule reuse its
        state, :math:`z \leftarrow d z + \xi / \tau_z`, and the change is
        :math:`M \sum \eta z`: one new weight-sized tensor (SpikingJelly's single-step
        setting, where the window's bookkeeping was most of the step)."""
        dtype = state["trace_pre"].dtype
        names = self._eligibility_names()
        if any(name not in state for name in names):
            raise ValueError(
                f"MSTDPET(eligibility={self.eligibility!r}) carries {list(names)}, but the "
                f"state holds {sorted(state)}: a state (or checkpoint) of the other layout"
            )
        terms, new_state = self._terms(pre, post, state)
        decay, tau = self.decay_eligibility, self.tau_eligibility
        # combined: eta_post z_post + eta_pre z_pre, one trace with the rates in its pairs
        groups = (
            [(names[0], [(t, t.rate / tau) for t in terms], 1.0)]
            if self.eligibility == "combined"
            else [(name, [(t, 1.0 / tau)], t.rate) for name, t in zip(names, terms)]
        )
        # only the net change is read: each eligibility's share of it, M eta z, is read
        # out in the pass that advances it (advance_sum_)
        net_only = self.eligibility == "combined" or current_state_use().delta_only
        carried, net = [], None
        for name, pairs, rate in groups:
            z0 = state[name]
            if self._advances_in_place(z0, dtype):
                z, beta = z0, decay
            else:
                z, beta = flush_subnormal_(z0 * decay), 1.0
            items = [
                (fold_steps(layer, t.pre), fold_steps(layer, t.post), c)
                for t, c in pairs
                if c != 0.0
            ]
            coefficient = signal * rate
            gain = coefficient if net_only and coefficient != 0.0 else None
            read = advance_sum_(layer, z, beta, items, gain=gain, read=net)
            net = net if gain is None else read
            new_state[name] = z
            carried.append((z, coefficient))
        if signal == 0.0:
            return halves.result(), new_state
        if net_only:
            if net is not None:
                halves.add_net(net, owned=True)
        else:  # each eligibility is one-signed: all of it goes to the half its gain selects
            for z, coefficient in carried:
                if coefficient != 0.0:
                    halves.add(z * abs(coefficient), coefficient > 0)
        return halves.result(), new_state

    def _weighted_terms(self, pre, post, state, weights, rates=None):
        """LTP term, and per weighting ``w`` the acausal pairs weighted by ``w`` written
        over the post spikes (:func:`~plastorch.functional.weighted_acausal_factors`):
        ``[Term(y_w, s_post), Term(g_w, x_post(-1))]``, each without ``lr_pre``. With
        ``rates`` (one ``[T, B|1]`` per weighting) each ``y_w`` has ``r x_pre`` added."""
        dtype = state["trace_pre"].dtype
        pre, post = pre.to(dtype), post.to(dtype)
        x_post0 = state["trace_post"].to(dtype)
        window = scratch("trace_pre", pre.shape, dtype, pre.device)
        x_pre = trace_window(state["trace_pre"], pre, self.decay_pre, 1.0, "cumulative", out=window)
        acausal = []
        if weights:
            size = max(w.shape[1] for w in [*weights, *(rates or [])])
            stacked = torch.stack([w.expand(-1, size) for w in weights])
            causal = None
            if rates is not None:
                causal = (x_pre, torch.stack([r.expand(-1, size) for r in rates]))
            out = scratch("acausal", (len(weights), *pre.shape), dtype, pre.device)
            after, carried = weighted_acausal_factors(
                pre, stacked, self.decay_post, out=out, causal=causal
            )
            acausal = [
                [Term(after[k], post, 1.0), Term(carried[k][None], x_post0[None], 1.0)]
                for k in range(len(weights))
            ]
        new_state = {
            # a trace written into a lent buffer is carried out as a copy
            "trace_pre": x_pre[-1] if window is None else x_pre[-1].clone(),
            "trace_post": cumulative_trace_at_end(x_post0, post, self.decay_post),
        }
        return Term(x_pre, post, self.lr_post), acausal, new_state

    @staticmethod
    def _advances_in_place(z0: Tensor, dtype: torch.dtype) -> bool:
        """Whether the carried per-sample ``z0`` takes this window's pairs in place."""
        return current_state_use().reusable and z0.is_contiguous() and z0.dtype == dtype

    def _gains(self, signal: Tensor, steps: int) -> Tensor:
        r"""``[2, B|1]``: the gain :math:`\sum_k M(k) d^{k+1}` of the carried eligibility,
        for the positive and for the negative part of :math:`M`."""
        positive, negative = split_signal(signal)
        powers = self.decay_eligibility ** torch.arange(
            1, steps + 1, dtype=signal.dtype, device=signal.device
        )
        return torch.stack((positive, negative)).mul_(powers[None, :, None]).sum(1)

    def _net_gain(self, signal: Tensor, steps: int) -> Tensor | None:
        """``[B|1]``: the signed gain of the carried eligibility in the net change
        (``g+ - g-``); ``None`` where it is zero for every sample."""
        gains = self._gains(signal, steps)
        net = gains[0] - gains[1]
        return net if bool(net.ne(0).any()) else None

    def _carried_change(self, halves, carried, signal, steps, batch) -> None:
        r"""The eligibility carried into the window, read at every step:
        :math:`z_0 \sum_k M(k) d^{k+1}` for each sign of ``M`` and each term."""
        signs = (1.0, -1.0)
        # one combined eligibility carries eta_post z_post + eta_pre z_pre: rate 1, and
        # its halves are the parts of the net change
        combined = self.eligibility == "combined"
        rates = (1.0,) if combined else (self.lr_post, self.lr_pre)
        if combined or (current_state_use().delta_only and not halves.per_sample):
            # the caller reads the net change only (or the halves are its parts): both
            # signs in one signed gain, rate (g+ - g-) per sample, so z0 is read once
            # by one matrix-vector product
            net_gain = self._net_gain(signal, steps)
            if net_gain is None:
                return
            for rate, z0 in zip(rates, carried):
                if rate == 0.0:
                    continue
                # (each product is fresh: the window's pairs are then added into it)
                if halves.per_sample:  # [B, *W]: the parts are split per sample
                    shape = (batch, *([1] * (z0.dim() - 1)))
                    halves.add_net(z0 * (net_gain.expand(batch) * rate).reshape(shape), owned=True)
                elif self.per_sample_signal:
                    flat = z0.reshape(batch, -1)
                    value = (net_gain.expand(batch) * rate) @ flat
                    halves.add_net(value.reshape(z0.shape[1:]), owned=True)
                else:
                    halves.add_net(z0 * (net_gain * rate), owned=True)
            return
        gains = self._gains(signal, steps)
        for rate, z0 in zip((self.lr_post, self.lr_pre), carried):
            if rate == 0.0:
                continue
            live = [k for k in range(2) if bool(gains[k].ne(0).any())]
            if not live:
                continue
            gain = gains[live] * abs(rate)
            if self.per_sample_signal and halves.per_sample:
                shape = (batch, *([1] * (z0.dim() - 1)))
                values = [z0 * g.expand(batch).reshape(shape) for g in gain]
            elif self.per_sample_signal:
                # sum_b gain_b z0_b for both signs in one contraction: z0 is read
                # once and no [B, *W] temporary is made
                values = torch.tensordot(gain.expand(len(live), batch), z0, dims=1)
            else:
                values = [z0 * g for g in gain]
            for k, value in zip(live, values):
                halves.add(value, rate * signs[k] >= 0)


def _net_only_signal(modulation, halves: Halves) -> float | None:
    """The signal as one number when only the net change of the window is read.

    That is, for a caller that reads only the delta (``state_use(delta_only=True)``),
    a signal that is one number (or none: 1), and summed halves. A rule may then sum
    its terms with signed rates instead of routing them to the halves. ``None``
    otherwise.
    """
    signal = 1.0 if modulation is None else modulation
    if type(signal) is float and current_state_use().delta_only and not halves.per_sample:
        return signal
    return None


def _as(tensor: Tensor, dtype: torch.dtype) -> Tensor:
    """``tensor`` in ``dtype`` (itself when it already is: a no-op ``.to`` still dispatches)."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)
