"""Scans shared between correlations, and per-step weights of per-sample correlations.

Factors are small dyadic rationals in float64 (``dyadic``), so every product and
partial sum is exact: results are compared bit for bit.
"""

import importlib

import pytest
import torch
from torch import nn

from plastorch.functional import compiled, correlate, correlate_per_sample, correlation_scope

from .test_correlate_sparse import dyadic

correlate_module = importlib.import_module("plastorch.functional.correlate")

STEPS, BATCH, N_IN, N_OUT = 40, 6, 90, 80


@pytest.fixture
def scans(monkeypatch):
    """Count the scans that really run (not served from a shared block).

    The factors are small, so the thresholds are lowered: every factor takes the
    flat scan of a large one (the one MSTDP-ET's window factors take).
    """
    monkeypatch.setattr(compiled, "_ENABLED", False)  # the torch path's scans
    monkeypatch.setattr(correlate_module, "_COLUMN_SCAN_BYTES", 0)
    monkeypatch.setattr(correlate_module, "_PERMUTED_SCAN", 0)
    calls = []
    original = correlate_module._scan_entries

    def counting(sparse_t, *args):
        calls.append(tuple(sparse_t.shape))
        return original(sparse_t, *args)

    monkeypatch.setattr(correlate_module, "_scan_entries", counting)
    return calls


def factors(seed=0):
    g = torch.Generator().manual_seed(seed)
    pre = dyadic((STEPS, BATCH, N_IN), 0.5, g)
    post = (torch.rand(STEPS, BATCH, N_OUT, generator=g) < 0.03).double()
    return pre, post


def test_a_block_scans_each_factor_once_and_changes_no_result(scans):
    fc = nn.Linear(N_IN, N_OUT, bias=False).double()
    pre, post = factors()
    flat_pre, flat_post = pre.flatten(0, 1), post.flatten(0, 1)

    def four():
        return [
            correlate(fc, flat_pre, flat_post, sparse=True),
            correlate(fc, 2 * flat_pre, flat_post, sparse=True),
            correlate_per_sample(fc, pre, post, sparse=True),
            correlate_per_sample(fc, 2 * pre, post, sparse=True),
        ]

    alone = four()
    assert len(scans) == 4
    scans.clear()
    with torch.profiler.profile() as profile, correlation_scope():
        shared = four()
    # one scan per owner layout (summed, per sample), and one nonzero for both
    assert len(scans) == 2
    assert sum(event.name == "aten::nonzero" for event in profile.events()) == 1
    for a, b in zip(alone, shared):
        assert torch.equal(a, b)
    assert torch.equal(shared[1], 2 * shared[0])
    assert torch.equal(shared[2].sum(0), shared[0])
    scans.clear()
    correlate(fc, flat_pre, flat_post, sparse=True)  # the block is closed: scanned again
    assert len(scans) == 1


def test_a_factor_changed_in_place_is_scanned_again(scans):
    fc = nn.Linear(N_IN, N_OUT, bias=False).double()
    pre, post = factors(1)
    flat_pre, flat_post = pre.flatten(0, 1), post.flatten(0, 1)
    with correlation_scope():
        before = correlate(fc, flat_pre, flat_post, sparse=True)
        flat_post[0].fill_(1.0)  # same memory, new values: the version counter moves
        after = correlate(fc, flat_pre, flat_post, sparse=True)
    assert len(scans) == 2
    assert torch.equal(after, flat_post.t() @ flat_pre)
    assert not torch.equal(before, after)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("per_step", [True, False], ids=["[T,B]", "[T,1]"])
@pytest.mark.parametrize(
    "make_layer, in_shape",
    [
        (lambda: nn.Linear(N_IN, N_OUT, bias=False), (N_IN,)),
        (lambda: nn.Conv1d(3, 4, 3, padding=1, bias=False), (3, 11)),
    ],
    ids=["linear", "conv1d"],
)
def test_per_sample_weights_equal_the_weighted_post_factor(make_layer, in_shape, per_step, sparse):
    g = torch.Generator().manual_seed(2)
    layer = make_layer().double()
    pre = dyadic((STEPS, BATCH, *in_shape), 0.5, g)
    post = dyadic((STEPS, *layer(pre[0]).shape), 0.05, g)
    weights = torch.randint(-8, 9, (STEPS, BATCH if per_step else 1), generator=g).double() / 4
    expected = correlate_per_sample(
        layer, pre, post * weights.reshape(STEPS, -1, *([1] * (post.dim() - 2))), sparse=sparse
    )
    got = correlate_per_sample(layer, pre, post, sparse=sparse, weights=weights)
    assert torch.equal(got, expected)
    into = torch.ones_like(expected)
    correlate_per_sample(
        layer, pre, post, sparse=sparse, weights=weights, accumulate=into, beta=0.5
    )
    assert torch.equal(into, expected + 0.5)


def test_per_sample_weights_of_a_wrong_shape_are_named():
    fc = nn.Linear(N_IN, N_OUT, bias=False).double()
    pre, post = factors()
    with pytest.raises(ValueError, match=r"weights must be \[T, B\]=\[40, 6\] or \[T, 1\]"):
        correlate_per_sample(fc, pre, post, weights=torch.ones(STEPS, 2).double())


def test_factors_made_in_inference_mode_are_scanned_each_time(scans):
    # they have no version counter, so a change in place could not be seen
    fc = nn.Linear(N_IN, N_OUT, bias=False).double()
    pre, post = factors(3)
    with torch.inference_mode():
        post = post.clone()
    with correlation_scope():
        first = correlate(fc, pre.flatten(0, 1), post.flatten(0, 1), sparse=True)
        second = correlate(fc, pre.flatten(0, 1), post.flatten(0, 1), sparse=True)
    assert len(scans) == 2
    assert torch.equal(first, second)
    assert torch.equal(first, post.flatten(0, 1).t() @ pre.flatten(0, 1))


def test_a_lent_workspace_is_not_used_for_factors_that_need_gradients():
    # out= buffers cannot be in an autograd graph: the conv kernel allocates then
    from plastorch.functional.workspace import Workspace

    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    pre = torch.rand(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    post = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    workspace = Workspace()
    with correlation_scope(workspace):
        grad = correlate(conv, pre, post, sparse=False)
    (expected,) = torch.autograd.grad((post * conv(pre.detach())).sum(), conv.weight)
    torch.testing.assert_close(grad, expected)
    grad.sum().backward()  # differentiable in pre
    assert pre.grad is not None and workspace.nbytes == 0


def test_the_column_scan_of_a_small_factor_is_shared_too(monkeypatch):
    # below _COLUMN_SCAN_BYTES the summed Linear torch path scans column by column
    monkeypatch.setattr(compiled, "_ENABLED", False)
    calls = []
    original = correlate_module._by_column

    def counting(sparse_t):
        calls.append(tuple(sparse_t.shape))
        return original(sparse_t)

    monkeypatch.setattr(correlate_module, "_by_column", counting)
    fc = nn.Linear(N_IN, N_OUT, bias=False).double()
    pre, post = factors(5)
    flat_pre, flat_post = pre.flatten(0, 1), post.flatten(0, 1)
    with correlation_scope():
        first = correlate(fc, flat_pre, flat_post, sparse=True)
        second = correlate(fc, 2 * flat_pre, flat_post, sparse=True)
    assert calls == [tuple(flat_post.shape)]
    assert torch.equal(first, flat_post.t() @ flat_pre)
    assert torch.equal(second, 2 * first)
