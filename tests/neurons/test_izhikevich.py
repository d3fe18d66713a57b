"""Izhikevich: against a plain-Python transcription of Izhikevich's (2003) net.m."""

import pytest
import torch

from plastorch.neurons import IZHIKEVICH_PRESETS, Izhikevich


def net_m_spike_steps(a, b, c, d, current, steps):
    """Izhikevich (2003) net.m for one neuron and constant input, in plain Python floats.

    net.m checks ``v >= 30`` at the start of step t (1-based) and reports the spike at t;
    the crossing happened during step t - 1. Returns the 0-based indices of the steps in
    which v crossed 30, which is where plastorch emits the spike.

    The expressions keep net.m's operation order: with 1 ms Euler steps the overshoot past
    30 mV feeds u, so a last-bit rounding difference can shift a spike after a dozen spikes.
    """
    v = -65.0
    u = b * v
    crossed = []
    for t in range(1, steps + 2):
        if v >= 30:
            crossed.append(t - 2)  # reported at t (1-based) -> crossing in 0-based step t-2
            v = c
            u = u + d
        v = v + 0.5 * (0.04 * v**2 + 5 * v + 140 - u + current)  # step 0.5 ms
        v = v + 0.5 * (0.04 * v**2 + 5 * v + 140 - u + current)  # for numerical stability
        u = u + a * (b * v - u)
    return [step for step in crossed if step < steps]


def test_first_step_by_hand():
    # v0 = -65, u0 = 0.2 * -65 = -13, I = 10:
    #   v' = 0.04*4225 - 325 + 140 + 13 + 10 = 7        -> v = -65 + 3.5 = -61.5
    #   v' = 0.04*3782.25 - 307.5 + 163 = 6.79          -> v = -61.5 + 3.395 = -58.105
    #   u = -13 + 0.02 * (0.2 * -58.105 + 13) = -12.97242
    rs = Izhikevich(1, a=0.02, b=0.2, c=-65.0, d=8.0).double()
    spikes = rs(torch.tensor([[10.0]], dtype=torch.float64))
    assert spikes.item() == 0.0
    assert rs.v.item() == pytest.approx(-58.105, abs=1e-12)
    assert rs.u.item() == pytest.approx(-12.97242, abs=1e-12)


def test_regular_spiking_first_spike_matches_reference_loop():
    expected = net_m_spike_steps(0.02, 0.2, -65.0, 8.0, current=10.0, steps=100)
    assert expected[0] == 3  # v: -58.1, -49.7, -32.1, +47.0 (by the loop above)
    rs = Izhikevich(1, a=0.02, b=0.2, c=-65.0, d=8.0, step_mode="multi").double()
    spikes = rs(torch.full((100, 1, 1), 10.0, dtype=torch.float64))
    assert spikes.flatten().nonzero()[0].item() == expected[0]


@pytest.mark.parametrize("preset", sorted(IZHIKEVICH_PRESETS))
def test_spike_train_matches_reference_loop_for_every_preset(preset):
    a, b, c, d = IZHIKEVICH_PRESETS[preset]
    expected = net_m_spike_steps(a, b, c, d, current=10.0, steps=300)
    neuron = Izhikevich.from_preset(preset, 1, step_mode="multi").double()
    spikes = neuron(torch.full((300, 1, 1), 10.0, dtype=torch.float64))
    assert len(expected) >= 3
    assert spikes.flatten().nonzero().flatten().tolist() == expected


def test_regular_spiking_adapts():
    # Regular spiking: d = 8 lengthens the inter-spike interval after the first spikes.
    times = net_m_spike_steps(0.02, 0.2, -65.0, 8.0, current=10.0, steps=300)
    intervals = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert intervals[0] < intervals[-1]


def test_reset_to_c_and_u_plus_d_at_a_spike():
    neuron = Izhikevich(1, a=0.02, b=0.2, c=-50.0, d=2.0).double()
    neuron(torch.tensor([[0.0]], dtype=torch.float64))
    u_before = neuron.u.item()
    v_before = neuron.v.item()
    # A huge input sends v over 30 within this step.
    big = 1000.0
    v = v_before + 0.5 * (0.04 * v_before**2 + 5 * v_before + 140 - u_before + big)
    v = v + 0.5 * (0.04 * v**2 + 5 * v + 140 - u_before + big)
    u = u_before + 0.02 * (0.2 * v - u_before)
    assert neuron(torch.tensor([[big]], dtype=torch.float64)).item() == 1.0
    assert neuron.v.item() == -50.0
    assert neuron.u.item() == pytest.approx(u + 2.0, abs=1e-9)


def test_half_steps_scale_with_dt():
    # dt = 0.5: two half-steps of 0.25 ms for v, one step of 0.5 ms for u.
    neuron = Izhikevich(1, a=0.1, b=0.2, c=-65.0, d=2.0, dt=0.5).double()
    neuron(torch.tensor([[4.0]], dtype=torch.float64))
    v, u = -65.0, -13.0
    v = v + 0.25 * (0.04 * v * v + 5 * v + 140 - u + 4.0)
    v = v + 0.25 * (0.04 * v * v + 5 * v + 140 - u + 4.0)
    u = u + 0.5 * 0.1 * (0.2 * v - u)
    assert neuron.v.item() == pytest.approx(v, abs=1e-12)
    assert neuron.u.item() == pytest.approx(u, abs=1e-12)


def test_initial_state_and_reset():
    neuron = Izhikevich((2, 2), a=0.02, b=0.25, c=-65.0, d=2.0, v_init=-70.0)
    neuron(torch.full((3, 2, 2), 5.0))
    neuron.reset()
    assert neuron.v.numel() == 0
    neuron(torch.zeros(1, 2, 2))  # one step from v = -70, u = 0.25 * -70 = -17.5
    v = -70.0
    v = v + 0.5 * (0.04 * v * v + 5 * v + 140 + 17.5)
    v = v + 0.5 * (0.04 * v * v + 5 * v + 140 + 17.5)
    assert neuron.v.shape == (1, 2, 2)
    assert neuron.v[0, 0, 0].item() == pytest.approx(v, abs=1e-4)
    explicit = Izhikevich(1, a=0.02, b=0.2, c=-65.0, d=8.0, u_init=0.0)
    explicit(torch.zeros(1, 1))
    assert explicit.u.item() == pytest.approx(0.02 * 0.2 * explicit.v.item(), abs=1e-6)


def test_multi_step_equals_looping_single_step():
    generator = torch.Generator().manual_seed(5)
    inputs = torch.rand(200, 3, 4, generator=generator) * 20.0
    single = Izhikevich.from_preset("chattering", 4)
    multi = Izhikevich.from_preset("chattering", 4, step_mode="multi")
    looped = torch.stack([single(x) for x in inputs])
    assert looped.sum() > 10
    assert torch.equal(multi(inputs), looped)
    assert torch.equal(multi.u, single.u)


def test_state_dict_round_trip():
    inputs = torch.full((60, 2, 3), 10.0)
    neuron = Izhikevich.from_preset("regular_spiking", 3)
    for x in inputs[:30]:
        neuron(x)
    resumed = Izhikevich.from_preset("regular_spiking", 3)
    resumed.load_state_dict(neuron.state_dict())
    out_original = torch.stack([neuron(x) for x in inputs[30:]])
    out_resumed = torch.stack([resumed(x) for x in inputs[30:]])
    assert out_original.sum() > 0
    assert torch.equal(out_original, out_resumed)


def test_unknown_preset():
    with pytest.raises(ValueError, match="'pyramidal'"):
        Izhikevich.from_preset("pyramidal", 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("preset", sorted(IZHIKEVICH_PRESETS))
def test_compiled_windows_and_steps_have_the_bits_of_the_torch_step(monkeypatch, preset, dtype):
    from plastorch.functional import compiled

    if not compiled.available():
        pytest.skip("numba is not installed")
    calls = []
    original = compiled._izhikevich_unchecked
    monkeypatch.setattr(
        compiled, "_izhikevich_unchecked", lambda *a: calls.append(1) or original(*a)
    )
    generator = torch.Generator().manual_seed(7)
    inputs = (torch.rand(150, 3, 2, 2, generator=generator) * 25.0).to(dtype)
    multi = Izhikevich.from_preset(preset, (2, 2), step_mode="multi").to(dtype)
    stepped = Izhikevich.from_preset(preset, (2, 2)).to(dtype)
    windows = torch.cat([multi(inputs[:70]), multi(inputs[70:])])  # state carried over
    steps = torch.stack([stepped(x) for x in inputs])
    assert len(calls) == 2 + len(inputs)
    monkeypatch.setattr(compiled, "_ENABLED", False)  # the torch step, as reference
    single = Izhikevich.from_preset(preset, (2, 2)).to(dtype)
    looped = torch.stack([single(x) for x in inputs])
    assert len(calls) == 2 + len(inputs)
    assert looped.sum() > 20
    assert torch.equal(windows, looped) and torch.equal(steps, looped)
    for neuron in (multi, stepped):
        assert torch.equal(neuron.v, single.v) and torch.equal(neuron.u, single.u)
