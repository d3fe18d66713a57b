"""MSTDP-ET: the fused reverse scan against the step-by-step eligibility recursion."""

import copy
import math

import pytest
import torch
from torch import nn

from plastorch.functional import correlate_per_sample, stdp_factors
from plastorch.rules import MSTDPET
from plastorch.rules.base import state_use

from .helpers import TAU_HALF, TAU_QUARTER, run_rule, spike_train, value

PRE, POST = spike_train(0, 2, steps=3), spike_train(1, steps=3)


def test_hand_values_scalar_reward():
    # tau_z = 1/ln 2 -> decay 1/2, 1/tau_z = ln 2.
    # z_post: 0, (1/2) ln2, (1/4) ln2 -> sum 3/4 ln2; z_pre: 0, 0, (1/4) ln2.
    # Hebbian (2, -3), M = 1 everywhere: LTP = 2 * 3/4 ln2, LTD = 3 * 1/4 ln2.
    fc = nn.Linear(1, 1, bias=False).double()
    rule = MSTDPET(2.0, -3.0, tau_post=TAU_QUARTER, tau_pre=TAU_HALF, tau_eligibility=TAU_HALF)
    update, state = run_rule(rule, fc, PRE, POST, signal=1.0)
    ln2 = math.log(2)
    assert update.potentiation.item() == pytest.approx(1.5 * ln2, abs=1e-14)
    assert update.depression.item() == pytest.approx(0.75 * ln2, abs=1e-14)
    assert state["eligibility_post"].item() == pytest.approx(0.25 * ln2, abs=1e-14)
    assert state["eligibility_pre"].item() == pytest.approx(0.25 * ln2, abs=1e-14)


def test_delayed_reward_reaches_the_pairing_through_the_trace():
    # reward only at the last step of 6: only eligibility carries the pairing there.
    fc = nn.Linear(1, 1, bias=False).double()
    rule = MSTDPET(1.0, -1.0, tau_post=TAU_QUARTER, tau_pre=TAU_HALF, tau_eligibility=TAU_HALF)
    signal = torch.zeros(6, 1, dtype=torch.float64)
    signal[5] = 1.0
    update, _ = run_rule(rule, fc, spike_train(0, steps=6), spike_train(1, steps=6), signal=signal)
    # z_post(1) = 1/2 ln2, decays 4 steps -> 1/32 ln2
    assert update.potentiation.item() == pytest.approx(math.log(2) / 32, abs=1e-14)


def step_by_step(layer, rule, pre, post, signal):
    """Per-sample reference: z_b(t) = d z_b(t-1) + xi_b(t)/tau, dw += M(t,b) z_b(t), split by sign."""
    steps, batch = pre.shape[:2]
    traces = rule.initial_state(layer, pre[0], post[0])
    z = [torch.zeros(batch, *layer.weight.shape, dtype=torch.float64) for _ in range(2)]
    pot = torch.zeros_like(layer.weight)
    dep = torch.zeros_like(layer.weight)
    d = math.exp(-rule.dt / rule.tau_eligibility)
    for t in range(steps):
        f = stdp_factors(
            pre[t : t + 1],
            post[t : t + 1],
            traces["trace_pre"],
            traces["trace_post"],
            decay_pre=rule.decay_pre,
            decay_post=rule.decay_post,
            trace_mode=rule.trace_mode,
        )
        traces = {"trace_pre": f.next_trace_pre, "trace_post": f.next_trace_post}
        xi = [
            correlate_per_sample(layer, f.trace_pre, post[t : t + 1]),
            correlate_per_sample(layer, pre[t : t + 1], f.trace_post_before),
        ]
        for i, rate in enumerate((rule.lr_post, rule.lr_pre)):
            z[i] = d * z[i] + xi[i] / rule.tau_eligibility
            for b in range(batch):
                m = signal[t, b] if signal.shape[1] > 1 else signal[t, 0]
                contribution = abs(rate * m) * z[i][b]
                if rate * m >= 0:
                    pot += contribution
                else:
                    dep += contribution
    return pot, dep, z


@pytest.mark.parametrize("varying", [True, False], ids=["signal [T, B]", "signal [B]"])
@pytest.mark.parametrize("mode", ["cumulative", "nearest"])
@pytest.mark.parametrize("lr_post, lr_pre", [(0.8, -0.5), (-0.8, 0.5), (0.8, 0.5), (-0.8, -0.5)])
def test_fused_equals_recursion_per_sample(mode, lr_post, lr_pre, varying):
    # a [B] signal (constant over the window) takes the factored path: one
    # acausal factor for both signs, the sign in the weights of its terms
    layer = nn.Linear(4, 3, bias=False).double()
    pre = (torch.rand(12, 3, 4) < 0.3).double()
    post = (torch.rand(12, 3, 3) < 0.3).double()
    signal = torch.randn(12 if varying else 1, 3, dtype=torch.float64).expand(12, 3)
    rule = MSTDPET(
        lr_post,
        lr_pre,
        tau_post=6.0,
        tau_pre=9.0,
        tau_eligibility=5.0,
        trace_mode=mode,
        per_sample_signal=True,
    )
    fused, state = run_rule(rule, layer, pre, post, signal=signal if varying else signal[0])
    pot, dep, z = step_by_step(layer, rule, pre, post, signal)
    torch.testing.assert_close(
        fused.potentiation if fused.potentiation is not None else 0 * pot,
        pot,
        rtol=1e-11,
        atol=1e-12,
    )
    torch.testing.assert_close(
        fused.depression if fused.depression is not None else 0 * dep, dep, rtol=1e-11, atol=1e-12
    )
    torch.testing.assert_close(state["eligibility_post"], z[0], rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(state["eligibility_pre"], z[1], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("per_sample", [False, True])
def test_windows_split_anywhere_give_the_same_update(per_sample):
    layer = nn.Conv2d(1, 2, 3, padding=1).double()
    pre = (torch.rand(10, 2, 1, 4, 4) < 0.3).double()
    post = (torch.rand(10, 2, 2, 4, 4) < 0.2).double()
    signal = torch.randn(10, 2 if per_sample else 1, dtype=torch.float64)
    rule = MSTDPET(
        0.6, -0.4, tau_post=5.0, tau_pre=7.0, tau_eligibility=11.0, per_sample_signal=per_sample
    )
    whole, whole_state = run_rule(rule, layer, pre, post, signal=signal)
    state, delta = rule.initial_state(layer, pre[0], post[0]), 0
    for lo, hi in ((0, 3), (3, 4), (4, 10)):
        part, state = rule(layer, pre[lo:hi], post[lo:hi], state, signal[lo:hi])
        delta = delta + part.delta()
    torch.testing.assert_close(whole.delta(), delta, rtol=1e-11, atol=1e-12)
    for name in state:
        torch.testing.assert_close(whole_state[name], state[name], rtol=1e-11, atol=1e-12)


def test_scalar_signal_matches_recursion_and_eligibility_is_weight_shaped():
    layer = nn.Linear(3, 2, bias=False).double()
    pre = (torch.rand(8, 4, 3) < 0.4).double()
    post = (torch.rand(8, 4, 2) < 0.4).double()
    rule = MSTDPET(0.3, -0.6, tau_post=4.0, tau_pre=4.0, tau_eligibility=6.0)
    fused, state = run_rule(rule, layer, pre, post, signal=-0.7)
    pot, dep, z = step_by_step(
        layer, rule, pre, post, torch.full((8, 1), -0.7, dtype=torch.float64)
    )
    torch.testing.assert_close(fused.delta(), pot - dep, rtol=1e-11, atol=1e-12)
    assert state["eligibility_post"].shape == layer.weight.shape
    torch.testing.assert_close(state["eligibility_post"], z[0].sum(0), rtol=1e-11, atol=1e-12)


def test_per_sample_signal_requires_per_sample_eligibility():
    fc = nn.Linear(1, 1, bias=False).double()
    rule = MSTDPET(1.0, -1.0)
    pre, post = torch.cat([PRE, PRE], 1), torch.cat([POST, POST], 1)
    with pytest.raises(ValueError, match="per_sample_signal=True"):
        run_rule(rule, fc, pre, post, signal=torch.tensor([1.0, -1.0]).double())
    with pytest.raises(ValueError, match="per_sample_signal"):
        MSTDPET(1.0, -1.0, batch_reduction=torch.amax)
    with pytest.raises(ValueError, match="tau_eligibility"):
        MSTDPET(1.0, -1.0, tau_eligibility=0.0)


def test_no_signal_advances_eligibility_only():
    fc = nn.Linear(1, 1, bias=False).double()
    rule = MSTDPET(1.0, -1.0, tau_post=TAU_QUARTER, tau_pre=TAU_HALF, tau_eligibility=TAU_HALF)
    update, state = run_rule(rule, fc, PRE, POST, signal=None)
    assert value(update.potentiation) is None and value(update.depression) is None
    assert state["eligibility_post"].item() == pytest.approx(0.25 * math.log(2))


@pytest.mark.parametrize("per_sample", [True, False])
def test_reusable_state_takes_the_eligibility_in_place_with_the_same_values(per_sample):
    """Inside ``state_use(reusable=True)`` (how a Learner settles windows) the eligibility
    (per sample or summed) is accumulated into the given tensors; outside, they are
    untouched."""
    layer = nn.Linear(5, 3, bias=False).double()
    g = torch.Generator().manual_seed(4)
    pre = (torch.rand(2, 7, 4, 5, generator=g) < 0.3).double()
    post = (torch.rand(2, 7, 4, 3, generator=g) < 0.3).double()
    signals = torch.randn(2, 4, generator=g, dtype=torch.float64)
    if not per_sample:
        signals = signals[:, 0].tolist()  # scalars
    rule = MSTDPET(
        0.7, -0.4, tau_post=5.0, tau_pre=6.0, tau_eligibility=8.0, per_sample_signal=per_sample
    )
    _, warm = run_rule(rule, layer, pre[0], post[0], signals[0])
    before = {name: value.clone() for name, value in warm.items()}
    expected_update, expected = rule(layer, pre[1], post[1], warm, signals[1])
    for name in warm:  # a plain call leaves the state it was given alone
        assert torch.equal(warm[name], before[name])
    with state_use(reusable=True):
        update, new = rule(layer, pre[1], post[1], warm, signals[1])
    torch.testing.assert_close(update.delta(), expected_update.delta(), rtol=1e-13, atol=1e-15)
    for name in ("eligibility_post", "eligibility_pre"):
        torch.testing.assert_close(new[name], expected[name], rtol=1e-13, atol=1e-15)
        # the given tensor takes the window's pairs ([B, *W] and [*W] alike)
        assert new[name].data_ptr() == warm[name].data_ptr()


def test_discarded_or_initial_state_skips_only_work_that_cannot_matter():
    """``discarded``: the new state is thrown away (end of an episode), so z(T) is not
    formed; ``initial``: z0 is the initial zeros, so the carried change is skipped.
    Either way the update is the same."""
    layer = nn.Linear(5, 3, bias=False).double()
    g = torch.Generator().manual_seed(5)
    pre = (torch.rand(6, 4, 5, generator=g) < 0.3).double()
    post = (torch.rand(6, 4, 3, generator=g) < 0.3).double()
    reward = torch.randn(4, generator=g, dtype=torch.float64)
    rule = MSTDPET(0.7, -0.4, tau_eligibility=8.0, per_sample_signal=True)
    initial = rule.initial_state(layer, pre[0], post[0])
    expected, expected_state = rule(layer, pre, post, initial, reward)
    with state_use(initial=True):
        fresh, fresh_state = rule(layer, pre, post, initial, reward)
    torch.testing.assert_close(fresh.delta(), expected.delta(), rtol=0, atol=0)
    torch.testing.assert_close(fresh_state["eligibility_pre"], expected_state["eligibility_pre"])
    with state_use(reusable=True, discarded=True):
        last, last_state = rule(layer, pre, post, expected_state, reward)
    reference, _ = rule(layer, pre, post, expected_state, reward)
    torch.testing.assert_close(last.delta(), reference.delta(), rtol=1e-13, atol=1e-15)
    # nothing was carried out: the eligibility handed back is the one given, untouched
    assert last_state["eligibility_post"] is expected_state["eligibility_post"]
    # no signal and a discarded state: nothing to compute but the traces
    with state_use(discarded=True):
        silent, silent_state = rule(layer, pre, post, expected_state)
    assert silent.delta() is None
    plain_state = rule(layer, pre, post, expected_state)[1]
    for name in ("trace_pre", "trace_post"):
        torch.testing.assert_close(silent_state[name], plain_state[name], rtol=0, atol=0)


# -- one combined eligibility (Florian's z, SpikingJelly's trace_e) --------------------------


def _windows(seed, steps=(5, 7), batch=3, n_in=4, n_out=3):
    g = torch.Generator().manual_seed(seed)
    pres = [(torch.rand(t, batch, n_in, generator=g) < 0.3).double() for t in steps]
    posts = [(torch.rand(t, batch, n_out, generator=g) < 0.3).double() for t in steps]
    return g, pres, posts


def _both(lr_post, lr_pre, mode, per_sample, **extra):
    common = dict(
        tau_post=6.0,
        tau_pre=9.0,
        tau_eligibility=5.0,
        trace_mode=mode,
        per_sample_signal=per_sample,
        **extra,
    )
    return (
        MSTDPET(lr_post, lr_pre, eligibility="split", **common),
        MSTDPET(lr_post, lr_pre, eligibility="combined", **common),
    )


@pytest.mark.parametrize("per_sample", [True, False])
@pytest.mark.parametrize("mode", ["cumulative", "nearest"])
@pytest.mark.parametrize("lr_post, lr_pre", [(0.8, -0.5), (-0.8, 0.5), (0.8, 0.0), (0.0, -0.5)])
def test_combined_eligibility_is_the_rate_weighted_sum_and_gives_the_same_change(
    lr_post, lr_pre, mode, per_sample
):
    """z = eta_post z_post + eta_pre z_pre obeys the same recursion (one decay), so
    every window's net change is the split rule's, and so is the carried state."""
    layer = nn.Linear(4, 3, bias=False).double()
    g, pres, posts = _windows(1)
    split, combined = _both(lr_post, lr_pre, mode, per_sample)
    states = [rule.initial_state(layer, pres[0][0], posts[0][0]) for rule in (split, combined)]
    assert set(states[1]) == {"trace_pre", "trace_post", "eligibility"}
    for pre, post in zip(pres, posts):
        steps = pre.shape[0]
        signal = torch.randn(steps, 3 if per_sample else 1, generator=g, dtype=torch.float64)
        (u_split, states[0]), (u_comb, states[1]) = [
            rule(layer, pre, post, state, signal) for rule, state in zip((split, combined), states)
        ]
        torch.testing.assert_close(u_comb.delta(), u_split.delta(), rtol=1e-12, atol=1e-14)
        expected = lr_post * states[0]["eligibility_post"] + lr_pre * states[0]["eligibility_pre"]
        torch.testing.assert_close(states[1]["eligibility"], expected, rtol=1e-12, atol=1e-14)
        for name in ("trace_pre", "trace_post"):
            torch.testing.assert_close(states[1][name], states[0][name], rtol=0, atol=0)


def test_combined_hand_values_and_its_halves_are_the_parts_of_the_net_change():
    # the hand-valued pairing of test_hand_values_scalar_reward: LTP 2 * 3/4 ln2 and
    # LTD 3 * 1/4 ln2 give the net change 3/4 ln2, all of it potentiation
    fc = nn.Linear(1, 1, bias=False).double()
    rule = MSTDPET(
        2.0,
        -3.0,
        tau_post=TAU_QUARTER,
        tau_pre=TAU_HALF,
        tau_eligibility=TAU_HALF,
        eligibility="combined",
    )
    update, state = run_rule(rule, fc, PRE, POST, signal=1.0)
    ln2 = math.log(2)
    assert update.potentiation.item() == pytest.approx(0.75 * ln2, abs=1e-14)
    assert update.depression.item() == 0.0
    # z(T) = 2 * 1/4 ln2 - 3 * 1/4 ln2
    assert state["eligibility"].item() == pytest.approx(-0.25 * ln2, abs=1e-14)
    # a negative reward turns the net change, and with it the halves, around
    update, _ = run_rule(rule, fc, PRE, POST, signal=-1.0)
    assert update.potentiation.item() == 0.0
    assert update.depression.item() == pytest.approx(0.75 * ln2, abs=1e-14)


@pytest.mark.parametrize("reduction", ["sum", "mean", torch.amax])
def test_combined_halves_split_the_net_change_per_sample_for_a_callable_reduction(reduction):
    """With a weight-dependent bound the halves are the positive and the negative part
    of the net change (per sample before a callable batch reduction, else summed)."""
    layer = nn.Linear(4, 3, bias=False).double()
    g, pres, posts = _windows(2)
    split, combined = _both(0.8, -0.5, "cumulative", True, batch_reduction=reduction)
    reduce = (
        (lambda x: x.sum(0))
        if reduction == "sum"
        else (lambda x: x.mean(0))
        if reduction == "mean"
        else (lambda x: torch.amax(x, 0))
    )
    states = [rule.initial_state(layer, pres[0][0], posts[0][0]) for rule in (split, combined)]
    # per-sample changes of the split rule, from its per-sample halves
    per_sample = MSTDPET(
        0.8,
        -0.5,
        tau_post=6.0,
        tau_pre=9.0,
        tau_eligibility=5.0,
        per_sample_signal=True,
        batch_reduction=lambda x, dim: x,  # keeps [B, *W]
    )
    reference = per_sample.initial_state(layer, pres[0][0], posts[0][0])
    for pre, post in zip(pres, posts):
        signal = torch.randn(pre.shape[0], 3, generator=g, dtype=torch.float64)
        update, states[1] = combined(layer, pre, post, states[1], signal)
        halves, reference = per_sample(layer, pre, post, reference, signal)
        net = halves.potentiation - halves.depression  # [B, *W]
        if callable(reduction):
            pot, dep = reduce(net.clamp(min=0)), reduce((-net).clamp(min=0))
        else:
            total = reduce(net)
            pot, dep = total.clamp(min=0), (-total).clamp(min=0)
        torch.testing.assert_close(update.potentiation, pot, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(update.depression, dep, rtol=1e-12, atol=1e-14)


def test_combined_eligibility_under_a_learner_with_soft_bounds():
    """A Learner with Soft bounds scales the parts of the net change: dw = (wmax - w) P - w D."""
    from plastorch import Learner
    from plastorch.bounds import Soft

    class Threshold(nn.Module):
        def forward(self, x):
            return (x > 0.1).to(x.dtype)

    g = torch.Generator().manual_seed(3)
    layer = nn.Linear(4, 3, bias=False).double()
    with torch.no_grad():
        layer.weight.uniform_(0.2, 0.8, generator=g)
    source = Threshold()
    make = lambda: MSTDPET(  # noqa: E731
        0.08, -0.05, tau_eligibility=5.0, per_sample_signal=True, eligibility="combined"
    )
    bound = Soft(0.0, 1.0, clip=False)  # the formula itself, without the clipping to [0, 1]
    learner = Learner(layer, source, make(), bound=bound, step_mode="multi", apply=True)
    plain = make()
    state = plain.initial_state(layer, torch.zeros(3, 4), torch.zeros(3, 3))
    for _ in range(3):
        pre = (torch.rand(6, 3, 4, generator=g) < 0.4).double()
        reward = torch.randn(3, generator=g, dtype=torch.float64)
        w = layer.weight.detach().clone()
        post = source(layer(pre))  # recorded by the learner's hooks
        update, state = plain(layer, pre, post, state, reward)
        expected = (1.0 - w) * update.potentiation - w * update.depression
        assert bool((update.potentiation * update.depression == 0).all())
        learner.step(reward)
        torch.testing.assert_close(layer.weight.detach() - w, expected, rtol=1e-12, atol=1e-14)


def test_eligibility_must_be_split_or_combined_and_match_the_state():
    with pytest.raises(ValueError, match="eligibility must be one of"):
        MSTDPET(1.0, -1.0, eligibility="single")
    fc = nn.Linear(1, 1, bias=False).double()
    split_state = MSTDPET(1.0, -1.0).initial_state(fc, PRE[0], POST[0])
    combined = MSTDPET(1.0, -1.0, eligibility="combined")
    with pytest.raises(ValueError, match=r"carries \['eligibility'\].*eligibility_post"):
        combined(fc, PRE, POST, split_state, 1.0)


@pytest.mark.skipif(
    not __import__("plastorch").functional.compiled.available(), reason="numba is not installed"
)
@pytest.mark.parametrize("eligibility", ["combined", "split"])
@pytest.mark.parametrize(
    "trace_mode, per_step", [("cumulative", False), ("cumulative", True), ("nearest", False)]
)
def test_per_sample_windows_in_a_learner_advance_in_one_pass(
    monkeypatch, eligibility, trace_mode, per_step
):
    """Continuing windows of per-sample eligibility in a Learner: the read-out, the decay
    and the new pairs of each z in one compiled pass per window (where the parts allow
    it), with the changes and the carried z of the torch calls and of the rule called as
    a function; a [B] and a [T, B] reward, both trace modes."""
    from plastorch import Learner
    from plastorch.functional import compiled, sparse_mode

    class Threshold(nn.Module):
        def forward(self, x):
            return (x > 0.3).to(x.dtype)

    calls = []
    original = compiled._advance_unchecked

    def counting(*args, **kwargs):
        calls.append(args[6] is not None)  # whether this pass reads z out
        return original(*args, **kwargs)

    monkeypatch.setattr(compiled, "_advance_unchecked", counting)
    g = torch.Generator().manual_seed(8)
    base = nn.Linear(12, 9, bias=False).double()
    with torch.no_grad():
        base.weight.uniform_(0.0, 0.2, generator=g)
    windows = [(torch.rand(10, 4, 12, generator=g) < 0.3).double() for _ in range(4)]
    shape = (10, 4) if per_step else (4,)
    rewards = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in windows]
    make = lambda: MSTDPET(  # noqa: E731
        0.3,
        -0.2,
        tau_eligibility=8.0,
        trace_mode=trace_mode,
        per_sample_signal=True,
        eligibility=eligibility,
    )
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "_ENABLED", enabled)
        layer, source = copy.deepcopy(base), Threshold()
        rule = make()
        learner = Learner(layer, source, rule, step_mode="multi", apply=False)
        deltas = []
        with sparse_mode("sparse"):  # (auto would take the dense path at this size)
            for pre, reward in zip(windows, rewards):
                source(layer(pre))  # recorded by the learner's hooks
                deltas.append(learner.step(reward).clone())
        results.append((deltas, [learner.state_dict()[n] for n in rule._eligibility_names()]))
    # the first window's z is the initial zero (not read, a new tensor); then in place.
    # Nearest traces: the acausal pairs walk the pre spikes (no pass), and the combined
    # z's parts are two windows (the torch calls)
    if trace_mode == "cumulative":
        count = 1 if eligibility == "combined" else 2
        assert calls == [False] * count + [True] * 3 * count
    else:
        assert calls == ([] if eligibility == "combined" else [False] + [True] * 3)
    (fast, z_fast), (slow, z_slow) = results
    # the rule called as a function (a new z per window, read out before it) is the reference
    layer, source = copy.deepcopy(base), Threshold()
    plain = make()
    state = plain.initial_state(layer, windows[0][0], source(layer(windows[0][0])))
    for pre, reward, a, b in zip(windows, rewards, fast, slow):
        update, state = plain(layer, pre, source(layer(pre)), state, reward)
        torch.testing.assert_close(a, update.delta(), rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    for z, z_torch, name in zip(z_fast, z_slow, plain._eligibility_names()):
        torch.testing.assert_close(z, state[name], rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(z, z_torch, rtol=1e-12, atol=1e-15)
        assert z.shape == (4, 9, 12) and bool(z.ne(0).any())


@pytest.mark.parametrize("eligibility", ["split", "combined"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("delta_only, reusable", [(False, False), (True, True), (False, True)])
@pytest.mark.parametrize("layer_kind", ["linear", "linear, batch 1", "conv"])
def test_one_step_with_one_signal_equals_the_window_algebra(
    eligibility, reduction, delta_only, reusable, layer_kind
):
    # a float signal on a one-step window takes the direct recursion z <- d z + xi / tau;
    # the same signal as a [T, 1] tensor takes the window's scans: the same updates and
    # the same carried state, step after step (signals of both signs and zero). At
    # batch 1 the direct step is one pass over each z (advance_sum_'s rank-one terms).
    torch.manual_seed(8)
    if layer_kind.startswith("linear"):
        batch = 1 if layer_kind.endswith("batch 1") else 2
        layer = nn.Linear(5, 3, bias=False).double()
        pre = (torch.rand(6, 1, batch, 5) < 0.4).double()
        post = (torch.rand(6, 1, batch, 3) < 0.4).double()
    else:
        layer = nn.Conv1d(2, 3, 3, padding=1, bias=False).double()
        pre = (torch.rand(6, 1, 2, 2, 6) < 0.4).double()
        post = (torch.rand(6, 1, 2, 3, 6) < 0.4).double()
    rule = MSTDPET(
        0.7, -0.4, tau_post=5.0, tau_pre=6.0, tau_eligibility=8.0,
        eligibility=eligibility, batch_reduction=reduction,
    )  # fmt: skip
    signals = [0.5, -1.25, 0.0, 2.0, -0.3, 1.0]
    fast = rule.initial_state(layer, pre[0][0], post[0][0])
    scans = {name: value.clone() for name, value in fast.items()}
    for t, m in enumerate(signals):
        with state_use(reusable=reusable, delta_only=delta_only):
            direct, fast = rule(layer, pre[t], post[t], fast, m)
        with state_use(delta_only=delta_only):
            per_step = torch.tensor([[m]], dtype=torch.float64)
            window, scans = rule(layer, pre[t], post[t], scans, per_step)
        if window.delta() is None:
            assert direct.delta() is None or not direct.delta().any()
        else:
            torch.testing.assert_close(direct.delta(), window.delta(), rtol=1e-12, atol=1e-15)
        if not delta_only:
            for half in ("potentiation", "depression"):
                a, b = getattr(direct, half), getattr(window, half)
                if a is None or b is None:
                    assert (a is None or not a.any()) and (b is None or not b.any())
                else:
                    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
        for name in scans:
            torch.testing.assert_close(fast[name], scans[name], rtol=1e-12, atol=1e-15)
