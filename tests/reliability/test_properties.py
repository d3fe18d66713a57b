"""Property-based tests (hypothesis) of the core invariants over random shapes and geometries."""

import copy

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from plastorch import Learner
from plastorch.bounds import Exponential, Hard, PowerLaw, Soft
from plastorch.functional import Update, correlate
from plastorch.rules import MSTDP, MSTDPET, STDP

from ..functional.test_correlate import conv_reference

PROFILE = settings(max_examples=40, deadline=None, derandomize=True)


@st.composite
def problems(draw, conv=None):
    """A random layer, a window of spikes for it, and rule hyperparameters."""
    steps = draw(st.integers(1, 6))
    batch = draw(st.integers(1, 3))
    use_conv = draw(st.booleans()) if conv is None else conv
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    if use_conv:
        groups = draw(st.sampled_from([1, 2]))
        cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
        kernel = draw(st.integers(1, 3))
        stride = draw(st.integers(1, 2))
        padding = draw(st.integers(0, 2))
        dilation = draw(st.integers(1, 2))
        size = draw(st.integers(kernel * dilation + 1, 7))
        layer = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups).double()
        pre_shape = (cin, size, size)
    else:
        fin, fout = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        layer = nn.Linear(fin, fout, bias=False).double()
        pre_shape = (fin,)
    with torch.no_grad():
        out_shape = layer(torch.zeros(1, *pre_shape, dtype=torch.float64)).shape[1:]
    p_pre, p_post = draw(st.floats(0.1, 0.7)), draw(st.floats(0.1, 0.7))
    pre = (torch.rand(steps, batch, *pre_shape, generator=g) < p_pre).double()
    post = (torch.rand(steps, batch, *out_shape, generator=g) < p_post).double()
    hyper = dict(
        lr_post=draw(st.floats(-2, 2).filter(lambda v: abs(v) > 1e-3)),
        lr_pre=draw(st.floats(-2, 2).filter(lambda v: abs(v) > 1e-3)),
        tau_post=draw(st.floats(0.5, 50)),
        tau_pre=draw(st.floats(0.5, 50)),
        trace_mode=draw(st.sampled_from(["cumulative", "nearest"])),
    )
    return layer, pre, post, hyper


def run(rule, layer, pre, post, signal=None):
    update, _ = rule(layer, pre, post, rule.initial_state(layer, pre[0], post[0]), signal)
    delta = update.delta()
    return torch.zeros_like(layer.weight) if delta is None else delta


RULES = [
    lambda h: STDP(**h),
    lambda h: MSTDP(**h),
    lambda h: MSTDPET(**h, tau_eligibility=7.0, per_sample_signal=True),
]


def signal_for(rule, pre):
    """A positive scalar signal for modulated rules, none for STDP."""
    return 0.7 if rule.modulated else None


@PROFILE
@given(problems(), st.integers(0, 2))
def test_zero_spikes_give_zero_update(problem, which):
    layer, pre, post, hyper = problem
    rule = RULES[which](hyper)
    # no pre spikes: both traces of the pre side are zero; no post spikes: likewise
    for a, b in ((torch.zeros_like(pre), post), (pre, torch.zeros_like(post))):
        assert torch.count_nonzero(run(rule, layer, a, b, signal_for(rule, pre))) == 0


@PROFILE
@given(problems(), st.integers(0, 2))
def test_swapping_both_learning_rate_signs_negates(problem, which):
    layer, pre, post, hyper = problem
    rule = RULES[which](hyper)
    flipped = RULES[which]({**hyper, "lr_post": -hyper["lr_post"], "lr_pre": -hyper["lr_pre"]})
    signal = signal_for(rule, pre)
    torch.testing.assert_close(
        run(flipped, layer, pre, post, signal), -run(rule, layer, pre, post, signal)
    )


@PROFILE
@given(problems(), st.integers(1, 2), st.floats(-3, 3))
def test_update_is_linear_in_a_scalar_signal(problem, which, factor):
    layer, pre, post, hyper = problem
    rule = RULES[which](hyper)
    torch.testing.assert_close(
        run(rule, layer, pre, post, 0.5 * factor), factor * run(rule, layer, pre, post, 0.5)
    )


@PROFILE
@given(problems(), st.integers(0, 2), st.data())
def test_window_equals_step_by_step(problem, which, data):
    layer, pre, post, hyper = problem
    rule = RULES[which](hyper)
    steps, batch = pre.shape[:2]
    signal = None
    if rule.modulated:
        signal = torch.tensor(
            data.draw(st.lists(st.floats(-2, 2), min_size=steps * batch, max_size=steps * batch)),
            dtype=torch.float64,
        ).reshape(steps, batch)
    fused = run(rule, layer, pre, post, signal)
    state = rule.initial_state(layer, pre[0], post[0])
    total = torch.zeros_like(layer.weight)
    for t in range(steps):
        update, state = rule(
            layer, pre[t : t + 1], post[t : t + 1], state, None if signal is None else signal[t]
        )
        if update.delta() is not None:
            total = total + update.delta()
    torch.testing.assert_close(fused, total, rtol=1e-9, atol=1e-11)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(problems(conv=True))
def test_correlate_equals_explicit_reference(problem):
    layer, pre, post, _ = problem
    a, b = pre.flatten(0, 1), post.flatten(0, 1) * 0.5
    torch.testing.assert_close(correlate(layer, a, b), conv_reference(layer, a, b))


BOUNDS = [
    lambda lo, hi: Hard(lo, hi),
    lambda lo, hi: Soft(lo, hi),
    lambda lo, hi: PowerLaw(lo, hi, mu=0.7),
    lambda lo, hi: Exponential(lo, hi, beta=2.0),
]


@PROFILE
@given(
    st.integers(0, 3),
    st.floats(-5, 0),
    st.floats(0.1, 5),
    st.floats(-30, 30),
    st.integers(0, 2**16),
)
def test_bounds_keep_weights_in_range_for_any_update_size(which, lo, width, log_scale, seed):
    hi = lo + width
    g = torch.Generator().manual_seed(seed)
    weight = lo + width * torch.rand(20, generator=g, dtype=torch.float64)
    scale = 10.0 ** (log_scale / 3)
    update = Update(
        torch.rand(20, generator=g, dtype=torch.float64) * scale,
        torch.rand(20, generator=g, dtype=torch.float64) * scale,
    )
    new = weight + BOUNDS[which](lo, hi)(weight, update)
    assert bool(torch.isfinite(new).all())
    assert new.min() >= lo and new.max() <= hi


@PROFILE
@given(problems(), st.integers(0, 2))
def test_float32_agrees_with_float64(problem, which):
    # Stated tolerance: relative 1e-5 of the update's scale (float32 has ~7 digits and
    # the sums here have at most a few hundred terms).
    layer, pre, post, hyper = problem
    rule = RULES[which](hyper)
    signal = signal_for(rule, pre)
    exact = run(rule, layer, pre, post, signal)
    single = run(rule, copy.deepcopy(layer).float(), pre.float(), post.float(), signal)
    tolerance = 1e-5 * max(1.0, exact.abs().max().item())
    assert (single.double() - exact).abs().max().item() <= tolerance


@PROFILE
@given(problems(conv=False), st.floats(0.01, 10))
def test_learner_update_is_linear_in_scale(problem, scale):
    layer, pre, post, hyper = problem

    class Replay(nn.Module):
        def __init__(self, spikes):
            super().__init__()
            self.spikes = spikes

        def forward(self, x):
            return self.spikes

    deltas = []
    for factor in (1.0, scale):
        source = Replay(post)
        learner = Learner(layer, source, STDP(**hyper), step_mode="multi")
        source(layer(pre))
        deltas.append(learner.step(scale=factor))
        learner.remove()
    torch.testing.assert_close(deltas[1], scale * deltas[0])


@st.composite
def small_convs(draw):
    """A random Conv1d/2d/3d (stride, padding, dilation, up to 2 groups) and its factors."""
    spatial = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(spatial))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(spatial))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(spatial))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(spatial))
    size = tuple(draw(st.integers(k * d, k * d + 5)) for k, d in zip(kernel, dilation))
    batch = draw(st.integers(1, 3))
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[spatial - 1]
    layer = conv(cin, cout, kernel, stride, padding, dilation, groups, bias=False).double()
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    pre = torch.rand(batch, cin, *size, generator=g, dtype=torch.float64)
    with torch.no_grad():
        post = torch.randn(layer(pre).shape, generator=g, dtype=torch.float64)
    return layer, pre, post


@PROFILE
@given(small_convs())
def test_the_dense_conv_kernels_are_the_weight_gradient(case):
    # the unfold kernel (strided columns, into a workspace or not) and oneDNN's, as
    # correlate chooses them, against autograd of the layer itself
    from plastorch.functional import correlation_scope
    from plastorch.functional.correlate import _columns
    from plastorch.functional.workspace import Workspace

    layer, pre, post = case
    (expected,) = torch.autograd.grad((layer(pre) * post).sum(), layer.weight)
    torch.testing.assert_close(correlate(layer, pre, post, sparse=False), expected)
    with correlation_scope(Workspace()):
        torch.testing.assert_close(correlate(layer, pre, post, sparse=False), expected)
        torch.testing.assert_close(correlate(layer, pre, post, sparse=False), expected)
    if pre.dim() == 4:  # F.unfold exists for 2 spatial dims
        columns = _columns(
            pre, layer.kernel_size, layer.dilation, layer.padding, layer.stride, post.shape[2:]
        )
        unfolded = torch.nn.functional.unfold(
            pre, layer.kernel_size, layer.dilation, layer.padding, layer.stride
        )
        assert torch.equal(columns, unfolded)
