"""ExpSTDP + ExpSTDPBound against ngclearn's evolve() written out in numpy."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from plastorch import Learner
from plastorch.functional import Update
from plastorch.rules import ExpSTDP, ExpSTDPBound
from plastorch.rules.base import state_use

from .helpers import TAU_HALF, run_rule


def ngclearn_evolve(
    pre, x_pre, post, x_post, W, w_bound, eta, x_tar, beta, a_plus, a_minus, w_norm
):
    """Reference 004's update, W as ngclearn stores it: [in, out]; batch rows."""
    post_term1 = np.exp(-beta * W) * (x_pre.T @ post)
    post_term2 = np.exp(-beta * (w_bound - W)) * ((x_pre * 0 + x_tar).T @ post)
    d_post = (post_term1 - post_term2) * a_plus
    d_pre = 0.0
    if a_minus > 0.0:
        d_pre = -np.exp(-beta * W) * (pre.T @ x_post) * a_minus
    new = W + (d_post + d_pre) * eta
    if w_norm is not None:
        new = new * (w_norm / (np.linalg.norm(new, axis=1, keepdims=True) + 1e-5))
    return np.clip(new, 0.01, w_bound)


@pytest.mark.parametrize("a_minus", [0.0, 0.8])
@pytest.mark.parametrize("w_norm", [None, 1.3])
def test_one_step_equals_the_reference_formula_with_clipping_and_norm(a_minus, w_norm):
    g = torch.Generator().manual_seed(0)
    fc = nn.Linear(3, 2, bias=False).double()  # 2x3 synapses
    weight0 = torch.rand(2, 3, generator=g, dtype=torch.float64) * 0.9 + 0.05
    with torch.no_grad():
        fc.weight.copy_(weight0)
    source = nn.Identity()
    rule = ExpSTDP(3.0, beta=2.0, a_plus=1.5, a_minus=a_minus, x_target=0.4, w_bound=0.9,
                   tau_pre=TAU_HALF, tau_post=TAU_HALF)  # fmt: skip
    bound = ExpSTDPBound(w_bound=0.9, w_min=0.01, norm=w_norm)
    learner = Learner(fc, source, rule, bound=bound, apply=True)
    # two steps so that the traces are non-trivial; update after the second only
    pre = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]])
    post = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 1.0]]])
    pre, post = pre.double(), post.double()
    source(post[0] + 0 * fc(pre[0]))
    learner.step(scale=0.0)  # settles step 0 (traces advance), changes nothing...
    with torch.no_grad():
        fc.weight.copy_(weight0)  # ...except the bound's norm/clip: start step 1 from weight0
    source(post[1] + 0 * fc(pre[1]))
    learner.step()
    # traces after step 0 (decay 1/2): x_pre = pre[0], x_post = post[0]; at step 1 the
    # pre trace includes step 1, the post trace is read before it.
    x_pre = 0.5 * pre[0].numpy() + pre[1].numpy()
    x_post_before = 0.5 * post[0].numpy()
    expected = ngclearn_evolve(
        pre[1].numpy(), x_pre, post[1].numpy(), x_post_before, weight0.numpy().T,
        w_bound=0.9, eta=3.0, x_tar=0.4, beta=2.0, a_plus=1.5, a_minus=a_minus, w_norm=w_norm,
    )  # fmt: skip
    np.testing.assert_allclose(fc.weight.detach().numpy(), expected.T, rtol=1e-12, atol=1e-12)
    assert bool(((expected == 0.01) | (expected == 0.9)).any())  # a clip is exercised


def test_hand_derived_single_synapse():
    # w = 0.5, beta = 1, w_bound = 1: pre at step 0 (x_pre = 1), post at step 1
    # (x_pre = 1/2): LTP exp(-0.5) / 2; x_tar term exp(-0.5) * 0.2.
    fc = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        fc.weight.fill_(0.5)
    rule = ExpSTDP(1.0, beta=1.0, x_target=0.2, tau_pre=TAU_HALF)
    pre = torch.tensor([[[1.0]], [[0.0]]], dtype=torch.float64)
    post = torch.tensor([[[0.0]], [[1.0]]], dtype=torch.float64)
    update, _ = run_rule(rule, fc, pre, post)
    assert update.potentiation.item() == pytest.approx(math.exp(-0.5) / 2, rel=1e-12)
    assert update.depression.item() == pytest.approx(math.exp(-0.5) * 0.2, rel=1e-12)


def test_clipping_holds_for_any_update():
    bound = ExpSTDPBound(w_bound=1.0, w_min=0.01)
    w = torch.tensor([[0.2, 0.9]], dtype=torch.float64)
    delta = bound(w, Update(torch.tensor([[0.0, 5.0]]), torch.tensor([[7.0, 0.0]])))
    torch.testing.assert_close(w + delta, torch.tensor([[0.01, 1.0]], dtype=torch.float64))


def test_mean_reduction_and_window_of_single_steps():
    torch.manual_seed(2)
    fc = nn.Linear(4, 3, bias=False).double()
    pre, post = (torch.rand(6, 2, 4) < 0.4).double(), (torch.rand(6, 2, 3) < 0.4).double()
    rule = ExpSTDP(0.1, beta=1.0, a_minus=0.5, batch_reduction="mean")
    total, _ = run_rule(ExpSTDP(0.1, beta=1.0, a_minus=0.5), fc, pre, post)
    mean, _ = run_rule(rule, fc, pre, post)
    torch.testing.assert_close(mean.delta(), total.delta() / 2, rtol=1e-12, atol=1e-12)
    state, summed = rule.initial_state(fc, pre[0], post[0]), 0
    for t in range(6):
        update, state = rule(fc, pre[t : t + 1], post[t : t + 1], state)
        summed = summed + update.delta()
    torch.testing.assert_close(mean.delta(), summed, rtol=1e-12, atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="beta"):
        ExpSTDP(0.1, beta=-1.0)
    with pytest.raises(ValueError, match="w_bound"):
        ExpSTDP(0.1, w_bound=0.0)
    with pytest.raises(ValueError, match="x_target"):
        ExpSTDP(0.1, x_target=-0.5)
    with pytest.raises(ValueError, match="norm"):
        ExpSTDPBound(norm=0.0)
    with pytest.raises(ValueError, match="wmin"):
        ExpSTDPBound(w_bound=0.01, w_min=0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", [None, 2.0])
def test_bound_clips_exactly_in_floating_point(dtype, norm):
    # clamp(w') - w, added back to w, can round an ulp past a bound (as for
    # plastorch.bounds); weights from outside the range as well as inside
    lo, hi = 0.01, 1.4422002466612418
    weight = torch.linspace(-3.557799753338758, hi, 5000, dtype=dtype).reshape(50, 100)
    bound = ExpSTDPBound(w_bound=hi, w_min=lo, norm=norm)
    top, bottom = torch.tensor(hi, dtype=dtype), torch.tensor(lo, dtype=dtype)
    for scale in (1e-3, 1e3, 1e6, 1e9):
        big = torch.full_like(weight, scale)
        for update in (Update(big, None), Update(None, big)):
            new = weight + bound(weight, update)
            assert new.max() <= top and new.min() >= bottom, scale


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize(
    "make_layer, shape_pre, shape_post",
    [
        (lambda: nn.Linear(4, 3, bias=False), (4,), (3,)),
        (lambda: nn.Conv1d(2, 3, 3, padding=1, bias=False), (2, 5), (3, 5)),
    ],
)
@pytest.mark.parametrize("a_minus, x_target", [(0.5, 0.3), (0.0, 0.3), (0.5, 0.0)])
def test_the_delta_alone_equals_the_halves_difference(
    reduction, make_layer, shape_pre, shape_post, a_minus, x_target
):
    # a caller reading only Δw gets one fused correlation scaled by e^{-beta w} and the
    # target term as a row scale (Linear) or a correlation (others)
    torch.manual_seed(7)
    layer = make_layer().double()
    with torch.no_grad():
        layer.weight.uniform_(0.05, 0.95)
    pre = (torch.rand(2, 5, 2, *shape_pre) < 0.4).double()
    post = (torch.rand(2, 5, 2, *shape_post) < 0.4).double()
    rule = ExpSTDP(0.2, beta=1.5, a_minus=a_minus, x_target=x_target, batch_reduction=reduction)
    _, warm = run_rule(rule, layer, pre[0], post[0])  # traces carried into the window
    halves, state = run_rule(rule, layer, pre[1], post[1], state=warm)
    with state_use(delta_only=True):
        net, net_state = run_rule(rule, layer, pre[1], post[1], state=warm)
    expected = halves.potentiation - halves.depression
    torch.testing.assert_close(net.delta(), expected, rtol=1e-12, atol=1e-14)
    for name in ("trace_pre", "trace_post"):
        torch.testing.assert_close(net_state[name], state[name], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("layer", [nn.Linear(6, 4, bias=False), nn.Conv1d(2, 3, 3, bias=False)])
def test_learner_steps_return_their_own_changes(layer):
    # the weight-sized temporaries live in the learner's workspace: what a step returns
    # is its own, equal to the pure rule's change, and unchanged by the next step
    from plastorch.bench.common import Replay

    layer = layer.double()
    rule = ExpSTDP(0.1, beta=1.5, a_minus=0.5, x_target=0.3)
    shape = (2, 6) if isinstance(layer, nn.Linear) else (2, 2, 6)
    out_shape = layer(torch.zeros(shape, dtype=torch.float64)).shape
    source = Replay()
    learner = Learner(layer, source, rule)
    g = torch.Generator().manual_seed(3)
    pure_state, deltas = None, []
    for _ in range(3):
        pre = (torch.rand(shape, generator=g) < 0.5).double()
        post = (torch.rand(out_shape, generator=g) < 0.5).double()
        with torch.no_grad():
            source.value = post
            source(layer(pre))
        if pure_state is None:
            pure_state = rule.initial_state(layer, pre, post)
        expected, pure_state = rule(layer, pre[None], post[None], pure_state)
        delta = learner.step()
        torch.testing.assert_close(delta, expected.delta(), rtol=1e-12, atol=1e-12)
        deltas.append((delta, delta.clone()))
    for delta, copy in deltas:
        assert torch.equal(delta, copy)
