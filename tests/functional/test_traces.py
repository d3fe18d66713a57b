import math

import pytest
import torch

from plastorch.functional import (
    decay_factor,
    discounted_reverse_sum,
    trace,
    trace_cumulative,
    trace_nearest,
    trace_window,
    trace_window_before,
)
from plastorch.functional.traces import decay_

SPIKES = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])


def test_decay_factor_is_exact_exponential():
    assert decay_factor(1.0, 20.0) == pytest.approx(math.exp(-1 / 20))
    assert decay_factor(0.5, 10.0) == pytest.approx(math.exp(-0.05))


def test_cumulative_trace_hand_values():
    # x = 0.5 x + s: 1, 0.5, 1.25, 1.625, 0.8125
    out = trace_window(torch.zeros(1), SPIKES[:, None], 0.5)
    assert out.flatten().tolist() == [1.0, 0.5, 1.25, 1.625, 0.8125]


def test_cumulative_trace_amplitude():
    out = trace_window(torch.zeros(1), SPIKES[:, None], 0.5, amplitude=2.0)
    assert out.flatten().tolist() == [2.0, 1.0, 2.5, 3.25, 1.625]


def test_nearest_trace_hand_values():
    # reset to 1 on a spike, else halve: 1, 0.5, 1, 1, 0.5
    out = trace_window(torch.zeros(1), SPIKES[:, None], 0.5, mode="nearest")
    assert out.flatten().tolist() == [1.0, 0.5, 1.0, 1.0, 0.5]


def test_window_starts_from_carried_state():
    out = trace_window(torch.tensor([4.0]), torch.zeros(2, 1), 0.5)
    assert out.flatten().tolist() == [2.0, 1.0]
    out = trace_window(torch.tensor([4.0]), torch.zeros(2, 1), 0.5, mode="nearest")
    assert out.flatten().tolist() == [2.0, 1.0]


@pytest.mark.parametrize("mode", ["cumulative", "nearest"])
def test_window_equals_single_steps(mode):
    spikes = (torch.rand(7, 3, 4) < 0.4).double()
    x = torch.rand(3, 4, dtype=torch.float64)
    window = trace_window(x, spikes, 0.8, 1.5, mode)
    for t in range(7):
        x = trace(x, spikes[t], 0.8, 1.5, mode)
        assert torch.equal(window[t], x)


def test_single_step_functions():
    x = torch.tensor([1.0, 1.0])
    s = torch.tensor([0.0, 1.0])
    assert trace_cumulative(x, s, 0.25).tolist() == [0.25, 1.25]
    assert trace_nearest(x, s, 0.25, amplitude=3.0).tolist() == [0.25, 3.0]


def test_inputs_are_not_modified():
    x = torch.ones(3)
    s = torch.ones(2, 3)
    trace_window(x, s, 0.5)
    assert torch.equal(x, torch.ones(3))


def test_discounted_reverse_sum_hand_values():
    # R(2) = 2, R(1) = 0 + 0.5 * 2 = 1, R(0) = 1 + 0.5 * 1 = 1.5
    out = discounted_reverse_sum(torch.tensor([1.0, 0.0, 2.0]), 0.5)
    assert out.tolist() == [1.5, 1.0, 2.0]


def test_discounted_reverse_sum_matches_definition():
    values = torch.randn(9, 4, dtype=torch.float64)
    d = 0.7
    expected = torch.stack([sum(values[t] * d ** (t - s) for t in range(s, 9)) for s in range(9)])
    torch.testing.assert_close(discounted_reverse_sum(values, d), expected)


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_time_constant(tau):
    with pytest.raises(ValueError, match="tau_pre"):
        decay_factor(1.0, tau, name="tau_pre")


def test_bad_dt_and_mode():
    with pytest.raises(ValueError, match="dt"):
        decay_factor(0.0, 10.0)
    with pytest.raises(ValueError, match="trace_mode"):
        trace(torch.zeros(1), torch.zeros(1), 0.5, mode="closest")
    with pytest.raises(TypeError, match="tau"):
        decay_factor(1.0, "10")


@pytest.mark.parametrize("path", ["torch loop", "compiled scan", "closed form"])
def test_nearest_window_every_path_equals_the_recursion_in_float64(monkeypatch, path):
    import plastorch.functional.traces as traces
    from plastorch.functional import compiled

    if path == "compiled scan" and not compiled.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(traces, "_CLOSED_FORM_MAX_NUMEL", 1 << 20 if path == "closed form" else 0)
    monkeypatch.setattr(compiled, "_ENABLED", path == "compiled scan")
    calls = []
    original = compiled._scan_unchecked
    monkeypatch.setattr(
        compiled, "_scan_unchecked", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    generator = torch.Generator().manual_seed(5)
    spikes = (torch.rand(40, 2, 3, generator=generator) < 0.1).double()
    spikes[:, 0, 0] = 0.0  # one trace never spikes: x(-1) d^(t + 1) to the end
    x = torch.rand(2, 3, dtype=torch.float64, generator=generator)
    window = trace_window(x, spikes, 0.9, 2.5, "nearest")
    expected, state = [], x
    for t in range(40):
        state = torch.where(spikes[t] != 0, 2.5, state * 0.9)
        expected.append(state)
    assert torch.equal(window, torch.stack(expected))
    assert len(calls) == (path == "compiled scan")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nearest_window_compiled_scan_has_the_torch_loops_bits(monkeypatch, dtype):
    import plastorch.functional.traces as traces
    from plastorch.functional import compiled

    if not compiled.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(traces, "_CLOSED_FORM_MAX_NUMEL", 0)
    generator = torch.Generator().manual_seed(6)
    spikes = torch.rand(30, 4, 700, generator=generator, dtype=dtype)
    spikes = torch.where(spikes < 0.1, spikes * 10, 0.0)  # graded: any non-zero resets
    x = torch.rand(4, 700, dtype=dtype, generator=generator)
    fast = trace_window(x, spikes, 0.93, 1.5, "nearest")
    monkeypatch.setattr(compiled, "_ENABLED", False)
    assert torch.equal(fast, trace_window(x, spikes, 0.93, 1.5, "nearest"))


def test_nearest_window_closed_form_hand_values():
    # spikes at steps 1 and 3, carried trace 4, decay 0.5, amplitude 2:
    # 4 * 0.5 = 2, spike -> 2, 1, spike -> 2, 1, 0.5
    spikes = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.0])[:, None]
    out = trace_window(torch.tensor([4.0]), spikes, 0.5, amplitude=2.0, mode="nearest")
    assert out.flatten().tolist() == [2.0, 2.0, 1.0, 2.0, 1.0, 0.5]


def test_discounted_reverse_sum_into_out():
    values = torch.tensor([[1.0, 2.0], [0.0, 4.0], [2.0, 0.0]])
    out = torch.empty(3, 2)
    assert discounted_reverse_sum(values, 0.5, out=out) is out
    # R(2) = v(2), R(1) = v(1) + R(2)/2, R(0) = v(0) + R(1)/2
    assert out.tolist() == [[1.5, 4.0], [1.0, 4.0], [2.0, 0.0]]
    with pytest.raises(ValueError, match="out must have the shape of values"):
        discounted_reverse_sum(values, 0.5, out=torch.empty(2, 2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_decay_in_place_rounds_as_a_python_number(dtype):
    # decay_ multiplies by a cached 0-d tensor instead of the number; the product
    # must be the same bits for every float dtype (half types compute in float32)
    x = torch.rand(4096, generator=torch.Generator().manual_seed(0)).to(dtype) * 3
    expected = x.clone().mul_(0.951229424500714)
    assert decay_(x, 0.951229424500714) is x
    assert torch.equal(x, expected)
    with pytest.raises(RuntimeError):  # an integer tensor keeps torch's own rules
        decay_(torch.arange(5), 0.5)


@pytest.mark.parametrize("mode", ["cumulative", "nearest"])
@pytest.mark.parametrize("steps", [0, 1, 2, 40])
@pytest.mark.parametrize("numba", [True, False])
def test_trace_before_each_step_and_after_the_window(monkeypatch, mode, steps, numba):
    # before(t) = d x(t - 1) (the trace just before step t's spike), last = x(T - 1)
    from plastorch.functional import compiled

    if numba and not compiled.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(compiled, "_ENABLED", numba)
    g = torch.Generator().manual_seed(7)
    spikes = (torch.rand(steps, 3, 600, generator=g) < 0.2).double()
    x = torch.rand(3, 600, dtype=torch.float64, generator=g)
    before, last = trace_window_before(x, spikes, 0.8, 2.0, mode)
    traces = trace_window(x, spikes, 0.8, 2.0, mode)
    assert torch.equal(before, (0.8 * torch.cat((x[None], traces[:-1])))[:steps])
    assert torch.equal(last, traces[-1] if steps else x)
    out = torch.empty_like(spikes)
    assert trace_window_before(x, spikes, 0.8, 2.0, mode, out=out)[0] is out
    assert torch.equal(out, before)


def test_trace_before_hand_values():
    s = torch.tensor([[1.0], [0.0], [1.0]])
    before, last = trace_window_before(torch.tensor([4.0]), s, 0.5)
    assert before.flatten().tolist() == [2.0, 1.5, 0.75]  # 4/2; (2 + 1)/2; 1.5/2
    assert last.tolist() == [1.75]
    before, last = trace_window_before(torch.tensor([4.0]), s, 0.5, mode="nearest")
    assert before.flatten().tolist() == [2.0, 0.5, 0.25]
    assert last.tolist() == [1.0]


@pytest.mark.parametrize("steps", [1, 6])
def test_trace_before_takes_what_trace_window_takes(steps):
    # bool spikes, a broadcast initial trace, non-contiguous spikes, bfloat16: the torch
    # path, the same values as trace_window shifted and decayed
    g = torch.Generator().manual_seed(8)
    spikes = torch.rand(steps, 4, 3, generator=g) < 0.3
    cases = [
        (torch.zeros(4, 3), spikes),
        (torch.full((3,), 2.0), spikes.float()),
        (
            torch.rand(4, 3, generator=g),
            spikes.float().transpose(1, 2).contiguous().transpose(1, 2),
        ),
        (torch.rand(4, 3, generator=g).bfloat16(), spikes.bfloat16()),
    ]
    for x, s in cases:
        before, last = trace_window_before(x, s, 0.75)
        traces = trace_window(x, s, 0.75)
        start = torch.broadcast_to(x, traces.shape[1:]).to(traces.dtype)
        assert torch.equal(before, 0.75 * torch.cat((start[None], traces[:-1])))
        assert torch.equal(last, traces[-1])
