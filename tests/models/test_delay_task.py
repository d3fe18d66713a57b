"""Delay learning task: the pieces by hand, and a reduced run that must align the pattern."""

import pytest
import torch

from plastorch.layers import DelayedLinear
from plastorch.models.delay_task import (
    DelayTask,
    best_threshold_accuracy,
    delay_error,
    peak_potential,
    train_delay_task,
)


def test_pattern_trials_without_jitter_are_the_pattern():
    task = DelayTask(5, span=10, steps=20, jitter=0, seed=3)
    spikes = task.trials(True, 3, torch.Generator().manual_seed(0))
    for b in range(3):
        assert spikes[:, b].argmax(0).tolist() == task.pattern.tolist()
    distractors = task.trials(False, 50, torch.Generator().manual_seed(0))
    assert distractors.sum(0).eq(1).all()  # still one spike per input and trial
    assert distractors.argmax(0).lt(10).all()


def test_peak_potential_of_aligned_and_spread_arrivals():
    # weights 1, delays (2, 1, 0): spikes at 0, 1, 2 all arrive at step 2 -> peak 3;
    # at 0, 0, 0 they arrive at 2, 1, 0 -> v = 1, 1 + 1/2, 1 + 3/4 with tau = 1/ln 2
    layer = DelayedLinear(3, 1, max_delay=2.0, bias=False, delay_init=0.0)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.delay.copy_(torch.tensor([[2.0, 1.0, 0.0]]))
    aligned = torch.zeros(4, 1, 3)
    aligned[0, 0, 0] = aligned[1, 0, 1] = aligned[2, 0, 2] = 1.0
    together = torch.zeros(4, 1, 3)
    together[0] = 1.0
    tau = 1.0 / torch.log(torch.tensor(2.0)).item()
    assert peak_potential(layer, aligned, tau).item() == pytest.approx(3.0)
    assert peak_potential(layer, together, tau).item() == pytest.approx(1.75)
    pattern = torch.tensor([0, 1, 2])
    assert delay_error(layer, pattern) == 0.0  # arrivals 2, 2, 2


def test_best_threshold_is_fitted_then_applied():
    fit_pos, fit_neg = torch.tensor([3.0, 4.0, 5.0]), torch.tensor([0.0, 1.0, 2.5])
    # threshold 3 separates the fitting scores; on the test scores it misses one of two
    accuracy, theta = best_threshold_accuracy(
        fit_pos, fit_neg, torch.tensor([2.9, 5.0]), torch.tensor([0.0, 1.0])
    )
    assert theta == 3.0 and accuracy == 0.75


def test_delay_learning_aligns_the_pattern_and_beats_weights_only():
    # 20 inputs, 30 epochs of 8 pattern trials, spikes jittered by +-1 ms. Random delays
    # in [0, 30] spread the arrivals by ~7 ms (mean |deviation|); anti-Hebbian delay
    # STDP must at least halve that, which makes the pattern's arrivals coincide well
    # enough for the best threshold to tell it from distractors in >= 95 % of held-out
    # trials. Weights alone cannot align arrivals: they can only favour the inputs that
    # happen to arrive near the target spike, and stay below the delay learner.
    delays = train_delay_task("delays", epochs=30, eval_trials=100, seed=0)
    weights = train_delay_task("weights", epochs=30, eval_trials=100, seed=0)
    assert delays.delay_error[0] > 5.0
    assert delays.delay_error[-1] < 0.5 * delays.delay_error[0]
    assert delays.accuracy_after >= 0.95
    assert weights.accuracy_after < delays.accuracy_after
    assert torch.equal(weights.delay_error, weights.delay_error[:1].expand(31))  # frozen
    assert delays.weights.eq(1.0).all()  # the delay learner leaves the weights alone


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="learn"):
        train_delay_task("both", epochs=1)
    with pytest.raises(ValueError, match="steps"):
        DelayTask(4, span=10, steps=5)
