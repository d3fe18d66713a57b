"""The post-triggered form of a cumulative STDP window counts the same pairs.

Decays 1/2 and 1/4 and 0/1 spikes keep every value dyadic, so float64 sums are
exact and the two forms must agree bit for bit.
"""

import pytest
import torch
from torch import nn

from plastorch.functional import (
    correlate,
    stdp_factors,
    stdp_factors_post_triggered,
    trace_after,
    trace_after_window,
    weighted_acausal_factors,
)


def test_trace_after_hand_values():
    # spikes at 0, 2, 3 with d = 1/2: y(0) = 1/4 + 1/8, y(1) = 1/2 + 1/4, y(2) = 1/2, y(3) = 0
    spikes = torch.tensor([1.0, 0.0, 1.0, 1.0]).double()
    assert trace_after(spikes, 0.5).tolist() == [0.375, 0.75, 0.5, 0.0]
    assert trace_after(spikes[:0], 0.5).numel() == 0


def test_trace_after_is_the_anticausal_definition():
    spikes = (torch.rand(9, 3, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    expected = torch.stack(
        [
            sum(0.25 ** (u - t) * spikes[u] for u in range(t + 1, 9)) * torch.ones(3)
            for t in range(9)
        ]
    )
    assert torch.equal(trace_after(spikes, 0.25), expected.double())


@pytest.mark.parametrize("steps", [0, 1, 2, 9])
@pytest.mark.parametrize("numba", [True, False])
def test_trace_after_window_adds_the_step_before_the_window(monkeypatch, steps, numba):
    # (y, y(-1)) with y(-1) = sum_t d^(t + 1) v(t): what the window's graded values
    # send back to a trace carried into it; one reverse scan, the same bits either way
    from plastorch.functional import compiled

    if numba and not compiled.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(compiled, "_ENABLED", numba)
    g = torch.Generator().manual_seed(2)
    values = (torch.rand(steps, 3, 700, generator=g) < 0.5).double()
    values *= torch.randint(1, 8, values.shape, generator=g).double() / 4  # graded, dyadic
    after, before = trace_after_window(values, 0.25)
    assert torch.equal(after, trace_after(values, 0.25))
    expected = sum((0.25 ** (t + 1) * values[t] for t in range(steps)), torch.zeros(3, 700))
    assert torch.equal(before, expected.double())
    out = torch.empty_like(values)
    assert trace_after_window(values, 0.25, out=out)[0] is out
    assert torch.equal(out, after)


def test_trace_after_window_hand_values():
    # spikes at 0, 2, 3 with d = 1/2: y(-1) = 1/2 + 1/8 + 1/16
    after, before = trace_after_window(torch.tensor([1.0, 0.0, 1.0, 1.0]).double(), 0.5)
    assert after.tolist() == [0.375, 0.75, 0.5, 0.0]
    assert before.item() == 0.6875


def explicit_pairs(pre, post, x_pre0, x_post0, d_pre, d_post):
    """Depression by brute force: every (pre at t, post at u < t) pair, plus the carried trace."""
    steps = pre.shape[0]
    dep = torch.zeros(post.shape[-1], pre.shape[-1], dtype=torch.float64)
    for t in range(steps):
        for u in range(t):
            dep += d_post ** (t - u) * torch.einsum("bj,bi->ji", post[u], pre[t])
        dep += d_post ** (t + 1) * torch.einsum("bj,bi->ji", x_post0, pre[t])
    return dep


@pytest.mark.parametrize("steps", [1, 2, 7])
def test_same_pairs_as_the_pre_triggered_form(steps):
    generator = torch.Generator().manual_seed(steps)
    batch, n_in, n_out = 3, 5, 4
    pre = (torch.rand(steps, batch, n_in, generator=generator) < 0.4).double()
    post = (torch.rand(steps, batch, n_out, generator=generator) < 0.4).double()
    x_pre0 = torch.randint(0, 8, (batch, n_in), generator=generator).double() / 4
    x_post0 = torch.randint(0, 8, (batch, n_out), generator=generator).double() / 4
    fc = nn.Linear(n_in, n_out, bias=False).double()
    kw = dict(decay_pre=0.5, decay_post=0.25)
    usual = stdp_factors(pre, post, x_pre0, x_post0, **kw)
    flipped = stdp_factors_post_triggered(pre, post, x_pre0, x_post0, **kw)

    def corr(a, b):
        return correlate(fc, a.flatten(0, 1), b.flatten(0, 1), sparse=False)

    assert torch.equal(flipped.trace_pre, usual.trace_pre)
    depression = corr(pre, usual.trace_post_before)
    flipped_depression = corr(flipped.after_pre, post) + corr(
        flipped.carried_pre, flipped.carried_post
    )
    assert torch.equal(flipped_depression, depression)
    assert torch.equal(depression, explicit_pairs(pre, post, x_pre0, x_post0, 0.5, 0.25))
    assert torch.equal(flipped.next_trace_pre, usual.next_trace_pre)
    assert torch.equal(flipped.next_trace_post, usual.next_trace_post)


def test_weighted_acausal_factors_hand_values():
    # pre spikes at 1 and 2, d = 1/2, weights w(1) = 2, w(2) = 4 (one sample, one input)
    pre = torch.tensor([0.0, 1.0, 1.0]).double().reshape(3, 1, 1)
    weights = torch.tensor([[1.0, 2.0, 4.0]]).double().reshape(1, 3, 1)
    after, carried = weighted_acausal_factors(pre, weights, 0.5)
    # y(0) = 1/2 * 2 + 1/4 * 4 = 2, y(1) = 1/2 * 4 = 2, y(2) = 0
    assert after[0].flatten().tolist() == [2.0, 2.0, 0.0]
    # g = d^2 * 2 + d^3 * 4 = 1
    assert carried.flatten().tolist() == [1.0]


def test_weighted_acausal_factors_count_the_weighted_pre_triggered_pairs():
    """sum_t w(t) x~_post(t) (x) s_pre(t) == sum_t s_post(t) (x) y_w(t) + x_post(-1) (x) g_w,
    for per-step-and-sample weights of both signs (dyadic: equal bit for bit)."""
    g = torch.Generator().manual_seed(3)
    steps, batch, n_in, n_out = 7, 3, 5, 4
    pre = (torch.rand(steps, batch, n_in, generator=g) < 0.4).double()
    post = (torch.rand(steps, batch, n_out, generator=g) < 0.4).double()
    x_post0 = torch.randint(0, 4, (batch, n_out), generator=g).double() / 4
    weights = torch.randint(-4, 5, (2, steps, batch), generator=g).double() / 8
    fc = nn.Linear(n_in, n_out, bias=False).double()
    factors = stdp_factors(
        pre, post, torch.zeros(batch, n_in).double(), x_post0, decay_pre=0.5, decay_post=0.5
    )
    after, carried = weighted_acausal_factors(pre, weights, 0.5)
    assert [y.shape for y in after] == [pre.shape] * 2 and carried.shape == (2, batch, n_in)
    for k in range(2):
        w = weights[k][..., None]
        expected = correlate(fc, (pre * w).flatten(0, 1), factors.trace_post_before.flatten(0, 1))
        got = correlate(fc, after[k].flatten(0, 1), post.flatten(0, 1)) + correlate(
            fc, carried[k], x_post0
        )
        assert torch.equal(got, expected)
        assert after[k].is_contiguous()


def test_weighted_acausal_factors_into_out_equal_the_separate_tensors():
    # with ``out`` the K weightings advance together; without, one tensor each:
    # the same roundings (float32 random values, compared bit for bit)
    g = torch.Generator().manual_seed(4)
    pre = (torch.rand(30, 4, 3, 2, generator=g) < 0.3).float()
    for weights in (torch.randn(3, 30, 4, generator=g), torch.randn(2, 30, 1, generator=g)):
        after, carried = weighted_acausal_factors(pre, weights, 0.9)
        out = torch.full((weights.shape[0], *pre.shape), float("nan"))
        into, carried_into = weighted_acausal_factors(pre, weights, 0.9, out=out)
        assert torch.equal(carried_into, carried)
        for k, (a, b) in enumerate(zip(after, into)):
            assert torch.equal(a, b) and b.data_ptr() == out[k].data_ptr()
            assert a.shape == pre.shape and a.is_contiguous()


def test_weighted_acausal_factors_with_a_causal_trace_hand_values():
    # the example above, with the trace x = (1, 2, 3) at rates r = (1/2, 1/4, -1)
    pre = torch.tensor([0.0, 1.0, 1.0]).double().reshape(3, 1, 1)
    weights = torch.tensor([[1.0, 2.0, 4.0]]).double().reshape(1, 3, 1)
    trace = torch.tensor([1.0, 2.0, 3.0]).double().reshape(3, 1, 1)
    rates = torch.tensor([0.5, 0.25, -1.0]).double().reshape(1, 3, 1)
    after, carried = weighted_acausal_factors(pre, weights, 0.5, causal=(trace, rates))
    # y + r x = (2 + 1/2, 2 + 1/2, 0 - 3); the carried g has no trace in it
    assert after[0].flatten().tolist() == [2.5, 2.5, -3.0]
    assert carried.flatten().tolist() == [1.0]


@pytest.mark.parametrize("into", [False, True])
@pytest.mark.parametrize("per_sample_rates", [False, True])
def test_weighted_acausal_factors_with_a_causal_trace_pair_with_the_post_spikes(
    into, per_sample_rates
):
    """y_w + r x_pre paired with s_post counts the acausal pairs weighted by w and the
    causal ones C(x_pre(t), s_post(t)) weighted by r: a weighted STDP window's two terms
    in one factor (dyadic: equal bit for bit, compiled where ``out`` is large enough)."""
    g = torch.Generator().manual_seed(5)
    steps, batch, n_in, n_out = 8, 3, 700, 4  # [2, 8, 3, 700] reaches the compiled scan
    pre = (torch.rand(steps, batch, n_in, generator=g) < 0.3).double()
    post = (torch.rand(steps, batch, n_out, generator=g) < 0.4).double()
    x_pre = torch.randint(0, 8, (steps, batch, n_in), generator=g).double() / 8
    weights = torch.randint(-4, 5, (2, steps, batch), generator=g).double() / 8
    rates = torch.randint(-4, 5, (2, steps, batch if per_sample_rates else 1), generator=g)
    rates = rates.double() / 4
    rates[1] = 0.0  # a factor without its causal pairs
    plain, carried_plain = weighted_acausal_factors(pre, weights, 0.5)
    out = torch.full((2, *pre.shape), float("nan"), dtype=torch.float64) if into else None
    after, carried = weighted_acausal_factors(pre, weights, 0.5, out=out, causal=(x_pre, rates))
    assert torch.equal(carried, carried_plain)
    fc = nn.Linear(n_in, n_out, bias=False).double()
    for k in range(2):
        assert torch.equal(after[k], plain[k] + rates[k][..., None] * x_pre)
        causal_pairs = correlate(
            fc, (x_pre * rates[k][..., None]).flatten(0, 1), post.flatten(0, 1)
        )
        expected = correlate(fc, plain[k].flatten(0, 1), post.flatten(0, 1)) + causal_pairs
        assert torch.equal(correlate(fc, after[k].flatten(0, 1), post.flatten(0, 1)), expected)


def test_weighted_acausal_factors_causal_shapes_are_checked():
    pre = torch.zeros(4, 2, 3)
    weights = torch.ones(2, 4, 2)
    with pytest.raises(ValueError, match="trace must be shaped like pre"):
        weighted_acausal_factors(
            pre, weights, 0.5, causal=(torch.zeros(4, 2, 2), torch.ones(2, 4, 1))
        )
    for bad in (torch.ones(1, 4, 2), torch.ones(2, 3, 2), torch.ones(2, 4, 3), torch.ones(2, 4)):
        with pytest.raises(ValueError, match=r"rates must be \[K, T, B\]"):
            weighted_acausal_factors(pre, weights, 0.5, causal=(torch.zeros(4, 2, 3), bad))
