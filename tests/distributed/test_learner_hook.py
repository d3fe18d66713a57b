"""The Learner's ``synchronize`` hook: what it receives, when, and that its result is applied."""

import pytest
import torch
from torch import nn

from plastorch import Learner, Update
from plastorch.rules import STDP
from tests.rules.helpers import TAU_HALF


def _setup(**kw):
    layer = nn.Linear(1, 1, bias=False).double()
    nn.init.constant_(layer.weight, 0.25)
    source = nn.Identity()
    # Decay 1/2 per step: a pre spike at step 0 and a post spike at step 1 give
    # potentiation x_pre(1) * s_post(1) = 0.5 and no depression.
    rule = STDP(lr_post=1.0, lr_pre=-1.0, tau_post=TAU_HALF, tau_pre=TAU_HALF)
    return layer, source, Learner(layer, source, rule, step_mode="multi", apply=True, **kw)


def _window(pre_times, post_times, steps=2):
    pre = torch.zeros(steps, 1, 1, dtype=torch.float64)
    post = torch.zeros(steps, 1, 1, dtype=torch.float64)
    pre[list(pre_times)] = 1.0
    post[list(post_times)] = 1.0
    return pre, post


def _feed(layer, source, pre, post):
    layer(pre)
    source(post)


def test_hook_result_is_what_step_scales_bounds_and_applies():
    seen = []

    def hook(update, learner):
        seen.append((update.potentiation.item(), update.depression.item()))
        # Replace the update: potentiation x3, depression = the old potentiation.
        return Update(update.potentiation * 3.0, update.potentiation.clone())

    layer, source, learner = _setup(synchronize=hook)
    _feed(layer, source, *_window([0], [1]))
    delta = learner.step(scale=2.0)
    assert seen == [(0.5, 0.0)]
    # 2 * (3 * 0.5 - 0.5) = 2.0, added to 0.25.
    assert delta.item() == 2.0
    assert layer.weight.item() == 2.25


def test_hook_sees_accumulated_windows_plus_settled_one_before_accumulators_clear():
    seen = {}

    def hook(update, learner):
        seen["update"] = (update.potentiation.item(), update.depression.item())
        seen["accumulated"] = learner.accumulated_potentiation.item()
        return update

    layer, source, learner = _setup(synchronize=hook)
    _feed(layer, source, *_window([0], [1]))  # settled by the next forward: 0.5
    # Second window, traces carried: x_pre = 0.5 and x_post = 1 after the first.
    # Pre and post spike at its step 0: potentiation 0.5 * 0.5 + 1 = 1.25, and the
    # pre spike meets the decayed post trace 0.5 * 1 = 0.5 (depression).
    _feed(layer, source, *_window([0], [0]))
    learner.step()
    assert seen["accumulated"] == 0.5
    assert seen["update"] == (0.5 + 1.25, 0.5)
    assert learner.accumulated_potentiation is None


def test_no_hook_and_identity_hook_agree():
    layer_a, source_a, plain = _setup()
    layer_b, source_b, hooked = _setup(synchronize=lambda update, learner: update)
    pre, post = _window([0, 1], [1])
    _feed(layer_a, source_a, pre, post)
    _feed(layer_b, source_b, pre, post)
    assert plain.step().item() == hooked.step().item()


def test_hook_must_be_callable():
    with pytest.raises(TypeError, match="synchronize must be a callable"):
        _setup(synchronize=3)
