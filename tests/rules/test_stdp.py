"""STDP on hand-made spike trains; decays 1/2 (pre) and 1/4 (post) keep values exact."""

import math

import pytest
import torch
from torch import nn

from plastorch.rules import STDP

from .helpers import TAU_HALF, TAU_QUARTER, run_rule, spike_train, value


def rule(lr_post=1.0, lr_pre=-1.0, **kw):
    return STDP(lr_post, lr_pre, tau_post=TAU_QUARTER, tau_pre=TAU_HALF, **kw)


@pytest.fixture
def fc():
    return nn.Linear(1, 1, bias=False).double()


def test_causal_pair_potentiates(fc):
    # pre at 0, post at 2: x_pre(2) = 1/4; no post before the pre spike.
    update, _ = run_rule(rule(), fc, spike_train(0, steps=3), spike_train(2, steps=3))
    assert value(update.potentiation) == 0.25
    assert value(update.depression) == 0.0


def test_acausal_pair_depresses(fc):
    # post at 0, pre at 2: x~_post(2) = 1/4 * x_post(1) = 1/4 * 1/4.
    update, _ = run_rule(rule(), fc, spike_train(2, steps=3), spike_train(0, steps=3))
    assert value(update.potentiation) == 0.0
    assert value(update.depression) == 0.0625


def test_same_step_pair_potentiates_once_and_never_depresses(fc):
    update, _ = run_rule(rule(), fc, spike_train(1, steps=3), spike_train(1, steps=3))
    assert value(update.potentiation) == 1.0
    assert value(update.depression) == 0.0


def test_one_step_lags(fc):
    # pre at 0, post at 1 -> +1/2;  post at 0, pre at 1 -> -1/4
    up, _ = run_rule(rule(), fc, spike_train(0, steps=2), spike_train(1, steps=2))
    down, _ = run_rule(rule(), fc, spike_train(1, steps=2), spike_train(0, steps=2))
    assert (value(up.potentiation), value(up.depression)) == (0.5, 0.0)
    assert (value(down.potentiation), value(down.depression)) == (0.0, 0.25)


def test_first_and_last_step(fc):
    # pre at the first step, post at the last of a 4-step window: 1/8
    update, state = run_rule(rule(), fc, spike_train(0, steps=4), spike_train(3, steps=4))
    assert value(update.potentiation) == 0.125
    assert state["trace_pre"].item() == 0.125
    assert state["trace_post"].item() == 1.0


@pytest.mark.parametrize(
    "mode, expected",
    [("cumulative", (0.75, 0.25 * 1.25)), ("nearest", (0.5, 0.25))],
)
def test_trace_modes(fc, mode, expected):
    # LTP: pre at 0 and 1, post at 2 -> cumulative 1/4 + 1/2, nearest 1/2.
    update, _ = run_rule(
        rule(trace_mode=mode), fc, spike_train(0, 1, steps=3), spike_train(2, steps=3)
    )
    assert value(update.potentiation) == expected[0]
    # LTD: post at 0 and 1, pre at 2 -> 1/4 * (1/4 + 1) cumulative, 1/4 nearest.
    update, _ = run_rule(
        rule(trace_mode=mode), fc, spike_train(2, steps=3), spike_train(0, 1, steps=3)
    )
    assert value(update.depression) == expected[1]


# pre at 0 and 2, post at 1: xi_post = x_pre(1) = 1/2, xi_pre = x~_post(2) = 1/4.
PRE, POST = spike_train(0, 2, steps=3), spike_train(1, steps=3)


@pytest.mark.parametrize(
    "lr_post, lr_pre, potentiation, depression",
    [
        (2.0, -3.0, 1.0, 0.75),  # Hebbian: LTP = 2 * 1/2, LTD = 3 * 1/4
        (-2.0, 3.0, 0.75, 1.0),  # anti-Hebbian
        (2.0, 3.0, 1.75, None),  # potentiative only
        (-2.0, -3.0, None, 1.75),  # depressive only
    ],
)
def test_sign_modes(fc, lr_post, lr_pre, potentiation, depression):
    update, _ = run_rule(rule(lr_post, lr_pre), fc, PRE, POST)
    assert value(update.potentiation) == potentiation
    assert value(update.depression) == depression


def test_batch_reductions(fc):
    pre = torch.cat([PRE, spike_train(0, steps=3)], dim=1)  # sample 1: pre at 0 only
    post = torch.cat([POST, POST], dim=1)
    total, _ = run_rule(rule(2.0, -3.0), fc, pre, post)
    assert (value(total.potentiation), value(total.depression)) == (2.0, 0.75)
    mean, _ = run_rule(rule(2.0, -3.0, batch_reduction="mean"), fc, pre, post)
    assert (value(mean.potentiation), value(mean.depression)) == (1.0, 0.375)
    peak, _ = run_rule(rule(2.0, -3.0, batch_reduction=torch.amax), fc, pre, post)
    assert (value(peak.potentiation), value(peak.depression)) == (1.0, 0.75)


def test_window_equals_single_steps_random():
    layer = nn.Conv2d(2, 3, 3, padding=1).double()
    stdp = STDP(0.7, -0.4, tau_post=15.0, tau_pre=8.0, dt=0.5, trace_mode="nearest")
    pre = (torch.rand(6, 2, 2, 5, 5) < 0.3).double()
    post = (torch.rand(6, 2, 3, 5, 5) < 0.2).double()
    state0 = stdp.initial_state(layer, pre[0], post[0])
    fused, fused_state = stdp(layer, pre, post, state0)
    state, delta = state0, torch.zeros_like(layer.weight)
    for t in range(6):
        update, state = stdp(layer, pre[t : t + 1], post[t : t + 1], state)
        delta = delta + update.delta()
    torch.testing.assert_close(fused.delta(), delta, rtol=1e-12, atol=1e-12)
    for name in state:
        torch.testing.assert_close(fused_state[name], state[name], rtol=1e-12, atol=1e-12)


def test_rule_is_pure(fc):
    stdp = rule()
    state = stdp.initial_state(fc, PRE[0], POST[0])
    before = {k: v.clone() for k, v in state.items()}
    stdp(fc, PRE, POST, state)
    for name in state:
        assert torch.equal(state[name], before[name])


def test_default_time_constants_match_exact_decay(fc):
    stdp = STDP(1.0, -1.0)
    update, _ = run_rule(stdp, fc, spike_train(0, steps=2), spike_train(1, steps=2))
    assert update.potentiation.item() == pytest.approx(math.exp(-1 / 20))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"tau_post": 0.0}, "tau_post"),
        ({"tau_pre": -5.0}, "tau_pre"),
        ({"dt": 0.0}, "dt"),
        ({"trace_mode": "closest"}, "trace_mode"),
        ({"batch_reduction": "median"}, "batch_reduction"),
        ({"lr_post": float("nan")}, "lr_post"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    args = {"lr_post": 1.0, "lr_pre": -1.0, **kwargs}
    with pytest.raises(ValueError, match=name):
        STDP(**args)


def test_stdp_rejects_a_signal(fc):
    with pytest.raises(TypeError, match="signal"):
        run_rule(rule(), fc, PRE, POST, signal=1.0)
