import copy

import pytest
import torch
from torch import nn

from plastorch import Learner
from plastorch.bounds import Hard, Normalize, Soft
from plastorch.rules import MSTDP, MSTDPET, STDP, TripletSTDP


class Threshold(nn.Module):
    """A stateless spike source: spikes where the input exceeds a threshold."""

    def __init__(self, threshold=0.5):
        super().__init__()
        self.threshold = threshold

    def forward(self, x):
        return (x > self.threshold).to(x.dtype)


def make(rule, step_mode="single", layer=None, **kw):
    torch.manual_seed(1)
    layer = layer or nn.Linear(6, 4, bias=False).double()
    source = Threshold(0.3)
    return layer, source, Learner(layer, source, rule, step_mode=step_mode, **kw)


def inputs(steps=10, batch=3, features=6, seed=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, features, generator=g) < 0.4).double()


def test_single_step_learner_equals_rule_on_the_window():
    rule = STDP(0.4, -0.3, tau_post=5.0, tau_pre=8.0)
    layer, source, learner = make(rule)
    x = inputs()
    posts = []
    for t in range(10):
        posts.append(source(layer(x[t])))
    delta = learner.step()
    state = rule.initial_state(layer, x[0], posts[0])
    update, _ = rule(layer, x, torch.stack(posts), state)
    torch.testing.assert_close(delta, update.delta(), rtol=1e-12, atol=1e-12)


def test_multi_step_window_equals_single_steps():
    x = inputs()
    rule = MSTDP(0.4, -0.3, tau_post=5.0, tau_pre=8.0)
    signal = torch.randn(10, 3, dtype=torch.float64)
    layer, source, learner = make(rule, step_mode="multi")
    source(layer(x))
    fused = learner.step(signal)
    layer2, source2, single = make(copy.deepcopy(rule))
    total = 0
    for t in range(10):
        source2(layer2(x[t]))
        total = total + single.step(signal[t])
    torch.testing.assert_close(fused, total, rtol=1e-12, atol=1e-12)


def test_grad_convention_sgd_lr1_equals_w_plus_dw():
    layer, source, learner = make(STDP(0.5, -0.5), bound=Soft(-1.0, 1.0))
    x = inputs()
    for t in range(5):
        source(layer(x[t]))
    before = layer.weight.detach().clone()
    delta = learner.step()
    assert torch.equal(layer.weight.grad, -delta)
    torch.optim.SGD(layer.parameters(), lr=1.0).step()
    torch.testing.assert_close(layer.weight.detach(), before + delta, rtol=0, atol=1e-15)


def test_grad_accumulates_across_steps():
    layer, source, learner = make(STDP(0.5, -0.5))
    x = inputs()
    source(layer(x[0]))
    first = learner.step()
    source(layer(x[1]))
    second = learner.step()
    torch.testing.assert_close(layer.weight.grad, -(first + second))


def test_apply_with_hard_bound_and_normalisation():
    layer, source, learner = make(
        STDP(5.0, -5.0), bound=Hard(0.0, 0.4), apply=True, constraints=[Normalize(1.0)]
    )
    with torch.no_grad():
        layer.weight.uniform_(0.0, 0.3)
    x = inputs()
    for t in range(10):
        source(layer(x[t]))
        learner.step()
    torch.testing.assert_close(layer.weight.sum(1), torch.ones(4, dtype=torch.float64))
    assert layer.weight.grad is None


def test_windows_between_steps_accumulate_and_memory_stays_bounded():
    layer, source, learner = make(STDP(0.1, -0.1))
    x = inputs(steps=200)
    sizes = set()
    for t in range(200):
        source(layer(x[t]))
        sizes.add(sum(b.numel() for b in learner.buffers()))
    assert len(sizes) <= 2  # the accumulators appear once, then nothing grows
    delta = learner.step()
    layer2, source2, one = make(STDP(0.1, -0.1), step_mode="multi")
    source2(layer2(x))
    torch.testing.assert_close(delta, one.step(), rtol=1e-12, atol=1e-12)


def test_modulated_window_without_step_gets_no_reward():
    layer, source, learner = make(MSTDP(1.0, -1.0))
    x = inputs()
    source(layer(x[0]))
    source(layer(x[1]))  # settles step 0 with M = 0
    delta = learner.step(1.0)  # modulates step 1 only
    layer2, source2, ref = make(MSTDP(1.0, -1.0))
    source2(layer2(x[0]))
    ref.step(0.0)
    source2(layer2(x[1]))
    torch.testing.assert_close(delta, ref.step(1.0))


@pytest.mark.parametrize(
    "rule",
    [
        STDP(0.3, -0.2, tau_post=7.0, tau_pre=3.0),
        MSTDP(0.3, -0.2, trace_mode="nearest"),
        MSTDPET(0.3, -0.2, tau_eligibility=9.0, per_sample_signal=True),
        MSTDPET(0.3, -0.2, tau_eligibility=9.0, per_sample_signal=True, eligibility="combined"),
    ],
)
def test_state_dict_mid_window_resumes_bit_identically(rule):
    x = inputs(steps=20)
    signal = torch.randn(20, 3, dtype=torch.float64)

    def run(learner, layer, source, lo, hi):
        for t in range(lo, hi):
            source(layer(x[t]))
            if t % 3 == 2:
                learner.step(signal[t] if rule.modulated else None, apply=True)

    layer, source, learner = make(copy.deepcopy(rule), bound=Soft(-1.0, 1.0))
    run(learner, layer, source, 0, 20)

    layer_a, source_a, learner_a = make(copy.deepcopy(rule), bound=Soft(-1.0, 1.0))
    run(learner_a, layer_a, source_a, 0, 10)  # stops with windows pending, step not yet called
    saved = copy.deepcopy((layer_a.state_dict(), learner_a.state_dict()))
    assert "pending_pre" in saved[1] and "trace_pre" in saved[1]

    layer_b, source_b, learner_b = make(copy.deepcopy(rule), bound=Soft(-1.0, 1.0))
    layer_b.load_state_dict(saved[0])
    learner_b.load_state_dict(saved[1])
    run(learner_b, layer_b, source_b, 10, 20)
    assert torch.equal(layer_b.weight, layer.weight)


def test_step_with_reset_equals_step_then_reset():
    """``step(reset=True)`` ends an episode: the same update as ``step()`` then
    ``reset()``, without forming the state only a next window would read."""
    x = inputs(steps=12)
    reward = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    rule = MSTDPET(0.3, -0.2, tau_eligibility=9.0, per_sample_signal=True)
    results = []
    for end_with_reset in (False, True):
        layer, source, learner = make(copy.deepcopy(rule), step_mode="multi")
        deltas = []
        for episode in range(2):
            for half in (x[:6], x[6:]):  # two windows per episode, eligibility carried
                source(layer(half))
                if half is x[:6]:
                    deltas.append(learner.step(reward * (episode + 1)))
                elif end_with_reset:
                    deltas.append(learner.step(reward * (episode + 1), reset=True))
                else:
                    deltas.append(learner.step(reward * (episode + 1)))
                    learner.reset()
            assert learner.state_names == ()
        results.append(torch.stack(deltas))
    torch.testing.assert_close(results[1], results[0], rtol=1e-13, atol=1e-15)


def test_load_into_a_learner_left_with_a_broadcast_initial_state():
    """A settle that fails after the rule's lazy initial state (a broadcast view) was
    stored leaves that view in the buffers; loading a checkpoint replaces it."""
    x = inputs(steps=6)
    rule = MSTDPET(0.3, -0.2, tau_eligibility=9.0, per_sample_signal=True)
    layer, source, saved = make(copy.deepcopy(rule), step_mode="multi")
    source(layer(x))
    saved.step(torch.ones(3, dtype=torch.float64))
    source(layer(x))  # a window pending, as in the learner below
    checkpoint = copy.deepcopy(saved.state_dict())

    layer_b, source_b, learner = make(copy.deepcopy(rule), step_mode="multi")
    source_b(layer_b(x))
    with pytest.raises(ValueError, match="signal"):
        learner.step(torch.ones(5, dtype=torch.float64))  # wrong shape, raised in the rule
    assert not learner.eligibility_post.is_contiguous()
    learner.load_state_dict(checkpoint)
    assert torch.equal(learner.eligibility_post, saved.eligibility_post)


def test_conv_multi_step_with_time_folded_into_batch():
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    source = Threshold(0.2)
    learner = Learner(conv, source, STDP(0.2, -0.1), step_mode="multi")
    x = (torch.rand(4, 2, 2, 5, 5) < 0.3).double()
    out = conv(x.flatten(0, 1)).unflatten(0, (4, 2))  # like SpikingJelly's SeqToANNContainer
    spikes = source(out)
    delta = learner.step()
    rule = learner.rule
    ref, _ = rule(conv, x, spikes, rule.initial_state(conv, x[0], spikes[0]))
    torch.testing.assert_close(delta, ref.delta())


@pytest.mark.parametrize(
    "rule", [STDP(0.2, -0.1), TripletSTDP(0.1, 0.05, -0.1, -0.02)], ids=["stdp", "triplet"]
)
def test_channels_last_network_keeps_channels_last_traces_and_learns_the_same(rule):
    # the traces take the spikes' memory format (one layout for oneDNN); the update
    # is the channels-first network's, step after step, and a checkpoint resumes it
    cl = torch.channels_last
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
    conv_cl = copy.deepcopy(conv).to(memory_format=cl)
    source, source_cl = Threshold(0.2), Threshold(0.2)
    learner = Learner(conv, source, copy.deepcopy(rule))
    learner_cl = Learner(conv_cl, source_cl, copy.deepcopy(rule))
    g = torch.Generator().manual_seed(4)
    xs = (torch.rand(6, 4, 2, 5, 5, generator=g) < 0.4).double()
    for t, x in enumerate(xs):
        source(conv(x))
        if t == 3:  # resume the channels-last learner from a checkpoint
            state = copy.deepcopy(learner_cl.state_dict())
            learner_cl.remove()
            source_cl = Threshold(0.2)
            learner_cl = Learner(conv_cl, source_cl, copy.deepcopy(rule))
            learner_cl.load_state_dict(state)
        source_cl(conv_cl(x.contiguous(memory_format=cl)))
        torch.testing.assert_close(learner_cl.step(), learner.step())
    for name in learner_cl.state_names:
        traced = learner_cl._buffers[name]
        if traced.dim() == 4:
            assert traced.is_contiguous(memory_format=cl), name
            torch.testing.assert_close(traced, learner._buffers[name])


def test_tuple_output_and_post_from():
    class WithMembrane(nn.Module):
        def forward(self, x):
            return (x > 0.3).double(), x

    layer = nn.Linear(6, 4, bias=False).double()
    source = WithMembrane()
    learner = Learner(layer, source, STDP(1.0, -1.0))
    source(layer(inputs()[0]))
    assert learner.step().shape == (4, 6)
    learner2 = Learner(layer, source, STDP(1.0, -1.0), post_from=lambda out: out[0])
    source(layer(inputs()[1]))
    assert learner2.step().shape == (4, 6)


def test_disable_enable_reset():
    layer, source, learner = make(STDP(1.0, -1.0))
    x = inputs()
    learner.disable()
    source(layer(x[0]))
    with pytest.raises(RuntimeError, match="before any forward"):
        learner.step()
    learner.enable()
    source(layer(x[1]))
    learner.step()
    learner.reset()
    assert learner.state_dict() == {} or all(k in ("rule",) for k in learner.state_dict())
    learner.remove()
    source(layer(x[2]))
    with pytest.raises(RuntimeError, match="before any forward"):
        learner.step()


def test_batch_size_check_follows_a_loaded_state():
    # the learner compares batch sizes with a Python copy of its batch_size buffer;
    # loading another learner's state (after a reset) must replace that copy too
    x3, x5 = inputs(batch=3), inputs(batch=5)
    layer, source, small = make(STDP(1.0, -1.0))
    source(layer(x3[0]))
    small.step()
    _, source, big = make(STDP(1.0, -1.0), layer=layer)
    small.remove()
    source(layer(x5[0]))
    big.step()
    big.reset()
    big.load_state_dict(small.state_dict())
    source(layer(x5[1]))
    with pytest.raises(ValueError, match="batch size changed from 3 to 5"):
        big.step()
    big.reset()
    source(layer(x5[2]))
    big.step()  # a reset learner takes any batch size again
    assert int(big.batch_size) == 5
    source(layer(x3[1]))
    with pytest.raises(ValueError, match="batch size changed from 5 to 3"):
        big.step()


def test_errors_are_clear():
    layer, source, learner = make(MSTDP(1.0, -1.0))
    x = inputs()
    source(layer(x[0]))
    with pytest.raises(ValueError, match="needs a signal"):
        learner.step()
    with pytest.raises(ValueError, match="signal"):
        learner.step(float("nan"))
    with pytest.raises(ValueError, match="scale"):
        learner.step(1.0, scale=float("inf"))
    learner.step(1.0)
    source(layer(inputs(batch=5)[0]))
    with pytest.raises(ValueError, match="batch size changed from 3 to 5"):
        learner.step(1.0)

    _, _, stdp = make(STDP(1.0, -1.0))
    with pytest.raises(TypeError, match="no signal"):
        stdp.step(1.0)
    with pytest.raises(TypeError, match="weight"):
        Learner(nn.ReLU(), Threshold(), STDP(1.0, -1.0))
    with pytest.raises(TypeError, match="rule"):
        Learner(nn.Linear(2, 2), Threshold(), "stdp")
    with pytest.raises(ValueError, match="step_mode"):
        Learner(nn.Linear(2, 2), Threshold(), STDP(1.0, -1.0), step_mode="many")


def test_runtime_shape_dtype_and_nan_errors():
    layer = nn.Linear(6, 4, bias=False).double()
    source = Threshold()
    Learner(layer, source, STDP(1.0, -1.0))
    with pytest.raises(ValueError, match="dtype"):
        source(layer.float()(torch.rand(2, 6)).double())
    layer.double()
    pool = nn.Sequential(layer, nn.Identity())
    bad = torch.rand(2, 6, dtype=torch.float64)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        source(pool(bad))
    layer2, source2 = nn.Linear(6, 4, bias=False).double(), Threshold()
    Learner(layer2, source2, STDP(1.0, -1.0))
    with pytest.raises(ValueError, match=r"does not match the layer output"):
        source2(layer2(torch.rand(2, 6, dtype=torch.float64))[:, :2])


def test_spikes_recorded_in_inference_mode_are_learned_from():
    # inference tensors have no version counter; the step's shared scans skip them
    rule = MSTDPET(1.0, -0.5, per_sample_signal=True)
    layer, source, learner = make(rule, step_mode="multi")
    reference = copy.deepcopy(learner)
    x = inputs(steps=20)
    with torch.inference_mode():
        post = source(layer(x))
    delta = learner.step(torch.tensor([1.0, -1.0, 0.5]).double())
    reference.reset()
    state = rule.initial_state(layer, x[0], post[0])
    update, _ = rule(layer, x.clone(), post.clone(), state, torch.tensor([1.0, -1.0, 0.5]).double())
    torch.testing.assert_close(delta, update.delta())
    assert delta.abs().sum() > 0
