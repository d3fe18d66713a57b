"""KernelSTDP and the delay-adjusted kernel rules on hand-made spike trains."""

import copy
import math

import pytest
import torch
from torch import nn

from plastorch import Learner
from plastorch.layers import DelayedLinear
from plastorch.rules import (
    MSTDP,
    STDP,
    DelayAdjustedKernelSTDP,
    DelayAdjustedKernelSTDPD,
    Kernel,
    KernelSTDP,
)
from plastorch.rules.kernel import exponential_window, steps_since_window

from .helpers import run_rule


def trains(times, steps, batch=1):
    """[T, B, N] spikes; ``times[n]`` lists the steps at which neuron n fires."""
    out = torch.zeros(steps, batch, len(times), dtype=torch.float64)
    for n, ts in enumerate(times):
        for t in ts:
            out[t, :, n] = 1.0
    return out


def linear_kernel(t, height, slope):
    """height - slope * t on the causal side, -height + slope * |t| on the acausal side."""
    return torch.where(t >= 0, height - slope * t, -height - slope * t)


def exp_stdp_kernel(lr_post, lr_pre, tau_post, tau_pre):
    return Kernel(
        exponential_window,
        lr_causal=lr_post,
        lr_acausal=lr_pre,
        tau_causal=tau_pre,
        tau_acausal=tau_post,
    )


# 2x3 case. Pre: input 0 at 1, input 1 at 2, input 2 at 0 and 4. Post: output 0 at 3
# and 6, output 1 at 2. Kernel 1 - t/4 (t >= 0), -1 + |t|/4 (t < 0):
#   post 0 @3: t_delta = 2, 1, 3  -> 0.5, 0.75, 0.25
#   post 0 @6: t_delta = 5, 4, 2  -> -0.25, 0, 0.5
#   post 1 @2: t_delta = 1, 0, 2  -> 0.75, 1, 0.5
#   pre 2 @4:  latest post before: output 0 @3 (t_delta -1 -> -0.75), output 1 @2 (-2 -> -0.5)
PRE_2X3 = [[1], [2], [0, 4]]
POST_2X3 = [[3, 6], [2]]
POTENTIATION_2X3 = [[0.5, 0.75, 0.75], [0.75, 1.0, 0.5]]
DEPRESSION_2X3 = [[0.25, 0.0, 0.75], [0.0, 0.0, 0.5]]


def test_kernel_stdp_2x3_hand_derived():
    fc = nn.Linear(3, 2, bias=False).double()
    rule = KernelSTDP(Kernel(linear_kernel, height=1.0, slope=0.25))
    update, state = run_rule(rule, fc, trains(PRE_2X3, 8), trains(POST_2X3, 8))
    assert update.potentiation.tolist() == POTENTIATION_2X3
    assert update.depression.tolist() == DEPRESSION_2X3
    assert state["steps_since_pre"].tolist() == [[6.0, 5.0, 3.0]]
    assert state["steps_since_post"].tolist() == [[1.0, 5.0]]


@pytest.mark.parametrize("signal", [-2.0, torch.tensor([-2.0, 0.5])])
def test_modulated_kernel_stdp_scalar_and_per_sample(signal):
    fc = nn.Linear(3, 2, bias=False).double()
    rule = KernelSTDP(Kernel(linear_kernel, height=1.0, slope=0.25), modulated=True)
    pre, post = trains(PRE_2X3, 8, batch=2), trains(POST_2X3, 8, batch=2)
    update, _ = run_rule(rule, fc, pre, post, signal=signal)
    p, d = torch.tensor(POTENTIATION_2X3), torch.tensor(DEPRESSION_2X3)
    if isinstance(signal, float):  # both samples M = -2: halves swap, doubled, twice
        expected = (4 * d, 4 * p)
    else:  # sample 0 M = -2 (swap, x2), sample 1 M = 0.5
        expected = (2 * d + 0.5 * p, 2 * p + 0.5 * d)
    torch.testing.assert_close(update.potentiation, expected[0].double())
    torch.testing.assert_close(update.depression, expected[1].double())


def test_modulated_kernel_without_signal_learns_nothing_but_advances():
    fc = nn.Linear(3, 2, bias=False).double()
    rule = KernelSTDP(lambda t: t, modulated=True)
    update, state = run_rule(rule, fc, trains(PRE_2X3, 8), trains(POST_2X3, 8))
    assert update.delta() is None
    assert state["steps_since_pre"].tolist() == [[6.0, 5.0, 3.0]]


@pytest.mark.parametrize("layer_kind", ["linear", "conv"])
def test_exponential_kernels_equal_nearest_trace_stdp(layer_kind):
    torch.manual_seed(4)
    if layer_kind == "linear":
        layer = nn.Linear(5, 4, bias=False).double()
        pre = (torch.rand(30, 3, 5) < 0.3).double()
        post = (torch.rand(30, 3, 4) < 0.3).double()
    else:
        layer = nn.Conv1d(2, 3, 3, padding=1).double()
        pre = (torch.rand(30, 2, 2, 6) < 0.3).double()
        post = (torch.rand(30, 2, 3, 6) < 0.3).double()
    stdp = STDP(0.7, -0.4, tau_post=6.0, tau_pre=9.0, dt=0.5, trace_mode="nearest")
    kernel = KernelSTDP(exp_stdp_kernel(0.7, -0.4, tau_post=6.0, tau_pre=9.0), dt=0.5)
    expected, _ = run_rule(stdp, layer, pre, post)
    got, _ = run_rule(kernel, layer, pre, post)
    torch.testing.assert_close(got.potentiation, expected.potentiation, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.depression, expected.depression, rtol=1e-12, atol=1e-12)


def test_modulated_exponential_kernels_equal_nearest_mstdp_per_step_signal():
    torch.manual_seed(6)
    fc = nn.Linear(4, 3, bias=False).double()
    pre, post = (torch.rand(20, 2, 4) < 0.3).double(), (torch.rand(20, 2, 3) < 0.3).double()
    signal = torch.randn(20, 2, dtype=torch.float64)
    mstdp = MSTDP(1.0, -0.5, tau_post=4.0, tau_pre=7.0, trace_mode="nearest")
    kernel = KernelSTDP(exp_stdp_kernel(1.0, -0.5, 4.0, 7.0), modulated=True)
    expected, _ = run_rule(mstdp, fc, pre, post, signal=signal)
    got, _ = run_rule(kernel, fc, pre, post, signal=signal)
    torch.testing.assert_close(got.potentiation, expected.potentiation, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.depression, expected.depression, rtol=1e-12, atol=1e-12)


def test_window_equals_single_steps():
    torch.manual_seed(7)
    fc = nn.Linear(4, 3, bias=False).double()
    pre, post = (torch.rand(12, 2, 4) < 0.4).double(), (torch.rand(12, 2, 3) < 0.4).double()
    rule = KernelSTDP(Kernel(linear_kernel, height=1.0, slope=0.1), dt=0.5)
    fused, fused_state = run_rule(rule, fc, pre, post)
    state, total = rule.initial_state(fc, pre[0], post[0]), torch.zeros(3, 4, dtype=torch.float64)
    for t in range(12):
        update, state = rule(fc, pre[t : t + 1], post[t : t + 1], state)
        total = total + (0 if update.delta() is None else update.delta())
    torch.testing.assert_close(fused.delta(), total, rtol=1e-12, atol=1e-12)
    for name in state:
        assert torch.equal(fused_state[name], state[name])


def test_custom_kernel_parameters_survive_a_state_dict_round_trip():
    def gaussian(t, amplitude, width):
        return amplitude * torch.exp(-((t / width) ** 2))

    fc, source = nn.Linear(3, 2, bias=False).double(), nn.Identity()
    rule = KernelSTDP(Kernel(gaussian, amplitude=0.5, width=3.0))
    learner = Learner(fc, source, rule)
    with torch.no_grad():
        rule.kernel_post.amplitude.fill_(-1.25)  # e.g. tuned or annealed during training
    source(torch.ones(1, 2, dtype=torch.float64) + 0 * fc(torch.ones(1, 3, dtype=torch.float64)))
    saved = copy.deepcopy(learner.state_dict())
    assert saved["rule.kernel_post.amplitude"].item() == -1.25
    assert saved["rule.kernel_post.width"].item() == 3.0

    fc2, source2 = nn.Linear(3, 2, bias=False).double(), nn.Identity()
    fc2.load_state_dict(fc.state_dict())
    fresh = Learner(fc2, source2, KernelSTDP(Kernel(gaussian, amplitude=9.0, width=9.0)))
    fresh.load_state_dict(saved)
    assert fresh.rule.kernel_post.amplitude.item() == -1.25
    torch.testing.assert_close(fresh.step(), learner.step(), rtol=0, atol=0)


def test_steps_since_window_counts_from_the_latest_spike():
    s = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    ages = steps_since_window(torch.tensor([0.0, float("inf")]), s)
    assert ages.tolist() == [[0.0, math.inf], [1.0, math.inf], [0.0, 0.0], [1.0, 1.0]]


def test_kernel_arguments_are_checked():
    with pytest.raises(TypeError, match="kernel_post"):
        KernelSTDP(3.0)
    with pytest.raises(ValueError, match="forward"):
        Kernel(linear_kernel, forward=1.0)
    with pytest.raises(ValueError, match="height"):
        Kernel(linear_kernel, height=float("nan"), slope=1.0)
    with pytest.raises(ValueError, match="dt"):
        KernelSTDP(linear_kernel, dt=0.0)
    fc = nn.Linear(3, 2, bias=False).double()
    summed = KernelSTDP(lambda t: t.sum(-1))  # not elementwise
    with pytest.raises(ValueError, match="elementwise"):
        run_rule(summed, fc, trains(PRE_2X3, 8), trains(POST_2X3, 8))
    with pytest.raises(TypeError, match="signal"):
        run_rule(KernelSTDP(linear_kernel), fc, trains(PRE_2X3, 8), trains(POST_2X3, 8), 1.0)


def test_delay_adjusted_needs_a_delayed_layer():
    rule = DelayAdjustedKernelSTDP(lambda t: t)
    with pytest.raises(TypeError, match="DelayedLinear"):
        run_rule(rule, nn.Linear(3, 2), trains(PRE_2X3, 8), trains(POST_2X3, 8))


def delayed(delays, max_delay=6.0, dt=1.0, tolerance=0.0):
    delays = torch.as_tensor(delays, dtype=torch.float64)
    layer = DelayedLinear(
        delays.shape[1],
        delays.shape[0],
        max_delay,
        dt,
        bias=False,
        interp_tolerance=tolerance,
        dtype=torch.float64,
    )
    with torch.no_grad():
        layer.delay.copy_(delays)
    return layer


def test_delay_adjusted_kernel_with_zero_delays_equals_kernel_stdp():
    torch.manual_seed(8)
    layer = delayed(torch.zeros(3, 4), dt=0.5)
    pre, post = (torch.rand(25, 2, 4) < 0.3).double(), (torch.rand(25, 2, 3) < 0.3).double()
    kernel = Kernel(linear_kernel, height=1.0, slope=0.2)
    expected, _ = run_rule(KernelSTDP(kernel, dt=0.5), layer, pre, post)
    got, _ = run_rule(DelayAdjustedKernelSTDP(kernel), layer, pre, post)
    torch.testing.assert_close(got.potentiation, expected.potentiation, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.depression, expected.depression, rtol=1e-12, atol=1e-12)


def delta_or_zero(update):
    delta = update.delta()
    return 0 if delta is None else delta


def test_delay_adjusted_window_equals_single_steps():
    torch.manual_seed(9)
    layer = delayed(torch.rand(3, 4) * 5.0, max_delay=5.0, dt=0.5, tolerance=0.25)
    pre, post = (torch.rand(16, 3, 4) < 0.3).double(), (torch.rand(16, 3, 3) < 0.3).double()
    rule = DelayAdjustedKernelSTDP(Kernel(linear_kernel, height=1.0, slope=0.3), modulated=True)
    signal = torch.randn(16, 3, dtype=torch.float64)
    fused, fused_state = run_rule(rule, layer, pre, post, signal=signal)
    state, total = rule.initial_state(layer, pre[0], post[0]), 0
    for t in range(16):
        update, state = rule(layer, pre[t : t + 1], post[t : t + 1], state, signal[t])
        total = total + delta_or_zero(update)
    torch.testing.assert_close(fused.delta(), total, rtol=1e-12, atol=1e-12)
    for name in state:
        assert torch.equal(fused_state[name], state[name])


def test_delay_adjusted_callable_reduction_reduces_per_sample_halves():
    torch.manual_seed(10)
    layer = delayed(torch.rand(3, 4) * 5.0, max_delay=5.0)
    pre, post = (torch.rand(16, 3, 4) < 0.3).double(), (torch.rand(16, 3, 3) < 0.3).double()
    kernel = Kernel(linear_kernel, height=1.0, slope=0.3)
    peak, _ = run_rule(
        DelayAdjustedKernelSTDP(kernel, batch_reduction=torch.amax), layer, pre, post
    )
    halves = [
        run_rule(DelayAdjustedKernelSTDP(kernel), layer, pre[:, b : b + 1], post[:, b : b + 1])[0]
        for b in range(3)
    ]
    zeros = torch.zeros(3, 4, dtype=torch.float64)
    for got, name in ((peak.potentiation, "potentiation"), (peak.depression, "depression")):
        per_sample = [getattr(h, name) if getattr(h, name) is not None else zeros for h in halves]
        torch.testing.assert_close(got, torch.stack(per_sample).amax(0), rtol=0, atol=0)


def test_delay_kernel_updates_the_delays_with_a_positive_output_lengthening():
    layer = delayed([[2.0]])
    pre, post = trains([[0]], 6), trains([[5]], 6)
    rule = DelayAdjustedKernelSTDPD(lambda t: 0.1 * t)  # toward t_post - t_pre = 5
    assert rule.target == "delay"
    update, _ = run_rule(rule, layer, pre, post)
    assert round(update.potentiation.item(), 12) == 0.3
    assert update.depression is None


def family():
    """Every rule of this family with a layer it trains (name, rule factory, layer factory)."""
    from plastorch.rules import (
        DelayAdjustedMSTDPD,
        DelayAdjustedSTDP,
        ExpSTDP,
        LinearHomeostasis,
        TripletSTDP,
    )

    def delayed_layer():
        return DelayedLinear(4, 3, max_delay=3.0, dtype=torch.float64)

    def linear():
        return nn.Linear(4, 3).double()

    return [
        ("kernel", lambda: KernelSTDP(exp_stdp_kernel(0.5, -0.6, 5.0, 5.0)), linear, None),
        ("delay-weights", lambda: DelayAdjustedSTDP(0.5, -0.6, 5.0, 5.0), delayed_layer, None),
        ("delay-delays", lambda: DelayAdjustedMSTDPD(-0.5, 0.6, 5.0, 5.0), delayed_layer, 1.0),
        ("homeostasis-bias", lambda: LinearHomeostasis(0.1, 100.0, "bias"), linear, None),
        ("exp", lambda: ExpSTDP(0.5, a_minus=0.3), linear, None),
        ("triplet", lambda: TripletSTDP(0.5, 0.4, 0.6, 0.2), linear, None),
    ]


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("bound_name", ["Hard", "Soft", "PowerLaw", "Exponential"])
def test_every_rule_with_every_bound_single_and_multi_step(index, bound_name):
    from plastorch import bounds

    name, make_rule, make_layer, signal = family()[index]
    torch.manual_seed(index)
    pre = (torch.rand(8, 2, 4) < 0.5).double()
    post = (torch.rand(8, 2, 3) < 0.5).double()
    results = {}
    for mode in ("single", "multi"):
        torch.manual_seed(100)
        layer, source = make_layer(), nn.Identity()
        rule = make_rule()
        bound = getattr(bounds, bound_name)(-0.5, 2.0)
        target = getattr(layer, rule.target)
        with torch.no_grad():
            target.uniform_(-0.4, 1.9)
        learner = Learner(layer, source, rule, bound=bound, step_mode=mode, apply=True)
        if mode == "single":
            for t in range(8):
                layer(pre[t])
                source(post[t])
                learner.step(signal, scale=50.0)
        else:
            layer(pre)
            source(post)
            learner.step(signal, scale=50.0)
        after = getattr(layer, rule.target).detach()
        assert bool(((after >= -0.5) & (after <= 2.0)).all()), name
        # without a bound and without applying, a window equals its single steps
        torch.manual_seed(200)  # the same layer for both modes
        layer, source = make_layer(), nn.Identity()
        learner = Learner(layer, source, make_rule(), step_mode=mode)
        total = 0
        for t in range(8) if mode == "single" else [None]:
            layer(pre if t is None else pre[t])
            source(post if t is None else post[t])
            total = total + learner.step(signal)
        results[mode] = total
    torch.testing.assert_close(results["single"], results["multi"], rtol=1e-10, atol=1e-12)


def test_delay_adjusted_sub_windows_and_zero_max_delay(monkeypatch):
    import plastorch.rules.kernel as kernel_module

    torch.manual_seed(12)
    layer = delayed(torch.rand(3, 4) * 5.0, max_delay=5.0, dt=0.5)
    pre, post = (torch.rand(16, 2, 4) < 0.4).double(), (torch.rand(16, 2, 3) < 0.4).double()
    rule = DelayAdjustedKernelSTDP(Kernel(linear_kernel, height=1.0, slope=0.3))
    whole, whole_state = run_rule(rule, layer, pre, post)
    monkeypatch.setattr(kernel_module, "_ARRIVALS_PER_CHUNK", 1)  # one step per sub-window
    chunked, chunked_state = run_rule(rule, layer, pre, post)
    assert torch.equal(whole.potentiation, chunked.potentiation)
    assert torch.equal(whole.depression, chunked.depression)
    for name in whole_state:
        assert torch.equal(whole_state[name], chunked_state[name])
    # no room for delays: the rule is undelayed kernel STDP
    flat = delayed(torch.zeros(3, 4), max_delay=0.0, dt=0.5)
    expected, _ = run_rule(
        KernelSTDP(Kernel(linear_kernel, height=1.0, slope=0.3), dt=0.5), flat, pre, post
    )
    got, _ = run_rule(rule, flat, pre, post)
    torch.testing.assert_close(got.delta(), expected.delta(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("split", [None, 13])
def test_delay_adjusted_random_trains_equal_the_synapse_by_synapse_reference(seed, split):
    # random amplitudes, dt = 0.5, delays off the step grid; a window split in two carries
    # its state (latest arrivals, latest post spikes, the ring of sent spikes) across
    from plastorch.bench.common import delay_stdp_reference

    torch.manual_seed(seed)
    steps, batch, n_in, n_out = 40, 2, 4, 3
    layer = DelayedLinear(n_in, n_out, max_delay=6.0, dt=0.5, bias=False).double()
    pre = (torch.rand(steps, batch, n_in) < 0.3).double() * (1 + torch.rand(steps, batch, n_in))
    post = (torch.rand(steps, batch, n_out) < 0.2).double() * (1 + torch.rand(steps, batch, n_out))
    rates = dict(lr_causal=1.0, lr_acausal=-0.7, tau_causal=3.0, tau_acausal=5.0)
    for cls in (DelayAdjustedKernelSTDP, DelayAdjustedKernelSTDPD):
        rule = cls(Kernel(exponential_window, **rates)).double()
        state = rule.initial_state(layer, pre[0], post[0])
        cuts = [0, steps] if split is None else [0, split, steps]
        potentiation = depression = 0
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            update, state = rule(layer, pre[lo:hi], post[lo:hi], state)
            potentiation = potentiation + update.potentiation
            depression = depression + update.depression

        def kernel(t):
            return exponential_window(torch.as_tensor(t, dtype=torch.float64), **rates)

        delay = layer.delay.detach().clamp(0.0, 6.0)
        expected = delay_stdp_reference(pre, post, delay, 0.5, kernel, kernel)
        assert float(expected[0].sum()) > 0 and float(expected[1].sum()) > 0
        torch.testing.assert_close(potentiation, expected[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(depression, expected[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sides", ["both", "causal", "acausal"])
def test_exponential_window_has_the_formulas_bits_in_place_or_not(sides):
    # the in-place evaluation (no grad needed) and the branch skipped when every t_delta
    # is on one side give the bits of the two-sided formula
    g = torch.Generator().manual_seed(9)
    t = torch.randn(5, 40000, generator=g, dtype=torch.float64) * 30  # the in-place path
    t = {"both": t, "causal": t.abs(), "acausal": -t.abs() - 1}[sides]
    lr_c, lr_a = torch.tensor(0.7, dtype=torch.float64), -0.4
    magnitude = t.abs()
    expected = torch.where(
        t >= 0, lr_c * torch.exp(-magnitude / 6.0), lr_a * torch.exp(-magnitude / 9.0)
    )
    assert torch.equal(exponential_window(t, lr_c, lr_a, 6.0, 9.0), expected)
    # with a parameter that needs its gradient, autograd sees the formula
    lr = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    value = exponential_window(t, lr, lr_a, 6.0, 9.0)
    assert torch.equal(value.detach(), expected)
    value.sum().backward()
    torch.testing.assert_close(lr.grad, torch.exp(-magnitude / 6.0)[t >= 0].sum())
    small = t[:, :40]  # few entries: the formula itself
    assert torch.equal(exponential_window(small, lr_c, lr_a, 6.0, 9.0), expected[:, :40])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("steps", [1, 3, 40])
@pytest.mark.parametrize("numba", [True, False])
def test_ages_of_a_window_every_path_equals_the_recursion(monkeypatch, dtype, steps, numba):
    # a(t) = 0 at a spike, else a(t-1) + 1, from ages carried in (inf: never spiked);
    # and the ages just before each step, a(t-1) + 1, with the last one
    from plastorch.functional import compiled
    from plastorch.rules.kernel import _steps_since_before

    if numba and not compiled.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(compiled, "_ENABLED", numba)
    calls = []
    original = compiled._ages_unchecked
    monkeypatch.setattr(
        compiled, "_ages_unchecked", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    g = torch.Generator().manual_seed(10)
    spikes = (torch.rand(steps, 2, 2500, generator=g) < 0.1).to(dtype)  # > 1 kernel block
    age = torch.randint(0, 50, (2, 2500), generator=g).to(dtype)
    age[0, :300] = math.inf
    before, after, state = [], [], age
    for t in range(steps):
        before.append(state + 1)
        state = torch.where(spikes[t] != 0, 0.0, state + 1).to(dtype)
        after.append(state)
    assert torch.equal(steps_since_window(age, spikes), torch.stack(after))
    got, last = _steps_since_before(age, spikes)
    assert torch.equal(got, torch.stack(before))
    assert torch.equal(last, state)
    assert len(calls) == (2 if numba and steps >= compiled.SCAN_MIN_STEPS else 0)
