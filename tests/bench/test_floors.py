"""The suite's floor rows compute the update they claim to be the least work of."""

import math

import pytest
import torch
from torch import nn

from plastorch.bench.cases import DECAY, LR, StepFloor


def test_step_floor_hand_values():
    # Linear 2 -> 1; step 1: pre [1, 0], post [1]; step 2: pre [0, 1], post [0]
    layer = nn.Linear(2, 1, bias=False)
    pres = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    posts = [torch.tensor([[1.0]]), torch.tensor([[0.0]])]
    floor = StepFloor(layer, pres, posts, warm=0)
    first = floor.step()
    # the post spike pairs with the same-step pre spike (x_pre = [1, 0]); no post trace yet
    torch.testing.assert_close(first, torch.tensor([[LR, 0.0]]))
    second = floor.step()
    # the pre spike of input 1 pairs with the decayed post trace d * 1; no post spike
    torch.testing.assert_close(second, torch.tensor([[0.0, -LR * DECAY]]))
    torch.testing.assert_close(layer.weight.grad, -(first + second))
    # traces advanced in place: x_pre = [d, 1], x_post = d
    torch.testing.assert_close(floor.trace_pre, torch.tensor([[DECAY, 1.0]]))
    torch.testing.assert_close(floor.trace_post, torch.tensor([[DECAY]]))
    assert math.isclose(DECAY, math.exp(-1.0 / 20.0))


def test_step_floor_rejects_a_non_finite_weight():
    layer = nn.Linear(2, 1, bias=False)
    floor = StepFloor(layer, [torch.ones(1, 2)], [torch.ones(1, 1)], warm=0)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="layer.weight contains NaN or inf"):
        floor.step()
