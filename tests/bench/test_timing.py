"""The suite's instruments: round-robin timing, allocation tracking, crossover, references."""

import math

import pytest
import torch
from torch import nn

from plastorch.bench.cases import _crossing, mstdpet_reference
from plastorch.bench.common import stdp_reference
from plastorch.bench.peers import load_peer
from plastorch.bench.timing import AllocationTracker, Timing, interleaved, ratio_interval
from plastorch.rules import MSTDPET


def test_interleaved_runs_round_robin_with_setup_before_each_call():
    calls = []
    contenders = {
        "a": (lambda: calls.append("setup a"), lambda: calls.append("a")),
        "b": (None, lambda: calls.append("b")),
    }
    timings = interleaved(contenders, repeats=2, warmup=1)
    assert calls == ["setup a", "a", "b"] * 3
    assert len(timings["a"].seconds) == len(timings["b"].seconds) == 2


def test_shuffled_rounds_run_every_contender_once_per_round():
    calls = []
    contenders = {name: (None, lambda name=name: calls.append(name)) for name in "abcd"}
    interleaved(contenders, repeats=5, warmup=0, shuffle=True, seed=3)
    rounds = [calls[i : i + 4] for i in range(0, 20, 4)]
    assert all(sorted(r) == list("abcd") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # the order changes between rounds


def test_timing_median_and_spread():
    timing = Timing([3.0, 1.0, 2.0, 10.0])
    assert timing.median == 2.5
    q1, q2, q3 = 1.25, 2.5, 8.25  # statistics.quantiles(n=4), exclusive: 1 + .25, 3 + .75 * 7
    assert timing.spread == pytest.approx((q3 - q1) / q2)
    assert timing.low == 1.0  # lower decile of 4 samples: the smallest
    assert Timing([float(i) for i in range(20, 0, -1)]).low == 2.0  # 2nd of 20
    assert math.isnan(Timing().median) and math.isnan(Timing().low)


def test_ratio_interval_of_a_constant_paired_ratio_is_that_ratio():
    # every round: numerator = 2 x denominator, while the denominator itself moves 10x
    # from round to round (host noise). Resampling rounds keeps the pairs, so every
    # resampled ratio of medians is exactly 2: the noise the pairing cancels is gone.
    den = [1.0, 10.0, 2.0, 7.0, 3.0, 5.0, 4.0, 9.0]
    num = [2.0 * d for d in den]
    assert ratio_interval(num, den) == (2.0, 2.0)


def test_ratio_interval_contains_the_ratio_of_medians_and_is_seeded():
    gen = torch.Generator().manual_seed(0)
    den = (1.0 + torch.rand(41, generator=gen)).tolist()
    num = (1.3 * torch.tensor(den) * (1.0 + 0.2 * torch.rand(41, generator=gen))).tolist()
    low, high = ratio_interval(num, den)
    point = Timing(num).median / Timing(den).median
    assert low < point < high
    # the per-round ratios lie in [1.3, 1.56]: so does every ratio of resampled medians
    # of rounds whose ratios do (each median of num is at most 1.56x a median of den)
    assert 1.3 <= low and high <= 1.56
    assert ratio_interval(num, den) == (low, high)  # the same seed: the same interval
    narrow = ratio_interval(num, den, level=0.5)
    assert low <= narrow[0] <= narrow[1] <= high


def test_ratio_interval_rejects_unpaired_or_bad_input():
    assert ratio_interval([1.0], [1.0]) is None  # one round: no interval
    with pytest.raises(ValueError, match="3 numerator samples and 2 denominator"):
        ratio_interval([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="level must be in"):
        ratio_interval([1.0, 2.0], [1.0, 2.0], level=1.0)


def test_tracker_counts_new_storage_only():
    before = torch.zeros(100)  # allocated outside: never counted
    with AllocationTracker() as tracker:
        a = torch.ones(256)  # 1024 bytes
        before.add_(1.0)  # in place on old memory
        view = a.view(16, 16)  # a view: same storage
        b = a * 2.0  # 1024 bytes, peak 2048
        del a, view
        c = b + 1.0  # a's storage freed: 2048 again
        del b, c
        d = torch.empty(10, dtype=torch.float64)  # 80 bytes
    assert tracker.sizes == [1024, 1024, 1024, 80]
    assert tracker.peak == 2048
    assert tracker.largest == 1024
    del d


def test_crossing_interpolates_in_log_density():
    # ratio 0.5 at 0.01 and 2.0 at 0.04: crosses 1 a third of the way, 0.01 * 4^(1/3)
    assert _crossing([(0.01, 0.5), (0.04, 2.0)]) == pytest.approx(0.01 * 4 ** (1 / 3))
    assert math.isnan(_crossing([(0.01, 0.5), (0.04, 0.9)]))


def test_stdp_reference_hand_values():
    # pre spike at step 0, post spike at step 1, decays 1/2: LTP = 1/2; a pre spike at
    # step 2 sees the post trace before it, 1/2: LTD = 1/2. rates 2 and -3.
    pre = torch.tensor([1.0, 0.0, 1.0]).reshape(3, 1, 1)
    post = torch.tensor([0.0, 1.0, 0.0]).reshape(3, 1, 1)
    grad = lambda a, b: b.t() @ a  # noqa: E731
    delta = stdp_reference(
        grad,
        pre,
        post,
        torch.zeros(1, 1),
        torch.zeros(1, 1),
        decay_pre=0.5,
        decay_post=0.5,
        lr_post=2.0,
        lr_pre=-3.0,
    )
    assert delta.item() == pytest.approx(2.0 * 0.5 - 3.0 * 0.5)


def test_mstdpet_reference_matches_the_fused_rule():
    torch.manual_seed(1)
    layer = nn.Linear(5, 3, bias=False).double()
    rule = MSTDPET(0.7, -0.4, 10.0, 15.0, 20.0, per_sample_signal=True).double()
    pre = (torch.rand(6, 2, 5) < 0.4).double()
    post = (torch.rand(6, 2, 3) < 0.4).double()
    reward = torch.tensor([1.5, -0.5], dtype=torch.float64)
    state = rule.initial_state(layer, pre[0], post[0])
    _, state = rule(layer, pre, post, state, reward)  # carry eligibility in
    update, _ = rule(layer, pre.flip(0), post.flip(0), state, reward)
    pot, dep = mstdpet_reference(layer, rule, pre.flip(0), post.flip(0), reward, state)
    torch.testing.assert_close(update.potentiation, pot)
    torch.testing.assert_close(update.depression, dep)


def test_unknown_peer_name():
    with pytest.raises(ValueError, match="peer must be one of"):
        load_peer("brian2")
