"""The compiled sparse kernel (numba, optional) and correlate's use of it.

Factors are small dyadic rationals in float64 (``dyadic``), so every product and
partial sum is exact and results are compared bit for bit with the GEMM.
"""

import importlib

import pytest
import torch
from torch import nn

from plastorch.functional import compiled, correlate, correlate_sum
from plastorch.functional.correlate import estimate_costs, uses_sparse_path

from .test_correlate_sparse import dyadic

correlate_module = importlib.import_module("plastorch.functional.correlate")
needs_numba = pytest.mark.skipif(not compiled.available(), reason="numba is not installed")


@pytest.fixture
def kernel_calls(monkeypatch):
    """Shapes ``(a, b)`` of every compiled-kernel call correlate makes."""
    calls = []
    original = compiled._sparse_rows_unchecked

    def counting(out, a, b, alpha, beta):
        calls.append((tuple(a.shape), tuple(b.shape)))
        return original(out, a, b, alpha, beta)

    monkeypatch.setattr(compiled, "_sparse_rows_unchecked", counting)
    return calls


def spikes(shape, p, g, dtype=torch.float64):
    return (torch.rand(*shape, generator=g) < p).to(dtype)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (0.5, 1.0), (-0.25, 0.5), (2.0, -1.0)])
def test_sparse_rows_is_beta_out_plus_alpha_at_b(dtype, alpha, beta):
    g = torch.Generator().manual_seed(0)
    a = dyadic((37, 23), 0.1, g).to(dtype)  # weighted, not just 0/1
    b = dyadic((37, 19), 1.0, g).to(dtype)
    start = dyadic((23, 19), 1.0, g).to(dtype)
    out = start.clone()
    if beta == 0.0:
        out.fill_(float("nan"))  # beta = 0 never reads the output
    compiled.sparse_rows_(out, a, b, alpha, beta)
    expected = (beta * start if beta != 0.0 else torch.zeros_like(start)) + alpha * (a.t() @ b)
    assert torch.equal(out, expected)


@needs_numba
def test_sparse_rows_of_an_all_zero_factor_is_the_scaled_output():
    out = torch.full((4, 3), 2.0, dtype=torch.float64)
    compiled.sparse_rows_(out, torch.zeros(5, 4).double(), torch.rand(5, 3).double(), 1.0, 0.25)
    assert torch.equal(out, torch.full((4, 3), 0.5, dtype=torch.float64))


@needs_numba
def test_sparse_rows_errors_name_the_argument():
    a, b, out = torch.zeros(5, 4), torch.zeros(5, 3), torch.zeros(4, 3)
    with pytest.raises(TypeError, match="b must be a CPU tensor of float32 or float64"):
        compiled.sparse_rows_(out, a, b.double(), 1.0, 0.0)
    with pytest.raises(TypeError, match="out must be a CPU tensor.*bfloat16"):
        compiled.sparse_rows_(out.bfloat16(), a.bfloat16(), b.bfloat16(), 1.0, 0.0)
    with pytest.raises(ValueError, match=r"out must be contiguous.*shape \[4, 3\], got \[3, 4\]"):
        compiled.sparse_rows_(torch.zeros(3, 4), a, b, 1.0, 0.0)
    with pytest.raises(ValueError, match="a must be contiguous"):
        compiled.sparse_rows_(out, torch.zeros(4, 5).t(), b, 1.0, 0.0)
    with pytest.raises(ValueError, match="b must be contiguous, not require grad"):
        compiled.sparse_rows_(out, a, b.requires_grad_(), 1.0, 0.0)


@needs_numba
def test_the_kernel_follows_torch_threads():
    numba = pytest.importorskip("numba")
    before = torch.get_num_threads()
    a, b, out = torch.zeros(5, 4), torch.zeros(5, 3), torch.zeros(4, 3)
    try:
        torch.set_num_threads(1)
        compiled.sparse_rows_(out, a, b, 1.0, 0.0)
        assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    compiled.sparse_rows_(out, a, b, 1.0, 0.0)
    assert numba.get_num_threads() == min(before, numba.config.NUMBA_NUM_THREADS)


def test_without_numba_the_kernel_says_what_to_install(monkeypatch):
    monkeypatch.setattr(compiled, "_ENABLED", False)
    assert not compiled.available()
    with pytest.raises(RuntimeError, match=r"pip install plastorch\[fast\]"):
        compiled.sparse_rows_(torch.zeros(4, 3), torch.zeros(5, 4), torch.zeros(5, 3), 1.0, 0.0)


@needs_numba
@pytest.mark.parametrize("dtypes", [(torch.float64,) * 2, (torch.float32, torch.float64)])
def test_one_step_stdp_runs_its_ltp_term_compiled_and_equals_the_gemms(kernel_calls, dtypes):
    # LTP pairs the sparse post spikes (side "a", the weight's rows) with the dense
    # pre trace: compiled. LTD pairs the sparse pre spikes with the dense post trace:
    # side "b", whose sums would land transposed, stays on the GEMM.
    post_dtype, pre_dtype = dtypes
    g = torch.Generator().manual_seed(1)
    fc = nn.Linear(300, 200, bias=False)
    x_pre, pre = dyadic((64, 300), 1.0, g).to(pre_dtype), spikes((64, 300), 0.05, g, pre_dtype)
    x_post, post = dyadic((64, 200), 1.0, g), spikes((64, 200), 0.02, g, post_dtype)
    total = correlate_sum(fc, [(x_pre, post, 0.5), (pre, x_post, -0.25)])
    assert kernel_calls == [((64, 200), (64, 300))]
    assert total.dtype == torch.float64
    expected = 0.5 * post.double().t() @ x_pre.double() - 0.25 * x_post.t() @ pre.double()
    assert torch.equal(total, expected)
    kernel_calls.clear()
    alone = correlate(fc, x_pre, post)
    assert kernel_calls == [((64, 200), (64, 300))]
    assert torch.equal(alone, post.double().t() @ x_pre.double())


@needs_numba
def test_a_compiled_term_after_a_gemm_adds_into_its_rows_without_rescaling(monkeypatch):
    # the GEMM writes the accumulator with its own rate (beta=0, alpha=rate), so the
    # compiled term adds into it as it is (beta=1) instead of rescaling every row
    g = torch.Generator().manual_seed(3)
    fc = nn.Linear(300, 200, bias=False)
    x_pre, pre = dyadic((16, 300), 1.0, g), spikes((16, 300), 0.05, g)
    x_post, post = dyadic((16, 200), 1.0, g), spikes((16, 200), 0.02, g)
    betas = []
    original = compiled._sparse_rows_unchecked

    def recording(out, a, b, alpha, beta):
        betas.append((alpha, beta))
        return original(out, a, b, alpha, beta)

    monkeypatch.setattr(compiled, "_sparse_rows_unchecked", recording)
    for items in (
        [(x_pre, post, 0.5), (pre, x_post, -0.25)],
        [(pre, x_post, -0.25), (x_pre, post, 0.5)],
    ):
        betas.clear()
        total = correlate_sum(fc, items)
        assert betas == [(0.5, 1.0)]
        assert torch.equal(total, 0.5 * post.t() @ x_pre - 0.25 * x_post.t() @ pre)
    # alone, the compiled term writes the whole result (beta=0)
    betas.clear()
    assert torch.equal(correlate_sum(fc, [(x_pre, post, 0.5)]), 0.5 * post.t() @ x_pre)
    assert betas == [(0.5, 0.0)]


@needs_numba
def test_the_compiled_path_is_skipped_where_it_does_not_apply(kernel_calls, monkeypatch):
    g = torch.Generator().manual_seed(2)
    fc = nn.Linear(30, 20, bias=False)
    x_pre, post = dyadic((64, 30), 1.0, g), spikes((64, 20), 0.02, g)
    # factors that require grad keep the differentiable torch path
    leaf = x_pre.clone().requires_grad_()
    grad_path = correlate(fc, leaf, post, sparse=True)
    assert grad_path.requires_grad and kernel_calls == []
    grad_path.sum().backward()
    # d/d pre[n, i] of sum_{o, i} (post^T pre)[o, i] = sum_o post[n, o]
    assert torch.equal(leaf.grad, post.sum(1, keepdim=True).expand(-1, 30))
    # half precision, and factors past the scan limit, take the torch path
    correlate(fc, x_pre.bfloat16(), post.bfloat16(), sparse=True)
    monkeypatch.setattr(correlate_module, "_COMPILED_SCAN_NUMEL", post.numel() - 1)
    big = correlate(fc, x_pre, post, sparse=True)
    assert kernel_calls == []
    assert torch.equal(big, post.t() @ x_pre)
    # per-sample correlations are never compiled (their sums are per sample)
    monkeypatch.undo()
    assert not correlate_module._compiled_linear(torch.float64, 100, 4, True)
    assert correlate_module._compiled_linear(torch.float64, 100, 1, True)
    assert not correlate_module._compiled_linear(torch.float64, 100, 1, False)


@needs_numba
def test_auto_takes_the_compiled_path_below_its_crossover_only():
    g = torch.Generator().manual_seed(3)
    fc = nn.Linear(784, 400, bias=False)
    x_pre = torch.rand(64, 784, generator=g)
    assert uses_sparse_path(fc, x_pre, spikes((64, 400), 0.02, g, torch.float32))
    assert not uses_sparse_path(fc, x_pre, spikes((64, 400), 0.5, g, torch.float32))


def test_cost_model_of_the_compiled_kernel_hand_values():
    # (3.6 ns per scanned entry + 0.1 per output entry written + 0.1 per added
    # element in float32) / threads + 25 us
    dense, sparse = estimate_costs(
        dtype=torch.float32,
        conv=False,
        dense_macs=64 * 400 * 784,
        sparse_numel=64 * 400,
        nnz=512,
        kernel_size=1,
        row_length=784,
        table_numel=0,
        permuted_numel=0,
        threads=2,
        compiled=True,
        output_numel=400 * 784,
    )
    assert dense == pytest.approx(0.03 * 64 * 400 * 784 / 2 + 30_000.0)
    work = 3.6 * 64 * 400 + 0.1 * 400 * 784 + 0.1 * 512 * 784
    assert sparse == pytest.approx(work / 2 + 25_000.0)


@needs_numba
def test_threads_that_launch_the_kernel_together_get_the_right_sums():
    import threading

    g = torch.Generator().manual_seed(4)
    cases = [(dyadic((40, 30), 0.1, g), dyadic((40, 20), 1.0, g)) for _ in range(4)]
    results = [None] * len(cases)

    def work(i):
        a, b = cases[i]
        out = torch.empty(30, 20, dtype=torch.float64)
        for _ in range(20):
            compiled.sparse_rows_(out, a, b, 1.0, 0.0)
        results[i] = out

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for (a, b), out in zip(cases, results):
        assert torch.equal(out, a.t() @ b)


class NeverCompiled:
    """A numba dispatcher whose compilation fails (it has no signatures)."""

    signatures = []

    def __call__(self, *args):
        raise RuntimeError("LLVM is unhappy")


@needs_numba
def test_a_kernel_that_does_not_compile_falls_back_to_torch(monkeypatch):
    monkeypatch.setattr(compiled, "_sparse_rows", NeverCompiled())
    monkeypatch.setattr(compiled, "_ENABLED", True)
    g = torch.Generator().manual_seed(5)
    a, b = dyadic((9, 4), 0.3, g), dyadic((9, 3), 1.0, g)
    out = torch.full((4, 3), float("nan"), dtype=torch.float64)
    with pytest.warns(UserWarning, match="did not compile"):
        compiled._sparse_rows_unchecked(out, a, b, 0.5, 0.0)
    assert torch.equal(out, 0.5 * a.t() @ b)
    assert not compiled.available()  # switched off for the rest of the process


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_count_nonzero_counts_the_strided_sample(dtype):
    g = torch.Generator().manual_seed(6)
    x = dyadic((37, 29), 0.2, g).to(dtype)
    x[0, 0] = -0.0  # a signed zero is a zero, as for torch.count_nonzero
    assert compiled.count_nonzero(x) == int(torch.count_nonzero(x))
    for stride in (3, 7, 1009):
        assert compiled.count_nonzero(x, stride) == int(torch.count_nonzero(x.flatten()[::stride]))
    with pytest.raises(TypeError, match="x must be a contiguous CPU tensor"):
        compiled.count_nonzero(x.t())


@needs_numba
def test_the_path_choice_counts_with_the_kernel(monkeypatch):
    calls = []
    original = compiled._count_unchecked
    monkeypatch.setattr(
        compiled,
        "_count_unchecked",
        lambda x, s=1: calls.append((tuple(x.shape), s)) or original(x, s),
    )
    g = torch.Generator().manual_seed(7)
    small, large = spikes((64, 400), 0.02, g), spikes((1000, 400), 0.02, g)
    assert correlate_module._count_nonzero(small) == int(torch.count_nonzero(small))  # exact
    estimate = correlate_module._count_nonzero(large)  # 400k entries: strided sample
    assert calls == [((64, 400), 1), ((1000, 400), 211)]
    assert abs(estimate - int(torch.count_nonzero(large))) < 0.25 * int(torch.count_nonzero(large))


def expand_reference(step0, first, count, order, lag, steps):
    """The torch expansion: every (source, item) event, stably sorted by its step."""
    source = torch.repeat_interleave(torch.arange(step0.numel()), count)
    offset = torch.arange(source.numel()) - (torch.cumsum(count, 0) - count)[source]
    item = order[first[source] + offset]
    step = step0[source] + lag[item]
    by_step = torch.argsort(step, stable=True)
    bounds = torch.cumsum(torch.bincount(step, minlength=steps), 0).tolist()
    return bounds, source[by_step], item[by_step]


@needs_numba
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expand_by_step_is_the_stable_sort_of_the_expanded_events(seed):
    g = torch.Generator().manual_seed(seed)
    items, sources, steps = 30, 50, 12
    lag = torch.randint(0, 5, (items,), generator=g)
    order = torch.randperm(items, generator=g)
    first = torch.randint(0, items, (sources,), generator=g)
    count = torch.minimum(torch.randint(0, 6, (sources,), generator=g), items - first)
    step0 = torch.randint(0, steps - 5, (sources,), generator=g)
    bounds, source, item = compiled.expand_by_step(step0, first, count, order, lag, steps)
    expected = expand_reference(step0, first, count, order, lag, steps)
    assert bounds == expected[0] and bounds[-1] == int(count.sum())
    assert torch.equal(source, expected[1]) and torch.equal(item, expected[2])


@needs_numba
def test_expand_by_step_errors():
    t = torch.tensor
    with pytest.raises(ValueError, match="outside"):  # step 0 + lag 3 with steps=3
        compiled.expand_by_step(t([0]), t([0]), t([1]), t([0]), t([3]), 3)
    with pytest.raises(TypeError, match="first must be a 1-d CPU int64"):
        compiled.expand_by_step(t([0]), t([0.0]), t([1]), t([0]), t([0]), 3)
    with pytest.raises(ValueError, match="count has 2 entries, step0 1"):
        compiled.expand_by_step(t([0]), t([0]), t([1, 1]), t([0]), t([0]), 3)


@needs_numba
def test_delay_adjusted_rules_bucket_arrivals_compiled_with_the_torch_paths_bits(monkeypatch):
    from plastorch.layers import DelayedLinear
    from plastorch.rules import DelayAdjustedSTDP

    torch.manual_seed(4)
    layer = DelayedLinear(7, 5, max_delay=4.0, dt=0.5, bias=False).double()
    pre = (torch.rand(25, 3, 7) < 0.3).double()
    post = (torch.rand(25, 3, 5) < 0.2).double()
    calls = []
    original = compiled._expand_by_step_unchecked

    def counting(*args):
        calls.append(args[-1])
        return original(*args)

    monkeypatch.setattr(compiled, "_expand_by_step_unchecked", counting)
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "_ENABLED", enabled)
        rule = DelayAdjustedSTDP(1.0, -0.5, 3.0, 4.0)
        state = rule.initial_state(layer, pre[0], post[0])
        first, state = rule(layer, pre[:12], post[:12], state)  # spikes in the ring carry over
        second, _ = rule(layer, pre[12:], post[12:], state)
        results.append((first, second))
    assert calls == [12, 13]  # compiled only while enabled
    for compiled_update, torch_update in zip(*results):
        assert torch.equal(compiled_update.potentiation, torch_update.potentiation)
        assert torch.equal(compiled_update.depression, torch_update.depression)


@needs_numba
def test_an_arrivals_kernel_that_does_not_compile_falls_back_to_torch(monkeypatch):
    monkeypatch.setattr(compiled, "_expand_by_step", NeverCompiled())
    monkeypatch.setattr(compiled, "_ENABLED", True)
    t = torch.tensor
    with pytest.warns(UserWarning, match="did not compile"):
        assert compiled._expand_by_step_unchecked(t([0]), t([0]), t([1]), t([0]), t([0]), 2) is None
    assert not compiled.available()


# -- the window scans ------------------------------------------------------------------


def torch_scan(values, decay, start=None, amplitude=1.0, reverse=False):
    """The step-by-step loop: out(t) = out(t -+ 1) * d + a v(t) (mul, then add)."""
    out = torch.empty_like(values)
    order = range(values.shape[0] - 1, -1, -1) if reverse else range(values.shape[0])
    previous = start
    for t in order:
        step = amplitude * values[t]
        out[t] = step if previous is None else previous * decay + step
        previous = out[t]
    return out


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_start, amplitude", [(True, 1.0), (True, 0.7), (False, 1.0)])
def test_scan_has_the_bits_of_the_step_by_step_loop(dtype, reverse, with_start, amplitude):
    g = torch.Generator().manual_seed(11)
    # 5000 columns: more than one block of the kernel, the last one partial
    values = (torch.rand(9, 2, 2500, generator=g) < 0.3).to(dtype) * torch.rand(9, 2, 2500).to(
        dtype
    )
    start = torch.rand(2, 2500, generator=g).to(dtype) if with_start else None
    out = torch.full_like(values, float("nan"))
    compiled.scan_(out, values, 0.9, start=start, amplitude=amplitude, reverse=reverse)
    assert torch.equal(out, torch_scan(values, 0.9, start, amplitude, reverse))


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nearest", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_with_end_writes_the_decayed_carry_and_the_last_value(dtype, nearest, reverse):
    # out(t) = d x(t -+ 1) (before v(t) enters) and end = x at the last step: the
    # values the plain scan forms on its way, so the same bits
    g = torch.Generator().manual_seed(13)
    values = (torch.rand(7, 2, 2500, generator=g) < 0.3).to(dtype)
    start = torch.rand(2, 2500, generator=g).to(dtype)
    start[0, :10] = 1e-39 if dtype == torch.float32 else 1e-309  # decays to subnormal
    full = torch.empty_like(values)
    compiled.scan_(full, values, 0.9, start=start, amplitude=1.5, reverse=reverse, nearest=nearest)
    out, end = torch.full_like(values, float("nan")), torch.full_like(start, float("nan"))
    compiled.scan_(
        out, values, 0.9, start=start, amplitude=1.5, reverse=reverse, nearest=nearest, end=end
    )
    shifted = torch.cat((full[1:], start[None])) if reverse else torch.cat((start[None], full[:-1]))
    expected = shifted * 0.9
    expected[expected.abs() <= torch.finfo(dtype).tiny] = 0.0  # flushed, as the scan does
    assert torch.equal(out, expected)
    assert torch.equal(end, full[0] if reverse else full[-1])
    assert bool(out[0 if not reverse else -1, 0, :10].eq(0).all())
    with pytest.raises(ValueError, match="end must be"):
        compiled.scan_(out, values, 0.9, start=start, end=end[:1])


@needs_numba
def test_scan_hand_values_and_errors():
    v = torch.tensor([[1.0], [0.0], [2.0]], dtype=torch.float64)
    out = torch.empty_like(v)
    compiled.scan_(out, v, 0.5, start=torch.tensor([4.0], dtype=torch.float64))
    assert out.flatten().tolist() == [3.0, 1.5, 2.75]  # 4/2 + 1, 3/2, 3/4 + 2
    compiled.scan_(out, v, 0.5, reverse=True)
    assert out.flatten().tolist() == [1.5, 1.0, 2.0]  # 1 + 1/2, 2/2, 2
    with pytest.raises(TypeError, match="values must be a CPU tensor"):
        compiled.scan_(out, v.float(), 0.5)
    with pytest.raises(ValueError, match="start must be contiguous"):
        compiled.scan_(out, v, 0.5, start=torch.zeros(2, dtype=torch.float64))


@needs_numba
def test_window_traces_take_the_compiled_scan_with_the_torch_bits(monkeypatch):
    """trace_window (cumulative, of any amplitude: a firing-rate estimate's is (1 - d) 1000
    / dt) and discounted_reverse_sum give the same bits either way."""
    from plastorch.functional import discounted_reverse_sum, trace_window
    from plastorch.functional import traces as traces_module

    g = torch.Generator().manual_seed(12)
    spikes = (torch.rand(30, 8, 700, generator=g) < 0.05).float()
    x0 = torch.rand(8, 700, generator=g)
    calls = []
    original = compiled._scan_unchecked
    monkeypatch.setattr(
        compiled, "_scan_unchecked", lambda *a, **k: calls.append(1) or original(*a, **k)
    )

    def all_three():
        return (
            trace_window(x0, spikes, 0.95),
            trace_window(x0, spikes, 0.95, 2.5),
            discounted_reverse_sum(spikes, 0.9),
        )

    fast = all_three()
    assert len(calls) == 3
    monkeypatch.setattr(traces_module, "_compiled_scan", lambda *a, **k: False)
    slow = all_three()
    assert len(calls) == 3
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)


@needs_numba
@pytest.mark.parametrize(
    "shape, compiled_path",
    [((100, 2, 64), True), ((100, 1), True), ((4, 3), True), ((3, 5), False), ((2, 1 << 14), True)],
)
def test_small_scans_of_many_steps_are_compiled_with_the_torch_bits(
    monkeypatch, shape, compiled_path
):
    """A short loop stays torch's; a long one over a few columns (MSTDP-ET's [T, B]
    signal weights) is compiled, since the loop costs per step whatever its width."""
    from plastorch.functional import discounted_reverse_sum, trace_window
    from plastorch.functional import traces as traces_module

    g = torch.Generator().manual_seed(sum(shape))
    values = torch.randn(shape, generator=g)
    x0 = torch.rand(shape[1:], generator=g)
    calls = []
    original = compiled._scan_unchecked
    monkeypatch.setattr(
        compiled, "_scan_unchecked", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    fast = trace_window(x0, values, 0.95), discounted_reverse_sum(values, 0.9)
    assert len(calls) == (2 if compiled_path else 0)
    monkeypatch.setattr(traces_module, "_compiled_scan", lambda *a, **k: False)
    slow = trace_window(x0, values, 0.95), discounted_reverse_sum(values, 0.9)
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)


@needs_numba
def test_a_scan_kernel_that_does_not_compile_falls_back_to_torch(monkeypatch):
    from plastorch.functional import discounted_reverse_sum

    monkeypatch.setattr(compiled, "_scan", NeverCompiled())
    monkeypatch.setattr(compiled, "_ENABLED", True)
    values = torch.rand(4, 1 << 14, dtype=torch.float64)
    with pytest.warns(UserWarning, match="did not compile"):
        out = discounted_reverse_sum(values, 0.5)
    assert torch.equal(out, torch_scan(values, 0.5, reverse=True))
    assert not compiled.available()


def entries_reference(x: torch.Tensor, channels: int, own_pos: int, per: int):
    """Entries of ``x`` ``[N, channels, own_pos]`` by owner, from the definition: every
    non-zero bit pattern ``(n, c, p)`` (so ``-0.0`` too) in flat order, then a stable
    sort by owner (``c``, or ``(n % per, c)``)."""
    bits = x.view(torch.int32 if x.dtype == torch.float32 else torch.int64)
    n, c, p = bits.reshape(-1, channels, own_pos).ne(0).nonzero(as_tuple=True)
    owner = (n % per) * channels + c
    order = torch.argsort(owner, stable=True)
    start = torch.zeros(per * channels + 1, dtype=torch.long)
    start[1:] = torch.cumsum(torch.bincount(owner, minlength=per * channels), 0)
    values = x.reshape(-1, channels, own_pos)[n, c, p]
    return c[order], n[order], p[order], values[order], start


@needs_numba
@pytest.mark.parametrize(
    "rows, channels, own_pos, per",
    [(60, 7, 1, 1), (60, 7, 1, 12), (24, 5, 9, 1), (24, 5, 9, 4), (1, 3, 1, 1), (8, 1, 4, 8)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_entries_by_owner_is_the_stable_sort_by_owner(rows, channels, own_pos, per, dtype):
    g = torch.Generator().manual_seed(rows + channels + own_pos + per)
    x = dyadic((rows, channels, own_pos), 0.4, g).to(dtype)
    x.view(-1)[1] = -0.0  # a negative zero is an entry: the scans compare bits
    bits = x.reshape(-1).view(torch.int32 if dtype == torch.float32 else torch.int64)
    flat = bits.nonzero().squeeze(1)
    got = compiled.entries_by_owner(flat, x.reshape(-1), channels, own_pos, per)
    expected = entries_reference(x, channels, own_pos, per)
    assert [t.dtype for t in got] == [torch.long, torch.long, torch.long, dtype, torch.long]
    for name, a, b in zip(("channel", "row", "position", "values", "owner_start"), got, expected):
        assert torch.equal(a, b), name
    assert int(got[4][-1]) == flat.numel()


@needs_numba
def test_entries_by_owner_hand_values_and_errors():
    # [N=4, channels=2, 1], per=2: owners (sample n % 2, channel)
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [0.0, 5.0]]).reshape(4, 2, 1)
    flat = x.flatten().nonzero().squeeze(1)  # [0, 3, 4, 5, 7]
    channel, row, position, value, start = compiled.entries_by_owner(flat, x.flatten(), 2, 1, 2)
    # owner 0 (b0, c0): n=0, n=2; owner 1 (b0, c1): n=2; owner 2: none; owner 3 (b1, c1): n=1, 3
    assert row.tolist() == [0, 2, 2, 1, 3] and channel.tolist() == [0, 0, 1, 1, 1]
    assert value.tolist() == [1.0, 3.0, 4.0, 2.0, 5.0] and start.tolist() == [0, 2, 3, 3, 5]
    assert position.tolist() == [0] * 5
    values = x.flatten()
    with pytest.raises(TypeError, match="flat must be a 1-d int64"):
        compiled.entries_by_owner(flat.int(), values, 2, 1)
    with pytest.raises(TypeError, match="values must be a contiguous CPU tensor of float32"):
        compiled.entries_by_owner(flat, values.half(), 2, 1)
    with pytest.raises(ValueError, match="per must be >= 1"):
        compiled.entries_by_owner(flat, values, 2, 1, 0)
    with pytest.raises(ValueError, match="not \\[N, channels=3"):
        compiled.entries_by_owner(flat, values, 3, 1)
    with pytest.raises(ValueError, match="outside"):
        compiled.entries_by_owner(torch.tensor([0, 8]), values, 2, 1)
    with pytest.raises(ValueError, match="ascending"):
        compiled.entries_by_owner(torch.tensor([3, 0]), values, 2, 1)


@needs_numba
@pytest.mark.parametrize("per", [None, 8])
def test_window_scans_take_the_compiled_sort_with_the_torch_paths_entries(monkeypatch, per):
    # a factor past _PERMUTED_SCAN takes the flat scan; with and without the kernel the
    # entries (hence every sum over them) are the same
    g = torch.Generator().manual_seed(5)
    shape = (16 * 8, 40, 64) if per else (300, 30, 40)
    x = spikes(shape, 0.03, g, torch.float32)
    assert x.numel() > correlate_module._PERMUTED_SCAN
    calls = []
    original = compiled._entries_unchecked

    def counting(*args):
        calls.append(args[2:])
        return original(*args)

    monkeypatch.setattr(compiled, "_entries_unchecked", counting)
    fast = correlate_module._scan_entries(x, shape[1], shape[2], per)
    monkeypatch.setattr(compiled, "_ENABLED", False)
    slow = correlate_module._scan_entries(x, shape[1], shape[2], per)
    assert calls == [(shape[1], shape[2], per or 1)]
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)


@needs_numba
@pytest.mark.parametrize("kernel", ["_entries", "_nonzero"])
def test_a_scan_entries_kernel_that_does_not_compile_falls_back_to_torch(monkeypatch, kernel):
    monkeypatch.setattr(compiled, kernel, NeverCompiled())
    monkeypatch.setattr(compiled, "_ENABLED", True)
    x = spikes((300, 30, 40), 0.03, torch.Generator().manual_seed(6), torch.float32)
    with pytest.warns(UserWarning, match="did not compile"):
        got = correlate_module._scan_entries(x, 30, 40, None)
    assert not compiled.available()
    for a, b in zip(got, correlate_module._scan_entries(x, 30, 40, None)):
        assert torch.equal(a, b)


@needs_numba
def test_advance_hand_values_and_errors():
    # B=1, M=2, C=2: read = 2 z (before), z <- z/2 + 0.5 * u + the looked-up rows
    z = torch.ones(1, 2, 2, dtype=torch.float64)
    table = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    start, lookups = torch.tensor([0, 1, 3]), torch.tensor([0, 0, 1])  # bag 1: rows 0 and 1
    weights = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    read = torch.full((2, 2), 10.0, dtype=torch.float64)  # accumulated into
    scale = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    source = torch.tensor([[4.0, 8.0]], dtype=torch.float64)
    gain = torch.tensor([2.0], dtype=torch.float64)
    out = compiled.advance_(
        z, 0.5, table, start, lookups, weights, gain=gain, read=read, scale=scale, source=source
    )
    assert out is z
    # row 0: 0.5 + 0.5 * [4, 8] + 1 * [1, 2]; row 1: 0.5 + 0 + 2 * [1, 2] - [3, 4]
    assert z[0].tolist() == [[3.5, 6.5], [-0.5, 0.5]]
    assert read.tolist() == [[12.0, 12.0], [12.0, 12.0]]
    z = torch.ones(1, 2, 2, dtype=torch.float64)
    compiled.advance_(z, 0.0, table, start, lookups)  # beta 0: z is not read
    assert z[0].tolist() == [[1.0, 2.0], [4.0, 6.0]]
    # a read table: its rows at the same lookups, times read_weights, added into read
    z = torch.ones(1, 2, 2, dtype=torch.float64)
    read = torch.full((2, 2), 10.0, dtype=torch.float64)
    pairs = torch.tensor([[0.5, 1.0], [-2.0, 4.0]], dtype=torch.float64)
    compiled.advance_(
        z,
        0.5,
        table,
        start,
        lookups,
        weights,
        gain=gain,
        read=read,
        scale=scale,
        source=source,
        read_table=pairs,
        read_weights=torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64),
    )
    assert z[0].tolist() == [[3.5, 6.5], [-0.5, 0.5]]  # as above
    # row 0: 12 + 2 * [0.5, 1]; row 1: 12 + [0.5, 1] + 0.5 * [-2, 4]
    assert read.tolist() == [[13.0, 14.0], [11.5, 15.0]]
    z = torch.ones(1, 2, 2, dtype=torch.float64)
    read = torch.zeros(2, 2, dtype=torch.float64)
    compiled.advance_(z, 1.0, table, start, lookups, read=read, read_table=pairs)  # no gain
    assert read.tolist() == [[0.5, 1.0], [-1.5, 5.0]]
    with pytest.raises(ValueError, match="a gain or a read_table needs read"):
        compiled.advance_(z, 1.0, table, start, lookups, gain=gain)
    with pytest.raises(ValueError, match="a gain or a read_table needs read"):
        compiled.advance_(z, 1.0, table, start, lookups, read_table=pairs)
    with pytest.raises(ValueError, match="read needs a gain or a read_table"):
        compiled.advance_(z, 1.0, table, start, lookups, read=read)
    with pytest.raises(ValueError, match="read_weights weight the lookups of a read_table"):
        compiled.advance_(z, 1.0, table, start, lookups, read_weights=weights)
    with pytest.raises(ValueError, match=r"read_table must be contiguous.*\[2, 2\]"):
        compiled.advance_(z, 1.0, table, start, lookups, read=read, read_table=pairs[:1])
    with pytest.raises(ValueError, match="scale and source go together"):
        compiled.advance_(z, 1.0, table, start, lookups, source=source)
    with pytest.raises(TypeError, match="table must be a CPU tensor of float32 or float64 like z"):
        compiled.advance_(z, 1.0, table.float(), start, lookups)
    with pytest.raises(ValueError, match=r"read must be contiguous.*\[2, 2\]"):
        compiled.advance_(z, 1.0, table, start, lookups, gain=gain, read=read.t())
    with pytest.raises(ValueError, match="bag_start must have B M \\+ 1 = 3"):
        compiled.advance_(z, 1.0, table, start[:2], lookups)
    with pytest.raises(ValueError, match="must rise from 0"):
        compiled.advance_(z, 1.0, table, torch.tensor([0, 2, 1]), lookups)
    with pytest.raises(ValueError, match="outside the table"):
        compiled.advance_(z, 1.0, table, start, torch.tensor([0, 0, 2]))


def advance_cases(g):
    """(parts, read_gain, beta) of a Linear 6->5, T=7, B=3: sparse post spikes, step
    weights, a rank-one step, a read-out; dyadic values, so sums are exact."""
    steps, batch = 7, 3
    pre = dyadic((steps, batch, 6), 0.6, g)
    post = (torch.rand(steps, batch, 5, generator=g) < 0.15).double()
    weights = torch.randint(-8, 8, (steps, batch), generator=g).double() / 4
    carried = (dyadic((1, batch, 6), 0.8, g), dyadic((1, batch, 5), 0.8, g))
    gain = torch.randint(-8, 8, (batch,), generator=g).double() / 8
    # most rows with 3 or more lookups (past the two of the one-loop row)
    dense_post = (torch.rand(steps, batch, 5, generator=g) < 0.6).double()
    late = torch.tensor([0.0, 0.5, -2.0], dtype=torch.float64)
    return [
        ([(pre, dense_post, weights), (*carried, None)], late, 0.5),
        ([(pre, dense_post, None), (*carried, None)], torch.zeros(batch).double(), 1.0),
        ([(pre, post, None)], None, 1.0),
        ([(pre, post, weights)], gain, 0.5),
        ([(pre, post, None), (*carried, None)], gain, 0.25),
        ([(pre, post, weights[:, :1]), (*carried, None)], None, 0.0),
        # read-outs that start past the first sample, and that read nothing
        ([(pre, post, None)], torch.tensor([0.0, 0.5, -2.0], dtype=torch.float64), 0.5),
        ([(pre, post, None)], torch.zeros(batch, dtype=torch.float64), 0.5),
    ]


@needs_numba
@pytest.mark.parametrize("case", range(8))
def test_advance_per_sample_in_one_pass_is_the_torch_paths_sum(monkeypatch, case):
    from plastorch.functional import advance_per_sample_

    g = torch.Generator().manual_seed(11 + case)
    layer = nn.Linear(6, 5, bias=False).double()
    parts, gain, beta = advance_cases(g)[case]
    z0 = dyadic((3, 5, 6), 0.7, g)
    calls = []
    original = compiled._advance_unchecked

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(compiled, "_advance_unchecked", counting)
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "_ENABLED", enabled)
        z = z0.clone()
        with correlate_module.sparse_mode("sparse"):
            read = advance_per_sample_(layer, z, beta, parts, read_gain=gain)
        results.append((z, read))
    assert calls == [(3, 5, 6)]  # one compiled pass, only while enabled
    (z_fast, read_fast), (z_slow, read_slow) = results
    assert torch.equal(z_fast, z_slow)
    # against the definition: beta z0 + every part's per-sample correlation
    expected = beta * z0
    for pre, post, weights in parts:
        expected = expected + correlate_module.correlate_per_sample(
            layer, pre, post, weights=weights, sparse=False
        )
    assert torch.equal(z_fast, expected)
    if gain is None:
        assert read_fast is None and read_slow is None
    else:
        assert torch.equal(read_fast, read_slow)
        assert torch.equal(read_fast, torch.einsum("b,bij->ij", gain, z0))


@needs_numba
@pytest.mark.parametrize("case", range(8))
def test_advance_per_sample_flushes_a_subnormal_decayed_eligibility(monkeypatch, case):
    """Entries of z0 at the smallest normal float64 (2^-1022) decay to a subnormal with
    beta < 1: both paths store flush(beta z0) + the pairs, the compiled pass in every
    kind of row (fused with 0-2 lookups and a read-out, or decayed on its own)."""
    from plastorch.functional import advance_per_sample_, flush_subnormal_

    g = torch.Generator().manual_seed(11 + case)
    layer = nn.Linear(6, 5, bias=False).double()
    parts, gain, beta = advance_cases(g)[case]
    z0 = dyadic((3, 5, 6), 0.7, g)
    tiny = torch.finfo(torch.float64).tiny
    z0[torch.rand(z0.shape, generator=g) < 0.5] = tiny
    pairs = sum(
        correlate_module.correlate_per_sample(layer, pre, post, weights=weights, sparse=False)
        for pre, post, weights in parts
    )
    expected = flush_subnormal_(beta * z0) + pairs
    if 0.0 < beta < 1.0:  # without the flush, subnormal entries would be left
        unflushed = beta * z0 + pairs
        assert bool(((unflushed != 0) & (unflushed.abs() < tiny)).any())
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "_ENABLED", enabled)
        z = z0.clone()
        with correlate_module.sparse_mode("sparse"):
            advance_per_sample_(layer, z, beta, parts, read_gain=gain)
        assert torch.equal(z, expected), enabled


@needs_numba
@pytest.mark.parametrize("case", [0, 1, 2, 4, 5])
def test_advance_per_sample_reads_the_pairs_of_its_post_spikes_in_the_pass(monkeypatch, case):
    """``read_pairs``: the pass adds correlate(read_pairs, post) of the first part's post,
    summed over the batch, to the read-out (or returns it alone without a gain); the
    same as the torch path and the definition (dyadic: exact)."""
    from plastorch.functional import advance_per_sample_

    g = torch.Generator().manual_seed(31 + case)
    layer = nn.Linear(6, 5, bias=False).double()
    parts, gain, beta = advance_cases(g)[case]
    pairs = dyadic(parts[0][0].shape, 0.7, g)
    z0 = dyadic((3, 5, 6), 0.7, g)
    calls = []
    original = compiled._advance_unchecked
    monkeypatch.setattr(
        compiled,
        "_advance_unchecked",
        lambda *a, **k: calls.append(k["read_table"] is not None) or original(*a, **k),
    )
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "_ENABLED", enabled)
        z = z0.clone()
        with correlate_module.sparse_mode("sparse"):
            read = advance_per_sample_(layer, z, beta, parts, read_gain=gain, read_pairs=pairs)
        results.append((z, read))
    assert calls == [True]
    (z_fast, read_fast), (z_slow, read_slow) = results
    assert torch.equal(z_fast, z_slow)
    post = parts[0][1]
    expected = correlate_module.correlate(
        layer, pairs.flatten(0, 1), post.flatten(0, 1), sparse=False
    )
    if gain is not None:
        expected = expected + torch.einsum("b,bij->ij", gain, z0)
    assert torch.equal(read_fast, expected) and torch.equal(read_slow, expected)
    with pytest.raises(ValueError, match="read_pairs must be shaped like the first part's pre"):
        advance_per_sample_(layer, z, beta, parts, read_pairs=pairs[1:])


@needs_numba
def test_advance_per_sample_leaves_what_the_pass_does_not_cover_to_torch(monkeypatch):
    from plastorch.functional import advance_per_sample_

    g = torch.Generator().manual_seed(3)
    layer = nn.Linear(6, 5, bias=False).double()
    parts, gain, _ = advance_cases(g)[4]
    calls = []
    monkeypatch.setattr(compiled, "_advance_unchecked", lambda *a, **k: calls.append(1) or True)
    window = parts[0]
    two_steps = (parts[1][0].expand(2, -1, -1), parts[1][1].expand(2, -1, -1), None)
    weighted_step = (*parts[1][:2], torch.ones(1, 3, dtype=torch.float64))
    conv = nn.Conv1d(2, 3, 3, bias=False).double()
    conv_pre = dyadic((2, 3, 2, 8), 0.5, g)
    conv_post = (torch.rand(2, 3, 3, 6, generator=g) < 0.2).double()
    linear_z = (3, 5, 6)
    cases = [
        (layer, [window], linear_z, "dense"),  # the post spikes are not walked
        (layer, [window, two_steps], linear_z, "sparse"),  # the second part is not one step
        (layer, [window, weighted_step], linear_z, "sparse"),  # nor unweighted
        (conv, [(conv_pre, conv_post, None)], (3, 3, 2, 3), "sparse"),  # not a Linear
    ]
    for module, case_parts, shape, mode in cases:
        z = torch.zeros(shape, dtype=torch.float64)
        expected = z.clone()
        for pre, post, weights in case_parts:
            expected += correlate_module.correlate_per_sample(
                module, pre, post, weights=weights, sparse=False
            )
        with correlate_module.sparse_mode(mode):
            advance_per_sample_(module, z, 1.0, case_parts)
        torch.testing.assert_close(z, expected, rtol=1e-14, atol=1e-14)
    assert calls == []
    z = torch.zeros(linear_z, dtype=torch.float64)
    with pytest.raises(ValueError, match="read_gain must be \\[B\\]=\\[3\\]"):
        advance_per_sample_(layer, z, 1.0, [window], read_gain=gain[:2])
    with pytest.raises(ValueError, match="at least one"):
        advance_per_sample_(layer, z, 1.0, [])


@needs_numba
def test_an_advance_kernel_that_does_not_compile_falls_back_to_torch(monkeypatch):
    from plastorch.functional import advance_per_sample_

    monkeypatch.setattr(compiled, "_advance", NeverCompiled())
    monkeypatch.setattr(compiled, "_ENABLED", True)
    g = torch.Generator().manual_seed(4)
    layer = nn.Linear(6, 5, bias=False).double()
    parts, gain, beta = advance_cases(g)[4]
    z = dyadic((3, 5, 6), 0.7, g)
    expected = beta * z
    for pre, post, weights in parts:
        expected = expected + correlate_module.correlate_per_sample(
            layer, pre, post, weights=weights
        )
    read_expected = torch.einsum("b,bij->ij", gain, z)
    with pytest.warns(UserWarning, match="did not compile"):
        with correlate_module.sparse_mode("sparse"):
            read = advance_per_sample_(layer, z, beta, parts, read_gain=gain)
    assert not compiled.available()
    assert torch.equal(z, expected) and torch.equal(read, read_expected)


@needs_numba
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("shape", [(9, 4, 600), (6, 3, 2, 5, 70)])
def test_weighted_acausal_scan_compiled_has_the_torch_bits_for_spikes(monkeypatch, shared, shape):
    from plastorch.functional import weighted_acausal_factors

    g = torch.Generator().manual_seed(len(shape) + shared)
    steps, batch = shape[:2]
    pre = spikes(shape, 0.2, g, torch.float32)
    weights = torch.randn(3, steps, 1 if shared else batch, generator=g)
    calls = []
    original = compiled._weighted_acausal_unchecked
    monkeypatch.setattr(
        compiled, "_weighted_acausal_unchecked", lambda *a: calls.append(1) or original(*a)
    )
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "_ENABLED", enabled)
        out = torch.empty(3, *shape)
        after, carried = weighted_acausal_factors(pre, weights, 0.8, out=out)
        results.append((out, carried))
        assert all(a.data_ptr() == out[k].data_ptr() for k, a in enumerate(after))
    assert calls == [1]
    (out_fast, carried_fast), (out_slow, carried_slow) = results
    # 0/1 spikes: every product is exact, so the roundings are the torch loop's
    assert torch.equal(out_fast, out_slow) and torch.equal(carried_fast, carried_slow)
    # graded factors: within a rounding of torch's fused addcmul
    graded = pre * torch.rand(shape, generator=g)
    monkeypatch.setattr(compiled, "_ENABLED", True)
    fast = weighted_acausal_factors(graded, weights, 0.8, out=torch.empty(3, *shape))
    monkeypatch.setattr(compiled, "_ENABLED", False)
    slow = weighted_acausal_factors(graded, weights, 0.8, out=torch.empty(3, *shape))
    for a, b in zip([*fast[0], fast[1]], [*slow[0], slow[1]]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@needs_numba
@pytest.mark.parametrize("shared", [False, True])
def test_weighted_acausal_scan_compiled_writes_the_causal_trace(monkeypatch, shared):
    """``causal=(x, r)``: the compiled scan writes ``y + r x`` as it goes; exact for
    dyadic values (float64), within a rounding of torch's ``addcmul_`` for float32."""
    from plastorch.functional import weighted_acausal_factors

    g = torch.Generator().manual_seed(11 + shared)
    shape = (9, 4, 600)
    calls = []
    original = compiled._weighted_acausal_unchecked
    monkeypatch.setattr(
        compiled,
        "_weighted_acausal_unchecked",
        lambda *a: calls.append(a[5] is not None) or original(*a),
    )
    width = 1 if shared else 4
    for dtype, exact in ((torch.float64, True), (torch.float32, False)):
        pre = spikes(shape, 0.2, g, dtype)
        weights = torch.randint(-4, 5, (3, 9, 4), generator=g).to(dtype) / 8
        if exact:
            trace = torch.randint(0, 16, shape, generator=g).to(dtype) / 16
            rates = torch.randint(-4, 5, (3, 9, width), generator=g).to(dtype) / 4
        else:
            trace = torch.rand(shape, generator=g, dtype=dtype)
            rates = torch.randn(3, 9, width, generator=g, dtype=dtype)
        rates[1, 3] = 0.0  # a step without causal pairs: y itself
        results = []
        for enabled in (True, False):
            monkeypatch.setattr(compiled, "_ENABLED", enabled)
            out = torch.empty(3, *shape, dtype=dtype)
            after, carried = weighted_acausal_factors(
                pre, weights, 0.5, out=out, causal=(trace, rates)
            )
            results.append((out, carried))
        (fast, carried_fast), (slow, carried_slow) = results
        assert torch.equal(carried_fast, carried_slow)
        if exact:
            assert torch.equal(fast, slow)
        else:
            torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-6)
    assert calls == [True, True]


@needs_numba
def test_an_acausal_kernel_that_does_not_compile_falls_back_to_torch(monkeypatch):
    from plastorch.functional import weighted_acausal_factors

    monkeypatch.setattr(compiled, "_weighted_acausal", NeverCompiled())
    monkeypatch.setattr(compiled, "_ENABLED", True)
    g = torch.Generator().manual_seed(2)
    pre = spikes((9, 4, 600), 0.2, g, torch.float32)
    weights = torch.randn(2, 9, 4, generator=g)
    with pytest.warns(UserWarning, match="did not compile"):
        after, carried = weighted_acausal_factors(pre, weights, 0.8, out=torch.empty(2, 9, 4, 600))
    assert not compiled.available()
    expected = weighted_acausal_factors(pre, weights, 0.8, out=torch.empty(2, 9, 4, 600))
    assert torch.equal(carried, expected[1])
    for a, b in zip(after, expected[0]):
        assert torch.equal(a, b)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("numel", [0, 1, 7, 1000, 100_003])
def test_flat_nonzero_is_torch_nonzero_of_the_bits(dtype, numel):
    g = torch.Generator().manual_seed(numel)
    x = spikes((numel,), 0.05, g, dtype) * torch.rand(numel, generator=g, dtype=dtype)
    if numel > 3:
        x[3] = -0.0  # an entry: its bits are not zero
    found = compiled.flat_nonzero(x)
    bits = x.view(torch.int32 if dtype == torch.float32 else torch.int64)
    assert found.dtype == torch.long
    assert torch.equal(found, bits.nonzero().squeeze(1))
    assert torch.equal(compiled.flat_nonzero(torch.zeros(5, 3, dtype=dtype)), torch.zeros(0).long())
    with pytest.raises(TypeError, match="flat_nonzero: x must be a contiguous CPU tensor"):
        compiled.flat_nonzero(torch.ones(4, 2, dtype=dtype).t())
