"""The state of silent neurons decays to zero, never into the subnormal range.

With a decay of 0.75 per step a float32 trace falls below the smallest normal
number after ~305 silent steps, and, rounded to nearest, would then stay at the
smallest subnormal for good (0.75 * 2^-149 rounds back to 2^-149): every later
GEMM over it would run through the CPU's slow subnormal path. The learners run
450 steps in which some inputs and outputs never fire: no float state of theirs
may hold a subnormal, the silent neurons' traces must be exactly 0, and the
updates must agree with the same run in float64 (where nothing is near the
subnormal range).
"""

import copy
import math

import pytest
import torch
from torch import nn

from plastorch import Learner
from plastorch.bench.common import Replay
from plastorch.rules import MSTDPET, STDP, Kernel, KernelSTDP
from plastorch.rules.kernel import exponential_window

TAU = -1.0 / math.log(0.75)
STEPS = 450
SILENT_IN, SILENT_OUT = 3, 2

PAIR = dict(lr_post=1.0, lr_pre=-0.5, tau_post=TAU, tau_pre=TAU)
RULES = {
    "stdp": lambda: STDP(**PAIR),
    "stdp nearest": lambda: STDP(**PAIR, trace_mode="nearest"),
    "mstdpet": lambda: MSTDPET(**PAIR, tau_eligibility=TAU),
    "mstdpet per-sample": lambda: MSTDPET(**PAIR, tau_eligibility=TAU, per_sample_signal=True),
    "mstdpet per-sample combined": lambda: MSTDPET(
        **PAIR, tau_eligibility=TAU, per_sample_signal=True, eligibility="combined"
    ),
}


def _subnormal(x: torch.Tensor) -> torch.Tensor:
    magnitude = x.abs()
    return (magnitude > 0) & (magnitude < torch.finfo(x.dtype).tiny)


def _run(rule, dtype, step_mode, window, pres, posts, signals):
    layer = nn.Linear(6, 4, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.1)
    layer = layer.to(dtype)
    source = Replay()
    learner = Learner(layer, source, rule, step_mode=step_mode, apply=True)
    total = torch.zeros(4, 6, dtype=torch.float64)
    for start in range(0, STEPS, window):
        pre, post = pres[start : start + window].to(dtype), posts[start : start + window]
        if step_mode == "single":
            pre, post = pre[0], post[0]
        with torch.no_grad():
            source.value = post.to(dtype)
            source(layer(pre))
        signal = None if signals is None else signals[start : start + window].to(dtype)
        if signal is not None and step_mode == "single":
            signal = signal[0]
        delta = learner.step() if signal is None else learner.step(signal=signal)
        total += delta.double()
    state = {name: learner._buffers[name] for name in learner.state_names}
    return total, state


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("step_mode, window", [("single", 1), ("multi", 25)])
def test_silent_neurons_state_reaches_zero_and_updates_match_float64(name, step_mode, window):
    g = torch.Generator().manual_seed(3)
    batch = 2
    pres = (torch.rand(STEPS, batch, 6, generator=g) < 0.3).float()
    posts = (torch.rand(STEPS, batch, 4, generator=g) < 0.3).float()
    pres[5:, :, :SILENT_IN] = 0.0  # silent after the first steps
    posts[5:, :, :SILENT_OUT] = 0.0
    rule = RULES[name]()
    signals = None
    if rule.modulated:
        shape = (STEPS, batch) if rule.per_sample_signal else (STEPS, 1)
        signals = torch.randn(shape, generator=g)
        if step_mode == "single" and not rule.per_sample_signal:
            signals = signals[:, 0]
    total32, state32 = _run(
        copy.deepcopy(rule), torch.float32, step_mode, window, pres, posts, signals
    )
    total64, state64 = _run(rule, torch.float64, step_mode, window, pres, posts, signals)

    subnormal = [key for key, value in state32.items() if bool(_subnormal(value).any())]
    assert subnormal == []
    assert bool(state32["trace_pre"][..., :SILENT_IN].eq(0).all())
    assert bool(state32["trace_post"][..., :SILENT_OUT].eq(0).all())
    # float64 still holds the decayed values (0.75^445 ~ 1e-56): normal there
    assert bool(state64["trace_pre"][..., :SILENT_IN].gt(0).all())
    torch.testing.assert_close(total32, total64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_kernel_long_after_its_spike_is_flushed_not_subnormal(dtype):
    # exp(-95) = 5.6e-42 is subnormal in float32 (normal in float64): a pre spike 95
    # steps before a post spike pairs with nothing in float32
    window = Kernel(exponential_window, lr_causal=1.0, lr_acausal=-1.0, tau_causal=1.0,
                    tau_acausal=1.0)  # fmt: skip
    rule = KernelSTDP(window)
    layer = nn.Linear(1, 1, bias=False).to(dtype)
    pre, post = torch.zeros(1, 1, 1, dtype=dtype), torch.ones(1, 1, 1, dtype=dtype)
    state = rule.initial_state(layer, pre[0], post[0])
    state["steps_since_pre"].fill_(94.0)  # the pre spike was 95 steps before this one
    update, _ = rule(layer, pre, post, state)
    delta = update.delta()
    value = 0.0 if delta is None else delta.item()  # (None: no term left to correlate)
    expected = 0.0 if dtype == torch.float32 else math.exp(-95.0)
    assert value == pytest.approx(expected, rel=1e-12, abs=0.0)
