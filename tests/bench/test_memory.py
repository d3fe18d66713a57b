"""Memory of a window: no [B, out, in] tensor where the math does not need one.

A tensor-size hook (AllocationTracker, a TorchDispatchMode) records every storage
allocated while a rule settles one window. STDP and MSTDP never need a
per-synapse, per-sample tensor; MSTDP-ET with per-sample rewards needs exactly
one per eligibility trace (post- and pre-triggered), the state carried to the
next window, and nothing else of that size inside the window.
"""

import importlib

import pytest
import torch
from torch import nn

from plastorch.bench.timing import AllocationTracker
from plastorch.functional import sparse_mode
from plastorch.rules import MSTDP, MSTDPET, STDP
from plastorch.rules.base import state_use

correlate_module = importlib.import_module("plastorch.functional.correlate")

N_IN, N_OUT, BATCH = 60, 40, 8


def window(steps, generator):
    pre = (torch.rand(steps, BATCH, N_IN, generator=generator) < 0.1).double()
    post = (torch.rand(steps, BATCH, N_OUT, generator=generator) < 0.1).double()
    return pre, post


def settle(rule, signal, steps, mode):
    generator = torch.Generator().manual_seed(0)
    layer = nn.Linear(N_IN, N_OUT, bias=False).double()
    rule = rule.double()
    pre, post = window(steps, generator)
    state = rule.initial_state(layer, pre[0], post[0])
    with sparse_mode(mode):
        _, state = rule(layer, pre, post, state, signal)  # non-zero carried state
        pre, post = window(steps, generator)
        with torch.no_grad(), AllocationTracker() as tracker:
            update, new_state = rule(layer, pre, post, state, signal)
    return tracker, new_state


SYNAPSES_PER_SAMPLE = BATCH * N_OUT * N_IN * 8  # bytes of one [B, out, in] float64 tensor


@pytest.mark.parametrize("mode", ["dense", "sparse"])
@pytest.mark.parametrize(
    "rule, signal",
    [
        (STDP(1.0, -1.0), None),
        (MSTDP(1.0, -1.0), torch.randn(20, BATCH, generator=torch.Generator().manual_seed(2))),
        (MSTDPET(1.0, -1.0), 0.5),
    ],
    ids=["STDP", "MSTDP-[T,B]", "MSTDP-ET-scalar"],
)
def test_no_per_sample_synapse_tensor(rule, signal, mode):
    tracker, _ = settle(rule, signal, 20, mode)
    assert tracker.largest < SYNAPSES_PER_SAMPLE
    # weight-sized results only (out x in), never B of them
    assert tracker.largest <= max(20 * BATCH * N_IN * 8, N_OUT * N_IN * 8)


@pytest.mark.parametrize("mode", ["dense", "sparse"])
@pytest.mark.parametrize("steps", [5, 30])
def test_mstdpet_per_sample_only_the_carried_state(steps, mode):
    reward = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, 0.0, -2.0, 1.0], dtype=torch.float64)
    rule = MSTDPET(1.0, -1.0, per_sample_signal=True)
    tracker, new_state = settle(rule, reward, steps, mode)
    big = [size for size in tracker.sizes if size >= SYNAPSES_PER_SAMPLE]
    carried = [new_state["eligibility_post"], new_state["eligibility_pre"]]
    assert all(t.shape == (BATCH, N_OUT, N_IN) for t in carried)
    # the two carried eligibilities, plus on the sparse path one row-sum temporary
    # per correlation added into them (three: the causal pairs, the acausal pairs
    # over post spikes and those with the carried post trace; a layer this small
    # fits in one run of samples, a large one takes a sample at a time): never one
    # per step
    assert 2 <= len(big) <= (2 if mode == "dense" else 5)
    assert all(size == SYNAPSES_PER_SAMPLE for size in big)
    # alive at once: the two carried states and at most one transient of that size
    assert tracker.peak < 3 * SYNAPSES_PER_SAMPLE + 2 * steps * BATCH * (N_IN + N_OUT) * 8 * 4


@pytest.mark.parametrize("eligibility, carried", [("split", 2), ("combined", 1)])
@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_mstdpet_in_a_learner_updates_the_eligibility_without_a_per_sample_tensor(
    mode, eligibility, carried, monkeypatch
):
    """As a Learner settles a window (``state_use(reusable=True)``), z(T) = d^T z0 + C is formed
    in z0 itself: nothing of the size [B, out, in] is allocated, not even the state.
    The sparse path sums rows into temporaries of at most ``_ROWS_CHUNK`` entries
    (1 MiB of float32; a sample at a time for a large layer): set to one sample's
    worth here, as it is for a 784->400 layer. ``eligibility="combined"`` carries one
    such tensor instead of two."""
    monkeypatch.setattr(correlate_module, "_ROWS_CHUNK", N_OUT * N_IN)
    reward = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, 0.0, -2.0, 1.0], dtype=torch.float64)
    rule = MSTDPET(1.0, -1.0, per_sample_signal=True, eligibility=eligibility).double()
    generator = torch.Generator().manual_seed(0)
    layer = nn.Linear(N_IN, N_OUT, bias=False).double()
    pre, post = window(20, generator)
    state = rule.initial_state(layer, pre[0], post[0])
    with sparse_mode(mode), state_use(reusable=True):
        _, state = rule(layer, pre, post, state, reward)
        big = [name for name in state if state[name].numel() >= SYNAPSES_PER_SAMPLE // 8]
        assert len(big) == carried and all(name.startswith("eligibility") for name in big)
        given = {name: state[name].data_ptr() for name in big}
        pre, post = window(20, generator)
        with torch.no_grad(), AllocationTracker() as tracker:
            update, new_state = rule(layer, pre, post, state, reward)
            update.delta()
    assert tracker.largest < SYNAPSES_PER_SAMPLE
    assert {name: new_state[name].data_ptr() for name in given} == given


def test_mstdpet_initial_per_sample_eligibility_is_a_broadcast_zero():
    """The initial [B, out, in] eligibility is a view of one zero [out, in]: an episode
    that ends after one window (``step(reset=True)``) never allocates it."""
    rule = MSTDPET(1.0, -1.0, per_sample_signal=True).double()
    layer = nn.Linear(N_IN, N_OUT, bias=False).double()
    pre, post = window(1, torch.Generator().manual_seed(0))
    with AllocationTracker() as tracker:
        state = rule.initial_state(layer, pre[0], post[0])
    assert tracker.largest < SYNAPSES_PER_SAMPLE
    assert state["eligibility_post"].shape == (BATCH, N_OUT, N_IN)
    assert not state["eligibility_post"].any()
