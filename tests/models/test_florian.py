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
    florian_rules,
    single_synapse,
    single_synapse_protocol,
    spike_train,
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
