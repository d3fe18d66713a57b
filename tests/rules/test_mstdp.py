"""MSTDP: pre at 0 and 2, post at 1 -> xi_post = 1/2 (at step 1), xi_pre = 1/4 (at step 2)."""

import importlib

import pytest
import torch
from torch import nn

from plastorch.rules import MSTDP, STDP

from .helpers import TAU_HALF, TAU_QUARTER, run_rule, spike_train, value

PRE, POST = spike_train(0, 2, steps=3), spike_train(1, steps=3)


def rule(lr_post=2.0, lr_pre=-3.0, **kw):
    return MSTDP(lr_post, lr_pre, tau_post=TAU_QUARTER, tau_pre=TAU_HALF, **kw)


@pytest.fixture
def fc():
    return nn.Linear(1, 1, bias=False).double()


@pytest.mark.parametrize(
    "lr_post, lr_pre, signal, potentiation, depression",
    [
        (2.0, -3.0, 1.0, 1.0, 0.75),  # Hebbian, positive reward = STDP
        (2.0, -3.0, -2.0, 1.5, 2.0),  # negative reward swaps halves: 3*2/4 and 2*2/2
        (-2.0, 3.0, 1.0, 0.75, 1.0),  # anti-Hebbian
        (-2.0, 3.0, -1.0, 1.0, 0.75),
        (2.0, 3.0, 0.5, 0.875, None),  # potentiative only
        (2.0, 3.0, -0.5, None, 0.875),
        (-2.0, -3.0, 1.0, None, 1.75),  # depressive only
        (-2.0, -3.0, -1.0, 1.75, None),
    ],
)
def test_scalar_signal_sign_modes(fc, lr_post, lr_pre, signal, potentiation, depression):
    update, _ = run_rule(rule(lr_post, lr_pre), fc, PRE, POST, signal=signal)
    assert value(update.potentiation) == potentiation
    assert value(update.depression) == depression


def two_samples():
    return torch.cat([PRE, PRE], dim=1), torch.cat([POST, POST], dim=1)


def test_per_sample_signal_moves_terms_between_halves(fc):
    # sample 0 (M=1): LTP 2*1/2 = 1, LTD 3*1/4 = 0.75
    # sample 1 (M=-2): post term -> depression 2*2*1/2 = 2, pre term -> potentiation 3*2/4 = 1.5
    pre, post = two_samples()
    update, _ = run_rule(rule(), fc, pre, post, signal=torch.tensor([1.0, -2.0]).double())
    assert (value(update.potentiation), value(update.depression)) == (2.5, 2.75)


@pytest.mark.parametrize(
    "reduction, expected",
    [("mean", (1.25, 1.375)), (torch.amax, (1.5, 2.0)), ("sum", (2.5, 2.75))],
)
def test_per_sample_batch_reduction(fc, reduction, expected):
    pre, post = two_samples()
    update, _ = run_rule(
        rule(batch_reduction=reduction), fc, pre, post, signal=torch.tensor([1.0, -2.0]).double()
    )
    assert (value(update.potentiation), value(update.depression)) == expected


def test_per_step_signal(fc):
    # M = (0, 1, -1): xi_post at step 1 meets M=+1 -> LTP 2 * 1/2;
    # xi_pre at step 2 meets M=-1 -> the LTD term flips to potentiation 3 * 1/4.
    signal = torch.tensor([[0.0], [1.0], [-1.0]]).double()
    update, _ = run_rule(rule(), fc, PRE, POST, signal=signal)
    assert (value(update.potentiation), value(update.depression)) == (1.75, 0.0)


def test_signal_none_is_no_modulation_but_traces_advance(fc):
    update, state = run_rule(rule(), fc, PRE, POST, signal=None)
    assert update.delta() is None
    assert state["trace_pre"].item() == 1.25


def test_signal_one_equals_stdp_and_is_linear_in_signal():
    layer = nn.Linear(5, 4).double()
    pre = (torch.rand(8, 3, 5) < 0.3).double()
    post = (torch.rand(8, 3, 4) < 0.3).double()
    kw = dict(tau_post=12.0, tau_pre=7.0)
    stdp, _ = run_rule(STDP(0.3, -0.2, **kw), layer, pre, post)
    mstdp, _ = run_rule(MSTDP(0.3, -0.2, **kw), layer, pre, post, signal=1.0)
    torch.testing.assert_close(mstdp.delta(), stdp.delta())
    tripled, _ = run_rule(MSTDP(0.3, -0.2, **kw), layer, pre, post, signal=3.0)
    torch.testing.assert_close(tripled.delta(), 3 * stdp.delta())
    per_sample, _ = run_rule(
        MSTDP(0.3, -0.2, **kw), layer, pre, post, signal=torch.full((3,), 3.0, dtype=torch.float64)
    )
    torch.testing.assert_close(per_sample.delta(), tripled.delta())


def test_per_step_per_sample_signal_equals_weighted_single_steps():
    layer = nn.Conv1d(2, 3, 3, padding=1).double()
    pre = (torch.rand(5, 4, 2, 6) < 0.4).double()
    post = (torch.rand(5, 4, 3, 6) < 0.3).double()
    signal = torch.randn(5, 4, dtype=torch.float64)
    mstdp = MSTDP(0.5, -0.7, tau_post=9.0, tau_pre=4.0, trace_mode="nearest")
    state0 = mstdp.initial_state(layer, pre[0], post[0])
    fused, _ = mstdp(layer, pre, post, state0, signal)
    state, pot, dep = state0, 0, 0
    for t in range(5):
        for_step, state = mstdp(layer, pre[t : t + 1], post[t : t + 1], state, signal[t])
        pot = pot + (for_step.potentiation if for_step.potentiation is not None else 0)
        dep = dep + (for_step.depression if for_step.depression is not None else 0)
    torch.testing.assert_close(fused.potentiation, pot, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused.depression, dep, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "signal, post_triggered",
    [
        (0.75, True),
        (-1.5, True),
        (torch.tensor([1.0, -2.0, 0.5]), True),  # [B]: constant over the window
        (torch.tensor([[1.0, -2.0, 0.0]]).expand(7, 3), True),
        (torch.linspace(-1.0, 1.0, 21).reshape(7, 3), False),  # varies over time
    ],
)
@pytest.mark.parametrize("layer", [nn.Linear(5, 4), nn.Conv1d(2, 3, 3, padding=1)])
def test_a_signal_constant_over_the_window_takes_the_post_triggered_window(
    monkeypatch, signal, post_triggered, layer
):
    # M constant over the window (per sample or not): M times STDP's window, whose pairs
    # are summed over the post spikes; the same halves as the single steps from a
    # carried state
    from plastorch.rules import stdp as rules_stdp

    layer = layer.double()
    g = torch.Generator().manual_seed(8)
    shape_in, shape_out = ((5,), (4,)) if isinstance(layer, nn.Linear) else ((2, 6), (3, 6))
    pre = (torch.rand(7, 3, *shape_in, generator=g) < 0.4).double()
    post = (torch.rand(7, 3, *shape_out, generator=g) < 0.3).double()
    mstdp = MSTDP(0.5, -0.7, tau_post=9.0, tau_pre=4.0)
    state0 = mstdp.initial_state(layer, pre[0], post[0])
    state0 = {name: torch.rand(v.shape, generator=g, dtype=v.dtype) for name, v in state0.items()}
    calls = []
    original = rules_stdp.stdp_factors_post_triggered
    monkeypatch.setattr(
        rules_stdp,
        "stdp_factors_post_triggered",
        lambda *a, **k: calls.append(1) or original(*a, **k),
    )
    if isinstance(signal, torch.Tensor):
        signal = signal.double()
    fused, fused_state = mstdp(layer, pre, post, state0, signal)
    assert calls == ([1] if post_triggered else [])
    state, pot, dep = state0, 0, 0
    for t in range(7):
        at_t = signal[t] if isinstance(signal, torch.Tensor) and signal.dim() == 2 else signal
        for_step, state = mstdp(layer, pre[t : t + 1], post[t : t + 1], state, at_t)
        pot = pot + (for_step.potentiation if for_step.potentiation is not None else 0)
        dep = dep + (for_step.depression if for_step.depression is not None else 0)
    torch.testing.assert_close(fused.potentiation, pot, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused.depression, dep, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused.delta(), pot - dep, rtol=1e-12, atol=1e-12)
    for name in state:
        torch.testing.assert_close(fused_state[name], state[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "signal, match",
    [
        (float("nan"), "finite"),
        (torch.tensor([1.0, float("inf")]), "NaN or inf"),
        (torch.ones(3), r"\[B\]"),
        (torch.ones(4, 2), r"\[T, B\]"),
        ("1", "number or a tensor"),
    ],
)
def test_bad_signals(fc, signal, match):
    pre, post = two_samples()
    with pytest.raises((ValueError, TypeError), match=match):
        run_rule(
            rule(),
            fc,
            pre,
            post,
            signal=signal.double() if isinstance(signal, torch.Tensor) else signal,
        )


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_a_per_sample_signal_step_on_a_conv_learner_is_one_correlation_per_term(
    monkeypatch, reduction
):
    # a conv learner advances its traces in place and reads only the delta: the LTD term's
    # two signs are one correlation with the signed signal, and the step equals the pure
    # rule's halves
    from plastorch import Learner
    from plastorch.bench.common import Replay
    from plastorch.rules import base

    conv = nn.Conv1d(2, 3, 3, padding=1, bias=False).double()
    rule = MSTDP(0.5, -0.7, tau_post=9.0, tau_pre=4.0, batch_reduction=reduction).double()
    source = Replay()
    learner = Learner(conv, source, rule)
    g = torch.Generator().manual_seed(5)
    pure_state = None
    calls = []  # the correlations computed, by the rules' helpers or by correlate_sum
    for module in (base, importlib.import_module("plastorch.functional.correlate")):
        monkeypatch.setattr(
            module,
            "correlate",
            lambda *a, _original=module.correlate, **k: calls.append(1) or _original(*a, **k),
        )
    for _ in range(4):
        pre = (torch.rand(4, 2, 8, generator=g) < 0.4).double()
        post = (torch.rand(4, 3, 8, generator=g) < 0.4).double()
        signal = torch.randn(4, generator=g, dtype=torch.float64)
        if pure_state is None:
            pure_state = rule.initial_state(conv, pre, post)
        expected, pure_state = rule(conv, pre[None], post[None], pure_state, signal)
        expected = expected.potentiation - expected.depression
        with torch.no_grad():
            source.value = post
            source(conv(pre))
        calls.clear()
        delta = learner.step(signal=signal)
        assert len(calls) == 2  # LTD (both signs of M at once) and LTP
        torch.testing.assert_close(delta, expected, rtol=1e-12, atol=1e-12)
