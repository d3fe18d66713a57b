"""A Workspace lent to a rule: same results, and window temporaries are not reallocated."""

import copy

import pytest
import torch
from torch import nn

from plastorch import Learner
from plastorch.bench.common import Replay
from plastorch.bench.timing import AllocationTracker
from plastorch.rules import MSTDPET, STDP, KernelSTDP, TripletSTDP
from plastorch.rules.base import Workspace, state_use

T, B, IN, OUT = 7, 3, 6, 5


def test_workspace_keeps_a_tensor_per_name_and_spec():
    ws = Workspace()
    cpu = torch.device("cpu")
    a = ws.get("a", (2, 3), torch.float64, cpu)
    assert ws.get("a", (2, 3), torch.float64, cpu) is a
    b = ws.get("b", (2, 3), torch.float64, cpu)
    assert b is not a and ws.nbytes == 2 * 6 * 8
    c = ws.get("a", (4,), torch.float64, cpu)  # another shape replaces it
    assert c is not a and c.shape == (4,) and ws.nbytes == (4 + 6) * 8
    assert ws.get("a", (4,), torch.float32, cpu).dtype == torch.float32
    assert copy.deepcopy(ws).nbytes == 0  # scratch is not copied with its owner
    ws.clear()
    assert ws.nbytes == 0


def _windows(count, seed=0):
    g = torch.Generator().manual_seed(seed)
    pre = [(torch.rand(T, B, IN, generator=g) < 0.3).double() for _ in range(count)]
    post = [(torch.rand(T, B, OUT, generator=g) < 0.3).double() for _ in range(count)]
    return pre, post


@pytest.mark.parametrize(
    "make, signal",
    [
        (lambda: STDP(1.0, -0.6, tau_pre=8.0, tau_post=4.0), None),
        (lambda: MSTDPET(1.0, -0.6, 8.0, 4.0, 10.0, per_sample_signal=True), "per_sample"),
        (lambda: MSTDPET(1.0, -0.6, 8.0, 4.0, 10.0, per_sample_signal=True), "per_step"),
        (lambda: MSTDPET(0.5, 0.3, 8.0, 4.0, 10.0), "scalar"),
        (lambda: TripletSTDP(0.5, 0.2, 0.4, 0.1, 8.0, 12.0, 4.0, 10.0), None),
        (lambda: TripletSTDP(0.5, -0.2, 0.4, 0.1, trace_mode="nearest"), None),
        (lambda: KernelSTDP(lambda t: 0.3 - 0.05 * t.abs()), None),
    ],
)
def test_windows_with_a_workspace_equal_the_pure_rule(make, signal):
    fc = nn.Linear(IN, OUT, bias=False).double()
    rule = make().double()
    pres, posts = _windows(4)
    g = torch.Generator().manual_seed(1)
    signals = {
        None: [None] * 4,
        "scalar": [0.5, -1.0, 2.0, -0.25],
        "per_sample": [torch.randn(B, generator=g, dtype=torch.float64) for _ in range(4)],
        "per_step": [torch.randn(T, B, generator=g, dtype=torch.float64) for _ in range(4)],
    }[signal]
    ws = Workspace()
    pure_state = rule.initial_state(fc, pres[0][0], posts[0][0])
    state = {name: value.clone() for name, value in pure_state.items()}
    for pre, post, m in zip(pres, posts, signals):
        args = () if m is None else (m,)
        pure, pure_state = rule(fc, pre, post, pure_state, *args)
        with state_use(reusable=True, workspace=ws):
            update, state = rule(fc, pre, post, state, *args)
        # the state carried out never lives in a lent buffer
        held = {t.untyped_storage().data_ptr() for t in ws._tensors.values()}
        assert all(v.untyped_storage().data_ptr() not in held for v in state.values())
        assert torch.equal(update.delta(), pure.delta())  # the same roundings
        for name in state:
            assert torch.equal(state[name], pure_state[name])
    assert ws.nbytes > 0  # the case used it


def test_a_learner_reuses_window_buffers():
    # after the first window, an STDP window allocates no tensor of T*B*IN numbers
    fc = nn.Linear(IN, OUT, bias=False).double()
    source = Replay()
    learner = Learner(fc, source, STDP(1.0, -0.6), step_mode="multi")
    pres, posts = _windows(3)
    window_bytes = T * B * IN * 8
    big = []
    for pre, post in zip(pres, posts):
        source.value = post
        with torch.no_grad():
            source(fc(pre))
        with AllocationTracker() as tracker:
            learner.step()
        big.append(sum(size >= window_bytes for size in tracker.sizes))
    assert big[0] >= 2 and big[1] == 0 and big[2] == 0
    assert learner.workspace.nbytes >= 2 * window_bytes
    learner.workspace = None  # no workspace: every window allocates again
    source.value = posts[0]
    with torch.no_grad():
        source(fc(pres[0]))
    with AllocationTracker() as tracker:
        learner.step()
    assert sum(size >= window_bytes for size in tracker.sizes) >= 2
