"""Windows a Learner settles (``state_use(reusable=True)``) advance pair traces in place.

Whatever path a rule takes, the update and the new state equal those of a plain
(pure) call; these tests pin that, and that the in-place path really reuses the
given tensors.
"""

import pytest
import torch
from torch import nn

from plastorch.rules import MSTDP, STDP
from plastorch.rules.base import state_use


def _spikes(generator, shape, p):
    return (torch.rand(shape, generator=generator, dtype=torch.float64) < p).double()


def _signals(kind, steps, batch, generator):
    if kind == "none":
        return [None] * steps
    if kind == "scalar":
        return [(-1.0) ** t * 0.5 for t in range(steps)]
    if kind == "per_sample":
        return [torch.randn(batch, generator=generator, dtype=torch.float64) for _ in range(steps)]
    return [torch.randn(1, batch, generator=generator, dtype=torch.float64) for _ in range(steps)]


@pytest.mark.parametrize("trace_mode", ["cumulative", "nearest"])
@pytest.mark.parametrize(
    "make_rule, signal",
    [
        (lambda **kw: STDP(1.0, -0.6, tau_pre=8.0, tau_post=4.0, **kw), "none"),
        (lambda **kw: STDP(-0.3, -0.6, tau_pre=8.0, tau_post=4.0, **kw), "none"),
        (lambda **kw: MSTDP(1.0, -0.6, tau_pre=8.0, tau_post=4.0, **kw), "none"),
        (lambda **kw: MSTDP(1.0, -0.6, tau_pre=8.0, tau_post=4.0, **kw), "scalar"),
        (lambda **kw: MSTDP(1.0, -0.6, tau_pre=8.0, tau_post=4.0, **kw), "per_sample"),
        (lambda **kw: MSTDP(0.7, 0.4, tau_pre=8.0, tau_post=4.0, **kw), "per_step"),
    ],
)
@pytest.mark.parametrize("delta_only", [False, True])
@pytest.mark.parametrize("batch_reduction", ["sum", "mean"])
def test_conv_one_step_in_place_equals_the_pure_rule(
    make_rule, signal, trace_mode, delta_only, batch_reduction
):
    # Conv2d 2->3 k3 on 2x2x6x6: the post trace (2*3*6*6 = 216) is larger than the
    # weight (3*2*3*3 = 54), so the acausal term is evaluated before the trace advances.
    # A caller that reads only the delta gets it as one signed sum where the signal is
    # one number (no halves to read), the same change.
    g = torch.Generator().manual_seed(7)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
    rule = make_rule(trace_mode=trace_mode, batch_reduction=batch_reduction)
    pres = [_spikes(g, (1, 2, 2, 6, 6), 0.3) for _ in range(5)]
    posts = [_spikes(g, (1, 2, 3, 6, 6), 0.2) for _ in range(5)]
    signals = _signals(signal, 5, 2, g)
    pure_state = rule.initial_state(conv, pres[0][0], posts[0][0])
    state = {name: value.clone() for name, value in pure_state.items()}
    for pre, post, m in zip(pres, posts, signals):
        kw = {} if m is None else {"signal": m}
        kept = {name: value.clone() for name, value in pure_state.items()}
        pure, next_pure = rule(conv, pre, post, pure_state, **kw)
        assert all(torch.equal(pure_state[n], kept[n]) for n in kept)
        given = dict(state)
        with state_use(reusable=True, delta_only=delta_only):
            update, state = rule(conv, pre, post, state, **kw)
        assert state["trace_pre"] is given["trace_pre"]
        assert state["trace_post"] is given["trace_post"]
        for name in state:  # the traces are computed with the same roundings
            assert torch.equal(state[name], next_pure[name])
        expected = pure.delta()
        expected = torch.zeros_like(conv.weight) if expected is None else expected
        torch.testing.assert_close(update.delta_like(conv.weight), expected, rtol=1e-12, atol=1e-14)
        pure_state = next_pure
        if delta_only:
            if signal in ("none", "scalar") and not isinstance(rule, MSTDP) or signal == "scalar":
                with pytest.raises(RuntimeError, match="reads only its delta"):
                    update.potentiation  # noqa: B018
            continue
        zero = torch.zeros_like(conv.weight)
        for a, b in (
            (update.potentiation, pure.potentiation),
            (update.depression, pure.depression),
        ):
            # an empty half is None
            a, b = zero if a is None else a, zero if b is None else b
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_linear_keeps_the_fused_path():
    # A Linear post trace ([B, out]) smaller than its weight keeps the deferred,
    # fused correlation: the pre trace advances in place, the post trace is new.
    g = torch.Generator().manual_seed(8)
    fc = nn.Linear(10, 6, bias=False).double()
    rule = STDP(1.0, -0.5)
    pre, post = _spikes(g, (1, 3, 10), 0.3), _spikes(g, (1, 3, 6), 0.3)
    state = rule.initial_state(fc, pre[0], post[0])
    given = dict(state)
    with state_use(reusable=True):
        update, new = rule(fc, pre, post, state)
    assert update.is_deferred
    assert new["trace_pre"] is given["trace_pre"]
    assert new["trace_post"] is not given["trace_post"]


@pytest.mark.parametrize("batch_reduction", ["sum", "mean"])
@pytest.mark.parametrize(
    "make_rule, signal",
    [
        (lambda **kw: STDP(1.0, -0.5, **kw), None),
        (lambda **kw: STDP(-0.3, -0.5, trace_mode="nearest", **kw), None),
        (lambda **kw: MSTDP(1.0, -0.5, **kw), -0.7),
        (lambda **kw: MSTDP(1.0, -0.5, **kw), 0.0),
    ],
)
def test_linear_delta_only_step_is_the_net_change(make_rule, signal, batch_reduction):
    # a caller that reads only the delta gets the signed sum of both terms (one
    # correlate_sum), equal to the routed halves' difference, over several steps
    g = torch.Generator().manual_seed(9)
    fc = nn.Linear(10, 6, bias=False).double()
    rule = make_rule(batch_reduction=batch_reduction)
    kw = {} if signal is None else {"signal": signal}
    pres = [_spikes(g, (1, 3, 10), 0.3) for _ in range(4)]
    posts = [_spikes(g, (1, 3, 6), 0.3) for _ in range(4)]
    state = rule.initial_state(fc, pres[0][0], posts[0][0])
    routed_state = {name: value.clone() for name, value in state.items()}
    for pre, post in zip(pres, posts):
        with state_use(reusable=True):
            routed, routed_state = rule(fc, pre, post, routed_state, **kw)
        with state_use(reusable=True, delta_only=True):
            update, state = rule(fc, pre, post, state, **kw)
        for name in state:
            assert torch.equal(state[name], routed_state[name])
        expected = routed.delta_like(fc.weight)
        torch.testing.assert_close(update.delta_like(fc.weight), expected, rtol=1e-12, atol=1e-15)
        if signal != 0.0:
            assert expected.abs().sum() > 0  # the steps do learn something
            with pytest.raises(RuntimeError, match="reads only its delta"):
                update.depression  # noqa: B018
