"""Delay-adjusted STDP / MSTDP of weights and delays on a hand-made 2x3 case.

Decays of 1/2 per ms (tau = 1/ln 2) make every window value a power of two:
exp(-|t_delta| / tau) = 2 ** -|t_delta|.
"""

import random

import pytest
import torch
from torch import nn

from plastorch import Learner
from plastorch.bounds import Hard
from plastorch.layers import DelayedLinear
from plastorch.rules import (
    DelayAdjustedMSTDP,
    DelayAdjustedMSTDPD,
    DelayAdjustedSTDP,
    DelayAdjustedSTDPD,
)

from .helpers import TAU_HALF, run_rule

# delays [out=2, in=3] in ms; pre: input 0 @1, input 1 @2, input 2 @0 and @4;
# post: output 0 @3 and @6, output 1 @2. Arrivals (send + delay):
#   (0,0) @1; (0,1) @3; (0,2) @2, @6; (1,0) @4; (1,1) @2; (1,2) @1, @5.
DELAYS = [[0.0, 1.0, 2.0], [3.0, 0.0, 1.0]]
PRE = [[1], [2], [0, 4]]
POST = [[3, 6], [2]]
# causal pairs (post at or after the latest arrival), 2 ** -t_delta:
#   output 0 @3: t_delta 3-1-0=2, 3-2-1=0, 3-0-2=1  -> 1/4, 1, 1/2
#   output 0 @6: t_delta 6-1-0=5, 6-2-1=3, 6-4-2=0  -> 1/32, 1/8, 1
#   output 1 @2: (1,1) 2-2-0=0, (1,2) 2-0-1=1        -> 1, 1/2  ((1,0) not arrived yet)
CAUSAL = [[0.28125, 1.125, 1.5], [0.0, 1.0, 0.5]]
# acausal pairs (arrival after the latest post), 2 ** -|t_delta|:
#   (0,2) arrives @6, post 0 @3: 3-4-2=-3 -> 1/8;  (1,0) @4, post 1 @2: 2-1-3=-2 -> 1/4;
#   (1,2) @5, post 1 @2: 2-4-1=-3 -> 1/8
ACAUSAL = [[0.0, 0.0, 0.125], [0.25, 0.0, 0.125]]
C, A = torch.tensor(CAUSAL, dtype=torch.float64), torch.tensor(ACAUSAL, dtype=torch.float64)


def trains(times, steps, batch=1):
    out = torch.zeros(steps, batch, len(times), dtype=torch.float64)
    for n, ts in enumerate(times):
        for t in ts:
            out[t, :, n] = 1.0
    return out


def layer_2x3(tolerance=0.0, delays=DELAYS, max_delay=3.0):
    layer = DelayedLinear(
        3, 2, max_delay, 1.0, bias=False, interp_tolerance=tolerance, dtype=torch.float64
    )
    with torch.no_grad():
        layer.delay.copy_(torch.tensor(delays))
    return layer


def halves(update):
    zero = torch.zeros(2, 3, dtype=torch.float64)
    return tuple(zero if h is None else h for h in (update.potentiation, update.depression))


def check(update, potentiation, depression):
    got_p, got_d = halves(update)
    torch.testing.assert_close(got_p, torch.as_tensor(potentiation, dtype=torch.float64))
    torch.testing.assert_close(got_d, torch.as_tensor(depression, dtype=torch.float64))


WEIGHT_MODES = [  # (lr_pos, lr_neg) -> potentiation, depression
    ((2.0, -3.0), 2 * C, 3 * A),  # Hebbian
    ((-2.0, 3.0), 3 * A, 2 * C),  # anti-Hebbian
    ((2.0, 3.0), 2 * C + 3 * A, 0 * C),  # potentiative only
    ((-2.0, -3.0), 0 * C, 2 * C + 3 * A),  # depressive only
]


@pytest.mark.parametrize("rates, potentiation, depression", WEIGHT_MODES)
def test_delay_adjusted_stdp_sign_modes(rates, potentiation, depression):
    rule = DelayAdjustedSTDP(*rates, tau_pos=TAU_HALF, tau_neg=TAU_HALF)
    update, _ = run_rule(rule, layer_2x3(), trains(PRE, 8), trains(POST, 8))
    check(update, potentiation, depression)
    if not bool(depression.any()):
        assert update.depression is None


def test_the_hand_derived_halves_as_numbers():
    rule = DelayAdjustedSTDP(2.0, -3.0, tau_pos=TAU_HALF, tau_neg=TAU_HALF)
    update, state = run_rule(rule, layer_2x3(), trains(PRE, 8), trains(POST, 8))
    assert update.potentiation.round(decimals=12).tolist() == [[0.5625, 2.25, 3.0], [0.0, 2.0, 1.0]]
    assert update.depression.round(decimals=12).tolist() == [[0.0, 0.0, 0.375], [0.75, 0.0, 0.375]]
    # the step at which the latest arrival was sent, the latest post spikes, the clock
    assert state["arrival_sent_at"].tolist() == [[[1, 2, 4], [1, 2, 4]]]
    assert state["post_at"].tolist() == [[6, 2]]
    assert state["clock"].item() == 7


@pytest.mark.parametrize("rates, potentiation, depression", WEIGHT_MODES)
def test_delay_adjusted_mstdp_scalar_signal(rates, potentiation, depression):
    rule = DelayAdjustedMSTDP(*rates, tau_pos=TAU_HALF, tau_neg=TAU_HALF)
    update, _ = run_rule(rule, layer_2x3(), trains(PRE, 8), trains(POST, 8), signal=-0.5)
    check(update, 0.5 * depression, 0.5 * potentiation)  # a negative signal swaps the halves


@pytest.mark.parametrize("rates", [m[0] for m in WEIGHT_MODES])
def test_delay_adjusted_mstdp_per_sample_signal(rates):
    lr_pos, lr_neg = rates
    rule = DelayAdjustedMSTDP(lr_pos, lr_neg, tau_pos=TAU_HALF, tau_neg=TAU_HALF)
    signal = torch.tensor([1.0, -0.5], dtype=torch.float64)
    update, _ = run_rule(
        rule, layer_2x3(), trains(PRE, 8, batch=2), trains(POST, 8, batch=2), signal=signal
    )
    potentiation = depression = 0
    for m in (1.0, -0.5):  # each sample: each term goes to the half that sign(lr * M) selects
        for term in (lr_pos * m * C, lr_neg * m * A):
            potentiation = potentiation + term.clamp(min=0)
            depression = depression + (-term).clamp(min=0)
    check(update, potentiation, depression)
    mean = DelayAdjustedMSTDP(
        lr_pos, lr_neg, tau_pos=TAU_HALF, tau_neg=TAU_HALF, batch_reduction="mean"
    )
    update, _ = run_rule(
        mean, layer_2x3(), trains(PRE, 8, batch=2), trains(POST, 8, batch=2), signal=signal
    )
    check(update, potentiation / 2, depression / 2)


def test_per_step_signal_credits_only_the_pairs_completed_at_that_step():
    rule = DelayAdjustedMSTDP(2.0, -3.0, tau_pos=TAU_HALF, tau_neg=TAU_HALF)
    signal = torch.zeros(8, 1, dtype=torch.float64)
    signal[3] = 2.0  # step 3: post 0 pairs with (0,0), (0,1), (0,2): 1/4, 1, 1/2
    update, _ = run_rule(rule, layer_2x3(), trains(PRE, 8), trains(POST, 8), signal=signal)
    assert update.potentiation.round(decimals=12).tolist() == [[1.0, 4.0, 2.0], [0.0, 0.0, 0.0]]
    assert update.depression is None


DELAY_MODES = [  # (lr_neg, lr_pos) -> lengthening (potentiation), shortening (depression)
    ((-2.0, 3.0), 3 * A, 2 * C),  # Hebbian: causal pairs shorten, acausal lengthen
    ((2.0, -3.0), 2 * C, 3 * A),  # anti-Hebbian
    ((-2.0, -3.0), 0 * C, 2 * C + 3 * A),  # "potentiative": every delay shortens
    ((2.0, 3.0), 2 * C + 3 * A, 0 * C),  # "depressive": every delay lengthens
]


@pytest.mark.parametrize("rates, lengthen, shorten", DELAY_MODES)
def test_delay_adjusted_stdpd_sign_modes(rates, lengthen, shorten):
    rule = DelayAdjustedSTDPD(*rates, tau_neg=TAU_HALF, tau_pos=TAU_HALF)
    assert rule.target == "delay"
    update, _ = run_rule(rule, layer_2x3(), trains(PRE, 8), trains(POST, 8))
    check(update, lengthen, shorten)


@pytest.mark.parametrize("rates, lengthen, shorten", DELAY_MODES)
def test_delay_adjusted_mstdpd_scalar_and_per_sample_signals(rates, lengthen, shorten):
    rule = DelayAdjustedMSTDPD(*rates, tau_neg=TAU_HALF, tau_pos=TAU_HALF)
    update, _ = run_rule(rule, layer_2x3(), trains(PRE, 8), trains(POST, 8), signal=3.0)
    check(update, 3 * lengthen, 3 * shorten)
    signal = torch.tensor([-1.0, 0.0], dtype=torch.float64)  # sample 1 has no signal
    update, _ = run_rule(
        rule, layer_2x3(), trains(PRE, 8, batch=2), trains(POST, 8, batch=2), signal=signal
    )
    check(update, shorten, lengthen)


def test_interp_tolerance_makes_a_rounded_arrival_co_occur():
    # d = 2.4 arrives at round(2.4) = 2, the post step: t_delta = 2 - 0 - 2.4 = -0.4
    def run(tolerance):
        layer = DelayedLinear(
            1, 1, 3.0, bias=False, interp_tolerance=tolerance, delay_init=2.4, dtype=torch.float64
        )
        rule = DelayAdjustedSTDP(1.0, -1.0, tau_pos=TAU_HALF, tau_neg=TAU_HALF)
        return run_rule(rule, layer, trains([[0]], 4), trains([[2]], 4))[0]

    strict = run(0.0)  # acausal side: -2 ** -0.4
    assert strict.potentiation is None
    assert round(strict.depression.item(), 12) == 0.757858283255
    tolerant = run(0.5)  # |t_delta| <= 0.5 counts as co-occurring: K(0) = +1
    assert tolerant.potentiation.item() == 1.0
    assert tolerant.depression is None


def test_rule_reads_delays_clamped_to_the_layer_range():
    # a stored delay of 9 on a layer with max_delay 3 acts as 3 (same as the 2x3 case)
    delays = [[0.0, 1.0, 2.0], [9.0, 0.0, 1.0]]
    rule = DelayAdjustedSTDP(2.0, -3.0, tau_pos=TAU_HALF, tau_neg=TAU_HALF)
    update, _ = run_rule(rule, layer_2x3(delays=delays), trains(PRE, 8), trains(POST, 8))
    check(update, 2 * C, 3 * A)


def test_learner_single_steps_equal_the_rule_on_the_window():
    torch.manual_seed(11)
    layer = DelayedLinear(4, 3, max_delay=4.0, dt=0.5, dtype=torch.float64)
    source = nn.Identity()
    rule = DelayAdjustedMSTDP(1.0, -0.5, tau_pos=5.0, tau_neg=8.0)
    learner = Learner(layer, source, rule)
    pre = (torch.rand(12, 2, 4) < 0.4).double()
    post = (torch.rand(12, 2, 3) < 0.4).double()
    signal = torch.randn(12, 2, dtype=torch.float64)
    total = 0
    for t in range(12):
        layer(pre[t])
        source(post[t])
        total = total + learner.step(signal[t])
    expected, _ = run_rule(rule, layer, pre, post, signal=signal)
    torch.testing.assert_close(total, expected.delta(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("rates, signal", [((0.5, -0.5), 1.0), ((-0.5, 0.5), -1.0)])
def test_mstdpd_moves_a_delay_toward_aligning_pre_with_post(seed, rates, signal):
    # one pre neuron fires at t_pre, the post neuron (driven from outside) at t_pre + gap:
    # anti-Hebbian signs with M = +1, or Hebbian signs with M = -1, move d toward gap.
    rng = random.Random(seed)
    t_pre, gap, start = rng.randint(0, 3), rng.uniform(3.0, 15.0), rng.uniform(0.0, 18.0)
    layer = DelayedLinear(1, 1, 18.0, bias=False, delay_init=start, dtype=torch.float64)
    source = nn.Identity()
    rule = DelayAdjustedMSTDPD(*rates, tau_neg=20.0, tau_pos=20.0)
    learner = Learner(layer, source, rule, bound=Hard(0.0, 18.0), step_mode="multi", apply=True)
    steps = t_pre + 21
    pre = torch.zeros(steps, 1, 1, dtype=torch.float64)
    post = torch.zeros(steps, 1, 1, dtype=torch.float64)
    pre[t_pre], post[t_pre + round(gap)] = 1.0, 1.0
    target = float(round(gap))  # the delay that makes the arrival co-occur with post
    distance, settled = abs(layer.delay.item() - target), 0
    for _ in range(80):
        layer.reset()
        learner.reset()
        layer(pre)
        source(post)
        learner.step(signal)
        new_distance = abs(layer.delay.item() - target)
        if distance > 0.5:
            assert new_distance < distance  # every trial moves toward alignment
        distance = new_distance
        settled = settled + 1 if distance <= 0.5 else 0
        if settled == 5:  # stays within half a step of alignment
            break
    assert settled == 5
