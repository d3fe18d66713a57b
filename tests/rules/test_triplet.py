"""TripletSTDP: hand-computed triplets, the pair limit, and explicit all-to-all sums."""

import math

import pytest
import torch
from torch import nn

from plastorch.rules import STDP, TripletSTDP

from .helpers import TAU_HALF, TAU_QUARTER, run_rule, spike_train


def triplet(trace_mode="cumulative", **amplitudes):
    a = {"a2_plus": 1.0, "a3_plus": 2.0, "a2_minus": 3.0, "a3_minus": 4.0, **amplitudes}
    # r1, o1, o2 halve per step; r2 quarters
    return TripletSTDP(**a, tau_plus=TAU_HALF, tau_x=TAU_QUARTER, tau_minus=TAU_HALF,
                       tau_y=TAU_HALF, trace_mode=trace_mode)  # fmt: skip


@pytest.fixture
def fc():
    return nn.Linear(1, 1, bias=False).double()


def test_post_pre_post(fc):
    # pre @1 sees o1 = 1/2, r2 = 0: LTD 3 * 1/2. post @2 sees r1 = 1/2 and the earlier
    # post through o2 = 1/4: LTP 1/2 * (1 + 2 * 1/4).
    update, _ = run_rule(triplet(), fc, spike_train(1, steps=3), spike_train(0, 2, steps=3))
    assert round(update.potentiation.item(), 12) == 0.75
    assert round(update.depression.item(), 12) == 1.5


def test_pre_post_pre(fc):
    # post @1: r1 = 1/2, no earlier post: LTP 1/2. pre @2: o1 = 1/2, earlier pre through
    # r2 = 1/16: LTD 1/2 * (3 + 4/16).
    update, _ = run_rule(triplet(), fc, spike_train(0, 2, steps=3), spike_train(1, steps=3))
    assert round(update.potentiation.item(), 12) == 0.5
    assert round(update.depression.item(), 12) == 1.625


def test_2x3_case():
    # pre: input 0 @0, input 1 @1 and @3, input 2 @0 and @2; post: output 0 @1 and @3,
    # output 1 @2. LTP at post (r1 incl. the step, factor 1 + 2 o2~):
    #   out 0 @1: r1 = [1/2, 1, 1/2], o2~ = 0;  @3: r1 = [1/8, 5/4, 5/8], o2~ = 1/4 (x 3/2)
    #   out 1 @2: r1 = [1/4, 1/2, 5/4], o2~ = 0
    # LTD at pre (o1~ before the step, factor 3 + 4 r2~):
    #   input 2 @2: o1~ = [1/2, 0], r2~ = 1/16;  input 1 @3: o1~ = [1/4, 1/2], r2~ = 1/16
    fc = nn.Linear(3, 2, bias=False).double()
    pre = torch.zeros(4, 1, 3, dtype=torch.float64)
    post = torch.zeros(4, 1, 2, dtype=torch.float64)
    for t, i in ((0, 0), (1, 1), (3, 1), (0, 2), (2, 2)):
        pre[t, 0, i] = 1.0
    for t, o in ((1, 0), (3, 0), (2, 1)):
        post[t, 0, o] = 1.0
    update, state = run_rule(triplet(), fc, pre, post)
    assert update.potentiation.round(decimals=12).tolist() == [
        [0.6875, 2.875, 1.4375],
        [0.25, 0.5, 1.25],
    ]
    assert update.depression.round(decimals=12).tolist() == [
        [0.0, 0.8125, 1.625],
        [0.0, 1.625, 0.0],
    ]
    assert state["r1"].round(decimals=12).tolist() == [[0.125, 1.25, 0.625]]


@pytest.mark.parametrize("trace_mode", ["cumulative", "nearest"])
def test_zero_triplet_amplitudes_reduce_to_pair_stdp(trace_mode):
    torch.manual_seed(0)
    layer = nn.Conv1d(2, 3, 3, padding=1).double()
    pre = (torch.rand(20, 2, 2, 7) < 0.3).double()
    post = (torch.rand(20, 2, 3, 7) < 0.3).double()
    rule = TripletSTDP(0.8, 0.0, 0.6, 0.0, tau_plus=12.0, tau_x=50.0, tau_minus=25.0,
                       tau_y=80.0, dt=0.5, trace_mode=trace_mode)  # fmt: skip
    pair = STDP(0.8, -0.6, tau_post=25.0, tau_pre=12.0, dt=0.5, trace_mode=trace_mode)
    got, _ = run_rule(rule, layer, pre, post)
    expected, _ = run_rule(pair, layer, pre, post)
    torch.testing.assert_close(got.potentiation, expected.potentiation, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.depression, expected.depression, rtol=1e-12, atol=1e-12)


def test_all_to_all_equals_explicit_sums_over_spike_pairs_and_triplets():
    # Pfister & Gerstner's all-to-all model as sums over spike times (no traces):
    # LTP at post t: sum_{pre s <= t} e^{-(t-s)/tau+} [A2+ + A3+ sum_{post u < t} e^{-(t-u)/tau_y}]
    # LTD at pre t:  sum_{post u < t} e^{-(t-u)/tau-} [A2- + A3- sum_{pre s < t} e^{-(t-s)/tau_x}]
    torch.manual_seed(1)
    steps, dt = 30, 0.5
    taus = {"tau_plus": 5.0, "tau_x": 20.0, "tau_minus": 8.0, "tau_y": 15.0}
    amps = {"a2_plus": 0.3, "a3_plus": 0.7, "a2_minus": 0.4, "a3_minus": 0.9}
    pre = (torch.rand(steps, 1, 1) < 0.3).double()
    post = (torch.rand(steps, 1, 1) < 0.3).double()
    rule = TripletSTDP(**amps, **taus, dt=dt)
    update, _ = run_rule(rule, nn.Linear(1, 1, bias=False).double(), pre, post)
    pre_t = [t * dt for t in range(steps) if pre[t, 0, 0]]
    post_t = [t * dt for t in range(steps) if post[t, 0, 0]]
    ltp = sum(
        math.exp(-(t - s) / taus["tau_plus"])
        * (amps["a2_plus"] + amps["a3_plus"] * sum(math.exp(-(t - u) / taus["tau_y"]) for u in post_t if u < t))
        for t in post_t
        for s in pre_t
        if s <= t
    )  # fmt: skip
    ltd = sum(
        math.exp(-(t - u) / taus["tau_minus"])
        * (amps["a2_minus"] + amps["a3_minus"] * sum(math.exp(-(t - s) / taus["tau_x"]) for s in pre_t if s < t))
        for t in pre_t
        for u in post_t
        if u < t
    )  # fmt: skip
    assert update.potentiation.item() == pytest.approx(ltp, rel=1e-12)
    assert update.depression.item() == pytest.approx(ltd, rel=1e-12)


def test_nearest_saturates_the_traces(fc):
    # two posts then a pre: all-to-all LTD o1 = 1/2 + 1/4; nearest o1 = 1/2 (reset at the last)
    pre, post = spike_train(2, steps=3), spike_train(0, 1, steps=3)
    cumulative, _ = run_rule(triplet(a3_minus=0.0), fc, pre, post)
    nearest, _ = run_rule(triplet("nearest", a3_minus=0.0), fc, pre, post)
    assert round(cumulative.depression.item(), 12) == 3 * 0.75
    assert round(nearest.depression.item(), 12) == 3 * 0.5


@pytest.mark.parametrize("trace_mode", ["cumulative", "nearest"])
@pytest.mark.parametrize("amplitudes", [(0.2, 0.5, 0.3, 0.1), (0.2, -0.5, 0.3, -0.1)])
def test_window_equals_single_steps(trace_mode, amplitudes):
    torch.manual_seed(2)
    fc = nn.Linear(4, 3, bias=False).double()
    pre, post = (torch.rand(9, 2, 4) < 0.4).double(), (torch.rand(9, 2, 3) < 0.4).double()
    rule = TripletSTDP(*amplitudes, dt=0.5, batch_reduction="mean", trace_mode=trace_mode)
    fused, fused_state = run_rule(rule, fc, pre, post)
    state, total, halves = rule.initial_state(fc, pre[0], post[0]), 0, [0, 0]
    for t in range(9):
        update, state = rule(fc, pre[t : t + 1], post[t : t + 1], state)
        total = total + (0 if update.delta() is None else update.delta())
        for k, half in enumerate((update.potentiation, update.depression)):
            halves[k] = halves[k] + (0 if half is None else half)
    torch.testing.assert_close(fused.delta(), total, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused.potentiation, halves[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused.depression, halves[1], rtol=1e-12, atol=1e-12)
    for name in state:
        torch.testing.assert_close(fused_state[name], state[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("amplitudes", "potentiation", "depression"),
    [
        # post, pre, post (test_post_pre_post): the triplet LTP term -2 * 1/2 * 1/4 is
        # depression now, the pair LTP 1/2 stays potentiation
        ({"a3_plus": -2.0}, 0.5, 1.5 + 0.25),
        # pre, post, pre (test_pre_post_pre): the triplet LTD term -4 * 1/16 * 1/2 is
        # potentiation, the pair LTD 3 * 1/2 stays depression
        ({"a3_minus": -4.0}, 0.5 + 0.125, 1.5),
    ],
)
def test_amplitudes_of_opposite_signs_go_to_opposite_halves(
    fc, amplitudes, potentiation, depression
):
    if "a3_plus" in amplitudes:
        pre, post = spike_train(1, steps=3), spike_train(0, 2, steps=3)
    else:
        pre, post = spike_train(0, 2, steps=3), spike_train(1, steps=3)
    update, _ = run_rule(triplet(**amplitudes), fc, pre, post)
    assert update.potentiation.item() == pytest.approx(potentiation, rel=1e-12)
    assert update.depression.item() == pytest.approx(depression, rel=1e-12)
    assert update.delta().item() == pytest.approx(potentiation - depression, rel=1e-12)


@pytest.mark.parametrize(
    ("a3_plus", "a3_minus", "steps", "count"),
    # a window's LTD pairs are written over the post spikes, plus one term for the
    # post trace carried into the window
    [(2.0, 4.0, 1, 2), (-2.0, 4.0, 1, 3), (2.0, 4.0, 6, 3), (-2.0, 4.0, 6, 4), (2.0, -4.0, 6, 5)],
)
def test_a_triplet_and_its_pair_term_of_one_sign_are_one_correlation(
    a3_plus, a3_minus, steps, count
):
    # A2+ C(r1, s) + A3+ C(r1, s o2~) = C(r1, s (A2+ + A3+ o2~)) when both are one half
    # (and the same for LTD's shared o1~): each half is one correlation
    torch.manual_seed(3)
    fc = nn.Linear(4, 3, bias=False).double()
    pre = (torch.rand(steps, 2, 4) < 0.4).double()
    post = (torch.rand(steps, 2, 3) < 0.4).double()
    rule = triplet(a3_plus=a3_plus, a3_minus=a3_minus)
    update, _ = run_rule(rule, fc, pre, post)
    assert len(update._deferred.terms) == count  # pending correlations
    # the merged terms give the explicit sum of the four correlations
    state = rule.initial_state(fc, pre[0], post[0])
    expected = _four_correlations(rule, fc, pre, post, state)
    torch.testing.assert_close(update.delta(), expected, rtol=1e-12, atol=1e-12)


def _four_correlations(rule, fc, pre, post, state):
    """The module docstring's sum, one correlation per term, from explicit traces."""
    from plastorch.functional import correlate

    def traces(x, decay):
        out, value = [], torch.zeros_like(x[0])
        for t in range(x.shape[0]):
            value = value * decay + x[t]
            out.append(value)
        return torch.stack(out)

    def before(trace, decay):
        return decay * torch.cat((torch.zeros_like(trace[:1]), trace[:-1]))

    r1, r2 = traces(pre, rule.decay_plus), traces(pre, rule.decay_x)
    o1, o2 = traces(post, rule.decay_minus), traces(post, rule.decay_y)
    o1b, o2b, r2b = before(o1, rule.decay_minus), before(o2, rule.decay_y), before(r2, rule.decay_x)
    return (
        rule.a2_plus * correlate(fc, r1, post)
        + rule.a3_plus * correlate(fc, r1, post * o2b)
        - rule.a2_minus * correlate(fc, pre, o1b)
        - rule.a3_minus * correlate(fc, pre * r2b, o1b)
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="tau_y"):
        TripletSTDP(1.0, 1.0, 1.0, 1.0, tau_y=0.0)
    with pytest.raises(ValueError, match="trace_mode"):
        TripletSTDP(1.0, 1.0, 1.0, 1.0, trace_mode="all")
    with pytest.raises(TypeError, match="a3_minus"):
        TripletSTDP(1.0, 1.0, 1.0, "x")
