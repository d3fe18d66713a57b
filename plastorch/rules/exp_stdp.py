r"""Exponential weight-dependent STDP (Nessler et al. 2013; Diehl & Cook 2015 eq. 4; ngclearn).

Per step, with the presynaptic trace :math:`x_\text{pre}` (including this step's
spike), the postsynaptic trace before the step :math:`\tilde x_\text{post}`, a
presynaptic target :math:`x_\text{tar}` and the weight :math:`w`:

.. math::

    \Delta w = \eta \Bigl[ A_+ \bigl( e^{-\beta w}\, C(x_\text{pre}, s_\text{post})
                 - e^{-\beta (w_b - w)}\, C(x_\text{tar}\mathbf 1, s_\text{post}) \bigr)
               - A_-\, e^{-\beta w}\, C(s_\text{pre}, \tilde x_\text{post}) \Bigr]

The first term is the LTP of Diehl & Cook's eq. 4 (exponential in the weight, as in
Nessler et al.); the second depresses each synapse whose presynaptic trace is below
:math:`x_\text{tar}` when the post neuron fires (:math:`x_\text{tar}` controls how
strongly unused inputs disconnect); the third is ngclearn's optional pre-triggered
depression (off for :math:`A_- = 0`). The weight dependence is part of the rule (it
needs three factors, one more than a :class:`~plastorch.bounds.Bound` has halves), read
from ``layer.weight`` when the window is settled; within a
:class:`~plastorch.Learner` the weight only changes at ``step``, so that is the weight
the update is applied to. :class:`ExpSTDPBound` then does what ngclearn does after the
step: optional L2 normalisation and clipping to :math:`[w_\min, w_b]`.

Differences from ngclearn's ``ExpSTDPSynapse.evolve``: the pre-triggered term reads
the post trace *before* the step (Brian2 / NEST event order, see
:mod:`plastorch.rules.stdp`), where ngclearn uses the trace after it; and a window of
:math:`T` steps sums :math:`T` updates at the weight of the window's start.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..bounds import Bound
from ..functional import (
    correlate,
    correlate_constant,
    correlate_per_sample,
    correlate_sum,
    fold_steps,
    stdp_factors,
    stdp_factors_post_triggered,
)
from ..functional.checks import check_choice, check_nonnegative, check_positive
from ..functional.traces import TRACE_MODES, decay_factor
from ..functional.update import Update
from .base import (
    BatchReduction,
    Halves,
    Rule,
    check_batch_reduction,
    current_state_use,
    pair_trace_state,
    scratch,
)

__all__ = ["ExpSTDP", "ExpSTDPBound"]


class ExpSTDP(Rule):
    r"""Exponential weight-dependent STDP with a presynaptic target (ngclearn's ExpSTDPSynapse).

    See :mod:`plastorch.rules.exp_stdp` for the update. Pair it with
    :class:`ExpSTDPBound` (``w_bound`` equal) for ngclearn's clipping and norm.

    Parameters
    ----------
    lr : float
        :math:`\eta` (>= 0).
    beta : float
        :math:`\beta` (>= 0), strength of the exponential weight dependence.
    a_plus, a_minus : float
        :math:`A_+`, :math:`A_-` (>= 0).
    x_target : float
        :math:`x_\text{tar}` (>= 0), the presynaptic trace target.
    w_bound : float
        :math:`w_b` (> 0), the weight the depression factor is measured from.
    tau_pre, tau_post : float
        Trace time constants in ms (> 0).
    dt : float
        Simulation step in ms (> 0).
    trace_mode : {"cumulative", "nearest"}
    batch_reduction : {"sum", "mean"} or callable
        ``"sum"`` matches ngclearn's batched matrix product.

    Examples
    --------
    >>> fc = nn.Linear(1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = fc.weight.fill_(0.5)
    >>> rule = ExpSTDP(lr=1.0, beta=1.0, x_target=0.0)
    >>> pre = torch.tensor([[[1.0]]]); post = torch.tensor([[[1.0]]])  # same step
    >>> update, _ = rule(fc, pre, post, rule.initial_state(fc, pre[0], post[0]))
    >>> round(update.potentiation.item(), 6)  # exp(-0.5) * x_pre = exp(-0.5)
    0.606531

    References
    ----------
    Nessler, B. et al. (2013). PLoS Comput. Biol. 9(4), e1003037. Diehl, P. U. & Cook,
    M. (2015). Front. Comput. Neurosci. 9:99, eq. 4. ngclearn ``ExpSTDPSynapse``
    (reference 004).
    """

    def __init__(
        self,
        lr: float,
        beta: float = 1.0,
        *,
        a_plus: float = 1.0,
        a_minus: float = 0.0,
        x_target: float = 0.7,
        w_bound: float = 1.0,
        tau_pre: float = 20.0,
        tau_post: float = 20.0,
        dt: float = 1.0,
        trace_mode: str = "cumulative",
        batch_reduction: BatchReduction = "sum",
    ):
        super().__init__()
        self.lr = check_nonnegative("lr", lr)
        self.beta = check_nonnegative("beta", beta)
        self.a_plus = check_nonnegative("a_plus", a_plus)
        self.a_minus = check_nonnegative("a_minus", a_minus)
        self.x_target = check_nonnegative("x_target", x_target)
        self.w_bound = check_positive("w_bound", w_bound)
        self.decay_pre = decay_factor(dt, tau_pre, name="tau_pre")
        self.decay_post = decay_factor(dt, tau_post, name="tau_post")
        self.tau_pre, self.tau_post, self.dt = float(tau_pre), float(tau_post), float(dt)
        self.trace_mode = check_choice("trace_mode", trace_mode, TRACE_MODES)
        self.batch_reduction = check_batch_reduction(batch_reduction)

    def extra_repr(self) -> str:
        return (
            f"lr={self.lr}, beta={self.beta}, a_plus={self.a_plus}, a_minus={self.a_minus}, "
            f"x_target={self.x_target}, w_bound={self.w_bound}, tau_pre={self.tau_pre}, "
            f"tau_post={self.tau_post}, dt={self.dt}, trace_mode={self.trace_mode!r}, "
            f"batch_reduction={self.batch_reduction!r}"
        )

    def initial_state(self, layer: nn.Module, pre: Tensor, post: Tensor) -> dict[str, Tensor]:
        return pair_trace_state(layer, pre, post)

    def forward(self, layer, pre, post, state, signal=None):
        if signal is not None:
            raise TypeError("ExpSTDP takes no signal")
        dtype = state["trace_pre"].dtype
        pre, post = pre.to(dtype), post.to(dtype)
        halves = Halves(self.batch_reduction, pre.shape[1])
        rate, ltd_rate = self.lr * self.a_plus, self.lr * self.a_minus
        use = current_state_use()
        net_only = use.delta_only and not halves.per_sample
        # a window whose net change alone is read: both pair terms over the post spikes
        # (as STDP's window), one correlation of their summed pre factors
        post_triggered = (
            net_only and self.trace_mode == "cumulative" and pre.shape[0] > 1 and ltd_rate != 0
        )
        traces = (pre, post, state["trace_pre"], state["trace_post"])
        decays = {"decay_pre": self.decay_pre, "decay_post": self.decay_post}
        if post_triggered:
            factors = stdp_factors_post_triggered(
                *traces,
                **decays,
                out_trace_pre=scratch("trace_pre", pre.shape, dtype, pre.device),
                out_after_pre=scratch("after_pre", pre.shape, dtype, pre.device),
            )
        else:
            factors = stdp_factors(
                *traces, **decays, trace_mode=self.trace_mode, inplace=use.reusable
            )
        new_state = {"trace_pre": factors.next_trace_pre, "trace_post": factors.next_trace_post}

        def corr(a: Tensor, b: Tensor) -> Tensor:
            if halves.per_sample:
                return correlate_per_sample(layer, a, b)
            return correlate(layer, fold_steps(layer, a), fold_steps(layer, b))

        weight = layer.weight.detach()

        def buffer(name: str) -> Tensor | None:
            # a weight-sized temporary in the caller's workspace: a fresh one each step
            # costs its page faults (~0.3 ms each at 784->400, more than its arithmetic)
            return scratch(name, weight.shape, weight.dtype, weight.device)

        # e^{-beta w}: a multiplier only, never part of the result
        facilitation = torch.mul(weight, -self.beta, out=buffer("facilitation")).exp_()
        weakening = None
        if rate != 0.0 and self.x_target != 0.0:
            # e^{-beta (w_bound - w)}, a temporary where only the net change is read
            weakening = torch.sub(
                weight, self.w_bound, out=buffer("weakening") if net_only else None
            )
            weakening.mul_(self.beta).exp_()
            if halves.per_sample:
                target = torch.full_like(pre, self.x_target)
                weakening = corr(target, post * rate).mul_(weakening)
            else:
                # C(x_tar 1, post): the post spikes summed over the samples, correlated
                # once (for a Linear each output's count along its row, not a GEMM)
                constant = correlate_constant(
                    layer, rate * self.x_target, fold_steps(layer, pre), fold_steps(layer, post)
                )
                weakening.mul_(constant)
        if net_only:
            # only the net change is read: both pair terms share the factor e^{-beta w},
            # so they are one fused correlation, scaled once
            if post_triggered:  # rate x_pre - ltd_rate y_pre, written over y_pre
                paired = factors.after_pre.mul_(-ltd_rate).add_(factors.trace_pre, alpha=rate)
                pairs = (
                    (paired, post, 1.0),
                    (factors.carried_pre, factors.carried_post, -ltd_rate),
                )
            else:
                pairs = (
                    (factors.trace_pre, post, rate),
                    (pre, factors.trace_post_before, -ltd_rate),
                )
            terms = [
                (fold_steps(layer, a), fold_steps(layer, b), c) for a, b, c in pairs if c != 0.0
            ]
            net = correlate_sum(layer, terms)
            if net is not None:
                net.mul_(facilitation)
            if weakening is not None:
                net = torch.neg(weakening) if net is None else net.sub_(weakening)
            if net is not None:
                halves.add_net(net)
            return halves.result(), new_state
        # each half formed in place on its fresh correlation, the rate folded into the
        # smaller post-side factor
        potentiation, depression = None, weakening
        if rate != 0.0:
            potentiation = corr(factors.trace_pre, post * rate).mul_(facilitation)
        if ltd_rate != 0.0:
            ltd = corr(pre, factors.trace_post_before * ltd_rate).mul_(facilitation)
            depression = ltd if depression is None else depression.add_(ltd)
        if potentiation is not None:
            halves.add(potentiation, True)
        if depression is not None:
            halves.add(depression, False)
        return halves.result(), new_state


class ExpSTDPBound(Bound):
    r"""ngclearn's post-update step for :class:`ExpSTDP`: L2 normalisation, then clipping.

    .. math::

        w' = w + \Delta w, \qquad
        w' \leftarrow w' \frac{n}{\lVert w' \rVert_2 + \epsilon} \ \text{(optional)}, \qquad
        w' \leftarrow \operatorname{clip}(w', w_\min, w_b)

    The norm runs over ``norm_dim`` (default 0, the output dimension of a ``[out, in]``
    weight: each presynaptic unit's outgoing weights, which are the *rows* of
    ngclearn's ``[in, out]`` matrix). :math:`\Delta w` is applied as the rule computed
    it (the rule carries its own weight dependence). Returns :math:`w' - w`.

    Parameters
    ----------
    w_bound : float
        :math:`w_b`, the upper clip (ngclearn's ``w_bound``).
    w_min : float
        Lower clip; ngclearn uses 0.01.
    norm : float, optional
        Target L2 norm :math:`n` (ngclearn's ``w_norm``); ``None`` skips it.
    norm_dim : int
        Dimension the norm runs over.
    eps : float
        :math:`\epsilon` (ngclearn: 1e-5).

    Examples
    --------
    >>> bound = ExpSTDPBound(w_bound=1.0, w_min=0.01, norm=1.0)
    >>> w = torch.tensor([[0.3], [0.4]])  # one input, two outputs: column norm 0.5
    >>> w + bound(w, Update(None, None))
    tensor([[0.6000],
            [0.8000]])
    """

    def __init__(
        self,
        w_bound: float = 1.0,
        w_min: float = 0.01,
        *,
        norm: float | None = None,
        norm_dim: int = 0,
        eps: float = 1e-5,
    ):
        super().__init__(w_min, w_bound, clip=True)
        self.norm = None if norm is None else check_positive("norm", norm)
        if isinstance(norm_dim, bool) or not isinstance(norm_dim, int):
            raise TypeError(f"norm_dim must be an int, got {norm_dim!r}")
        self.norm_dim = norm_dim
        self.eps = check_nonnegative("eps", eps)

    def __call__(self, weight: Tensor, update: Update) -> Tensor:
        weight = weight.detach()
        delta = update.delta()
        new = weight if delta is None else weight + delta.to(weight.dtype)
        if self.norm is not None:
            length = torch.linalg.vector_norm(new, dim=self.norm_dim, keepdim=True)
            new = new * (self.norm / (length + self.eps))
        # clamp(w') - w can round an ulp past the range when added back to w
        return self.clip_change(weight, new.clamp(self.wmin, self.wmax) - weight)
