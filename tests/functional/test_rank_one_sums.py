"""Sums of one sample's rank-one terms in one pass: ``compiled.sparse_rows_sum_``, the
batch-1 path of ``correlate_sum`` and ``advance_sum_`` (a summed eligibility's step).

Factors are small dyadic rationals in float64 (``dyadic``), so every product and
partial sum is exact and the one pass is compared bit for bit with the GEMMs.
"""

import importlib
import math

import pytest
import torch
from torch import nn

from plastorch import Learner
from plastorch.bench.common import Replay
from plastorch.functional import advance_sum_, compiled, correlate_sum, sparse_mode
from plastorch.rules import MSTDPET, STDP

from .test_compiled import NeverCompiled, needs_numba, spikes
from .test_correlate_sparse import dyadic

correlate_module = importlib.import_module("plastorch.functional.correlate")
TINY32 = torch.finfo(torch.float32).tiny


@pytest.fixture
def passes(monkeypatch):
    """The terms' shapes of every one-pass call (``_sparse_rows_sum_unchecked``)."""
    calls = []
    original = compiled._sparse_rows_sum_unchecked

    def counting(out, terms, beta, *args):
        calls.append(([tuple(a.shape) for a, _, _ in terms], beta))
        return original(out, terms, beta, *args)

    monkeypatch.setattr(compiled, "_sparse_rows_sum_unchecked", counting)
    return calls


def reference(out, terms, beta):
    expected = beta * out if beta != 0.0 else torch.zeros_like(out)
    for a, b, alpha in terms:
        expected = expected + alpha * (a.t() @ b)
    return expected


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5, -1.0])
def test_sparse_rows_sum_is_beta_out_plus_every_term(dtype, rows, beta):
    g = torch.Generator().manual_seed(0)
    terms = [
        (dyadic((rows, 23), 0.2, g).to(dtype), dyadic((rows, 19), 1.0, g).to(dtype), 0.5),
        (dyadic((rows, 23), 1.0, g).to(dtype), dyadic((rows, 19), 0.1, g).to(dtype), -2.0),
        (torch.zeros(rows, 23, dtype=dtype), dyadic((rows, 19), 1.0, g).to(dtype), 4.0),
    ]
    start = dyadic((23, 19), 1.0, g).to(dtype)
    expected = reference(start, terms, beta)
    out = start.clone()
    if beta == 0.0:
        out.fill_(float("nan"))  # beta = 0 never reads the output
    assert compiled.sparse_rows_sum_(out, terms, beta) is out
    assert torch.equal(out, expected)
    # the read-out: written into uninitialised memory, or added
    out = start.clone()
    read = torch.full_like(start, float("nan"))
    compiled.sparse_rows_sum_(out, terms, beta, read=read, gain=-0.25, fresh=True)
    assert torch.equal(out, expected) and torch.equal(read, -0.25 * expected)
    out, read = start.clone(), start.clone()
    compiled.sparse_rows_sum_(out, terms, beta, read=read, gain=2.0)
    assert torch.equal(read, start + 2.0 * expected)


@needs_numba
def test_sparse_rows_sum_flushes_the_decayed_subnormals_only_when_asked():
    # 2 tiny * 0.25 is subnormal in float32: flushed to 0 with flush=True; a NaN is
    # kept, and a term's own small product is never flushed (only beta * out is)
    start = torch.tensor([[2 * TINY32, float("nan")], [1.0, 2 * TINY32]])
    a, b = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, TINY32 / 4]])
    kept, flushed = start.clone(), start.clone()
    compiled.sparse_rows_sum_(kept, [(a, b, 1.0)], 0.25)
    compiled.sparse_rows_sum_(flushed, [(a, b, 1.0)], 0.25, flush=True)
    assert kept[0, 0] == TINY32 / 2 and flushed[0, 0] == 0.0
    assert flushed[0, 1].isnan() and flushed[1, 0] == 0.25
    assert flushed[1, 1] == TINY32 / 4  # 0 (flushed 2 tiny / 4) + the term's tiny / 4
    assert kept[1, 1] == TINY32 / 2 + TINY32 / 4


@needs_numba
def test_sparse_rows_sum_errors_name_the_argument():
    out = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="at least one"):
        compiled.sparse_rows_sum_(out, [])
    with pytest.raises(ValueError, match=r"term 1 needs a \[N, M\]"):
        compiled.sparse_rows_sum_(out, [(torch.zeros(1, 4), torch.zeros(1, 3), 1.0),
                                        (torch.zeros(4), torch.zeros(1, 3), 1.0)])  # fmt: skip
    with pytest.raises(ValueError, match="term 0's b"):
        compiled.sparse_rows_sum_(out, [(torch.zeros(1, 4), torch.zeros(1, 5), 1.0)])
    with pytest.raises(ValueError, match="term 1's a"):  # every term has the first one's N
        compiled.sparse_rows_sum_(out, [(torch.zeros(1, 4), torch.zeros(1, 3), 1.0),
                                        (torch.zeros(2, 4), torch.zeros(2, 3), 1.0)])  # fmt: skip
    with pytest.raises(TypeError, match="term 0's a must be a CPU tensor of float32"):
        compiled.sparse_rows_sum_(out, [(torch.zeros(1, 4).double(), torch.zeros(1, 3), 1.0)])
    with pytest.raises(ValueError, match="read must be contiguous"):
        compiled.sparse_rows_sum_(
            out, [(torch.zeros(1, 4), torch.zeros(1, 3), 1.0)], read=torch.zeros(3, 4).t()
        )


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_batch_1_correlate_sum_is_one_pass_with_the_gemms_bits(passes, dtype):
    # an STDP step of one sample: LTP (post spikes x pre trace) and LTD (post trace x
    # pre spikes) are rank one; one pass writes each row of the result once
    g = torch.Generator().manual_seed(1)
    fc = nn.Linear(300, 200, bias=False).to(dtype)
    x_pre, pre = dyadic((1, 300), 1.0, g).to(dtype), spikes((1, 300), 0.05, g, dtype)
    x_post, post = dyadic((1, 200), 1.0, g).to(dtype), spikes((1, 200), 0.05, g, dtype)
    items = [(x_pre, post, 0.5), (pre, x_post, -0.25)]
    expected = 0.5 * post.t() @ x_pre - 0.25 * x_post.t() @ pre
    total = correlate_sum(fc, items)
    assert passes == [([(1, 200), (1, 200)], 0.0)]
    assert torch.equal(total, expected)
    # into a given output (beta = 1); [T=1, B=1] factors are the same rank-one terms
    out = dyadic((200, 300), 1.0, g).to(dtype)
    expected_out = out + expected
    steps = [(p[None], q[None], c) for p, q, c in items]
    assert correlate_sum(fc, steps, out=out) is out
    assert passes[-1] == ([(1, 200), (1, 200)], 1.0)
    assert torch.equal(out, expected_out)


@needs_numba
def test_the_one_pass_is_not_taken_where_it_does_not_apply(passes):
    g = torch.Generator().manual_seed(2)
    fc = nn.Linear(30, 20, bias=False).double()
    x_pre, post = dyadic((1, 30), 1.0, g), spikes((1, 20), 0.2, g)
    expected = post.t() @ x_pre
    leaf = x_pre.clone().requires_grad_()
    for items, sparse in (
        ([(x_pre, post, 1.0)], False),  # the dense path forced
        ([(x_pre.expand(2, 30), post.expand(2, 20), 0.5)], None),  # two samples
        ([(x_pre.float(), post.float(), 1.0)], None),  # not the weight's dtype
        ([(leaf, post, 1.0)], None),  # differentiable
    ):
        total = correlate_sum(fc, items, sparse=sparse)
        assert torch.allclose(total.detach().double(), expected, rtol=0, atol=1e-6)
    with sparse_mode("dense"):
        assert torch.equal(correlate_sum(fc, [(x_pre, post, 1.0)]), expected)
    conv = nn.Conv1d(2, 3, 1, bias=False).double()
    correlate_sum(conv, [(dyadic((1, 2, 1), 1.0, g), dyadic((1, 3, 1), 1.0, g), 1.0)])
    assert passes == []
    with sparse_mode("sparse"):
        assert torch.equal(correlate_sum(fc, [(x_pre, post, 1.0)]), expected)
    assert len(passes) == 1


def advance_cases(g):
    """(layer, items): one sample's rank-one terms, and a batch of 3 (the torch path)."""
    fc = nn.Linear(12, 9, bias=False).double()
    one = [
        (dyadic((1, 1, 12), 1.0, g), spikes((1, 1, 9), 0.3, g), 0.5),
        (spikes((1, 1, 12), 0.3, g), dyadic((1, 1, 9), 1.0, g), -0.75),
    ]
    batch = [
        (dyadic((1, 3, 12), 1.0, g), spikes((1, 3, 9), 0.3, g), 0.5),
        (spikes((1, 3, 12), 0.3, g), dyadic((1, 3, 9), 1.0, g), -0.75),
    ]
    return fc, {"batch 1": one, "batch 3": batch}


@pytest.mark.parametrize("kernels", [True, False])
@pytest.mark.parametrize("case", ["batch 1", "batch 3"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_advance_sum_is_the_decayed_sum_and_its_read_out(monkeypatch, passes, kernels, case, beta):
    if kernels and not compiled.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(compiled, "_ENABLED", kernels)
    g = torch.Generator().manual_seed(3)
    fc, cases = advance_cases(g)
    items = cases[case]
    start = dyadic((9, 12), 1.0, g)
    expected = beta * start if beta != 0.0 else torch.zeros_like(start)
    for pre, post, c in items:
        expected = expected + c * post.flatten(0, 1).t() @ pre.flatten(0, 1)
    z = start.clone() if beta != 0.0 else torch.full_like(start, float("nan"))
    assert advance_sum_(fc, z, beta, items) is None
    assert torch.equal(z, expected)
    z = start.clone()
    read = advance_sum_(fc, z, beta, items, gain=-2.0)  # a new tensor
    assert torch.equal(z, expected) and torch.equal(read, -2.0 * expected)
    z, into = start.clone(), start.clone()
    assert advance_sum_(fc, z, beta, items, gain=0.25, read=into) is into
    assert torch.equal(into, start + 0.25 * expected)
    # one pass per call exactly where every term is one sample's
    one_pass = kernels and case == "batch 1"
    assert len(passes) == (3 if one_pass else 0)


@pytest.mark.parametrize("kernels", [True, False])
def test_advance_sum_flushes_a_subnormal_decayed_sum(monkeypatch, kernels):
    if kernels and not compiled.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(compiled, "_ENABLED", kernels)
    fc = nn.Linear(2, 2, bias=False)
    z = torch.tensor([[2 * TINY32, 1.0], [0.0, -2 * TINY32]])
    pre, post = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    advance_sum_(fc, z, 0.25, [(pre, post, 2.0)])
    assert z.tolist() == [[0.0, 2.25], [0.0, 0.0]]


def test_advance_sum_errors_name_the_argument():
    fc = nn.Linear(3, 2, bias=False)
    pre, post = torch.zeros(1, 3), torch.zeros(1, 2)
    with pytest.raises(ValueError, match="out must be a contiguous"):
        advance_sum_(fc, torch.zeros(3, 2), 0.5, [(pre, post, 1.0)])
    with pytest.raises(ValueError, match="needs a gain"):
        advance_sum_(fc, torch.zeros(2, 3), 0.5, [(pre, post, 1.0)], read=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="read must be shaped and typed like accumulate"):
        advance_sum_(fc, torch.zeros(2, 3), 0.5, [(pre, post, 1.0)], gain=1.0, read=torch.zeros(3))


@needs_numba
def test_a_one_pass_kernel_that_does_not_compile_falls_back_to_torch(monkeypatch):
    monkeypatch.setattr(compiled, "_sparse_rows", NeverCompiled())
    monkeypatch.setattr(compiled, "_ENABLED", True)
    g = torch.Generator().manual_seed(4)
    fc, cases = advance_cases(g)
    items = cases["batch 1"]
    start = dyadic((9, 12), 1.0, g)
    expected = 0.5 * start
    for pre, post, c in items:
        expected = expected + c * post[0].t() @ pre[0]
    z = start.clone()
    with pytest.warns(UserWarning, match="did not compile"):
        read = advance_sum_(fc, z, 0.5, items, gain=3.0)
    assert not compiled.available()
    assert torch.equal(z, expected) and torch.equal(read, 3.0 * expected)


@pytest.mark.parametrize("eligibility", ["split", "combined"])
def test_a_batch_1_mstdpet_learner_step_is_florians_recursion(eligibility):
    # z <- d z + xi / tau_z (the pairs of this step, pre-before-post order), and
    # delta w = M (eta_post z_post + eta_pre z_pre), step after step in a Learner
    torch.manual_seed(5)
    fc = nn.Linear(7, 4, bias=False).double()
    source = Replay()
    lr_post, lr_pre, tau, tau_z = 0.5, -0.25, 4.0, 8.0
    rule = MSTDPET(lr_post, lr_pre, tau, tau, tau_z, eligibility=eligibility)
    learner = Learner(fc, source, rule)
    d, d_z = math.exp(-1.0 / tau), math.exp(-1.0 / tau_z)
    x_pre, x_post = torch.zeros(1, 7).double(), torch.zeros(1, 4).double()
    z_post, z_pre = torch.zeros(4, 7).double(), torch.zeros(4, 7).double()
    for t, m in enumerate([1.0, -0.5, 2.0, 0.0, 1.5, -1.0, 0.75, 1.0]):
        pre = (torch.rand(1, 7) < 0.4).double()
        post = (torch.rand(1, 4) < 0.4).double()
        x_pre = d * x_pre + pre
        x_post = d * x_post  # the LTD pairs read the post trace before its spikes
        z_post = d_z * z_post + post.t() @ x_pre / tau_z
        z_pre = d_z * z_pre + x_post.t() @ pre / tau_z
        x_post = x_post + post
        with torch.no_grad():
            fc(pre)
            source.value = post
            source(torch.zeros(1))
        delta = learner.step(m)
        expected = m * (lr_post * z_post + lr_pre * z_pre)
        torch.testing.assert_close(delta, expected, rtol=1e-12, atol=1e-15, msg=f"step {t}")


def test_a_batch_1_stdp_step_equals_the_two_outer_products():
    torch.manual_seed(6)
    fc = nn.Linear(9, 5, bias=False).double()
    source = Replay()
    learner = Learner(fc, source, STDP(0.5, -0.25, 4.0, 4.0))
    d = math.exp(-1.0 / 4.0)
    x_pre, x_post = torch.zeros(1, 9).double(), torch.zeros(1, 5).double()
    for _ in range(6):
        pre, post = (torch.rand(1, 9) < 0.4).double(), (torch.rand(1, 5) < 0.4).double()
        x_pre, x_post = d * x_pre + pre, d * x_post
        expected = 0.5 * post.t() @ x_pre - 0.25 * x_post.t() @ pre
        x_post = x_post + post
        with torch.no_grad():
            fc(pre)
            source.value = post
            source(torch.zeros(1))
        torch.testing.assert_close(learner.step(), expected, rtol=1e-12, atol=1e-15)
