"""Decayed state is flushed to zero once subnormal (CPU float32/float64/bfloat16).

Decays of exactly 1/2 keep every value a power of two: after k steps from 1 the
trace is 2^-k, normal down to 2^-126 (float32's smallest normal, ``finfo.tiny``),
and the next decay would give the subnormal 2^-127, stored as 0.
"""

import math

import pytest
import torch

from plastorch.functional import (
    compiled,
    cumulative_trace_at_end,
    discounted_reverse_sum,
    stdp_factors,
    trace,
    trace_,
    trace_cumulative,
    trace_nearest,
    trace_window,
)
from plastorch.functional import traces as traces_module
from plastorch.functional.numerics import flush_subnormal_, flushes, largest_subnormal
from plastorch.functional.traces import decay_

FLUSHED = [torch.float32, torch.float64, torch.bfloat16]
# the exponent of the smallest normal number: 2^-126 (float32, bfloat16), 2^-1022
MIN_EXPONENT = {torch.float32: 126, torch.bfloat16: 126, torch.float64: 1022}


def _has_subnormal(x: torch.Tensor) -> bool:
    tiny = torch.finfo(x.dtype).tiny
    magnitude = x.double().abs() if x.dtype != torch.float64 else x.abs()
    return bool(((magnitude > 0) & (magnitude < tiny)).any())


@pytest.fixture(params=["compiled", "torch"])
def path(request, monkeypatch):
    if request.param == "compiled":
        if not compiled.available():
            pytest.skip("numba is not installed")
        monkeypatch.setattr(compiled, "SCAN_MIN_STEPS", 1)
    else:
        monkeypatch.setattr(compiled, "_ENABLED", False)
    return request.param


@pytest.mark.parametrize("dtype", FLUSHED)
def test_flush_hand_values(dtype):
    tiny = torch.finfo(dtype).tiny
    special = [1.0, -1.0, tiny, -tiny, 0.0, math.inf, -math.inf]
    subnormal = [tiny / 2, -tiny / 4, largest_subnormal(dtype), -largest_subnormal(dtype)]
    x = torch.tensor([*special, *subnormal, math.nan], dtype=dtype)
    assert _has_subnormal(x)
    assert flush_subnormal_(x) is x
    assert x[: len(special)].tolist() == special
    assert x[len(special) : -1].tolist() == [0.0] * len(subnormal)
    assert math.isnan(x[-1].item())


def test_largest_subnormal_is_one_ulp_below_the_smallest_normal():
    assert largest_subnormal(torch.float32) == 2.0**-126 - 2.0**-149
    assert largest_subnormal(torch.float64) == 2.0**-1022 - 2.0**-1074
    assert largest_subnormal(torch.bfloat16) == 2.0**-126 - 2.0**-133


def test_float16_integers_and_other_devices_are_left_alone():
    half = torch.tensor([2.0**-20, 1.0], dtype=torch.float16)  # a float16 subnormal
    assert flush_subnormal_(half).tolist() == [2.0**-20, 1.0]
    assert not flushes(half)
    assert not flushes(torch.zeros(2, dtype=torch.int64))
    assert not flushes(torch.zeros(2, device="meta"))
    assert flushes(torch.zeros(2)) and flushes(torch.zeros(2, dtype=torch.float64))


def test_flush_of_a_tensor_that_requires_grad_is_differentiable():
    x = torch.tensor([1e-39, 2.0], requires_grad=True)
    y = flush_subnormal_(x * 1.0)
    assert y.tolist() == [0.0, 2.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0]  # the flushed entry is constant


@pytest.mark.parametrize("dtype", FLUSHED)
def test_decay_in_place_reaches_zero_instead_of_a_subnormal(dtype):
    x = torch.ones(3, dtype=dtype)
    last = MIN_EXPONENT[dtype]
    for k in range(1, last + 3):
        decay_(x, 0.5)
        expected = 2.0**-k if k <= last else 0.0
        assert x.tolist() == [expected] * 3, k


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_decay_above_one_half_no_longer_sticks_at_the_smallest_subnormal(dtype):
    # Rounded to nearest, the smallest subnormal times 0.95 is itself again: without
    # the flush a silent neuron's trace would stay subnormal for good.
    smallest = torch.tensor(2.0 ** -(149 if dtype == torch.float32 else 1074), dtype=dtype)
    assert (smallest * 0.95).item() == smallest.item()
    x = torch.ones(1, dtype=dtype)
    for _ in range(20000):
        decay_(x, 0.95)
        assert not _has_subnormal(x)
    assert x.item() == 0.0


def test_one_step_traces_flush_the_decay_then_add_the_spike():
    tiny = torch.finfo(torch.float32).tiny  # 2^-126: halved, a subnormal
    x = torch.tensor([tiny, tiny, 4 * tiny])
    spikes = torch.tensor([0.0, 1.0, 0.0])
    expected = [0.0, 1.0, 2 * tiny]
    assert trace_cumulative(x, spikes, 0.5).tolist() == expected
    assert trace_nearest(x, spikes, 0.5).tolist() == expected
    assert trace(x, spikes, 0.5, mode="nearest").tolist() == expected
    assert trace_cumulative(x, spikes, 0.5, amplitude=3.0).tolist() == [0.0, 3.0, 2 * tiny]
    assert trace_(x.clone(), spikes, 0.5).tolist() == expected


@pytest.mark.parametrize("mode", ["cumulative", "nearest"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_window_scan_hand_values(path, mode, dtype, monkeypatch):
    monkeypatch.setattr(traces_module, "_CLOSED_FORM_MAX_NUMEL", 0)  # the scan
    last = MIN_EXPONENT[dtype]
    steps = last + 5
    spikes = torch.zeros(steps, 2, dtype=dtype)
    spikes[-1, 1] = 1.0  # a spike after the flush starts the trace again
    out = trace_window(torch.ones(2, dtype=dtype), spikes, 0.5, mode=mode)
    expected = [2.0 ** -(t + 1) if t + 1 <= last else 0.0 for t in range(steps)]
    assert out[:, 0].tolist() == expected
    assert out[:-1, 1].tolist() == expected[:-1]
    assert out[-1, 1].item() == 1.0


def test_nearest_closed_form_flushes_as_the_recursion(monkeypatch):
    steps = 130
    spikes = torch.zeros(steps, 3)
    spikes[0, 1] = spikes[2, 2] = 1.0
    start = torch.tensor([1.0, 1.0, 0.25])
    monkeypatch.setattr(compiled, "_ENABLED", False)  # (else the compiled scan)
    closed = trace_window(start, spikes, 0.5, mode="nearest")
    monkeypatch.setattr(traces_module, "_CLOSED_FORM_MAX_NUMEL", 0)
    recursion = trace_window(start, spikes, 0.5, mode="nearest")
    assert torch.equal(closed, recursion)
    assert closed[125:, 0].tolist() == [2.0**-126, 0.0, 0.0, 0.0, 0.0]
    assert not _has_subnormal(closed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reverse_sum_hand_values(path, dtype):
    last = MIN_EXPONENT[dtype]
    steps = last + 4
    values = torch.zeros(steps, 1, dtype=dtype)
    values[-1] = 1.0
    out = discounted_reverse_sum(values, 0.5)
    # R(s) = 2^-(T-1-s), flushed below 2^-last
    expected = [2.0 ** -(steps - 1 - s) if steps - 1 - s <= last else 0.0 for s in range(steps)]
    assert out.flatten().tolist() == expected


def test_trace_at_end_of_a_silent_window_is_zero():
    tiny = torch.finfo(torch.float32).tiny
    end = cumulative_trace_at_end(torch.tensor([tiny, 1.0]), torch.zeros(2, 2), 0.5)
    assert end.tolist() == [0.0, 0.25]


@pytest.mark.parametrize("inplace", [True, False])
def test_one_step_stdp_factors_flush_both_traces(inplace):
    tiny = torch.finfo(torch.float32).tiny
    trace_pre, trace_post = torch.tensor([[tiny, 1.0]]), torch.tensor([[tiny]])
    pre, post = torch.zeros(1, 1, 2), torch.zeros(1, 1, 1)
    factors = stdp_factors(
        pre, post, trace_pre, trace_post, decay_pre=0.5, decay_post=0.5, inplace=inplace
    )
    assert factors.trace_pre.tolist() == [[[0.0, 0.5]]]
    assert factors.trace_post_before.tolist() == [[[0.0]]]
    assert factors.next_trace_post.tolist() == [[0.0]]
