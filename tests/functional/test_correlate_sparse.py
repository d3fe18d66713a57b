"""The sparse path of correlate equals the dense one, for every layer geometry.

With float64 factors whose values are small dyadic rationals (multiples of 1/8
below 4), every product and every partial sum is exact, so the two paths must
agree bit for bit whatever order they add in: ``torch.equal``, not a tolerance.
"""

import importlib

import pytest
import torch
from torch import nn

from plastorch.functional import correlate, correlate_per_sample
from plastorch.functional.correlate import estimate_costs, get_sparse_mode, sparse_mode

from .test_correlate import CONVS, TRANSPOSED, conv_reference

# the package re-exports the function under the module's name
correlate_module = importlib.import_module("plastorch.functional.correlate")

LAYERS = (
    CONVS
    + TRANSPOSED
    + [
        (lambda: nn.Linear(7, 5), (6, 7)),
        (lambda: nn.Linear(1, 3), (4, 1)),
        (lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (2, 4, 7, 6)),
        (lambda: nn.Conv3d(2, 4, (3, 1, 2), stride=(2, 1, 1), groups=2), (1, 2, 5, 3, 4)),
    ]
)


def dyadic(shape, density, generator):
    """Values in {1/8, ..., 31/8} at ``density``, zero elsewhere (float64)."""
    values = torch.randint(1, 32, shape, generator=generator).double() / 8.0
    mask = torch.rand(shape, generator=generator, dtype=torch.float64) < density
    return values * mask


def factors(layer, shape, sparse_side, steps, batch, generator):
    """``pre [T, B, *in]`` and ``post [T, B, *out]``; ``sparse_side`` gets density 0.3."""
    example = torch.zeros((steps * batch, *shape[1:]), dtype=torch.float64)
    out_shape = layer(example).shape
    pre = dyadic((steps, batch, *shape[1:]), 0.3 if sparse_side == "pre" else 0.9, generator)
    post = dyadic((steps, batch, *out_shape[1:]), 0.3 if sparse_side == "post" else 0.9, generator)
    return pre, post


@pytest.mark.parametrize("scan", ["permuted", "flat"])
@pytest.mark.parametrize("sparse_side", ["pre", "post"])
@pytest.mark.parametrize("make, shape", LAYERS)
def test_sparse_equals_dense_exactly(make, shape, sparse_side, scan, monkeypatch):
    # "flat": the scan used for large factors (flat nonzero + stable sort by owner),
    # which the Linear path takes instead of its column scan past _COLUMN_SCAN_BYTES
    if scan == "flat":
        monkeypatch.setattr(correlate_module, "_PERMUTED_SCAN", 0)
        monkeypatch.setattr(correlate_module, "_COLUMN_SCAN_BYTES", 0)
    layer = make().double()
    generator = torch.Generator().manual_seed(7)
    pre, post = factors(layer, shape, sparse_side, 3, 2, generator)
    # time folded into the batch: [T, B, ...] summed over both
    dense = correlate(layer, pre, post, sparse=False)
    assert torch.equal(correlate(layer, pre, post, sparse=True), dense)
    # flattened samples give the same
    flat_pre, flat_post = pre.flatten(0, 1), post.flatten(0, 1)
    assert torch.equal(correlate(layer, flat_pre, flat_post, sparse=True), dense)
    # per sample: sums over time only
    dense_b = correlate_per_sample(layer, pre, post, sparse=False)
    sparse_b = correlate_per_sample(layer, pre, post, sparse=True)
    assert sparse_b.shape == (2, *layer.weight.shape)
    assert torch.equal(sparse_b, dense_b)
    assert sparse_b.is_contiguous()
    # accumulated in place, beta * acc + C (Linear: a few samples per row-sum run)
    monkeypatch.setattr(correlate_module, "_ROWS_CHUNK", layer.weight.numel() + 1)
    acc = torch.randint(-8, 8, dense_b.shape, generator=generator).double() / 8
    # sparse Linear side "a" is one CSR addmm where torch has it, else runs of samples
    for sparse, csr in ((True, True), (True, False), (False, True)):
        monkeypatch.setitem(correlate_module._CSR_ADDMM, ("cpu", torch.float64), csr)
        target = acc.clone()
        out = correlate_per_sample(layer, pre, post, sparse=sparse, accumulate=target, beta=0.5)
        assert out is target
        assert torch.equal(out, 0.5 * acc + dense_b)


@pytest.mark.parametrize("make, shape", CONVS[:6])
def test_sparse_conv_equals_explicit_loops(make, shape):
    """Independent of the dense path: against the loop reference of test_correlate."""
    layer = make().double()
    generator = torch.Generator().manual_seed(3)
    pre = dyadic(shape, 0.25, generator)
    post = dyadic(layer(pre).shape, 1.0, generator)
    assert torch.equal(correlate(layer, pre, post, sparse=True), conv_reference(layer, pre, post))


@pytest.mark.parametrize("make, shape", LAYERS)
def test_sparse_close_to_dense_on_continuous_values(make, shape):
    layer = make().double()
    pre = torch.rand((4, 3, *shape[1:]), dtype=torch.float64)
    pre = pre * (torch.rand_like(pre) < 0.1)
    post = torch.randn((4, 3, *layer(pre[0]).shape[1:]), dtype=torch.float64)
    torch.testing.assert_close(
        correlate(layer, pre, post, sparse=True),
        correlate(layer, pre, post, sparse=False),
        rtol=1e-12,
        atol=1e-12,
    )


def test_linear_hand_values():
    # C = post^T pre over 3 samples; the sparse factor is post (two non-zeros).
    fc = nn.Linear(3, 2, bias=False).double()
    pre = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [0.5, 0.0, 1.0]], dtype=torch.float64)
    post = torch.tensor([[0.0, 2.0], [0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    expected = torch.tensor([[0.5, 0.0, 1.0], [2.0, 4.0, 6.0]], dtype=torch.float64)
    assert torch.equal(correlate(fc, pre, post, sparse=True), expected)
    per_sample = correlate_per_sample(fc, pre[:, None], post[:, None], sparse=True)
    assert torch.equal(per_sample, expected[None])


def test_empty_factor_gives_zeros():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    pre = torch.zeros(2, 2, 5, 5)
    post = torch.rand(2, 3, 5, 5)
    assert torch.equal(correlate(conv, pre, post, sparse=True), torch.zeros(3, 2, 3, 3))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_low_precision_close_to_float64(dtype, tol):
    fc = nn.Linear(50, 20, bias=False)
    pre = (torch.rand(2, 8, 50) < 0.1).double()
    post = torch.rand(2, 8, 20, dtype=torch.float64)
    reference = correlate(fc.double(), pre, post, sparse=False)
    fc = fc.to(dtype)
    result = correlate(fc, pre.to(dtype), post.to(dtype), sparse=True)
    assert result.dtype == dtype
    torch.testing.assert_close(result.double(), reference, rtol=tol, atol=tol)


def test_mode_selects_the_path(monkeypatch):
    calls = []
    original = correlate_module._sparse_linear

    def spy(*args):
        calls.append(args[2])  # the side whose non-zeros are walked
        return original(*args)

    monkeypatch.setattr(correlate_module, "_sparse_linear", spy)
    # with numba, side "a" of a Linear may run the compiled kernel instead: also the sparse path
    compiled_rows = correlate_module._compiled_rows

    def compiled_spy(*args):
        calls.append("a")
        return compiled_rows(*args)

    monkeypatch.setattr(correlate_module, "_compiled_rows", compiled_spy)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the model's thread count
    fc = nn.Linear(400, 300, bias=False)
    spikes = torch.zeros(1024, 300)  # e.g. a window, time folded into the batch
    spikes[::7, ::11] = 1.0  # density ~ 0.013
    traces = torch.rand(1024, 400)
    correlate(fc, traces, spikes)  # auto: post spikes are sparse
    assert calls == ["a"]
    correlate(fc, traces, torch.rand(1024, 300))  # auto: nothing sparse -> dense
    assert calls == ["a"]
    with sparse_mode("dense"):
        correlate(fc, traces, spikes)
        assert get_sparse_mode() == "dense"
    assert calls == ["a"]
    with sparse_mode("sparse"):
        correlate(fc, (traces < 0.05).float(), torch.rand(1024, 300))  # pre is the sparse side
    assert calls == ["a", "b"]
    assert get_sparse_mode() == "auto"
    correlate(fc, traces, spikes, sparse=False)  # the argument wins over the mode
    assert calls == ["a", "b"]


def costs(**changes):
    """``estimate_costs`` of a small float32 Linear term on one thread, with changes."""
    arguments = dict(
        dtype=torch.float32,
        conv=False,
        dense_macs=1000,
        sparse_numel=100,
        nnz=10,
        kernel_size=1,
        row_length=50,
        table_numel=0,
        permuted_numel=0,
        threads=1,
    )
    return estimate_costs(**{**arguments, **changes})


def test_cost_model_hand_values():
    # dense: 0.03 ns per multiply-add + 30 us; sparse: 2 ns per scanned entry, per
    # lookup 10 ns + 0.1 ns per added element (0.4 for convolutions), 1.5 ns per
    # copied entry, 250 us fixed (1.3 ms for convolutions)
    dense, sparse = costs(permuted_numel=20)
    assert dense == pytest.approx(30.0 + 30_000.0)
    assert sparse == pytest.approx(200.0 + 10 * (10.0 + 5.0) + 30.0 + 250_000.0)
    # convolutions: 1.5x per dense multiply-add, 6 ns per lookup
    dense, sparse = costs(conv=True, sparse_numel=0, nnz=1, kernel_size=9, row_length=0)
    assert dense == pytest.approx(45.0 + 30_000.0)
    assert sparse == pytest.approx(9 * 6.0 + 1_300_000.0)
    # two threads halve the GEMM and the row sums, not the scan, lookups and fixed cost
    dense, sparse = costs(threads=2)
    assert dense == pytest.approx(15.0 + 30_000.0)
    assert sparse == pytest.approx(200.0 + 10 * (10.0 + 2.5) + 250_000.0)


def test_cost_model_cold_tables_and_kinds():
    warm = 200.0 + 10 * (10.0 + 0.1 * 50) + 250_000.0
    # a looked-up Linear factor past the caches (8 MiB) costs twice per added element
    assert costs(lookup_bytes=8 << 20)[1] == pytest.approx(warm)
    cold = 200.0 + 10 * (10.0 + 0.2 * 50) + 250_000.0
    assert costs(lookup_bytes=(8 << 20) + 1)[1] == pytest.approx(cold)
    # convolutions keep their own per-element constant (0.4 ns) and ignore lookup_bytes
    conv = 200.0 + 10 * (6.0 + 0.4 * 50) + 1_300_000.0
    assert costs(conv=True, lookup_bytes=1 << 30)[1] == pytest.approx(conv)


def test_cost_model_bfloat16_follows_the_cpu():
    # a bfloat16 multiply-add costs half a float32 one where the CPU has bfloat16
    # instructions (AVX512-BF16, AMX) and ~3x more where it has not
    expected = 0.015 if correlate_module._BF16_GEMM else 0.1
    assert costs(dtype=torch.bfloat16)[0] == pytest.approx(expected * 1000 + 30_000.0)
    has = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    has = has or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    assert correlate_module._BF16_GEMM == bool(has)


def test_accumulate_errors_name_the_argument():
    fc = nn.Linear(3, 2, bias=False)
    pre, post = torch.ones(4, 2, 3), torch.ones(4, 2, 2)
    with pytest.raises(ValueError, match=r"accumulate must be a \[2, 2, 3\] tensor"):
        correlate_per_sample(fc, pre, post, accumulate=torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="accumulate must be a .* of torch.float32"):
        correlate_per_sample(fc, pre, post, accumulate=torch.zeros(2, 2, 3).double())
    with pytest.raises(ValueError, match="accumulate must be contiguous"):
        correlate_per_sample(fc, pre, post, accumulate=torch.zeros(2, 3, 2).transpose(1, 2))


def test_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        with sparse_mode("fast"):
            pass
    with pytest.raises(TypeError, match="sparse must be None, True or False"):
        correlate(nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, 2), sparse="yes")
    conv = nn.Conv2d(2, 3, 3)
    with pytest.raises(ValueError, match=r"\(1, 3, 4, 4\).*\(1, 2, 5, 5\)"):
        correlate(conv, torch.zeros(1, 2, 5, 5), torch.zeros(1, 3, 4, 4), sparse=True)
