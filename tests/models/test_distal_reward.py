"""Izhikevich (2007) distal reward: the network, the rule's constants, a reduced run."""

import math

import pytest
import torch

from plastorch.models.distal_reward import (
    DistalRewardNetwork,
    compressed,
    dopamine_rule,
    run_distal_reward,
)


def test_network_wiring_follows_the_paper():
    net = DistalRewardNetwork(40, 10, 6, seed=1)
    mask = net.mask
    assert mask.sum(0).eq(6).all()  # every excitatory neuron: 6 distinct targets
    assert mask[torch.arange(40), torch.arange(40)].eq(0).all()  # no self-connection
    inh = net.inh_synapses.weight
    assert inh.ne(0).sum(0).eq(6).all() and inh[inh.ne(0)].eq(-1.0).all()
    n1, n2 = net.chosen
    weight = net.exc_synapses.weight
    assert n2 < 40 and mask[n2, n1] == 1 and weight[n2, n1] == 0.0
    others = weight[mask.bool()]
    assert others.eq(1.0).sum() == mask.sum() - 1  # every other synapse starts at 1 mV
    assert weight[~mask.bool()].eq(0).all()


def test_one_step_of_synaptic_input_arrives_one_ms_later():
    # no noise, a spike of excitatory neuron 0 at the last step: its targets receive
    # its weights in the next step (arrivals = the excitatory spikes of step t - 1)
    net = DistalRewardNetwork(10, 2, 3, noise=0.0, seed=0)
    net.last_spikes = torch.zeros(12)
    net.last_spikes[0] = 1.0
    pre, post = net.simulate(2)
    assert pre[0, 0].tolist() == [1.0] + [0.0] * 9
    assert pre[1, 0].eq(0).all() and post.eq(0).all()  # 1 mV does not make anyone fire


def test_dopamine_rule_constants():
    # Izhikevich: +0.1 exp(-dt/20) for pre-before-post, -0.15 exp(-dt/20) after, traces
    # set (not added) at each spike, c decays with tau_c = 1 s.
    rule = dopamine_rule()
    assert (rule.lr_post, rule.lr_pre) == (0.1, -0.15)
    assert rule.trace_mode == "nearest"
    assert rule.decay_eligibility == pytest.approx(math.exp(-1e-3))
    settings = compressed(20, 10.0, 2.0)
    assert settings["reward_delay"] == (50.0, 150.0)
    assert settings["tau_eligibility"] == 50.0 and settings["tau_dopamine"] == 10.0
    assert settings["learning_rate"] == 20.0 and settings["window"] == 50


def test_reduced_run_grows_only_the_rewarded_synapse(one_thread):
    # 80 + 20 neurons, 10 synapses each, 8 s; the reward pathway runs 20 x faster than
    # in the paper (rewards 50-150 ms after the pairing, tau_c = 50 ms, tau_d = 10 ms)
    # and n1, n2 get a drive that raises their rate to about 7 Hz, so a few seconds hold
    # ~5-15 rewards; the rate is 3 x the speed-matched one so that few rewards suffice.
    # The chosen synapse starts at 0 and must end above 1.5 mV, above 99 % of the
    # other synapses; those start at 1 mV and their mean must stay within 0.1 of it
    # (rewards reach them through eligibility they earned by chance, with either sign).
    settings = compressed(20, 8.0, 2.5)
    settings["learning_rate"] *= 3
    result = run_distal_reward(
        n_exc=80, n_inh=20, synapses_per_neuron=10, record_every=500, seed=0, **settings
    )
    others = result.final_weights
    chosen = float(result.chosen_weight[-1])
    assert len(result.reward_times_s) >= 3
    assert chosen > 1.5
    assert chosen > float(torch.quantile(others, 0.99))
    assert abs(float(others.mean()) - 1.0) < 0.1
    assert float(result.rates_hz.mean()) < 5.0  # the network itself stays at ~1 Hz
