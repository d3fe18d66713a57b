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

import contextvars
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..functional import Update, correlate, correlate_per_sample, correlate_sum
from ..functional.checks import check_finite
from ..functional.correlate import fold_rate, fold_steps
from ..functional.update import add_optional as _add
from ..functional.workspace import Workspace

BatchReduction = str | Callable[[Tensor, int], Tensor]

__all__ = [
    "BatchReduction",
    "Rule",
    "Term",
    "Update",
    "StateUse",
    "Workspace",
    "broadcast_steps",
    "current_state_use",
    "pair_trace_state",
    "route_terms",
    "scratch",
    "state_use",
]


class StateUse(NamedTuple):
    """What the caller of a rule does with the state it gives and the state it gets back.

    A rule is pure by default: it returns its new state and leaves the one it was
    given alone, so a caller can run it twice on the same state. A caller that
    knows more says so with :func:`state_use`, and a rule may skip or shortcut
    work accordingly; every flag only ever allows a rule to do less.

    Attributes
    ----------
    reusable : bool
        The given state is replaced by the returned one and read by nobody: a rule
        may write its new state into the given tensors. A large state (MSTDP-ET's
        per-sample eligibility, ``[B, *W]``) is then updated in place; on CPU a
        fresh tensor of that size costs its page faults (about 40 ms for 80 MB
        here), more than the arithmetic.
    discarded : bool
        The returned state will not be read (the end of an episode): a rule may
        hand back the given state instead of forming what only a next window needs.
    initial : bool
        The given state is the rule's ``initial_state`` (zeros): a rule may skip
        what it would read from it.
    workspace : Workspace or None
        Buffers the caller lends for the window's temporaries (traces over the
        window, weighted factors): the caller evaluates the update before it calls
        the rule again, so they may be rewritten by the next window. A new
        window-sized tensor costs its page faults on CPU, about as much as the
        arithmetic that fills it.
    delta_only : bool
        The caller reads only the update's net change (:meth:`Update.delta`), never
        its halves (a :class:`~plastorch.Learner` without a bound or a
        ``synchronize``): a rule may combine parts of opposite signs into one signed
        part (:meth:`Halves.add_net`). Reading the halves of such an update raises.
    """

    reusable: bool = False
    discarded: bool = False
    initial: bool = False
    workspace: Workspace | None = None
    delta_only: bool = False


# a NamedTuple is immutable, so sharing the default is safe
_STATE_USE: contextvars.ContextVar[StateUse] = contextvars.ContextVar(
    "plastorch_state_use",
    default=StateUse(),  # noqa: B039
)


class state_use:  # noqa: N801 (used as a function: ``with state_use(...)``)
    """Declare, for the rules called in this block, what is done with their state.

    The :class:`~plastorch.Learner` settles windows with ``reusable=True`` (it
    replaces its state buffers by the returned ones), ``initial=True`` for the
    first window after a ``reset()``, and ``discarded=True`` for
    ``step(reset=True)``. See :class:`StateUse`. (A class rather than a
    ``contextmanager`` generator: it is entered once per settled window, and the
    generator's machinery cost more than the rest of the declaration.)

    Examples
    --------
    >>> current_state_use().reusable
    False
    >>> with state_use(reusable=True):
    ...     current_state_use()
    StateUse(reusable=True, discarded=False, initial=False, workspace=None, delta_only=False)
    """

    __slots__ = ("_use", "_token")

    def __init__(
        self,
        *,
        reusable: bool = False,
        discarded: bool = False,
        initial: bool = False,
        workspace: Workspace | None = None,
        delta_only: bool = False,
    ) -> None:
        self._use = StateUse(
            bool(reusable), bool(discarded), bool(initial), workspace, bool(delta_only)
        )
        self._token = None

    def __enter__(self) -> StateUse:
        self._token = _STATE_USE.set(self._use)
        return self._use

    def __exit__(self, *exc) -> None:
        _STATE_USE.reset(self._token)


def scratch(name: str, shape, dtype: torch.dtype, device: torch.device) -> Tensor | None:
    """A buffer of the :class:`Workspace` lent by the caller (``None`` if none is).

    For a rule's window-sized temporaries, passed as ``out=`` to the functional
    kernels; ``None`` lets them allocate.
    """
    workspace = _STATE_USE.get().workspace
    return None if workspace is None else workspace.get(name, shape, dtype, device)


def current_state_use() -> StateUse:
    """The :class:`StateUse` declared by the innermost :func:`state_use` (pure by default)."""
    return _STATE_USE.get()


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
    """Collects a rule's signed terms into the two halves of an :class:`Update`.

    Terms come in two forms: a computed magnitude (:meth:`add`) or a correlation
    still to be computed (:meth:`add_term`). Unless the batch reduction is a
    callable (which needs per-sample halves at once), correlations are deferred:
    :meth:`result` returns a deferred :class:`Update`, whose halves cost one
    correlation per term when read, while its :meth:`~Update.delta` (what a
    learner without weight dependence needs) sums every term into one output
    (:func:`~plastorch.functional.correlate_sum`: for ``nn.Linear`` one GEMM
    accumulator with the signed rates as ``addmm_``'s coefficients), so neither
    half, nor their difference, is ever formed.

    With ``signed=True`` (a rule whose terms are not apart, such as MSTDP-ET with
    one combined eligibility) the halves are the positive and the negative part of
    the net change (per sample before a callable batch reduction), and signed parts
    (:meth:`add_net`) are allowed whatever the caller reads.
    """

    def __init__(self, batch_reduction: BatchReduction, batch_size: int, *, signed: bool = False):
        self.reduction = batch_reduction
        self.batch_size = batch_size
        self.per_sample = callable(batch_reduction)
        self.signed = bool(signed)
        self.potentiation: Tensor | None = None
        self.depression: Tensor | None = None
        #: deferred correlations ``(layer, term, weights, magnitude, potentiative)``
        self.terms: list[tuple[nn.Module, Term, Tensor | None, float, bool]] = []
        #: factor applied to both halves by :meth:`scaled`
        self.factor = 1.0
        #: signed part for a caller that reads only the delta (:meth:`add_net`)
        self.net: Tensor | None = None
        #: whether ``net`` is a tensor nothing else holds (the delta may be summed into it)
        self.net_owned = False
        #: whether a signed correlation is pending (:meth:`add_net_term`)
        self.net_terms = False
        #: lent by the caller of the rule (``state_use``) for the fused delta's temporaries
        self.workspace = current_state_use().workspace

    def add(self, value: Tensor, potentiative: bool) -> None:
        """Add a magnitude (``[B, *W]`` when per-sample, else ``[*W]``) to one half."""
        if potentiative:
            self.potentiation = _add(self.potentiation, value)
        else:
            self.depression = _add(self.depression, value)

    def add_net(self, value: Tensor, *, owned: bool = False) -> None:
        """Add a signed change (``[*W]``, or ``[B, *W]`` when per-sample and ``signed``).

        For rules called with ``state_use(delta_only=True)``: parts of opposite
        signs combined into one tensor cost one product where the halves would cost
        two (MSTDP-ET's carried eligibility read by both signs of a per-sample
        signal). The halves of an update holding such a part cannot be read, unless
        the halves are ``signed`` (the parts of the net change).

        ``owned``: ``value`` is a fresh tensor that nothing else holds (a product the
        rule just formed). Later parts, and the pending terms of :meth:`delta`, are
        then added into it in place instead of into a new weight-sized result.
        """
        if self.per_sample and not self.signed:
            raise RuntimeError("add_net needs summed halves (batch_reduction 'sum' or 'mean')")
        if self.net is None:
            self.net, self.net_owned = value, bool(owned)
        elif self.net_owned:
            self.net.add_(value)
        else:  # the sum is a new tensor: owned from here on
            self.net, self.net_owned = self.net + value, True

    def add_net_term(self, layer: nn.Module, term: Term) -> None:
        """Add the signed ``term.rate * C(term)`` to the net change, deferred.

        :meth:`add_net` for a correlation that is not computed yet, so :meth:`delta`
        fuses it with the other pending terms: a rule whose caller reads only the
        delta sums the signed factors of its terms into one (MSTDP-ET's window over
        the post spikes) instead of routing each to a half.
        """
        if self.per_sample:  # per-sample halves are computed as they come, not deferred
            raise RuntimeError("add_net_term needs summed halves (batch_reduction 'sum' or 'mean')")
        if term.rate == 0.0:
            return
        self.net_terms = True
        self.terms.append((layer, term, None, abs(term.rate), term.rate > 0))

    def add_term(
        self,
        layer: nn.Module,
        term: Term,
        weights: Tensor | None,
        magnitude: float,
        potentiative: bool,
    ) -> None:
        """Add ``magnitude * C(term)`` (weighted per step and sample by ``weights``) to one half."""
        if self.per_sample:
            self.add(correlate_weighted(layer, term, weights, True, magnitude), potentiative)
        else:
            self.terms.append((layer, term, weights, magnitude, potentiative))

    def evaluate(self) -> None:
        """Compute the pending correlations now, into their halves.

        For a rule about to overwrite a factor a pending term reads (a trace
        advanced in place). Costs what the fused :meth:`delta` would have saved: one
        weight-sized addition per half.
        """
        pending, self.terms = self.terms, []
        for layer, term, weights, magnitude, potentiative in pending:
            self.add(correlate_weighted(layer, term, weights, False, magnitude), potentiative)

    def result(self) -> Update:
        """The update: deferred when correlations (or a signed part) are pending, else computed now."""
        if self.terms or (self.net is not None and not self.per_sample):
            return Update.deferred(self)
        return Update(*self.halves())

    # -- the Deferred protocol of Update ------------------------------------------------
    def _reduce(self, half: Tensor | None) -> Tensor | None:
        if half is None:
            return None
        if self.per_sample:
            half = self.reduction(half, 0)
        elif self.reduction == "mean":
            half = half / self.batch_size
        return half if self.factor == 1.0 else half * self.factor

    def halves(self) -> tuple[Tensor | None, Tensor | None]:
        """``(potentiation, depression)``: one correlation per pending term."""
        if (self.net is not None or self.net_terms) and not self.signed:
            raise RuntimeError(
                "this update was formed for a caller that reads only its delta "
                "(state_use(delta_only=True)): it holds a signed part, not halves"
            )
        if self.signed and not self.per_sample:
            # the parts of the net change: the fused delta, then its signs (a sum or
            # mean over the batch and the positive factor commute with them)
            net = self.delta()
            return (None, None) if net is None else (net.clamp(min=0), net.neg().clamp_(min=0))
        potentiation, depression = self.potentiation, self.depression
        for layer, term, weights, magnitude, potentiative in self.terms:
            value = correlate_weighted(layer, term, weights, False, magnitude)
            if potentiative:
                potentiation = _add(potentiation, value)
            else:
                depression = _add(depression, value)
        if self.signed:
            net = self.net
            if potentiation is not None:
                net = potentiation if net is None else net + potentiation
            if depression is not None:
                net = -depression if net is None else net - depression
            if net is None:
                return None, None
            potentiation, depression = net.clamp(min=0), net.neg().clamp_(min=0)
        return self._reduce(potentiation), self._reduce(depression)

    def delta(self) -> Tensor | None:
        """``potentiation - depression`` with the pending terms fused where the layer allows."""
        scale = self.factor / (self.batch_size if self.reduction == "mean" else 1)
        # The halves of one term (e.g. the steps or samples where a signal is
        # positive, and where it is negative) are one correlation with signed
        # weights here: the net change does not need them apart.
        merged: dict[tuple[int, bool], list] = {}
        for layer, term, weights, magnitude, potentiative in self.terms:
            rate = magnitude * scale * (1.0 if potentiative else -1.0)
            key = (id(term), weights is None)
            entry = merged.get(key)
            if entry is None:
                merged[key] = [layer, term, weights, rate]
            elif weights is None:
                entry[3] += rate
            else:
                entry[2] = entry[2] * entry[3] + weights * rate
                entry[3] = 1.0
        # Terms that share their post factor (both pair terms of a post-triggered
        # STDP window, MSTDP-ET's terms over the post spikes) are one correlation of
        # the rate-weighted sum of their pre factors: C(a1, b) c1 + C(a2, b) c2 =
        # C(c1 a1 + c2 a2, b); per-step weights go onto the pre factors too. One
        # pre-sized tensor replaces a weighted post factor and a correlation per term.
        shared: dict[tuple[int, int], list] = {}
        entries = []
        for layer, term, weights, rate in merged.values():
            key = (id(layer), id(term.post))
            other = shared.get(key)
            if (
                other is not None
                and other[1].pre.shape == term.pre.shape
                and _per_step(weights, term.pre)
            ):
                _fold_into(other, term, weights, rate, self.workspace)
                continue
            entry = [layer, term, weights, rate, False, len(entries)]
            if _per_step(weights, term.pre):
                shared.setdefault(key, entry)
            entries.append(entry)
        if (
            self.net is not None
            and self.net_owned
            and scale == 1.0
            and self.potentiation is None
            and self.depression is None
        ):
            # the terms go into the rule's own signed part, and are then part of it
            # (a second call returns it as it is)
            correlate_terms([tuple(entry[:4]) for entry in entries], out=self.net)
            self.terms = []
            return self.net
        delta = correlate_terms([tuple(entry[:4]) for entry in entries])
        parts = [
            (half, scale * sign)
            for half, sign in ((self.potentiation, 1.0), (self.depression, -1.0), (self.net, 1.0))
            if half is not None
        ]
        if delta is None and len(parts) == 1 and parts[0][1] == 1.0 and parts[0][0] is self.net:
            # a signed part the rule formed for this delta alone, as it is: no
            # weight-sized copy (the halves cannot be read, nothing else holds it)
            return self.net
        for half, coefficient in parts:
            delta = half * coefficient if delta is None else delta.add_(half, alpha=coefficient)
        return delta

    def scaled(self, factor: float) -> Halves:
        """A copy whose halves are ``factor`` times these."""
        copy = Halves(self.reduction, self.batch_size, signed=self.signed)
        copy.potentiation, copy.depression = self.potentiation, self.depression
        copy.terms = list(self.terms)
        copy.factor = self.factor * factor
        copy.workspace = self.workspace
        copy.net = self.net
        # the part is shared from here on: neither copy sums into it
        self.net_owned = copy.net_owned = False
        copy.net_terms = self.net_terms
        return copy

    def __repr__(self) -> str:
        return f"Halves({len(self.terms)} pending terms, reduction={self.reduction!r})"


def _per_step(weights: Tensor | None, pre: Tensor) -> bool:
    """Whether ``weights`` (``None``, ``[T, B]`` or ``[T, 1]``) can be folded into ``pre [T, B, ...]``."""
    return weights is None or (
        weights.dim() == 2
        and weights.shape[0] == pre.shape[0]
        and weights.shape[1] in (1, pre.shape[1])
    )


def _fold_into(
    entry: list,
    term: Term,
    weights: Tensor | None,
    rate: float,
    workspace: Workspace | None,
) -> None:
    """Add ``rate * weights * term.pre`` to the pre factor of ``entry`` (same post factor).

    ``entry`` is ``[layer, term, weights, rate, owned, position]``; it becomes an
    unweighted term of rate ``sign`` (±1) whose pre factor it owns (so later folds
    add in place), written into ``workspace`` when one is lent (under the entry's
    position, which tells the folds of one delta apart). Two unweighted terms
    combine as ``sign (c1 a1 + c2 a2)`` with the roundings this had before weights
    could be folded too.

    ``sign`` is the first rate's: the first product then has no ``-0.0`` (a zero
    times a negative number), which the sparse scan would walk as an entry where a
    spike factor has no spike; later additions keep a ``+0.0`` as it is.
    """
    _, first, first_weights, first_rate, owned, position = entry
    if not owned:
        out = None
        if workspace is not None:
            shape, dtype, device = first.pre.shape, first.pre.dtype, first.pre.device
            out = workspace.get(f"fold{position}", shape, dtype, device)
        sign = -1.0 if first_rate < 0 else 1.0
        if first_weights is None:
            combined = torch.mul(first.pre, sign * first_rate, out=out)
        else:
            scaled = first_weights * (sign * first_rate)
            combined = torch.mul(first.pre, broadcast_steps(scaled, first.pre), out=out)
            if bool(scaled.lt(0).any()):  # weights of both signs: as _weighted does
                combined.add_(0.0)
    else:
        combined, sign = first.pre, entry[3]
    if weights is None:
        combined.add_(term.pre, alpha=sign * rate)
    else:
        combined.addcmul_(term.pre, broadcast_steps(weights, term.pre), value=sign * rate)
    entry[1:5] = [Term(combined, term.post, 1.0), None, sign, True]


def broadcast_steps(weights: Tensor, like: Tensor) -> Tensor:
    """``weights [T, B|1]`` shaped to broadcast over ``like [T, B, ...]``, in its dtype."""
    weights = weights.reshape(*weights.shape, *([1] * (like.dim() - 2)))
    return weights if weights.dtype == like.dtype else weights.to(like.dtype)


def _weighted(tensor: Tensor, weights: Tensor) -> Tensor:
    """``tensor [T, B, ...]`` times ``weights [T, B]`` broadcast over the trailing dims.

    A zero times a negative weight is ``-0.0``, which the sparse path's scan (the
    bits read as an integer) counts as an entry: a spike factor weighted by a
    signal of both signs would be walked as if about half of it were spikes.
    Adding ``+0.0`` turns every ``-0.0`` into ``+0.0`` and changes nothing else.
    """
    return (tensor * broadcast_steps(weights, tensor)).add_(0.0)


def _prepare(
    layer: nn.Module,
    term: Term,
    weights: Tensor | None,
    per_sample: bool,
    scale: float,
    *,
    fold_scale: bool = True,
) -> tuple[Tensor, Tensor, float]:
    """Factors of ``scale * sum w C(term)`` with the weights (and, where cheaper, the scale) folded in.

    Returns ``(pre, post, leftover)``: the result is ``leftover * C(pre, post)``.
    Without ``fold_scale`` a scale without weights is always left over.
    """
    pre, post = term.pre, term.post
    steps, batch = pre.shape[:2]
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
    elif fold_scale:
        pre, post, scale = fold_rate(
            pre, post, scale, layer.weight.numel() * (batch if per_sample else 1)
        )
    return pre, post, scale


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
    pre, post, scale = _prepare(layer, term, weights, per_sample, scale)
    if per_sample:
        value = correlate_per_sample(layer, pre, post)
    else:
        value = correlate(layer, fold_steps(layer, pre), fold_steps(layer, post))
    return value if scale == 1.0 else value.mul_(scale)


def correlate_terms(
    terms: list[tuple[nn.Module, Term, Tensor | None, float]], out: Tensor | None = None
) -> Tensor | None:
    """:math:`\\sum_k c_k \\sum_{t,b} w_k(t,b) C(\\text{pre}_k, \\text{post}_k)` for signed ``c_k``.

    ``terms`` holds ``(layer, term, weights, c)``; consecutive terms of the same
    layer go to one :func:`~plastorch.functional.correlate_sum` (one GEMM
    accumulator for ``nn.Linear``). ``None`` for no terms; with ``out``, the sum is
    added into it (``out`` is returned).
    """
    total: Tensor | None = out
    start = 0
    while start < len(terms):
        layer = terms[start][0]
        stop = start
        items = []
        while stop < len(terms) and terms[stop][0] is layer:
            _, term, weights, scale = terms[stop]
            if weights is None:  # (what _prepare returns for it, without the call)
                pre, post, rate = term.pre, term.post, scale
            else:
                pre, post, rate = _prepare(layer, term, weights, False, scale, fold_scale=False)
            items.append((fold_steps(layer, pre), fold_steps(layer, post), rate))
            stop += 1
        if total is None:
            total = correlate_sum(layer, items)
        elif total is out:
            correlate_sum(layer, items, out=out)
        else:
            total.add_(correlate_sum(layer, items))
        start = stop
    return total


def route_terms(
    layer: nn.Module,
    terms: list[Term],
    modulation: float | tuple[Tensor, Tensor] | None,
    halves: Halves,
) -> None:
    """Add each term's magnitude to the half its sign selects (deferred where possible).

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
            halves.add_term(layer, term, None, magnitude * abs(signal), term.rate * signal >= 0)
            continue
        for weights, sign in zip(modulation, (1.0, -1.0)):
            if not bool(weights.ne(0).any()):
                continue
            halves.add_term(layer, term, weights, magnitude, term.rate * sign >= 0)


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

    The initial state of every pair-trace rule, in the dtype of the layer's weight and
    the memory format of the spikes (``torch.zeros_like``): a channels-last network
    gets channels-last traces, so that the traces' updates and the convolution weight
    gradients see one layout (mixed with channels-first spikes, oneDNN reorders every
    factor; a Conv2d 2->32 step took 2.3-3.3 ms mixed, 0.9-1.2 ms channels-last and
    1.6-2.0 ms channels-first here).
    """
    dtype = layer.weight.dtype
    return {
        "trace_pre": torch.zeros_like(pre, dtype=dtype),
        "trace_post": torch.zeros_like(post, dtype=dtype),
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
