"""LIF: exact exponential membrane traces, spike/reset timing, refractory steps, state."""

import math

import pytest
import torch

from plastorch.neurons import LIF

DECAY_TAU10 = math.exp(-1.0 / 10.0)  # 0.9048374180359595


def make_lif(**kwargs):
    params = dict(tau_mem=10.0, v_rest=0.0, v_reset=0.0, v_threshold=100.0, refractory=0.0)
    params.update(kwargs)
    return LIF(1, **params).double()


def run_single(lif, inputs):
    """Step ``lif`` through a list of scalar inputs; return (spikes, v) per step."""
    spikes, trace = [], []
    for value in inputs:
        spikes.append(lif(torch.tensor([[value]], dtype=torch.float64)).item())
        trace.append(lif.v.item())
    return spikes, trace


def test_constant_input_trace_matches_exact_exponential_integration():
    # v_t = v_{t-1} e^{-1/10} + 1 from v_0 = 0 (v_rest = 0):
    #   v_1 = 1, v_2 = 1 + e^{-0.1}, v_3 = 1 + e^{-0.1} + e^{-0.2}
    _, trace = run_single(make_lif(), [1.0, 1.0, 1.0])
    assert trace == pytest.approx([1.0, 1.9048374180359595, 2.723568171113941], abs=1e-12)


def test_trace_relaxes_towards_nonzero_rest():
    # v_rest = -65, input 1: v_t = -65 + (v_{t-1} + 65) e^{-0.1} + 1 from v_0 = -65.
    lif = make_lif(v_rest=-65.0, v_reset=-65.0, v_threshold=0.0)
    _, trace = run_single(lif, [1.0, 1.0, 1.0])
    assert trace == pytest.approx([-64.0, -63.09516258196405, -62.27643182888607], abs=1e-12)
    # Then without input it decays back: v = -65 + (v + 65) e^{-0.1} per step.
    _, after = run_single(lif, [0.0, 0.0])
    assert after[0] == pytest.approx(-65.0 + 2.723568171113941 * DECAY_TAU10, abs=1e-12)
    assert after[1] == pytest.approx(-65.0 + 2.723568171113941 * DECAY_TAU10**2, abs=1e-12)


def test_decay_is_exact_not_euler():
    # tau = dt = 1: exact decay e^{-1} = 0.3679; Euler (1 - dt/tau) would give 0.
    lif = make_lif(tau_mem=1.0)
    _, trace = run_single(lif, [1.0, 0.0])
    assert trace[1] == pytest.approx(math.exp(-1.0), abs=1e-12)


def test_spike_when_reaching_threshold_then_reset():
    # Threshold 2.5: v = 1, 1.905, 2.724 -> spike at step 2 and reset to 0, period 3 steps.
    lif = make_lif(v_threshold=2.5)
    spikes, trace = run_single(lif, [1.0] * 9)
    assert spikes == [0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert trace[:4] == pytest.approx([1.0, 1.9048374180359595, 0.0, 1.0], abs=1e-12)


def test_threshold_is_inclusive():
    lif = make_lif(v_threshold=1.0)
    spikes, _ = run_single(lif, [1.0])
    assert spikes == [1.0]


def test_refractory_period_ignores_input_for_ceil_refractory_over_dt_steps():
    # Spike at step 2; refractory 5 ms at dt 1 -> steps 3..7 held at v_reset whatever
    # the input; integration restarts at step 8 and the next spike is at step 10.
    lif = make_lif(v_threshold=2.5, refractory=5.0)
    spikes, trace = run_single(lif, [1.0] * 19)
    fired = [step for step, s in enumerate(spikes) if s]
    assert fired == [2, 10, 18]
    assert trace[3:8] == [0.0] * 5
    assert trace[8] == pytest.approx(1.0, abs=1e-12)


def test_refractory_holds_v_at_reset_not_rest():
    # v_reset = -5 < v_rest = 0: held at -5 during refractory, then decays from -5.
    lif = make_lif(v_reset=-5.0, v_threshold=1.0, refractory=2.0)
    spikes, trace = run_single(lif, [10.0, 10.0, 10.0, 1.0])
    assert spikes == [1.0, 0.0, 0.0, 0.0]
    assert trace[1:3] == [-5.0, -5.0]
    assert trace[3] == pytest.approx(-5.0 * DECAY_TAU10 + 1.0, abs=1e-12)  # -3.5241870901797974


@pytest.mark.parametrize(
    ("refractory", "dt", "steps"),
    [(5.0, 1.0, 5), (5.0, 0.1, 50), (2.5, 1.0, 3), (0.5, 1.0, 1), (0.0, 1.0, 0), (1.0, 0.5, 2)],
)
def test_refractory_length_in_steps(refractory, dt, steps):
    # Drive hard every step: after the spike at step 0 the next spike comes right after the
    # refractory steps. float32 on purpose: 50 * 0.1 must not round to an extra step.
    lif = LIF(
        1, tau_mem=10.0, v_rest=0.0, v_reset=0.0, v_threshold=1.0, refractory=refractory, dt=dt
    )
    lif.step_mode = "multi"
    spikes = lif(torch.full((2 * steps + 3, 1, 1), 5.0))
    fired = spikes.flatten().nonzero().flatten().tolist()
    assert fired[:3] == [0, steps + 1, 2 * steps + 2]


def test_multi_step_equals_looping_single_step():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(40, 3, 2, 5, generator=generator) * 6.0
    kwargs = dict(tau_mem=20.0, refractory=3.0, dt=0.5)
    single = LIF((2, 5), **kwargs)
    multi = LIF((2, 5), step_mode="multi", **kwargs)
    looped = torch.stack([single(x) for x in inputs])
    fused = multi(inputs)
    assert fused.shape == (40, 3, 2, 5)
    assert looped.sum() > 10  # the comparison is not vacuous
    assert torch.equal(fused, looped)
    assert torch.equal(multi.v, single.v)
    assert torch.equal(multi.refractory_remaining, single.refractory_remaining)


def test_batch_samples_are_independent():
    lif = LIF(2, tau_mem=10.0, v_rest=0.0, v_reset=0.0, v_threshold=1.0)
    spikes = lif(torch.tensor([[1.0, 0.0], [0.0, 0.5]]))
    assert spikes.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert lif.v.tolist() == [[0.0, 0.0], [0.0, 0.5]]


def test_spikes_are_zero_one_in_input_dtype():
    lif = LIF(4, v_rest=0.0, v_reset=0.0, v_threshold=1.0)
    for dtype in (torch.float32, torch.float64):
        lif.reset()
        spikes = lif(torch.tensor([[0.0, 0.5, 1.0, 3.0]], dtype=dtype))
        assert spikes.dtype == dtype
        assert spikes.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_state_starts_at_rest_and_is_lazily_sized():
    lif = LIF((2, 3), v_rest=-70.0, v_reset=-70.0)
    assert lif.v.numel() == 0 and not lif.state_initialized
    lif(torch.zeros(4, 2, 3))
    assert lif.v.shape == (4, 2, 3)
    assert torch.equal(lif.v, torch.full((4, 2, 3), -70.0))
    assert torch.equal(lif.refractory_remaining, torch.zeros(4, 2, 3))


def test_reset_clears_state_and_allows_a_new_batch_size():
    lif = LIF(3)
    lif(torch.full((2, 3), 5.0))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(5, 3\)"):
        lif(torch.zeros(5, 3))
    lif.reset()
    assert lif.v.numel() == 0
    lif(torch.zeros(5, 3))
    assert torch.equal(lif.v, torch.full((5, 3), -65.0))


def test_reset_restores_the_initial_trajectory():
    lif = LIF(1, tau_mem=10.0, v_rest=0.0, v_reset=0.0, v_threshold=2.5, refractory=5.0)
    inputs = torch.ones(12, 1, 1)
    first = torch.stack([lif(x) for x in inputs])
    lif.reset()
    second = torch.stack([lif(x) for x in inputs])
    assert torch.equal(first, second)


def test_state_dict_round_trip_resumes_identically():
    generator = torch.Generator().manual_seed(1)
    inputs = torch.rand(30, 2, 4, generator=generator) * 8.0
    lif = LIF(4, tau_mem=15.0, refractory=4.0)
    for x in inputs[:10]:
        lif(x)
    state = lif.state_dict()
    assert set(state) == {"v", "refractory_remaining"}
    assert state["v"].shape == (2, 4)
    resumed = LIF(4, tau_mem=15.0, refractory=4.0)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.v, lif.v)
    assert torch.equal(resumed.refractory_remaining, lif.refractory_remaining)
    out_original = torch.stack([lif(x) for x in inputs[10:]])
    out_resumed = torch.stack([resumed(x) for x in inputs[10:]])
    assert out_original.sum() > 0
    assert torch.equal(out_original, out_resumed)


def test_state_dict_of_unsized_state_round_trips():
    resumed = LIF(4)
    resumed.load_state_dict(LIF(4).state_dict())
    assert not resumed.state_initialized
    resumed(torch.zeros(3, 4))
    assert resumed.v.shape == (3, 4)


def test_input_is_not_modified_and_output_carries_no_graph():
    lif = LIF(3, v_rest=0.0, v_reset=0.0, v_threshold=1.0, refractory=5.0)
    lif(torch.full((1, 3), 2.0))  # all refractory now
    weight = torch.ones(3, requires_grad=True)
    current = torch.full((1, 3), 2.0) * weight
    snapshot = current.detach().clone()
    spikes = lif(current)
    assert torch.equal(current.detach(), snapshot)
    assert not spikes.requires_grad and not lif.v.requires_grad


def test_wrong_per_sample_shape_raises_with_both_shapes():
    lif = LIF((2, 3))
    with pytest.raises(ValueError, match=r"\[B, 2, 3\].*\(4, 3, 2\)"):
        lif(torch.zeros(4, 3, 2))
    with pytest.raises(ValueError, match=r"\[B, 2, 3\].*\(2, 3\)"):
        lif(torch.zeros(2, 3))  # missing batch dimension
    lif.step_mode = "multi"
    with pytest.raises(ValueError, match=r"\[T, B, 2, 3\].*\(4, 2, 3\)"):
        lif(torch.zeros(4, 2, 3))


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="floating point"):
        LIF(3)(torch.zeros(1, 3, dtype=torch.int64))


def test_dtype_change_without_reset_is_rejected():
    lif = LIF(3)
    lif(torch.zeros(1, 3))
    with pytest.raises(TypeError, match=r"float32.*float64"):
        lif(torch.zeros(1, 3, dtype=torch.float64))
