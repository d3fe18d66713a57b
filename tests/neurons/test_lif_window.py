"""The compiled window loop of LIF / AdaptiveLIF (``_window``) against the step-by-step path."""

import math

import pytest
import torch

from plastorch.layers import InhibitedPopulation, LateralInhibition
from plastorch.neurons import LIF, AdaptiveLIF
from plastorch.neurons import lif as lif_module


def _population(neuron_kwargs, strength=2.0, hooked=False, **kwargs):
    neuron = AdaptiveLIF(5, **neuron_kwargs)
    if hooked:  # a hook on the neuron makes InhibitedPopulation step it one call at a time
        neuron.register_forward_hook(lambda module, args, output: None)
    return InhibitedPopulation(neuron, LateralInhibition(strength, **kwargs))


@pytest.mark.parametrize(
    "neuron_kwargs",
    [
        dict(theta_plus=0.5, tau_theta=1e7, refractory=2.5),
        # tau_theta = 0.25 ms: exp(dt / tau_theta) grows too fast for one block, so the
        # window is cut into blocks of 5 steps, each converting theta once
        dict(theta_plus=0.5, tau_theta=0.25, refractory=0.0),
    ],
)
@pytest.mark.parametrize("self_inhibition", [False, True])
def test_fused_population_equals_the_step_by_step_loop(neuron_kwargs, self_inhibition):
    generator = torch.Generator().manual_seed(0)
    current = torch.rand(40, 3, 5, generator=generator) * 12.0
    fused = _population(neuron_kwargs, self_inhibition=self_inhibition)
    looped = _population(neuron_kwargs, hooked=True, self_inhibition=self_inhibition)
    assert fused._fusable() and not looped._fusable()
    halves = torch.cat([fused(current[:17]), fused(current[17:])])
    reference = looped(current)
    assert reference.sum() > 20  # not vacuous
    assert torch.equal(halves, reference)
    torch.testing.assert_close(fused.neuron.v, looped.neuron.v, rtol=0, atol=1e-4)
    torch.testing.assert_close(fused.neuron.theta, looped.neuron.theta, rtol=1e-12, atol=0)
    assert torch.equal(fused.neuron.refractory_remaining, looped.neuron.refractory_remaining)
    assert torch.equal(fused.last_spikes, looped.last_spikes)


def test_frozen_theta_is_used_but_not_changed_by_a_window():
    alif = AdaptiveLIF(1, v_rest=0.0, v_reset=0.0, v_threshold=1.0, refractory=0.0,
                       step_mode="multi")  # fmt: skip
    alif.theta.fill_(0.5)
    alif.learning = False
    spikes = alif(torch.tensor([1.2, 1.6, 1.5]).reshape(3, 1, 1))
    # v: 1.2 (below 1.5), then 1.2 d + 1.6 >= 1.5 fires, then 1.5 fires: theta stays 0.5
    assert spikes.flatten().tolist() == [0.0, 1.0, 1.0]
    assert alif.theta.item() == 0.5


def test_theta_after_a_window_is_the_closed_form_sum():
    # theta_plus 1, d = exp(-1/10): spikes at steps 0 and 2 of 4 leave
    # theta = d^3 + d^1 (the float64 value of theta after the window)
    alif = AdaptiveLIF(1, theta_plus=1.0, tau_theta=10.0, v_rest=0.0, v_reset=0.0,
                       v_threshold=1.0, refractory=0.0, step_mode="multi")  # fmt: skip
    spikes = alif(torch.tensor([5.0, 0.0, 5.0, 0.0]).reshape(4, 1, 1))
    assert spikes.flatten().tolist() == [1.0, 0.0, 1.0, 0.0]
    assert alif.theta.item() == pytest.approx(0.7408182206817179 + 0.9048374180359595, abs=1e-15)


@pytest.mark.parametrize(("spike_step", "remaining"), [(4, 2.5), (3, 1.5), (2, 0.5), (1, 0.0)])
def test_refractory_countdown_in_ms_after_a_window(spike_step, remaining):
    # refractory 2.5 ms at dt = 1 ms is 3 steps; the countdown holds 2.5 - 1 per step since
    lif = LIF(1, v_rest=0.0, v_reset=0.0, v_threshold=1.0, refractory=2.5, step_mode="multi")
    current = torch.zeros(5, 1, 1)
    current[spike_step] = 2.0
    lif(current)
    assert lif.refractory_remaining.item() == remaining


def test_compiled_and_eager_kernels_agree(monkeypatch):
    generator = torch.Generator().manual_seed(1)
    current = torch.rand(30, 2, 5, generator=generator) * 12.0
    kwargs = dict(theta_plus=0.5, tau_theta=50.0, refractory=3.0)
    # TorchScript profiles the first calls and optimises from the third on: compare that
    runs = [_population(kwargs)(current) for _ in range(3)]
    compiled = runs[-1]
    assert all(torch.equal(run, compiled) for run in runs)
    monkeypatch.setattr(lif_module, "_BLOCK_KERNEL", lif_module._lif_block)
    eager = _population(kwargs)(current)
    assert compiled.sum() > 10
    assert torch.equal(compiled, eager)


def test_window_rejects_a_wrong_shape_with_both_shapes():
    lif = LIF(5, step_mode="multi")
    population = InhibitedPopulation(LIF(5), LateralInhibition(1.0))
    with pytest.raises(ValueError, match=r"\[T, B, 5\], got \(2, 1, 4\)"):
        population(torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match=r"got \(2, 1, 4\)"):
        lif(torch.zeros(2, 1, 4))


@pytest.mark.parametrize("step_mode", ["single", "multi"])
def test_refractory_neurons_stay_silent_even_above_a_threshold_below_reset(step_mode):
    # theta = -2 puts the threshold (-1) below v_reset (0): every non-refractory step
    # fires, and the 2 refractory steps after each spike stay silent.
    alif = AdaptiveLIF(1, v_rest=0.0, v_reset=0.0, v_threshold=1.0, refractory=2.0,
                       step_mode=step_mode)  # fmt: skip
    alif.theta.fill_(-2.0)
    alif.learning = False
    current = torch.zeros(7, 1, 1)
    spikes = alif(current) if step_mode == "multi" else torch.stack([alif(x) for x in current])
    assert spikes.flatten().tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]


def test_single_steps_check_again_after_reset_move_or_batch_change():
    lif = LIF(3)
    lif(torch.zeros(2, 3))
    lif(torch.zeros(2, 3))  # checked once, then the lean path
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 3\)"):
        lif(torch.zeros(4, 3))  # a new batch size is still caught
    with pytest.raises(TypeError, match="dtype"):
        lif(torch.zeros(2, 3, dtype=torch.float64))
    lif.reset()
    assert lif(torch.zeros(4, 3)).shape == (4, 3)
    lif.double()  # moving the state makes the next step check again
    with pytest.raises(TypeError, match="dtype"):
        lif(torch.zeros(4, 3))


def test_an_empty_batch_only_decays_theta():
    # a data-parallel rank without samples still runs its window: theta decays by d^T
    alif = AdaptiveLIF(2, tau_theta=10.0, step_mode="multi")
    alif.theta.fill_(1.0)
    spikes = alif(torch.zeros(5, 0, 2))
    assert spikes.shape == (5, 0, 2)
    assert alif.theta.tolist() == pytest.approx([0.6065306597126334] * 2, rel=1e-15)
    population = InhibitedPopulation(AdaptiveLIF(2), LateralInhibition(1.0))
    assert population(torch.zeros(5, 0, 2)).shape == (5, 0, 2)


@pytest.mark.parametrize("cls", [LIF, AdaptiveLIF])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_silent_potential_resting_at_zero_reaches_zero_in_both_paths(cls, dtype):
    """v_rest = 0, no input: v decays by 1/2 per step (tau = 1/ln 2 ms) from 1/2 and is
    2^-(k+1) after k more steps while normal, then 0 (flushed, never a subnormal)."""
    params = dict(tau_mem=1.0 / math.log(2.0), v_rest=0.0, v_reset=-1.0, v_threshold=1.0,
                  refractory=0.0)  # fmt: skip
    last = 126 if dtype == torch.float32 else 1022  # exponent of the smallest normal
    steps = last + 3
    current = torch.zeros(steps, 2, 3, dtype=dtype)
    current[0] = 0.5
    windowed = cls(3, step_mode="multi", **params).to(dtype)
    stepped = cls(3, **params).to(dtype)
    spikes = windowed(current)
    trace = []
    for t in range(steps):
        stepped(current[t])
        trace.append(stepped.v[0, 0].item())
    assert not bool(spikes.any())
    expected = [2.0 ** -(t + 1) if t + 1 <= last else 0.0 for t in range(steps)]
    assert trace == expected
    assert torch.equal(windowed.v, stepped.v) and bool(windowed.v.eq(0).all())


def _window_run(make, current, compiled_on, monkeypatch):
    from plastorch.functional import compiled

    monkeypatch.setattr(compiled, "_ENABLED", compiled_on)
    module = make()
    spikes = torch.cat([module(current[:13]), module(current[13:])])  # two windows
    neuron = getattr(module, "neuron", module)
    theta = getattr(neuron, "theta", None)
    return spikes, neuron.v.clone(), neuron.refractory_remaining.clone(), theta


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(
    "kind", ["lif", "adaptive", "adaptive short tau", "frozen", "inhibited", "self-inhibited"]
)
def test_compiled_window_loop_has_the_torchscript_loops_bits(monkeypatch, kind, batch, dtype):
    from plastorch.functional import compiled

    if not compiled.available():
        pytest.skip("numba is not installed")
    lif = dict(v_rest=-65.0, v_reset=-60.0, v_threshold=-52.0, refractory=2.5, tau_mem=10.0)
    adaptive = dict(lif, theta_plus=0.5)

    def make():
        if kind == "lif":
            return LIF(5, step_mode="multi", **lif).to(dtype)
        if kind in ("adaptive", "adaptive short tau", "frozen"):
            tau = 0.25 if kind == "adaptive short tau" else 1e7  # blocks of 5 steps / one
            neuron = AdaptiveLIF(5, step_mode="multi", tau_theta=tau, **adaptive).to(dtype)
            if kind == "frozen":
                neuron.theta.fill_(1.5)
                neuron.learning = False
            return neuron
        neuron = AdaptiveLIF(5, **adaptive).to(dtype)  # (the population loops over time)
        return InhibitedPopulation(
            neuron, LateralInhibition(3.0, self_inhibition=kind == "self-inhibited")
        )

    generator = torch.Generator().manual_seed(2)
    current = (torch.rand(40, batch, 5, generator=generator) * 9.0).to(dtype)
    calls = []
    original = compiled._lif_block_unchecked
    monkeypatch.setattr(
        compiled, "_lif_block_unchecked", lambda *a: calls.append(1) or original(*a)
    )
    fast = _window_run(make, current, True, monkeypatch)
    assert calls  # the compiled loop ran
    calls.clear()
    slow = _window_run(make, current, False, monkeypatch)
    assert not calls
    assert fast[0].sum() > 10  # not vacuous
    for a, b in zip(fast, slow):
        assert (a is None and b is None) or torch.equal(a, b)
