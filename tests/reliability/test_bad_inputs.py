"""Catalogue of bad inputs: each raises a clear error that names the problem."""

import pytest
import torch
from torch import nn

from plastorch import Learner
from plastorch.bounds import Exponential, Hard, Normalize, PowerLaw, Soft
from plastorch.encoders import PoissonEncoder, poisson
from plastorch.functional import correlate, correlate_per_sample, decay_factor
from plastorch.neurons import LIF, AdaptiveLIF
from plastorch.rules import MSTDP, MSTDPET, STDP


class Spiker(nn.Module):
    def forward(self, x):
        return (x > 0.2).to(x.dtype)


def attached(rule=None, step_mode="single", dtype=torch.float64):
    layer = nn.Linear(4, 3, bias=False).to(dtype)
    source = Spiker()
    learner = Learner(layer, source, rule or STDP(1.0, -1.0), step_mode=step_mode)
    return layer, source, learner


CONSTRUCTION = [
    (lambda: STDP(1.0, -1.0, tau_post=0.0), ValueError, "tau_post"),
    (lambda: STDP(1.0, -1.0, tau_pre=-1.0), ValueError, "tau_pre"),
    (lambda: STDP(1.0, -1.0, dt=0.0), ValueError, "dt"),
    (lambda: STDP(1.0, -1.0, dt=-0.5), ValueError, "dt"),
    (lambda: STDP(1.0, -1.0, trace_mode="all"), ValueError, "trace_mode"),
    (lambda: STDP(1.0, -1.0, batch_reduction="median"), ValueError, "batch_reduction"),
    (lambda: STDP(float("inf"), -1.0), ValueError, "lr_post"),
    (lambda: STDP(1.0, "x"), TypeError, "lr_pre"),
    (lambda: MSTDPET(1.0, -1.0, tau_eligibility=-2.0), ValueError, "tau_eligibility"),
    (lambda: MSTDPET(1.0, -1.0, batch_reduction=torch.amax), ValueError, "per_sample_signal"),
    (lambda: Soft(1.0, 1.0), ValueError, "wmin"),
    (lambda: Hard(float("nan"), 1.0), ValueError, "wmin"),
    (lambda: PowerLaw(mu=-0.5), ValueError, "mu"),
    (lambda: Exponential(beta=-1.0), ValueError, "beta"),
    (lambda: Normalize(-3.0), ValueError, "total"),
    (lambda: decay_factor(1.0, 0.0, name="tau_z"), ValueError, "tau_z"),
    (lambda: Learner(nn.ReLU(), Spiker(), STDP(1.0, -1.0)), TypeError, "weight"),
    (lambda: Learner(nn.Linear(2, 2), "neuron", STDP(1.0, -1.0)), TypeError, "spike_source"),
    (lambda: Learner(nn.Linear(2, 2), Spiker(), STDP), TypeError, "rule"),
    (lambda: Learner(nn.Linear(2, 2), Spiker(), STDP(1.0, -1.0), bound="soft"), TypeError, "bound"),
    (
        lambda: Learner(nn.Linear(2, 2), Spiker(), STDP(1.0, -1.0), step_mode="m"),
        ValueError,
        "step_mode",
    ),
    (
        lambda: Learner(nn.Linear(2, 2), Spiker(), STDP(1.0, -1.0), constraints=[1.0]),
        TypeError,
        "constraints",
    ),
    (lambda: LIF(3, tau_mem=0.0), ValueError, "tau_mem"),
    (lambda: LIF(3, dt=-1.0), ValueError, "dt"),
    (lambda: AdaptiveLIF(3, tau_theta=0.0), ValueError, "tau_theta"),
    (lambda: PoissonEncoder(0), ValueError, "time_steps"),
    (lambda: poisson(torch.tensor([-0.5]), 10), ValueError, "intensity"),
]


@pytest.mark.parametrize("make, error, name", CONSTRUCTION)
def test_bad_construction_arguments(make, error, name):
    with pytest.raises(error, match=name):
        make()


def test_wrong_shapes_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 3\)"):
        correlate(nn.Linear(4, 3), torch.zeros(3, 5), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(3, 2, 3\)"):
        correlate_per_sample(nn.Linear(4, 3), torch.zeros(2, 3, 4), torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match=r"\(1, 2, 6, 6\)"):
        correlate(nn.Conv2d(3, 2, 3), torch.zeros(1, 2, 6, 6), torch.zeros(1, 2, 4, 4))


def test_multi_step_rank_errors():
    layer, source, _ = attached(step_mode="multi")
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        source(layer(torch.zeros(4, dtype=torch.float64)))
    layer, source, _ = attached(step_mode="multi")
    with pytest.raises(ValueError, match="does not match"):
        source(layer(torch.zeros(5, 2, 4, dtype=torch.float64))[:3])


def test_spike_source_output_must_match_layer_output():
    layer, source, _ = attached()
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(2, 3\)"):
        source(layer(torch.zeros(2, 4, dtype=torch.float64))[:, :2])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_in_spikes(bad):
    layer, source, _ = attached()
    x = torch.zeros(2, 4, dtype=torch.float64)
    x[1, 2] = bad
    with pytest.raises(ValueError, match="presynaptic spikes contains NaN or inf"):
        source(layer(x))


@pytest.mark.parametrize(
    "signal, match",
    [
        (float("nan"), "finite"),
        (torch.tensor([0.5, float("nan")], dtype=torch.float64), "signal contains NaN"),
        (torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), "signal must be"),
        (torch.ones(3, 2, 2, dtype=torch.float64), "signal must be"),
        ([1.0, 2.0], "signal must be a number or a tensor"),
    ],
)
def test_bad_reward_signals(signal, match):
    layer, source, learner = attached(MSTDP(1.0, -1.0))
    source(layer(torch.rand(2, 4, dtype=torch.float64)))
    with pytest.raises((ValueError, TypeError), match=match):
        learner.step(signal)


def test_nan_in_weights_is_reported_at_step():
    layer, source, learner = attached()
    source(layer(torch.rand(2, 4, dtype=torch.float64)))
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layer.weight contains NaN"):
        learner.step()


def test_dtype_and_device_mismatch_between_layer_and_spikes():
    layer, source, _ = attached(dtype=torch.float64)
    with pytest.raises(
        ValueError, match="dtype torch.float64 but the layer weight has dtype torch.float32"
    ):
        source(layer.float()(torch.rand(2, 4)).double())
    layer, source, _ = attached(dtype=torch.float64)
    with pytest.raises(ValueError, match="meta"):
        source(layer(torch.rand(2, 4, dtype=torch.float64)).to("meta"))


def test_step_before_forward_and_signal_mismatch():
    _, _, learner = attached()
    with pytest.raises(RuntimeError, match="before any forward"):
        learner.step()
    with pytest.raises(TypeError, match="takes no signal"):
        learner.step(1.0)
    _, _, modulated = attached(MSTDPET(1.0, -1.0))
    with pytest.raises(ValueError, match="needs a signal"):
        modulated.step()


def test_changing_batch_size_without_reset():
    layer, source, learner = attached()
    source(layer(torch.rand(2, 4, dtype=torch.float64)))
    learner.step()
    source(layer(torch.rand(5, 4, dtype=torch.float64)))
    with pytest.raises(ValueError, match="batch size changed from 2 to 5"):
        learner.step()
    learner.reset()
    source(layer(torch.rand(5, 4, dtype=torch.float64)))
    assert learner.step().shape == (3, 4)


def test_layer_and_source_out_of_order():
    layer, source, _ = attached()
    with pytest.raises(RuntimeError, match="spike source ran before the layer"):
        source(torch.zeros(2, 3, dtype=torch.float64))
    layer, source, _ = attached()
    layer(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="layer ran twice"):
        layer(torch.zeros(2, 4, dtype=torch.float64))


def test_graded_spikes_are_accepted_and_correlated_as_values():
    # Documented: non-binary spikes are not rejected; they enter the correlation as values.
    fc = nn.Linear(1, 1, bias=False).double()
    rule = STDP(1.0, -1.0, tau_pre=1e9, tau_post=1e9)
    pre = torch.tensor([[[0.5]], [[0.0]]], dtype=torch.float64)
    post = torch.tensor([[[0.0]], [[3.0]]], dtype=torch.float64)
    update, _ = rule(fc, pre, post, rule.initial_state(fc, pre[0], post[0]))
    assert update.potentiation.item() == pytest.approx(1.5)


def test_neuron_input_shape_change_names_both_shapes():
    neuron = LIF(3)
    neuron(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 3\)|\(4, 3\).*\(2, 3\)"):
        neuron(torch.zeros(4, 3))
