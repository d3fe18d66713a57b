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
