"""DelayedLinear: arrival times, equivalence to nn.Linear, the ring buffer, clamping, state."""

import copy

import pytest
import torch
import torch.nn.functional as F

from plastorch import Learner
from plastorch.bounds import Hard
from plastorch.layers import DelayedLinear
from plastorch.layers.delayed import delay_to_steps, ring_arrivals
from plastorch.rules import DelayAdjustedSTDPD


def layer_with(delays, *, dt=1.0, max_delay=None, weight=None, **kw):
    delays = torch.as_tensor(delays, dtype=torch.float64)
    out_features, in_features = delays.shape
    max_delay = float(delays.max()) if max_delay is None else max_delay
    layer = DelayedLinear(
        in_features, out_features, max_delay, dt, bias=False, dtype=torch.float64, **kw
    )
    with torch.no_grad():
        layer.delay.copy_(delays)
        layer.weight.copy_(torch.ones_like(layer.weight) if weight is None else weight)
    return layer


def reference_output(layer, x):
    """y[t, b, o] = sum_i w[o, i] x[t - n_oi, b, i] by explicit loops (x before 0 is 0)."""
    n = delay_to_steps(layer.delay, layer.dt, layer.history_steps)
    steps, batch, _ = x.shape
    y = torch.zeros(steps, batch, layer.out_features, dtype=x.dtype)
    for t in range(steps):
        for o in range(layer.out_features):
            for i in range(layer.in_features):
                source = t - int(n[o, i])
                if source >= 0:
                    y[t, :, o] += layer.weight[o, i].detach() * x[source, :, i]
    return y


@pytest.mark.parametrize(
    "delay, dt, arrival_lag",
    [
        (0.0, 1.0, 0),
        (0.4, 1.0, 0),
        (0.5, 1.0, 1),  # ties go to the later step
        (1.49, 1.0, 1),
        (2.5, 1.0, 3),
        (3.0, 1.0, 3),
        (1.2, 0.5, 2),  # 2.4 steps -> 2
        (1.3, 0.5, 3),  # 2.6 steps -> 3
    ],
)
def test_spike_sent_at_t_arrives_round_d_over_dt_steps_later(delay, dt, arrival_lag):
    layer = layer_with([[delay]], dt=dt, max_delay=4.0)
    sent = 2
    x = torch.zeros(12, 1, 1, dtype=torch.float64)
    x[sent] = 1.0
    y = layer(x).detach().flatten()
    expected = torch.zeros(12, dtype=torch.float64)
    expected[sent + arrival_lag] = 1.0
    assert torch.equal(y, expected)


def test_zero_delays_equal_nn_linear():
    layer = DelayedLinear(5, 3, max_delay=4.0, delay_init=0.0, dtype=torch.float64)
    x = (torch.rand(7, 2, 5, dtype=torch.float64) < 0.5).double()
    expected = F.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_random_delays_match_explicit_loops_in_windows_and_single_steps():
    torch.manual_seed(3)
    layer = DelayedLinear(4, 3, max_delay=5.0, dt=0.5, bias=False, dtype=torch.float64)
    x = (torch.rand(15, 2, 4, dtype=torch.float64) < 0.4).double()
    expected = reference_output(layer, x)
    fused = copy.deepcopy(layer)
    split = torch.cat([fused(x[:6]), fused(x[6:])]).detach()  # two windows, state carried
    single = torch.stack([layer(x[t]) for t in range(15)]).detach()
    torch.testing.assert_close(split, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(single, expected, rtol=1e-12, atol=1e-12)


def test_ring_buffer_is_steps_by_batch_by_inputs():
    layer = DelayedLinear(6, 40, max_delay=3.0, dt=0.5)  # 6 steps of history + the current one
    layer(torch.zeros(5, 6))
    assert layer.history.shape == (7, 5, 6)
    assert layer.delayed_input.shape == (5, 40, 6)


def test_ring_arrivals_reads_each_synapse_at_its_own_lag():
    ring = torch.arange(12.0).reshape(3, 1, 4)  # slot s holds 4s .. 4s+3
    steps = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 1]])
    got = ring_arrivals(ring, 2, steps)  # slot 2 is now, slot 1 one step ago, slot 0 two
    assert got.tolist() == [[[8.0, 5.0, 2.0, 11.0], [0.0, 1.0, 6.0, 7.0]]]


def test_forward_clamps_delays_into_range():
    layer = layer_with([[-3.0, 9.0]], max_delay=2.0)
    layer(torch.zeros(1, 2, dtype=torch.float64))
    assert layer.delay.tolist() == [[0.0, 2.0]]
    assert layer.delay_steps.tolist() == [[0, 2]]


@pytest.mark.parametrize("scale", [1e3, 1e9])
def test_delays_stay_in_range_under_any_update_through_the_learner(scale):
    layer = layer_with([[0.5, 1.0, 3.5], [2.0, 0.0, 4.0]], max_delay=4.0)
    source = torch.nn.Identity()
    rule = DelayAdjustedSTDPD(lr_neg=1.0, lr_pos=-1.0)  # lengthen causal, shorten acausal
    learner = Learner(layer, source, rule, bound=Hard(0.0, 4.0), apply=True)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        pre = (torch.rand(2, 3, generator=g) < 0.5).double()
        source((torch.rand(2, 2, generator=g) < 0.5).double() + 0 * layer(pre))
        learner.step(scale=scale)
        assert bool(((layer.delay >= 0.0) & (layer.delay <= 4.0)).all())


def test_state_dict_resumes_the_spikes_in_flight():
    torch.manual_seed(5)
    layer = DelayedLinear(3, 2, max_delay=4.0, dtype=torch.float64)
    x = (torch.rand(10, 2, 3, dtype=torch.float64) < 0.5).double()
    layer(x[:4])
    fresh = DelayedLinear(3, 2, max_delay=4.0, dtype=torch.float64)
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fresh(x[4:]), layer(x[4:]), rtol=0, atol=0)


def test_learn_delays_false_keeps_delays_out_of_parameters():
    fixed = DelayedLinear(3, 2, max_delay=4.0, learn_delays=False)
    learned = DelayedLinear(3, 2, max_delay=4.0)
    assert "delay" in dict(fixed.named_buffers())
    assert "delay" not in dict(fixed.named_parameters())
    assert "delay" in dict(learned.named_parameters())
    assert "delay" in fixed.state_dict()


def test_reset_forgets_spikes_in_flight_and_allows_a_new_batch():
    layer = layer_with([[2.0]])
    layer(torch.ones(1, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch"):
        layer(torch.zeros(3, 1, dtype=torch.float64))
    layer.reset()
    out = torch.stack([layer(torch.zeros(3, 1, dtype=torch.float64)) for _ in range(3)])
    assert out.abs().sum().item() == 0.0


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"max_delay": -1.0}, ValueError, "max_delay"),
        ({"dt": 0.0}, ValueError, "dt"),
        ({"interp_tolerance": -0.1}, ValueError, "interp_tolerance"),
        ({"delay_init": 5.0}, ValueError, "delay_init"),
        ({"max_delay": "3"}, TypeError, "max_delay"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, name):
    args = {"in_features": 2, "out_features": 2, "max_delay": 3.0, **kwargs}
    with pytest.raises(error, match=name):
        DelayedLinear(**args)


def test_bad_input_shape_names_both_shapes():
    layer = DelayedLinear(3, 2, max_delay=1.0)
    with pytest.raises(ValueError, match=r"\[B, 3\].*\(4, 2\)"):
        layer(torch.zeros(4, 2))
