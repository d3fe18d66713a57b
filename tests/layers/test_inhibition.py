"""Lateral inhibition: hand-computed inhibitory input and membrane traces, one-step delay."""

import pytest
import torch

from plastorch.layers import InhibitedPopulation, LateralInhibition
from plastorch.neurons import LIF, AdaptiveLIF

DECAY = 0.9048374180359595  # exp(-1 / 10): tau_mem = 10 ms, dt = 1 ms


def test_each_spike_inhibits_every_other_neuron():
    spikes = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    # sample 0: neurons 0 and 2 fired -> each gets one spike's worth (the other's), 1 and 3 two
    expected = torch.tensor([[-2.0, -4.0, -2.0, -4.0], [-2.0, -2.0, -2.0, 0.0]])
    assert torch.equal(LateralInhibition(2.0)(spikes), expected)
    with_self = LateralInhibition(2.0, self_inhibition=True)(spikes)
    assert torch.equal(with_self, torch.tensor([[-4.0] * 4, [-2.0] * 4]))


def test_equals_the_dense_matrix():
    inhibition = LateralInhibition(1.5)
    spikes = (torch.rand(5, 7) < 0.4).double()
    dense = spikes @ inhibition.matrix(7).double().t()
    torch.testing.assert_close(inhibition(spikes), dense, rtol=0, atol=1e-12)
    assert torch.equal(inhibition.matrix(2), torch.tensor([[-0.0, -1.5], [-1.5, -0.0]]))


def test_groups_along_chosen_dims():
    # [B=1, C=2, W=2]: with dims=0 the two channels compete at each position only.
    spikes = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    out = LateralInhibition(1.0, dims=0)(spikes)
    assert torch.equal(out, torch.tensor([[[-1.0, -1.0], [-1.0, -0.0]]]))
    everything = LateralInhibition(1.0)(spikes)  # all 4 neurons compete: 3 spikes
    assert torch.equal(everything, torch.tensor([[[-2.0, -3.0], [-2.0, -2.0]]]))


@pytest.mark.parametrize("kwargs", [{"strength": -1.0}, {"strength": 1.0, "dims": [-1]}])
def test_bad_arguments_name_the_argument(kwargs):
    with pytest.raises(ValueError, match="strength|dims"):
        LateralInhibition(**kwargs)


def test_missing_dims_raise_with_the_shape():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        LateralInhibition(1.0, dims=1)(torch.zeros(2, 3))


def make_population(strength=0.5, **kwargs):
    neuron = LIF(2, tau_mem=10.0, v_rest=0.0, v_reset=0.0, v_threshold=1.0, refractory=0.0)
    return InhibitedPopulation(neuron.double(), LateralInhibition(strength), **kwargs)


CURRENT = torch.tensor([[1.0, 0.6], [0.2, 0.6], [0.0, 0.5], [0.9, 0.0]], dtype=torch.float64)


def test_membrane_trace_with_inhibition_one_step_late():
    # t0: v' = [1, 0.6] -> neuron 0 fires (reset to 0); no inhibition yet.
    # t1: inhibition of t0's spike: [0, -0.5] -> drive [0.2, 0.1]; v = [0.2, 0.6 d + 0.1].
    # t2: no spike at t1 -> drive [0, 0.5]; v1 = 0.6429 d + 0.5 = 1.0817 -> neuron 1 fires.
    # t3: inhibition [-0.5, 0] -> drive [0.4, 0]; v0 = 0.2 d^2 + 0.4 = 0.5637 (silent;
    #     without the inhibition it would be 1.0637 and fire).
    population = make_population()
    spikes, trace = [], []
    for t in range(4):
        spikes.append(population(CURRENT[t : t + 1].unsqueeze(1))[0, 0].tolist())
        trace.append(population.neuron.v[0].tolist())
    assert spikes == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    assert trace[1] == pytest.approx([0.2, 0.6429024508215757], abs=1e-12)
    assert trace[2] == pytest.approx([0.2 * DECAY, 0.0], abs=1e-12)
    assert trace[3] == pytest.approx([0.5637461506155964, 0.0], abs=1e-12)
    free = make_population(strength=0.0)
    assert free(CURRENT.unsqueeze(1))[3, 0].tolist() == [1.0, 0.0]


def test_window_equals_single_steps_and_continues_across_windows():
    torch.manual_seed(3)
    current = torch.rand(30, 4, 2, dtype=torch.float64) * 0.8
    whole = make_population()(current)
    single = make_population(step_mode="single")
    steps = torch.stack([single(current[t]) for t in range(30)])
    split = make_population()
    halves = torch.cat([split(current[:13]), split(current[13:])])
    assert whole.sum() > 10
    assert torch.equal(whole, steps)
    assert torch.equal(whole, halves)


def test_reset_forgets_the_last_spikes_and_the_membrane():
    population = make_population()
    population(CURRENT[:1].unsqueeze(1))  # neuron 0 fires
    population.reset()
    assert population.last_spikes.numel() == 0
    # After the reset, step t1's input sees no inhibition and starts from rest.
    population(CURRENT[1:2].unsqueeze(1))
    assert population.neuron.v[0].tolist() == pytest.approx([0.2, 0.6], abs=1e-12)


def test_batch_size_change_without_reset_raises_with_both_shapes():
    population = make_population()
    population(torch.zeros(3, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(5, 2\)"):
        population(torch.zeros(3, 5, 2, dtype=torch.float64))


def test_rejects_a_multi_step_neuron_and_bad_windows():
    with pytest.raises(ValueError, match="step_mode"):
        InhibitedPopulation(LIF(2, step_mode="multi"), LateralInhibition(1.0))
    with pytest.raises(ValueError, match=r"\[T, B"):
        make_population()(torch.zeros(4, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="nn.Module"):
        InhibitedPopulation(LIF(2), lambda s: s)


def test_adaptive_thresholds_spread_the_winners():
    # Strong inhibition: one neuron wins at a time. Neuron 0 gets more input and wins
    # first, but each of its spikes raises its threshold by 2, so neuron 1 takes over.
    neuron = AdaptiveLIF(
        2, theta_plus=2.0, v_rest=0.0, v_reset=0.0, v_threshold=1.0, refractory=0.0
    )
    population = InhibitedPopulation(neuron.double(), LateralInhibition(5.0))
    current = torch.tensor([0.6, 0.5], dtype=torch.float64).expand(60, 1, 2)
    spikes = population(current)[:, 0]
    fired = spikes.nonzero().tolist()
    # t1: v0 = 0.6 d + 0.6 = 1.143 >= 1 fires first; v1 = 0.5 d + 0.5 = 0.952 does not.
    assert fired[0] == [1, 0]
    assert spikes[:, 1].sum() > 0  # neuron 1 fires later
    assert (spikes.sum(-1) <= 1).all()  # never both in the same step
    counts = spikes.sum(0)
    assert population.neuron.theta.tolist() == pytest.approx((2.0 * counts).tolist(), abs=1e-4)
