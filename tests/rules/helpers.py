import math

import torch

# Decays of exactly 1/2 and 1/4 per 1 ms step keep hand-derived values exact.
TAU_HALF = 1.0 / math.log(2.0)
TAU_QUARTER = 1.0 / math.log(4.0)


def spike_train(*times, steps):
    """[T, 1, 1] spikes of one neuron at the given steps."""
    out = torch.zeros(steps, 1, 1, dtype=torch.float64)
    for t in times:
        out[t] = 1.0
    return out


def run_rule(rule, layer, pre, post, signal=None, state=None):
    state = state if state is not None else rule.initial_state(layer, pre[0], post[0])
    return rule(layer, pre, post, state, signal)


def value(half):
    return None if half is None else round(half.item(), 12)
