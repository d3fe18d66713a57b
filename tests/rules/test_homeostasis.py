"""LinearHomeostasis: hand-derived updates, receptive means, batch order, and convergence.

With tau_rate = 1/ln 2 and dt = 1 ms the rate estimate halves its memory every step:
q <- q/2 + 500 s, c <- c/2 + 1/2, r = q / c (Hz). Two steps of output 0 = [1, 1] give
r = 1000, 1000; output 1 = [0, 1] gives r = 0, 500 / 0.75 = 666.67. With r* = 500 Hz,
e = (r* - r) / r* is -1, -1 for output 0 and 1, -1/3 for output 1.
"""

import copy

import pytest
import torch
from torch import nn

from plastorch import Learner
from plastorch.layers import DelayedLinear
from plastorch.rules import LinearHomeostasis

from .helpers import TAU_HALF, run_rule

PRE = torch.ones(2, 1, 3, dtype=torch.float64)
POST = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]], dtype=torch.float64)  # [T=2, B=1, out=2]


def rule(param="weight", target=500.0, plasticity=0.3, **kw):
    return LinearHomeostasis(plasticity, target, param, tau_rate=TAU_HALF, **kw)


def rounded(half):
    return None if half is None else half.round(decimals=12).tolist()


def test_weights_above_target_go_down_below_target_go_up():
    fc = nn.Linear(3, 2, bias=False).double()
    update, state = run_rule(rule(), fc, PRE, POST)
    # output 0: 0.3 * (-1 - 1) = -0.6; output 1: +0.3, then 0.3 * -1/3 = -0.1
    assert rounded(update.potentiation) == [[0.0, 0.0, 0.0], [0.3, 0.3, 0.3]]
    assert rounded(update.depression) == [[0.6, 0.6, 0.6], [0.1, 0.1, 0.1]]
    assert state["rate_trace"].tolist() == [[750.0, 500.0]]
    assert state["rate_norm"].item() == 0.75


def test_bias_follows_the_rate_error():
    fc = nn.Linear(3, 2).double()
    update, _ = run_rule(rule("bias"), fc, PRE, POST)
    assert rounded(update.potentiation) == [0.0, 0.3]
    assert rounded(update.depression) == [0.6, 0.1]


def test_delays_move_the_other_way():
    layer = DelayedLinear(3, 2, max_delay=4.0, dtype=torch.float64)
    update, _ = run_rule(rule("delay"), layer, PRE, POST)
    assert rounded(update.potentiation) == [[0.6, 0.6, 0.6], [0.1, 0.1, 0.1]]  # lengthen
    assert rounded(update.depression) == [[0.0, 0.0, 0.0], [0.3, 0.3, 0.3]]  # shorten


def test_per_output_target_tensor_and_target_per_call():
    fc = nn.Linear(3, 2, bias=False).double()
    target = torch.tensor([500.0, 250.0])
    # output 1 with r* = 250: e = 1, then (250 - 666.67) / 250 = -5/3 -> -0.5
    update, _ = run_rule(rule(target=target), fc, PRE, POST)
    assert rounded(update.potentiation) == [[0.0, 0.0, 0.0], [0.3, 0.3, 0.3]]
    assert rounded(update.depression) == [[0.6, 0.6, 0.6], [0.5, 0.5, 0.5]]
    per_call = rule(target=None)
    assert per_call.modulated
    again, _ = run_rule(per_call, fc, PRE, POST, signal=target)
    assert rounded(again.depression) == rounded(update.depression)
    nothing, _ = run_rule(per_call, fc, PRE, POST)  # no target given: no change
    assert nothing.delta() is None


def test_conv_weights_average_over_the_outputs_they_reach_before_the_split():
    # Conv1d(1, 1, 2, padding=1) on 3 inputs: 4 outputs; w0 reaches outputs 1..3, w1 0..2.
    # One step, spikes [1, 1, 0, 0] at r* = 500: r = 1000 or 0, e = [-1, -1, 1, 1].
    conv = nn.Conv1d(1, 1, 2, padding=1, bias=False).double()
    pre = torch.ones(1, 1, 1, 3, dtype=torch.float64)
    post = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]], dtype=torch.float64)
    update, _ = run_rule(rule(), conv, pre, post)
    # w0: 0.3 * (-1 + 1 + 1) / 3 = +0.1; w1: 0.3 * (-1 - 1 + 1) / 3 = -0.1
    assert rounded(update.potentiation) == [[[0.1, 0.0]]]
    assert rounded(update.depression) == [[[0.0, 0.1]]]
    conv_bias = nn.Conv1d(1, 1, 2, padding=1).double()
    bias_update, _ = run_rule(rule("bias"), conv_bias, pre, post)  # mean of e over 4 = 0
    assert bias_update.delta() is None


def test_split_before_the_batch_reduction():
    fc = nn.Linear(2, 1, bias=False).double()
    pre = torch.ones(1, 2, 2, dtype=torch.float64)
    post = torch.tensor([[[0.0], [1.0]]], dtype=torch.float64)  # e = +1 and -1
    update, _ = run_rule(rule(), fc, pre, post)  # mean over the batch, halves kept apart
    assert rounded(update.potentiation) == [[0.15, 0.15]]
    assert rounded(update.depression) == [[0.15, 0.15]]
    peak, _ = run_rule(rule(batch_reduction=torch.amax), fc, pre, post)
    assert rounded(peak.potentiation) == [[0.3, 0.3]]
    assert rounded(peak.depression) == [[0.3, 0.3]]


def test_window_equals_single_steps():
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    pre = (torch.rand(5, 2, 2, 4, 4) < 0.5).double()
    post = (torch.rand(5, 2, 3, 4, 4) < 0.3).double()
    for param in ("weight", "bias"):
        homeostasis = LinearHomeostasis(0.01, 20.0, param, tau_rate=7.0, dt=0.5)
        fused, fused_state = run_rule(homeostasis, conv, pre, post)
        state, total = homeostasis.initial_state(conv, pre[0], post[0]), 0
        for t in range(5):
            update, state = homeostasis(conv, pre[t : t + 1], post[t : t + 1], state)
            total = total + update.delta()
        torch.testing.assert_close(fused.delta(), total, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(fused_state["rate_trace"], state["rate_trace"])


class IntegrateAndFire(nn.Module):
    """Deterministic: v += input; spike and subtract 1 when v >= 1. Rate = 1000 * input Hz."""

    def __init__(self):
        super().__init__()
        self.v = None

    def forward(self, x):
        self.v = x if self.v is None else self.v + x
        spikes = (self.v >= 1.0).to(x.dtype)
        self.v = self.v - spikes
        return spikes


@pytest.mark.parametrize("param", ["weight", "bias"])
def test_rates_converge_to_the_target_from_above_and_below(param):
    # output 0 starts at 600 Hz (above 200 Hz), output 1 at 50 Hz (below); the input is
    # constant, so the neuron's rate is 1000 * (row sum of the weights + bias) Hz.
    fc = nn.Linear(4, 2).double()
    with torch.no_grad():
        if param == "weight":
            fc.weight.copy_(torch.tensor([[0.15] * 4, [0.0125] * 4]))
            fc.bias.zero_()
        else:
            fc.weight.zero_()
            fc.bias.copy_(torch.tensor([0.6, 0.05]))
    neuron = IntegrateAndFire()
    homeostasis = LinearHomeostasis(4e-4 if param == "weight" else 1.6e-3, 200.0, param,
                                    tau_rate=20.0)  # fmt: skip
    learner = Learner(fc, neuron, homeostasis, apply=True)
    x = torch.ones(1, 4, dtype=torch.float64)
    errors, spikes = [], []
    for t in range(400):
        spikes.append(neuron(fc(x)))
        learner.step()
        if t % 25 == 24:
            rate = 1000 * (fc.weight.detach().sum(1) + fc.bias.detach())
            errors.append((rate - 200.0).abs())
    errors = torch.stack(errors)  # [16 checkpoints, 2 outputs]
    assert bool((errors[1:] <= errors[:-1]).all())  # monotone from above and from below
    assert errors[-1].tolist() < [0.05 * 400, 0.05 * 150]
    last_block = torch.cat(spikes[-100:]).mean(0) * 1000  # measured rates, last 100 ms
    assert torch.allclose(last_block, torch.tensor([200.0, 200.0], dtype=torch.float64), atol=20)


def test_rate_state_resumes_through_the_learner_state_dict():
    torch.manual_seed(4)
    fc, source = nn.Linear(3, 2, bias=False).double(), nn.Identity()
    learner = Learner(fc, source, LinearHomeostasis(0.01, 50.0, tau_rate=10.0))
    spikes = (torch.rand(10, 1, 2) < 0.5).double()
    for t in range(4):
        fc(torch.ones(1, 3, dtype=torch.float64))
        source(spikes[t])
    saved = copy.deepcopy(learner.state_dict())
    fc2, source2 = nn.Linear(3, 2, bias=False).double(), nn.Identity()
    fc2.load_state_dict(fc.state_dict())
    fresh = Learner(fc2, source2, LinearHomeostasis(0.01, 50.0, tau_rate=10.0))
    fresh.load_state_dict(saved)
    for t in range(4, 10):
        for layer, src in ((fc, source), (fc2, source2)):
            layer(torch.ones(1, 3, dtype=torch.float64))
            src(spikes[t])
    torch.testing.assert_close(fresh.step(), learner.step(), rtol=0, atol=0)


def test_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="param"):
        LinearHomeostasis(0.1, 10.0, "threshold")
    with pytest.raises(ValueError, match="target"):
        LinearHomeostasis(0.1, 0.0)
    with pytest.raises(ValueError, match="target"):
        LinearHomeostasis(0.1, torch.tensor([10.0, -1.0]))
    with pytest.raises(ValueError, match="tau_rate"):
        LinearHomeostasis(0.1, 10.0, tau_rate=0.0)
    fc = nn.Linear(3, 2, bias=False).double()
    with pytest.raises(ValueError, match=r"\(3,\).*\(1, 2\)"):
        run_rule(LinearHomeostasis(0.1, torch.ones(3)), fc, PRE, POST)
    with pytest.raises(TypeError, match="bias"):
        run_rule(LinearHomeostasis(0.1, 10.0, "bias"), fc, PRE, POST)
    with pytest.raises(TypeError, match="signal"):
        run_rule(LinearHomeostasis(0.1, 10.0), fc, PRE, POST, signal=5.0)


@pytest.mark.parametrize("reduction", ["mean", "sum", torch.amax])
def test_linear_rows_equal_the_receptive_means_of_an_equivalent_conv(reduction):
    # a Linear's update is a broadcast of each output's sums (no correlation); a Conv1d
    # of kernel 1 on one position has the same receptive outputs and takes the
    # correlations' route
    torch.manual_seed(4)
    pre = (torch.rand(4, 3, 5) < 0.5).double()
    post = (torch.rand(4, 3, 2) < 0.4).double()
    fc = nn.Linear(5, 2, bias=False).double()
    conv = nn.Conv1d(5, 2, 1, bias=False).double()
    homeostasis = LinearHomeostasis(0.05, 150.0, tau_rate=5.0, batch_reduction=reduction)
    rows, _ = run_rule(homeostasis, fc, pre, post)
    means, _ = run_rule(homeostasis, conv, pre[..., None], post[..., None])
    for half in ("potentiation", "depression"):
        expected = getattr(means, half)[..., 0]
        assert getattr(rows, half).shape == fc.weight.shape
        torch.testing.assert_close(getattr(rows, half), expected, rtol=1e-12, atol=1e-15)


def test_a_learner_without_bound_gets_the_rows_net_change():
    # a caller that reads only the delta gets the broadcast difference of the sums
    torch.manual_seed(5)
    pre = (torch.rand(6, 4, 5) < 0.5).double()
    post = (torch.rand(6, 4, 3) < 0.4).double()
    homeostasis = LinearHomeostasis(0.05, 150.0, tau_rate=5.0)
    halves, _ = run_rule(copy.deepcopy(homeostasis), nn.Linear(5, 3).double(), pre, post)
    fc, source = nn.Linear(5, 3, bias=False).double(), nn.Identity()
    learner = Learner(fc, source, homeostasis, step_mode="multi")
    fc(pre)  # one window, settled by the step: nothing accumulated, only Δw read
    source(post)
    delta = learner.step()
    torch.testing.assert_close(delta, halves.potentiation - halves.depression)
    assert (delta == delta[:, :1]).all()  # one value per output row


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), (4, 9)),
        (lambda: nn.Conv2d(2, 3, 3, padding="same", padding_mode="reflect"), (2, 5, 4)),
        (lambda: nn.Conv2d(3, 4, (2, 3), stride=(2, 1), padding=(1, 0)), (3, 5, 6)),
        (lambda: nn.Conv3d(2, 2, 2, padding=1), (2, 3, 3, 2)),
    ],
)
@pytest.mark.parametrize("reduction", ["mean", torch.amax])
def test_conv_receptive_means_from_one_input_channel(monkeypatch, make, shape, reduction):
    # from an all-ones input every input channel of a weight reaches the same outputs, so
    # one channel's per-sample sums serve them all: the same halves as every channel's
    from plastorch.rules import homeostasis as module

    torch.manual_seed(6)
    conv = make().double()
    pre = (torch.rand(3, 2, *shape) < 0.5).double()
    post_shape = conv(pre[0]).shape
    post = (torch.rand(3, *post_shape) < 0.4).double()
    homeostasis = LinearHomeostasis(0.05, 150.0, tau_rate=5.0, batch_reduction=reduction)
    fast, _ = run_rule(copy.deepcopy(homeostasis), conv, pre, post)
    monkeypatch.setattr(module, "_one_input_channel", lambda layer: None)
    every, _ = run_rule(copy.deepcopy(homeostasis), conv, pre, post)
    assert every.potentiation is not None or every.depression is not None
    for half in ("potentiation", "depression"):
        got, expected = getattr(fast, half), getattr(every, half)
        if expected is None:  # (every mean of one sign)
            assert got is None
            continue
        assert got.shape == conv.weight.shape
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)


def test_a_conv_step_leaves_the_global_random_stream_alone():
    # the one-channel convolution the receptive sums run on is never initialised: a
    # learning step must not move the user's random numbers
    conv = nn.Conv1d(2, 3, 3, padding=1, bias=False).double()
    homeostasis = LinearHomeostasis(0.1, 100.0)
    pre = torch.ones(2, 1, 2, 5, dtype=torch.float64)
    post = (torch.arange(30).reshape(2, 1, 3, 5) % 3 == 0).double()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    update, _ = run_rule(homeostasis, conv, pre, post)
    assert update.potentiation is not None or update.depression is not None
    assert torch.equal(torch.rand(3), expected)
