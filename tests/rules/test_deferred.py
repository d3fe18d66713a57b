"""Deferred updates: the fused net change equals potentiation - depression, and a
learner without weight dependence never forms the halves."""

import pytest
import torch
from torch import nn

from plastorch import Learner
from plastorch.bounds import Hard, Soft
from plastorch.functional import Update
from plastorch.rules import MSTDP, MSTDPET, STDP, TripletSTDP, base
from plastorch.rules.base import Halves, Term, _prepare, state_use

T, B, IN, OUT = 6, 3, 5, 4


def spikes(shape, p, seed):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=generator) < p).double()


def window(seed=0):
    return spikes((T, B, IN), 0.4, seed), spikes((T, B, OUT), 0.4, seed + 1)


def warm_state(rule, layer, seed=10):
    """State after one earlier window, so traces (and eligibility) are non-zero."""
    pre, post = window(seed)
    state = rule.initial_state(layer, pre[0], post[0])
    signal = torch.linspace(-1.0, 1.0, B, dtype=torch.float64) if rule.modulated else None
    return rule(layer, pre, post, state, signal)[1]


CASES = [
    (lambda: STDP(0.5, -0.25), None),
    (lambda: STDP(0.5, 0.25, batch_reduction="mean"), None),  # potentiative only
    (lambda: MSTDP(0.5, -0.25), -1.5),
    (lambda: MSTDP(0.5, -0.25), torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64)),
    (lambda: MSTDP(0.5, -0.25), torch.linspace(-1, 1, T * B, dtype=torch.float64).reshape(T, B)),
    (lambda: MSTDPET(0.5, -0.25, per_sample_signal=True), torch.tensor([1.0, -2.0, 0.5]).double()),
    (
        lambda: MSTDPET(0.5, -0.25, per_sample_signal=True),
        torch.linspace(-1, 1, T * B, dtype=torch.float64).reshape(T, B),
    ),
    (lambda: MSTDPET(-0.5, -0.25, per_sample_signal=True), 0.75),
    (lambda: TripletSTDP(0.5, 0.25, 0.125, 0.0625), None),
]


@pytest.mark.parametrize("make, signal", CASES)
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_fused_delta_equals_the_difference_of_the_halves(make, signal, layer):
    rule = make().double()
    if layer == "linear":
        fc = nn.Linear(IN, OUT, bias=False).double()
        pre, post = window()
    else:
        fc = nn.Conv1d(1, 2, 3, padding=1).double()
        pre, post = spikes((T, B, 1, IN), 0.4, 0), spikes((T, B, 2, IN), 0.4, 1)
    state = warm_state(rule, fc) if layer == "linear" else rule.initial_state(fc, pre[0], post[0])
    fused, _ = rule(fc, pre, post, state, signal)
    split, _ = rule(fc, pre, post, state, signal)
    delta = fused.delta()
    expected = Update(split.potentiation, split.depression).delta()
    torch.testing.assert_close(delta, expected, rtol=1e-12, atol=1e-14)
    assert delta.abs().sum() > 0  # the case is not vacuous
    if fused.is_deferred:
        # the net change was computed without forming the halves
        assert fused._potentiation is None and fused._depression is None
        assert fused.is_deferred


def test_scaling_a_deferred_update_scales_both_routes():
    rule, fc = STDP(0.5, -0.25).double(), nn.Linear(IN, OUT, bias=False).double()
    state = warm_state(rule, fc)
    pre, post = window()
    update, _ = rule(fc, pre, post, state)
    assert update.is_deferred
    reference = Update(update.potentiation, update.depression)  # materialises `update`
    update, _ = rule(fc, pre, post, state)
    scaled = update.scale(4.0)
    assert scaled.is_deferred
    torch.testing.assert_close(scaled.delta(), 4.0 * reference.delta(), rtol=1e-12, atol=0)
    torch.testing.assert_close(scaled.potentiation, 4.0 * reference.potentiation)
    torch.testing.assert_close(scaled.depression, 4.0 * reference.depression)


def test_adding_the_empty_update_keeps_the_deferred_one():
    rule, fc = STDP(0.5, -0.25).double(), nn.Linear(IN, OUT, bias=False).double()
    pre, post = window()
    update, _ = rule(fc, pre, post, warm_state(rule, fc))
    assert (Update() + update) is update and (update + Update()) is update
    assert Update().empty and not update.empty
    total = update + Update(torch.ones(OUT, IN, dtype=torch.float64), None)
    assert not total.is_deferred


def _forbid_halves(monkeypatch):
    def halves(self):
        raise AssertionError("the halves were formed")

    monkeypatch.setattr(Halves, "halves", halves)


@pytest.mark.parametrize("bound", [None, Hard(-1.0, 1.0)])
def test_learner_without_weight_dependence_never_forms_halves(monkeypatch, bound):
    fc, source = nn.Linear(IN, OUT, bias=False).double(), nn.Identity()
    learner = Learner(fc, source, STDP(0.5, -0.25), bound, step_mode="multi")
    pre, post = window()
    fc(pre)
    source(post)
    _forbid_halves(monkeypatch)
    delta = learner.step()
    monkeypatch.undo()
    # the same window's halves, computed by the rule directly
    rule = STDP(0.5, -0.25).double()
    update, _ = rule(fc, pre, post, rule.initial_state(fc, pre[0], post[0]))
    expected = update.potentiation - update.depression
    if bound is not None:
        expected = expected.clamp(-1.0 - fc.weight.detach(), 1.0 - fc.weight.detach())
    torch.testing.assert_close(delta, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fc.weight.grad, -delta)


def test_weight_dependent_bound_reads_the_halves(monkeypatch):
    fc, source = nn.Linear(IN, OUT, bias=False).double(), nn.Identity()
    learner = Learner(fc, source, STDP(0.5, -0.25), Soft(-1.0, 1.0), step_mode="multi")
    pre, post = window()
    fc(pre)
    source(post)
    _forbid_halves(monkeypatch)
    with pytest.raises(AssertionError, match="halves were formed"):
        learner.step()


def test_signed_weights_leave_no_negative_zeros_for_the_sparse_scan():
    """The fused delta weights a term by a signal of both signs. A spike factor
    times a negative weight has -0.0 where it has no spike; the sparse path's scan
    reads the bits as integers and would walk every one of them as an entry."""
    pre, post = window()
    fc = nn.Linear(IN, OUT, bias=False).double()
    weights = torch.tensor([1.5, -2.0, -0.5], dtype=torch.float64).expand(T, B)
    _, weighted_post, _ = _prepare(fc, Term(pre, post, 1.0), weights, False, 1.0)
    bits = weighted_post.view(torch.int64)
    assert not bool((bits == torch.iinfo(torch.int64).min).any())  # no -0.0
    assert int(bits.ne(0).sum()) == int(post.count_nonzero())  # one entry per spike


@pytest.mark.parametrize("weighted", [False, True])
def test_folded_pre_factors_leave_no_negative_zeros(monkeypatch, weighted):
    """Two depressive terms over one post factor are one correlation of the summed pre
    factors. Scaled by a negative rate (or weight), a spike factor's zeros would be
    -0.0, and the sparse scan would walk all of them (5x slower in a triplet window)."""
    pre, post = window()
    trace = post.cumsum(0)  # any post factor both terms share
    fc = nn.Linear(IN, OUT, bias=False).double()
    extra = pre * torch.rand(pre.shape, generator=torch.Generator().manual_seed(4), dtype=pre.dtype)
    weights = torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64).expand(T, B) if weighted else None
    halves = Halves("sum", B)
    halves.add_term(fc, Term(pre, trace, 1.0), weights, 0.5, False)
    halves.add_term(fc, Term(extra, trace, 1.0), None, 0.25, False)
    seen = []
    original = base.correlate_sum

    def spy(layer, items, **kwargs):
        seen.extend(items)
        return original(layer, items, **kwargs)

    monkeypatch.setattr(base, "correlate_sum", spy)
    delta = halves.delta()
    assert len(seen) == 1
    folded = seen[0][0]
    bits = folded.reshape(-1).view(torch.int64)
    assert not bool((bits == torch.iinfo(torch.int64).min).any())  # no -0.0
    assert int(bits.ne(0).sum()) == int(pre.count_nonzero())
    scale = torch.ones(T, B, dtype=torch.float64) if weights is None else weights
    expected = -0.5 * torch.einsum("tbo,tbi,tb->oi", trace, pre, scale) - 0.25 * torch.einsum(
        "tbo,tbi->oi", trace, extra
    )
    torch.testing.assert_close(delta, expected, rtol=1e-12, atol=1e-12)


def test_terms_sharing_the_post_spikes_are_one_correlation(monkeypatch):
    # MSTDP-ET, [B] reward, first window of an episode: the causal term (weighted per
    # step and sample) and the acausal pairs over the post spikes (weighted inside
    # their factor) share s_post: their pre factors are summed, one correlation; the
    # carried-trace term pairs with x_post(-1) and stays apart
    rule = MSTDPET(0.5, -0.25, per_sample_signal=True).double()
    fc = nn.Linear(IN, OUT, bias=False).double()
    pre, post = window()
    signal = torch.tensor([1.0, -2.0, 0.5]).double()
    counts = []
    original = base.correlate_terms

    def spy(terms):
        counts.append(len(terms))
        return original(terms)

    monkeypatch.setattr(base, "correlate_terms", spy)
    with state_use(initial=True, discarded=True):
        update, _ = rule(fc, pre, post, rule.initial_state(fc, pre[0], post[0]), signal)
    delta = update.delta()
    assert counts == [2]
    expected = Update(update.potentiation, update.depression).delta()
    torch.testing.assert_close(delta, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "make, signal",
    [
        (
            lambda: MSTDPET(0.5, -0.25, per_sample_signal=True),
            torch.tensor([1.0, -2.0, 0.5]).double(),
        ),
        (
            lambda: MSTDPET(0.5, -0.25, per_sample_signal=True),
            torch.linspace(-1, 1, T * B, dtype=torch.float64).reshape(T, B),
        ),
        (lambda: MSTDPET(-0.5, -0.25, per_sample_signal=True), 0.75),
        (lambda: MSTDPET(0.5, -0.25), -0.5),
    ],
)
def test_a_delta_only_caller_gets_the_same_delta_from_one_signed_part(make, signal):
    # state_use(delta_only=True): MSTDP-ET reads its carried eligibility once with
    # the net gain of both signs; the delta is that of the halves, which cannot be read
    rule = make().double()
    fc = nn.Linear(IN, OUT, bias=False).double()
    pre, post = window(10)
    state = rule(fc, pre, post, rule.initial_state(fc, pre[0], post[0]), signal)[1]
    pre, post = window()
    split, _ = rule(fc, pre, post, state, signal)
    expected = Update(split.potentiation, split.depression).delta()
    assert state["eligibility_post"].abs().sum() > 0  # the carried part is not vacuous
    with state_use(delta_only=True):
        fused, _ = rule(fc, pre, post, state, signal)
    torch.testing.assert_close(fused.delta(), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fused.scale(0.5).delta(), 0.5 * expected, rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match="reads only its delta"):
        _ = fused.potentiation


def test_a_learner_asks_for_the_delta_only_when_nothing_reads_the_halves(monkeypatch):
    seen = []
    original = MSTDPET.forward

    def spy(self, layer, pre, post, state, signal=None):
        if signal is not None:  # a step's window (not one settled by the next forward)
            seen.append(base.current_state_use().delta_only)
        return original(self, layer, pre, post, state, signal)

    monkeypatch.setattr(MSTDPET, "forward", spy)
    reward = torch.tensor([1.0, -2.0, 0.5]).double()
    deltas = {}
    bounds = (("plain", None), ("hard", Hard(-10.0, 10.0)), ("soft", Soft(-10.0, 10.0)))
    for name, bound in bounds:
        fc = nn.Linear(IN, OUT, bias=False).double()
        torch.nn.init.constant_(fc.weight, 0.0)
        source = nn.Identity()
        learner = Learner(fc, source, MSTDPET(0.5, -0.25, per_sample_signal=True), bound)
        for seed in (0, 2, 4):  # continuing windows: the carried eligibility is read
            for t, (x, y) in enumerate(zip(*window(seed))):
                source(y + 0 * fc(x))
                if t < T - 1:
                    learner.step(reward, apply=True)
        deltas[name] = learner.step(reward)
    # steps of the plain learner and of the hard-bounded one (no weight dependence: it
    # reads the net change only) ask for delta_only, those of the soft-bounded one do not
    third = len(seen) // 3
    assert third and all(seen[: 2 * third])
    assert not any(seen[2 * third :])
    torch.testing.assert_close(deltas["plain"], deltas["hard"], rtol=1e-12, atol=1e-14)


def test_a_net_term_is_a_deferred_signed_correlation():
    fc = nn.Linear(IN, OUT, bias=False).double()
    pre, post = window(3)
    expected = -0.75 * torch.einsum("tbo,tbi->oi", post, pre)
    halves = Halves("sum", B)
    halves.add_net_term(fc, Term(pre, post, -0.75))
    halves.add_net_term(fc, Term(pre, post, 0.0))  # nothing to add
    update = halves.result()
    assert len(halves.terms) == 1
    torch.testing.assert_close(update.delta(), expected, rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match="reads only its delta"):
        _ = update.potentiation
    # signed halves (the parts of the net change) can be read
    signed = Halves("mean", B, signed=True)
    signed.add_net_term(fc, Term(pre, post, -0.75))
    signed.add_term(fc, Term(pre, post, 1.0), None, 0.25, True)
    net = (expected - 0.25 * expected / 0.75) / B
    potentiation, depression = signed.halves()
    torch.testing.assert_close(potentiation, net.clamp(min=0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(depression, (-net).clamp(min=0), rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match="summed halves"):
        Halves(lambda x, dim: x.sum(dim), B).add_net_term(fc, Term(pre, post, 1.0))


@pytest.mark.parametrize(
    "eligibility, delta_only, net",
    [("split", False, False), ("split", True, True), ("combined", False, True)],
)
@pytest.mark.parametrize("per_step", [False, True])
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_a_net_window_writes_its_pairs_into_one_factor_per_weighting(
    monkeypatch, eligibility, delta_only, net, per_step, layer
):
    """Where only the net change is read, MSTDP-ET's causal pairs go into the acausal
    factors as the scan writes them (``causal``): one factor for the window's change
    and one for z(T), the same change as the rule that routes its terms to halves."""
    from plastorch.functional import stdp as functional_stdp
    from plastorch.rules import stdp as rules_stdp

    seen = []
    original = functional_stdp.weighted_acausal_factors

    def spy(pre, weights, decay, **kwargs):
        seen.append((weights.shape[0], kwargs.get("causal") is not None))
        return original(pre, weights, decay, **kwargs)

    monkeypatch.setattr(rules_stdp, "weighted_acausal_factors", spy)
    make = lambda: MSTDPET(0.5, -0.25, per_sample_signal=True, eligibility=eligibility)  # noqa: E731
    rule = make().double()
    signal = torch.linspace(-1, 1, T * B, dtype=torch.float64).reshape(T, B)
    if not per_step:
        signal = signal[0]
    if layer == "linear":
        fc = nn.Linear(IN, OUT, bias=False).double()
        pre, post = window()
        state = warm_state(rule, fc)
    else:  # (the compiled pass is Linear's: the torch calls, with the same change)
        fc = nn.Conv1d(1, 2, 3, padding=1, bias=False).double()
        pre, post = spikes((T, B, 1, IN), 0.4, 0), spikes((T, B, 2, IN), 0.4, 1)
        warm_pre, warm_post = spikes((T, B, 1, IN), 0.4, 2), spikes((T, B, 2, IN), 0.4, 3)
        state = rule.initial_state(fc, pre[0], post[0])
        state = rule(fc, warm_pre, warm_post, state, signal)[1]
    seen.clear()
    with state_use(delta_only=delta_only):
        update, new_state = rule(fc, pre, post, state, signal)
    # net: one weighting for the change (signed), one for z(T); else both signs apart
    # (or one shared profile for a signal constant over the window), and z(T)'s
    assert seen == [(2, True)] if net else seen == [(3 if per_step else 2, False)]
    # the reference: the split rule called as a function, its halves' difference
    reference = MSTDPET(0.5, -0.25, per_sample_signal=True).double()
    if layer == "linear":
        split_state = warm_state(reference, fc)
    else:
        split_state = reference.initial_state(fc, pre[0], post[0])
        split_state = reference(fc, warm_pre, warm_post, split_state, signal)[1]
    expected, expected_state = reference(fc, pre, post, split_state, signal)
    torch.testing.assert_close(update.delta(), expected.delta(), rtol=1e-12, atol=1e-14)
    if eligibility == "combined":
        carried = (
            0.5 * expected_state["eligibility_post"] - 0.25 * expected_state["eligibility_pre"]
        )
        torch.testing.assert_close(new_state["eligibility"], carried, rtol=1e-12, atol=1e-14)
    else:
        for name in ("eligibility_post", "eligibility_pre"):
            torch.testing.assert_close(
                new_state[name], expected_state[name], rtol=1e-12, atol=1e-14
            )


def test_an_owned_net_part_takes_the_pending_terms_in_place():
    fc = nn.Linear(IN, OUT, bias=False).double()
    pre, post = window(3)
    pairs = -0.75 * torch.einsum("tbo,tbi->oi", post, pre)
    carried = torch.rand(OUT, IN, dtype=torch.float64)
    # owned: the pending terms are added into the given tensor, and only once
    halves = Halves("sum", B)
    part = carried.clone()
    halves.add_net(part, owned=True)
    halves.add_net(carried * 0.5, owned=True)  # added into the first in place
    halves.add_net_term(fc, Term(pre, post, -0.75))
    update = halves.result()
    delta = update.delta()
    assert delta.data_ptr() == part.data_ptr()
    torch.testing.assert_close(delta, 1.5 * carried + pairs, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(update.delta(), 1.5 * carried + pairs, rtol=1e-12, atol=1e-14)
    # not owned: the given tensor is left alone
    halves = Halves("sum", B)
    given = carried.clone()
    halves.add_net(given)
    halves.add_net_term(fc, Term(pre, post, -0.75))
    torch.testing.assert_close(halves.delta(), carried + pairs, rtol=1e-12, atol=1e-14)
    assert torch.equal(given, carried)
    # a scaled copy shares the part: neither then writes into it, in either order
    halves = Halves("sum", B)
    halves.add_net(carried.clone(), owned=True)
    halves.add_net_term(fc, Term(pre, post, -0.75))
    copy = halves.scaled(2.0)
    for first, second in ((halves, copy), (copy, halves)):
        torch.testing.assert_close(first.delta(), (1 if first is halves else 2) * (carried + pairs))
        torch.testing.assert_close(
            second.delta(), (1 if second is halves else 2) * (carried + pairs)
        )
