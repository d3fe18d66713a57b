"""FiringRateMonitor: hand-derived estimates, step modes, state_dict resume."""

import math

import pytest
import torch
from torch import nn

from plastorch.monitors import FiringRateMonitor, firing_rate_window

TAU_HALF = 1.0 / math.log(2.0)  # the estimate halves its memory every 1 ms step


def test_estimate_by_hand():
    # q <- q/2 + 500 s, c <- c/2 + 1/2, r = q / c
    # spikes 1, 1, 0, 1: q = 500, 750, 375, 687.5; c = .5, .75, .875, .9375
    spikes = torch.tensor([[1.0], [1.0], [0.0], [1.0]], dtype=torch.float64)
    rates, q, c = firing_rate_window(
        torch.zeros(1, dtype=torch.float64), torch.zeros((), dtype=torch.float64), spikes,
        decay=0.5, dt=1.0,
    )  # fmt: skip
    expected = [1000.0, 1000.0, 375 / 0.875, 687.5 / 0.9375]
    torch.testing.assert_close(rates.flatten(), torch.tensor(expected, dtype=torch.float64))
    assert (q.item(), c.item()) == (687.5, 0.9375)


def test_regular_spiking_reads_its_rate():
    neuron = nn.Identity()
    monitor = FiringRateMonitor(neuron, tau=20.0, dt=0.5)
    for t in range(400):  # every 4th step of 0.5 ms: 500 Hz
        neuron(torch.tensor([[1.0 if t % 4 == 0 else 0.0]]))
    assert monitor.rate.item() == pytest.approx(500.0, rel=0.05)


def test_multi_step_window_equals_single_steps():
    torch.manual_seed(0)
    spikes = (torch.rand(12, 3, 5) < 0.3).double()
    single, multi = nn.Identity(), nn.Identity()
    a = FiringRateMonitor(single, tau=7.0)
    b = FiringRateMonitor(multi, tau=7.0, step_mode="multi")
    for t in range(12):
        single(spikes[t])
    multi(spikes[:5])
    multi(spikes[5:])
    torch.testing.assert_close(a.rate, b.rate, rtol=1e-12, atol=1e-12)


def test_state_dict_resumes_bit_identically():
    torch.manual_seed(1)
    spikes = (torch.rand(10, 2, 3) < 0.4).double()
    source = nn.Identity()
    monitor = FiringRateMonitor(source, tau=5.0)
    for t in range(4):
        source(spikes[t])
    fresh_source = nn.Identity()
    fresh = FiringRateMonitor(fresh_source, tau=5.0)
    fresh.load_state_dict(monitor.state_dict())
    for t in range(4, 10):
        source(spikes[t])
        fresh_source(spikes[t])
    assert torch.equal(fresh.rate, monitor.rate)
    assert set(monitor.state_dict()) == {"rate_trace", "rate_norm"}


def test_tuple_outputs_reset_and_remove():
    source = nn.Identity()
    monitor = FiringRateMonitor(source, tau=5.0, post_from=lambda out: out[1])
    source((torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.float64)))
    assert monitor.rate.tolist() == [[1000.0, 1000.0]]
    with pytest.raises(ValueError, match="reset"):
        source((torch.zeros(3, 2), torch.ones(3, 2)))
    monitor.reset()
    assert monitor.rate is None
    monitor.remove()
    source((torch.zeros(3, 2), torch.ones(3, 2)))
    assert monitor.rate is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="tau"):
        FiringRateMonitor(nn.Identity(), tau=0.0)
    with pytest.raises(ValueError, match="step_mode"):
        FiringRateMonitor(nn.Identity(), step_mode="both")
    with pytest.raises(TypeError, match="source"):
        FiringRateMonitor("neuron")
