"""One-step STDP factors: the in-place variant equals the pure one, bit for bit."""

import pytest
import torch
from torch import nn

from plastorch.functional import stdp_factors
from plastorch.rules import STDP
from plastorch.rules.base import state_use

KW = dict(decay_pre=0.9, decay_post=0.7)


def _window(generator, shape, p=0.3, graded=False):
    spikes = (torch.rand(1, *shape, generator=generator, dtype=torch.float64) < p).double()
    if graded:
        spikes = spikes * torch.rand(1, *shape, generator=generator, dtype=torch.float64)
    return spikes


def _reference(pre, post, x_pre, x_post, decay_pre, decay_post, mode):
    """The trace definitions written out: x(t) = d x(t-1) + s (cumulative) or 1 on a spike."""
    if mode == "cumulative":
        nxt_pre = x_pre * decay_pre + pre
        nxt_post = x_post * decay_post + post
    else:
        nxt_pre = torch.where(pre != 0, 1.0, x_pre * decay_pre)
        nxt_post = torch.where(post != 0, 1.0, x_post * decay_post)
    return nxt_pre, x_post * decay_post, nxt_post


@pytest.mark.parametrize("mode", ["cumulative", "nearest"])
@pytest.mark.parametrize("graded", [False, True])
def test_one_step_in_place_equals_pure_and_reuses_the_traces(mode, graded):
    g = torch.Generator().manual_seed(3)
    pre, post = _window(g, (4, 6), graded=graded), _window(g, (4, 5), graded=graded)
    x_pre = torch.rand(4, 6, generator=g, dtype=torch.float64)
    x_post = torch.rand(4, 5, generator=g, dtype=torch.float64)
    kept = x_pre.clone(), x_post.clone()
    pure = stdp_factors(pre, post, x_pre, x_post, trace_mode=mode, **KW)
    # without inplace nothing given is written
    assert torch.equal(x_pre, kept[0]) and torch.equal(x_post, kept[1])
    nxt_pre, before, nxt_post = _reference(pre[0], post[0], x_pre, x_post, 0.9, 0.7, mode)
    assert torch.equal(pure.trace_pre[0], nxt_pre) and torch.equal(pure.next_trace_pre, nxt_pre)
    assert torch.equal(pure.trace_post_before[0], before)
    assert torch.equal(pure.next_trace_post, nxt_post)

    given_pre, given_post = x_pre.clone(), x_post.clone()
    fast = stdp_factors(pre, post, given_pre, given_post, trace_mode=mode, inplace=True, **KW)
    for a, b in zip(fast, pure):
        assert torch.equal(a, b)
    # the next pre trace is the given tensor; the given post trace now holds the decayed one
    assert fast.next_trace_pre.data_ptr() == given_pre.data_ptr()
    assert torch.equal(given_post, before)


def test_in_place_is_ignored_where_it_does_not_apply():
    # a longer window, or spikes of another dtype than the traces, take the general path
    g = torch.Generator().manual_seed(4)
    pre = (torch.rand(3, 2, 4, generator=g) < 0.4).double()
    post = (torch.rand(3, 2, 3, generator=g) < 0.4).double()
    x_pre, x_post = torch.rand(2, 4, dtype=torch.float64), torch.rand(2, 3, dtype=torch.float64)
    kept = x_pre.clone(), x_post.clone()
    a = stdp_factors(pre, post, x_pre, x_post, inplace=True, **KW)
    b = stdp_factors(pre, post, kept[0], kept[1], **KW)
    assert torch.equal(x_pre, kept[0]) and torch.equal(x_post, kept[1])
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    x32 = torch.rand(2, 4)
    copy32 = x32.clone()
    stdp_factors(pre[:1], post[:1], x32, x_post.float(), inplace=True, **KW)
    assert torch.equal(x32, copy32)


def test_rule_writes_its_traces_in_place_only_when_the_state_is_reusable():
    fc = nn.Linear(6, 5, bias=False).double()
    rule = STDP(1.0, -0.5, tau_pre=10.0, tau_post=5.0)
    g = torch.Generator().manual_seed(5)
    pres = [_window(g, (4, 6)) for _ in range(4)]
    posts = [_window(g, (4, 5)) for _ in range(4)]
    pure_state = rule.initial_state(fc, pres[0][0], posts[0][0])
    reused_state = {name: value.clone() for name, value in pure_state.items()}
    for pre, post in zip(pres, posts):
        kept = {name: value.clone() for name, value in pure_state.items()}
        pure, next_pure = rule(fc, pre, post, pure_state)
        assert all(torch.equal(pure_state[n], kept[n]) for n in kept)  # pure by default
        given_pre = reused_state["trace_pre"]
        with state_use(reusable=True):
            reused, reused_state = rule(fc, pre, post, reused_state)
        assert reused_state["trace_pre"] is given_pre
        assert torch.equal(reused.delta(), pure.delta())
        assert torch.equal(reused.potentiation, pure.potentiation)
        assert torch.equal(reused.depression, pure.depression)
        pure_state = next_pure
        for name in pure_state:
            assert torch.equal(reused_state[name], pure_state[name])
