"""correlate_sum: a signed sum of correlations in one accumulator, on every path.

Factors are small dyadic float64 values and the rates powers of two, so every
product and partial sum is exact and the fused sum must equal the term-by-term
reference bit for bit, whatever order or path (GEMM accumulator, sparse row sums,
convolution weight gradient) it takes.
"""

import importlib

import pytest
import torch
from torch import nn

from plastorch.functional import correlate, correlate_sum, sparse_mode, uses_sparse_path

from .test_correlate_sparse import dyadic

LAYERS = [
    (lambda: nn.Linear(7, 5, bias=False), (6, 7), (6, 5)),
    (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5), (2, 3, 5, 5)),
    (lambda: nn.ConvTranspose1d(2, 3, 3, stride=2), (2, 2, 4), (2, 3, 9)),
]
RATES = (0.5, -2.0, 0.25)


def reference(layer, items):
    total = None
    for pre, post, rate in items:
        value = rate * correlate(layer, pre, post, sparse=False)
        total = value if total is None else total + value
    return total


@pytest.mark.parametrize("make, pre_shape, post_shape", LAYERS)
@pytest.mark.parametrize("mode", ["dense", "sparse", "auto"])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_equals_the_sum_of_scaled_correlations(make, pre_shape, post_shape, mode, count):
    generator = torch.Generator().manual_seed(count)
    layer = make().double()
    items = [
        (
            dyadic(pre_shape, 0.3 if k % 2 else 1.0, generator),
            dyadic(post_shape, 1.0 if k % 2 else 0.2, generator),
            RATES[k],
        )
        for k in range(count)
    ]
    with sparse_mode(mode):
        result = correlate_sum(layer, items)
    assert torch.equal(result, reference(layer, items))


def test_mixes_sparse_and_dense_terms_of_a_linear_layer():
    # one term with very sparse post spikes over many samples (the sparse path
    # pays), one dense term (GEMM): the accumulator takes both, in either order
    generator = torch.Generator().manual_seed(0)
    fc = nn.Linear(300, 200, bias=False).double()
    sparse_post = dyadic((2048, 200), 0.002, generator)
    dense_pre = dyadic((2048, 300), 1.0, generator)
    other = (dyadic((2048, 300), 1.0, generator), dyadic((2048, 200), 1.0, generator), -0.5)
    assert uses_sparse_path(fc, dense_pre, sparse_post)
    assert not uses_sparse_path(fc, other[0], other[1])
    for items in ([(dense_pre, sparse_post, 0.25), other], [other, (dense_pre, sparse_post, 0.25)]):
        assert torch.equal(correlate_sum(fc, items), reference(fc, items))


def test_generic_module_and_empty():
    class Scaled(nn.Module):  # linear in its weight, not a Linear: the vjp path
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3, dtype=torch.float64))

        def forward(self, x):
            return x * self.weight

    layer = Scaled()
    a, b = torch.tensor([[1.0, 2.0, 3.0]]).double(), torch.tensor([[2.0, 1.0, 0.5]]).double()
    assert torch.equal(
        correlate_sum(layer, [(a, b, 0.5), (b, a, -1.0)]), 0.5 * a[0] * b[0] - a[0] * b[0]
    )
    assert correlate_sum(layer, []) is None


def test_uses_sparse_path_follows_the_mode():
    fc = nn.Linear(3, 2, bias=False)
    pre, post = torch.rand(4, 3), torch.zeros(4, 2)
    with sparse_mode("dense"):
        assert not uses_sparse_path(fc, pre, post)
    with sparse_mode("sparse"):
        assert uses_sparse_path(fc, pre, post)
    assert not uses_sparse_path(fc, pre, post, sparse=False)
    with pytest.raises(TypeError, match="tensor attribute 'weight'"):
        uses_sparse_path(nn.Identity(), pre, pre)


def test_generic_modules_never_take_the_sparse_path():
    layer = nn.Module()
    layer.weight = nn.Parameter(torch.ones(3))
    with sparse_mode("sparse"):
        assert not uses_sparse_path(layer, torch.zeros(1, 3), torch.zeros(1, 3))


@pytest.mark.parametrize("make, pre_shape, post_shape", LAYERS)
@pytest.mark.parametrize("mode", ["dense", "sparse", "auto"])
@pytest.mark.parametrize("count", [0, 1, 3])
def test_out_takes_the_sum_in_place(make, pre_shape, post_shape, mode, count):
    # out <- out + sum_k c_k C(pre_k, post_k), the same bits as adding the reference
    generator = torch.Generator().manual_seed(10 + count)
    layer = make().double()
    items = [
        (dyadic(pre_shape, 0.3, generator), dyadic(post_shape, 0.2 + 0.4 * k, generator), RATES[k])
        for k in range(count)
    ]
    start = dyadic(layer.weight.shape, 1.0, generator)
    out = start.clone()
    with sparse_mode(mode):
        result = correlate_sum(layer, items, out=out)
    assert result is out
    expected = start if count == 0 else start + reference(layer, items)
    assert torch.equal(out, expected)


def test_out_must_be_shaped_like_the_weight():
    fc = nn.Linear(3, 2, bias=False)
    items = [(torch.ones(1, 3), torch.ones(1, 2), 1.0)]
    with pytest.raises(ValueError, match="out"):
        correlate_sum(fc, items, out=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="out"):
        correlate_sum(fc, items, out=torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="out"):
        correlate_sum(fc, items, out=torch.zeros(3, 2).t())


@pytest.mark.parametrize("rate", [-0.5, -1.0, 0.25])
def test_a_folded_negative_rate_leaves_no_negative_zeros(monkeypatch, rate):
    # a conv whose input is smaller than its weight: the rate goes onto the input,
    # whose zeros must stay +0.0 (the sparse scan reads the bits as integers)
    module = importlib.import_module("plastorch.functional.correlate")  # (the function shadows it)
    layer = nn.Conv1d(4, 6, 3, padding=1, bias=False).double()
    pre = torch.zeros(1, 4, 2, dtype=torch.float64)
    pre[0, 1, 0] = 1.0
    post = dyadic((1, 6, 2), 1.0, torch.Generator().manual_seed(0))
    seen = []
    original = module.correlate

    def spy(layer, pre, post, **kwargs):
        seen.append(pre)
        return original(layer, pre, post, **kwargs)

    monkeypatch.setattr(module, "correlate", spy)
    result = correlate_sum(layer, [(pre, post, rate)])
    bits = seen[0].reshape(-1).view(torch.int64)
    assert not bool((bits == torch.iinfo(torch.int64).min).any())
    assert int(bits.ne(0).sum()) == 1
    assert torch.equal(result, reference(layer, [(pre, post, rate)]))
