"""AdaptiveLIF: theta grows by theta_plus per spike (summed over the batch), decays exactly."""

import math

import pytest
import torch

from plastorch.neurons import LIF, AdaptiveLIF


def make_alif(shape=1, **kwargs):
    params = dict(
        tau_mem=10.0,
        v_rest=0.0,
        v_reset=0.0,
        v_threshold=1.0,
        refractory=0.0,
        theta_plus=0.25,
        tau_theta=10.0,
    )
    params.update(kwargs)
    return AdaptiveLIF(shape, **params).double()


def step(neuron, values):
    return neuron(torch.tensor(values, dtype=torch.float64))


def test_theta_increments_per_spike_then_decays_exactly():
    alif = make_alif()
    assert step(alif, [[1.0]]).item() == 1.0
    assert alif.theta.item() == 0.25
    step(alif, [[0.0]])
    assert alif.theta.item() == pytest.approx(0.22620935450898988, abs=1e-15)  # 0.25 e^{-0.1}
    step(alif, [[0.0]])
    assert alif.theta.item() == pytest.approx(0.20468268826949543, abs=1e-15)  # 0.25 e^{-0.2}


def test_theta_increments_add_up_over_spikes():
    # tau_theta huge -> decay negligible at this precision; three spikes -> 3 * theta_plus.
    alif = make_alif(tau_theta=1e12)
    for _ in range(3):
        assert step(alif, [[10.0]]).item() == 1.0
    assert alif.theta.item() == pytest.approx(0.75, abs=1e-9)


def test_effective_threshold_is_v_threshold_plus_decayed_theta():
    # After one spike theta = 0.25; on the next step it first decays to 0.25 e^{-0.1}, so
    # the threshold is 1 + 0.2262 = 1.2262: v = 1.22 stays silent, v = 1.23 fires.
    silent = make_alif()
    step(silent, [[1.0]])
    assert step(silent, [[1.22]]).item() == 0.0
    firing = make_alif()
    step(firing, [[1.0]])
    assert step(firing, [[1.23]]).item() == 1.0
    # ... and the increment lands on the decayed value.
    assert firing.theta.item() == pytest.approx(0.25 * math.exp(-0.1) + 0.25, abs=1e-15)


def test_theta_is_per_neuron_and_grows_by_the_batch_sum_of_spikes():
    alif = make_alif(shape=2, tau_theta=1e12)
    spikes = step(alif, [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])  # neuron 0 fires twice
    assert spikes.tolist() == [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    assert alif.theta.shape == (2,)
    assert alif.theta.tolist() == pytest.approx([0.5, 0.25], abs=1e-9)


def test_default_tau_theta_decay_is_exact_in_float64():
    # tau_theta = 1e7: e^{-1e-7} per step is below float32 resolution, theta stays float64.
    alif = AdaptiveLIF(1, v_rest=0.0, v_reset=0.0, v_threshold=1.0, refractory=0.0)
    assert alif.theta.dtype == torch.float64
    alif.step_mode = "multi"
    alif(torch.tensor([[[5.0]]]))  # one spike in float32
    alif(torch.zeros(1000, 1, 1))
    assert alif.theta.item() == pytest.approx(0.05 * math.exp(-1e-4), rel=1e-12)


def test_learning_false_freezes_theta_but_still_uses_it():
    alif = make_alif()
    step(alif, [[1.0]])
    alif.learning = False
    for _ in range(5):
        step(alif, [[0.0]])
    assert alif.theta.item() == 0.25  # no decay
    alif.reset()
    assert step(alif, [[1.24]]).item() == 0.0  # threshold 1 + 0.25 still applies
    alif.reset()
    assert step(alif, [[1.25]]).item() == 1.0
    assert alif.theta.item() == 0.25  # no increment


def test_reset_keeps_theta_and_reset_theta_zeroes_it():
    alif = make_alif(shape=3)
    step(alif, [[1.0, 2.0, 0.0]])
    theta = alif.theta.clone()
    alif.reset()
    assert alif.v.numel() == 0 and alif.refractory_remaining.numel() == 0
    assert torch.equal(alif.theta, theta)
    alif.reset_theta()
    assert torch.equal(alif.theta, torch.zeros(3, dtype=torch.float64))


def test_state_dict_round_trip_includes_theta():
    generator = torch.Generator().manual_seed(2)
    inputs = torch.rand(40, 2, 5, generator=generator) * 20.0
    kwargs = dict(theta_plus=0.5, tau_theta=50.0, refractory=2.0)
    alif = AdaptiveLIF(5, **kwargs)
    for x in inputs[:20]:
        alif(x)
    state = alif.state_dict()
    assert set(state) == {"v", "refractory_remaining", "theta"}
    resumed = AdaptiveLIF(5, **kwargs)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.theta, alif.theta)
    out_original = torch.stack([alif(x) for x in inputs[20:]])
    out_resumed = torch.stack([resumed(x) for x in inputs[20:]])
    assert out_original.sum() > 0
    assert torch.equal(out_original, out_resumed)
    assert torch.equal(resumed.theta, alif.theta)


def test_theta_is_in_a_fresh_state_dict():
    assert AdaptiveLIF((2, 3)).state_dict()["theta"].shape == (2, 3)


def test_multi_step_equals_looping_single_step():
    generator = torch.Generator().manual_seed(3)
    inputs = torch.rand(30, 4, 6, generator=generator) * 10.0
    kwargs = dict(theta_plus=1.0, tau_theta=20.0, refractory=2.0)
    single, multi = AdaptiveLIF(6, **kwargs), AdaptiveLIF(6, step_mode="multi", **kwargs)
    looped = torch.stack([single(x) for x in inputs])
    assert looped.sum() > 10
    assert torch.equal(multi(inputs), looped)
    # The window sums theta's decayed increments in closed form (d^L theta_0 + sum of
    # d^(L-1-u) n(u)) instead of T sequential float64 multiply-adds: equal to rounding.
    torch.testing.assert_close(multi.theta, single.theta, rtol=1e-13, atol=0.0)


def test_zero_theta_plus_behaves_like_lif():
    generator = torch.Generator().manual_seed(4)
    inputs = torch.rand(30, 2, 3, generator=generator) * 10.0
    alif = AdaptiveLIF(3, theta_plus=0.0, step_mode="multi")
    lif = LIF(3, step_mode="multi")
    assert torch.equal(alif(inputs), lif(inputs))


def test_theta_on_another_device_is_reported():
    alif = AdaptiveLIF(2)
    alif.theta = torch.zeros(2, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match="meta"):
        alif(torch.zeros(1, 2))
