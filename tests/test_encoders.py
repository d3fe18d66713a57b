"""Poisson and latency encoders: rates, reproducibility, spike times, argument checks."""

import math

import pytest
import torch

from plastorch.encoders import LatencyEncoder, PoissonEncoder, latency, poisson


def assert_within_binomial_5_sigma(counts, trials, probabilities):
    """Each count is Binomial(trials, p): |count - n p| <= 5 sqrt(n p (1 - p))."""
    for count, p in zip(counts.tolist(), probabilities, strict=True):
        sigma = math.sqrt(trials * p * (1 - p))
        assert abs(count - trials * p) <= 5 * sigma, (count, trials * p, sigma)


# -- poisson --------------------------------------------------------------------------------


def test_poisson_empirical_rate_matches_intensity_times_max_rate():
    intensity = torch.tensor([0.1, 0.25, 0.5, 0.75, 1.0])
    trials = 20_000
    spikes = poisson(intensity, trials, generator=torch.Generator().manual_seed(0))
    assert spikes.shape == (trials, 5)
    # p = intensity * 63.75 Hz * 1 ms / 1000, e.g. 0.06375 for intensity 1.
    probabilities = [x * 63.75 / 1000 for x in intensity.tolist()]
    assert_within_binomial_5_sigma(spikes.sum(0), trials, probabilities)
    assert spikes[:, 4].sum() > spikes[:, 0].sum()


def test_poisson_probability_scales_with_dt_and_max_rate():
    trials = 20_000
    spikes = poisson(
        torch.tensor([0.5, 1.0]),
        trials,
        dt=0.5,
        max_rate=200.0,
        generator=torch.Generator().manual_seed(1),
    )
    # p = 0.5 * 200 * 0.5 / 1000 = 0.05 and 1.0 * 200 * 0.5 / 1000 = 0.1
    assert_within_binomial_5_sigma(spikes.sum(0), trials, [0.05, 0.1])


def test_poisson_extremes_are_exact():
    spikes = poisson(torch.tensor([0.0, 1.0]), 500, max_rate=1000.0)  # p = 0 and p = 1
    assert spikes[:, 0].sum() == 0
    assert spikes[:, 1].sum() == 500


def test_poisson_output_is_zero_one_with_input_dtype_and_shape():
    intensity = torch.rand(3, 2, 4, dtype=torch.float64)
    spikes = poisson(intensity, 7)
    assert spikes.shape == (7, 3, 2, 4)
    assert spikes.dtype == torch.float64
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert poisson(torch.tensor([1, 0]), 3).dtype == torch.get_default_dtype()


def test_poisson_same_seed_same_spikes_different_seed_different():
    intensity = torch.full((10, 10), 0.5)
    first = poisson(intensity, 100, generator=torch.Generator().manual_seed(42))
    again = poisson(intensity, 100, generator=torch.Generator().manual_seed(42))
    other = poisson(intensity, 100, generator=torch.Generator().manual_seed(43))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_encoder_seed_reproducibility_and_fresh_draws():
    intensity = torch.full((4, 8, 8), 0.8)
    encoder_a, encoder_b = PoissonEncoder(50, seed=7), PoissonEncoder(50, seed=7)
    first_a, second_a = encoder_a(intensity), encoder_a(intensity)
    first_b, second_b = encoder_b(intensity), encoder_b(intensity)
    assert torch.equal(first_a, first_b) and torch.equal(second_a, second_b)
    assert not torch.equal(first_a, second_a)  # the stream advances between calls
    assert not torch.equal(first_a, PoissonEncoder(50, seed=8)(intensity))
    encoder_a.manual_seed(7)
    assert torch.equal(encoder_a(intensity), first_a)


def test_encoder_matches_functional_form_with_same_generator():
    intensity = torch.rand(6)
    expected = poisson(intensity, 30, generator=torch.Generator().manual_seed(3))
    assert torch.equal(PoissonEncoder(30, seed=3)(intensity), expected)


def test_encoder_intensity_scale_multiplies_the_rate():
    trials = 20_000
    encoder = PoissonEncoder(trials, seed=0)
    spikes = encoder(torch.tensor([0.5, 1.0]), intensity_scale=1.5)
    # Diehl & Cook's input_intensity 3 (vs 2): 1.5 * 63.75 Hz at full intensity.
    assert_within_binomial_5_sigma(spikes.sum(0), trials, [0.5 * 1.5 * 0.06375, 1.5 * 0.06375])
    assert encoder(torch.ones(3), intensity_scale=0.0).sum() == 0


def test_encoder_rejects_a_scale_that_makes_p_exceed_one():
    with pytest.raises(ValueError, match="<= 1"):
        PoissonEncoder(10, max_rate=500.0)(torch.ones(2), intensity_scale=3.0)
    with pytest.raises(ValueError, match="intensity_scale.*-1.0"):
        PoissonEncoder(10)(torch.ones(2), intensity_scale=-1.0)


# -- latency --------------------------------------------------------------------------------


def test_latency_spike_times_by_hand():
    # T = 5: step = round((1 - x) * 4)
    #   x = 1 -> 0, 0.75 -> 1, 0.5 -> 2, 0.25 -> 3, 0.1 -> round(3.6) = 4, 0 -> no spike
    intensity = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.1, 0.0])
    spikes = latency(intensity, 5)
    assert spikes.shape == (5, 6)
    assert spikes.sum(0).tolist() == [1, 1, 1, 1, 1, 0]
    assert spikes.argmax(0)[:5].tolist() == [0, 1, 2, 3, 4]


def test_latency_rounds_half_to_even():
    # T = 4: x = 0.5 -> 1.5 -> 2; T = 6: x = 0.5 -> 2.5 -> 2 (like Python's round).
    assert latency(torch.tensor([0.5]), 4)[:, 0].tolist() == [0, 0, 1, 0]
    assert latency(torch.tensor([0.5]), 6)[:, 0].tolist() == [0, 0, 1, 0, 0, 0]


def test_latency_single_step_and_batch_shape():
    assert latency(torch.tensor([0.3, 0.0, 1.0]), 1).tolist() == [[1.0, 0.0, 1.0]]
    images = torch.rand(2, 8, 8, dtype=torch.float64) + 0.01
    spikes = latency(images.clamp(max=1.0), 20)
    assert spikes.shape == (20, 2, 8, 8) and spikes.dtype == torch.float64
    assert torch.equal(spikes.sum(0), torch.ones(2, 8, 8, dtype=torch.float64))


def test_latency_is_monotone_in_intensity():
    intensity = torch.linspace(0.01, 1.0, 100)
    first_step = latency(intensity, 50).argmax(0)
    assert torch.all(first_step[1:] <= first_step[:-1])


def test_latency_encoder_module():
    encoder = LatencyEncoder(11, dt=0.5)
    # (1 - 0.9) * 10 = 1 in float32 rounding -> step 1, i.e. 0.5 ms
    assert encoder(torch.tensor([[0.9]])).flatten().nonzero().flatten().tolist() == [1]


# -- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("encode", [poisson, latency])
def test_negative_or_nan_intensity(encode):
    with pytest.raises(ValueError, match="intensity must be >= 0.*-0.5"):
        encode(torch.tensor([0.2, -0.5]), 10)
    with pytest.raises(ValueError, match="intensity must be >= 0"):
        encode(torch.tensor([math.nan]), 10)


def test_latency_intensity_above_one():
    with pytest.raises(ValueError, match=r"intensity must be in \[0, 1\].*1.5"):
        latency(torch.tensor([1.5]), 10)


@pytest.mark.parametrize("encode", [poisson, latency])
@pytest.mark.parametrize("time_steps", [0, -3])
def test_time_steps_below_one(encode, time_steps):
    with pytest.raises(ValueError, match=f"time_steps must be >= 1, got {time_steps}"):
        encode(torch.ones(2) * 0.5, time_steps)


@pytest.mark.parametrize("encode", [poisson, latency])
@pytest.mark.parametrize("time_steps", [2.5, True, "10"])
def test_time_steps_not_an_int(encode, time_steps):
    with pytest.raises(TypeError, match="time_steps must be an int"):
        encode(torch.ones(2) * 0.5, time_steps)


@pytest.mark.parametrize("encode", [poisson, latency])
@pytest.mark.parametrize("dt", [0.0, -1.0, math.inf])
def test_bad_dt(encode, dt):
    with pytest.raises(ValueError, match=f"dt must be > 0, got {dt!r}"):
        encode(torch.ones(2) * 0.5, 10, dt=dt)


def test_poisson_probability_above_one():
    with pytest.raises(ValueError, match="<= 1, got 2.*max_rate=1000 Hz, dt=2 ms"):
        poisson(torch.tensor([1.0]), 10, dt=2.0, max_rate=1000.0)


def test_poisson_negative_max_rate():
    with pytest.raises(ValueError, match="max_rate must be >= 0, got -1.0"):
        poisson(torch.ones(2), 10, max_rate=-1.0)


@pytest.mark.parametrize("cls", [PoissonEncoder, LatencyEncoder])
def test_modules_validate_at_construction(cls):
    with pytest.raises(ValueError, match="time_steps"):
        cls(0)
    with pytest.raises(ValueError, match="dt must be > 0, got -0.1"):
        cls(10, dt=-0.1)


def test_intensity_must_be_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        poisson([0.5, 0.5], 10)
