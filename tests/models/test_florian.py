"""Florian (2007): the single-synapse illustration by hand, and a reduced rate-coded XOR.

Single synapse, compact protocol (1 ms steps, tau+- = 20 ms, tau_z = 25 ms, A+- = +-1,
gamma = 1): a causal pairing (pre 5, post 10), then an acausal one (post 55, pre 60),
each followed 15 ms later by a reward r = 1 lasting 10 steps ([25, 35) and [75, 85)).
With S(a, b) = sum_{k=a}^{b-1} exp(-k/25):

- STDP jumps by exp(-5/20) at the post spike at 10; the post spike at 55 also pairs
  with the pre spike at 5 (+exp(-50/20)); the pre spike at 60 undoes both (cumulative
  traces, all-to-all pairing), so w(60) = 0.
- MSTDP's change r(t) zeta(t) is non-zero only at spike steps: the delayed reward never
  coincides with one, so w stays exactly 0.
- MSTDP-ET: z jumps by exp(-5/20)/25 at step 10 and decays by exp(-1/25) per step; the
  first reward reads z at steps 25..34, i.e. k = 15..24 steps after the pairing.
"""

import math

import pytest
import torch

from plastorch.models.florian import (
    XOR_PATTERNS,
    FlorianXOR,
    florian_rules,
    single_synapse,
    single_synapse_protocol,
    spike_train,
    train_xor,
)


def S(a, b):
    return sum(math.exp(-k / 25) for k in range(a, b))


@pytest.fixture(scope="module")
def protocol():
    return single_synapse_protocol(
        120, causal=(5, 10), acausal=(60, 55), reward_delay=15, reward_duration=10
    )


def test_protocol_places_spikes_and_rewards(protocol):
    assert protocol.pre.nonzero().flatten().tolist() == [5, 60]
    assert protocol.post.nonzero().flatten().tolist() == [10, 55]
    assert protocol.reward_delayed.nonzero().flatten().tolist() == [*range(25, 35), *range(75, 85)]
    assert protocol.reward_immediate.nonzero().flatten().tolist() == [10, 60]


def test_stdp_trajectory_by_hand(protocol):
    w = single_synapse(florian_rules()["STDP"], protocol.pre, protocol.post).weight
    assert w[9].item() == 0.0
    assert w[10].item() == pytest.approx(0.7788007831, abs=1e-10)  # exp(-1/4)
    assert w[55].item() == pytest.approx(0.8608857817, abs=1e-10)  # + exp(-5/2)
    assert w[60].item() == pytest.approx(0.0, abs=1e-12)


def test_mstdp_ignores_a_delayed_reward_and_learns_an_immediate_one(protocol):
    rule = florian_rules()["MSTDP"]
    delayed = single_synapse(rule, protocol.pre, protocol.post, protocol.reward_delayed)
    assert torch.equal(delayed.weight, torch.zeros(120, dtype=torch.float64))
    rule = florian_rules()["MSTDP"]
    immediate = single_synapse(rule, protocol.pre, protocol.post, protocol.reward_immediate)
    assert immediate.weight[10].item() == pytest.approx(0.7788007831, abs=1e-10)
    # at 60 the reward meets the pre spike's pairing with both post spikes
    assert immediate.weight[-1].item() == pytest.approx(-0.0820849986, abs=1e-10)


def test_mstdp_et_learns_from_the_delayed_reward_by_hand(protocol):
    rule = florian_rules()["MSTDP-ET"]
    run = single_synapse(rule, protocol.pre, protocol.post, protocol.reward_delayed)
    z10 = math.exp(-0.25) / 25  # 0.0311520313
    assert run.eligibility[10].item() == pytest.approx(0.0311520313, abs=1e-10)
    assert run.eligibility[24].item() == pytest.approx(z10 * math.exp(-14 / 25), abs=1e-14)
    first = math.exp(-0.25) / 25 * S(15, 25)
    assert first == pytest.approx(0.1437471253, abs=1e-10)
    assert run.weight[24].item() == 0.0  # nothing before the reward
    assert run.weight[34].item() == pytest.approx(0.1437471253, abs=1e-10)
    # the acausal pairing's negative eligibility is read by the second reward; the causal
    # pairings (5 -> 10 and 5 -> 55) still hold a little of theirs at that time
    final = (
        math.exp(-0.25) * (S(15, 25) + S(65, 75))
        + math.exp(-2.5) * S(20, 30)
        - (math.exp(-0.25) + math.exp(-2.5)) * S(15, 25)
    ) / 25
    assert final == pytest.approx(0.0167076774, abs=1e-10)
    assert run.weight[-1].item() == pytest.approx(final, abs=1e-12)


def test_single_synapse_checks_its_arguments():
    pre, post = spike_train([0], 3), spike_train([1], 3)
    with pytest.raises(ValueError, match="reward"):
        single_synapse(florian_rules()["MSTDP"], pre, post)
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        single_synapse(florian_rules()["STDP"], pre, spike_train([1], 4))
    with pytest.raises(ValueError, match="outside"):
        spike_train([5], 3)


def test_xor_network_inputs_and_same_step_transmission():
    net = FlorianXOR(group_size=4, hidden=3, spontaneous_rate=0.0, seed=0)
    exc, inh = net.encode(XOR_PATTERNS, 200, torch.Generator().manual_seed(0))
    # bit A drives inputs 0-1 of each kind, bit B inputs 2-3; a 0 bit is silent
    assert exc[:, 0].sum() == 0 and inh[:, 0].sum() == 0
    assert exc[:, 1, :2].sum() == 0 and exc[:, 1, 2:].sum() > 0
    assert exc[:, 2, 2:].sum() == 0 and inh[:, 3].sum() > 0
    # one excitatory spike of 20 mV at step 1 (16 mV reach threshold) makes hidden
    # neuron 0 fire in that step, and its 20 mV output synapse the output too
    with torch.no_grad():
        net.hidden_exc.weight.zero_()
        net.hidden_inh.weight.zero_()
        net.output.weight.zero_()
        net.hidden_exc.weight[0, 0] = 20.0
        net.output.weight[0, 0] = 20.0
    spikes = torch.zeros(4, 1, 4)
    spikes[1, 0, 0] = 1.0
    hidden, output = net(spikes, torch.zeros(4, 1, 4))
    assert hidden[:, 0].tolist() == [[0.0] * 3, [1.0, 0.0, 0.0], [0.0] * 3, [0.0] * 3]
    assert output[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 0.0]
    # inhibition: the same spike through an inhibitory input keeps everything silent
    with torch.no_grad():
        net.hidden_inh.weight[0, 0] = -20.0
    hidden, output = net(spikes, spikes)
    assert hidden.sum() == 0 and output.sum() == 0


def test_spontaneous_output_rate():
    net = FlorianXOR(group_size=2, hidden=2, hidden_init=0.0, output_init=0.0, seed=0)
    silent = torch.zeros(2000, 10, 2)  # 10 independent samples of 2 s
    _, output = net(silent, silent, torch.Generator().manual_seed(0))
    # 5 Hz over 20 s in all: 100 spikes expected, sd 10 (the 1 ms refractory is negligible)
    assert 70 <= output.sum().item() <= 130


def test_reduced_xor_with_mstdp_et_separates_true_from_false(one_thread):
    # Reduced: 30 epochs of 200 ms per pattern (Florian: 500 ms, hundreds of epochs),
    # gamma doubled to 1.25 mV for the shorter patterns. Before training the output
    # fires at similar rates for (0,1), (1,0) and (1,1) (~20-35 Hz). Rewarded output
    # spikes must make the true patterns fire on average at least twice as much as the
    # false ones (their mean includes the 5 Hz spontaneous rate), and the reward per
    # epoch (true-pattern spikes minus false-pattern spikes) must grow at least 5-fold
    # from the first five epochs to the last five.
    result = train_xor("MSTDP-ET", epochs=30, pattern_ms=200, gamma=1.25, eval_repeats=5)
    before, after = result.rates_before, result.rates_after
    assert before[1:].max() < 2 * before[1:].min()  # no pattern is favoured at first
    assert after[1:3].mean() >= 2 * after[[0, 3]].mean()
    assert after[1:3].mean() > before[1:3].mean()
    assert result.reward_per_epoch[-5:].mean() >= 5 * result.reward_per_epoch[:5].mean()
