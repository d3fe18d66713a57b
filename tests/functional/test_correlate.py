"""correlate against explicit loop references built here, for every layer geometry."""

import importlib
import itertools
import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plastorch.functional import (
    correlate,
    correlate_constant,
    correlate_per_sample,
    correlation_scope,
)
from plastorch.functional.workspace import Workspace

correlate_module = importlib.import_module("plastorch.functional.correlate")


def conv_reference(layer, pre, post):
    """Explicit loops: dW[o, c, k] = sum_{n, p} post[n, o, p] * pre_pad[n, g*cin + c, p*s + k*d]."""
    spatial = layer.weight.dim() - 2
    if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
        mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        pre = F.pad(pre, layer._reversed_padding_repeated_twice, mode=mode)
        padding = (0,) * spatial
    else:
        padding = layer.padding
        pre = F.pad(pre, [p for pad in reversed(padding) for p in (pad, pad)])
    grad = torch.zeros_like(layer.weight)
    out_g = layer.out_channels // layer.groups
    in_g = layer.in_channels // layer.groups
    kernel = layer.weight.shape[2:]
    for n, o in itertools.product(range(pre.shape[0]), range(layer.out_channels)):
        group = o // out_g
        for p in itertools.product(*(range(s) for s in post.shape[2:])):
            for k in itertools.product(*(range(s) for s in kernel)):
                idx = tuple(
                    p[i] * layer.stride[i] + k[i] * layer.dilation[i] for i in range(spatial)
                )
                for c in range(in_g):
                    grad[(o, c, *k)] += post[(n, o, *p)] * pre[(n, group * in_g + c, *idx)]
    return grad


def conv_transpose_reference(layer, pre, post):
    """out[n, o, p*s + k*d - pad] += pre[n, c, p] W[c, o, k]  =>  dW = sum pre * post at that index."""
    spatial = layer.weight.dim() - 2
    grad = torch.zeros_like(layer.weight)
    in_g = layer.in_channels // layer.groups
    out_g = layer.out_channels // layer.groups
    kernel = layer.weight.shape[2:]
    for n, c in itertools.product(range(pre.shape[0]), range(layer.in_channels)):
        group = c // in_g
        for p in itertools.product(*(range(s) for s in pre.shape[2:])):
            for k in itertools.product(*(range(s) for s in kernel)):
                idx = tuple(
                    p[i] * layer.stride[i] + k[i] * layer.dilation[i] - layer.padding[i]
                    for i in range(spatial)
                )
                if any(j < 0 or j >= post.shape[2 + i] for i, j in enumerate(idx)):
                    continue
                for o in range(out_g):
                    grad[(c, o, *k)] += pre[(n, c, *p)] * post[(n, group * out_g + o, *idx)]
    return grad


CONVS = [
    (lambda: nn.Conv1d(2, 4, 3), (2, 2, 7)),
    (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), (2, 4, 9)),
    (lambda: nn.Conv1d(2, 2, 4, padding="same", padding_mode="circular"), (2, 2, 6)),
    (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
    (
        lambda: nn.Conv2d(4, 4, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=4),
        (2, 4, 6, 5),
    ),
    (
        lambda: nn.Conv2d(2, 4, 3, stride=2, padding=1, padding_mode="reflect", groups=2),
        (1, 2, 6, 6),
    ),
    (lambda: nn.Conv2d(1, 2, 2, padding="same", padding_mode="replicate"), (2, 1, 4, 5)),
    (lambda: nn.Conv2d(2, 2, 3, padding="valid"), (1, 2, 5, 4)),
    (lambda: nn.Conv2d(3, 2, (3, 2), stride=(2, 3), padding=(2, 1), dilation=(2, 1)), (2, 3, 9, 8)),
    (lambda: nn.Conv3d(2, 2, 2, stride=(1, 2, 1), padding=1, dilation=(2, 1, 1)), (1, 2, 4, 4, 3)),
]


@pytest.mark.parametrize("make, shape", CONVS)
def test_conv_equals_explicit_loops(make, shape):
    layer = make().double()
    pre = (torch.rand(shape, dtype=torch.float64) < 0.5).double()
    post = torch.randn_like(layer(pre))
    torch.testing.assert_close(correlate(layer, pre, post), conv_reference(layer, pre, post))


TRANSPOSED = [
    (
        lambda: nn.ConvTranspose1d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
        (2, 2, 4),
    ),
    (
        lambda: nn.ConvTranspose2d(2, 3, (2, 3), stride=(2, 1), padding=(0, 1), dilation=(1, 2)),
        (1, 2, 3, 3),
    ),
]


@pytest.mark.parametrize("make, shape", TRANSPOSED)
def test_conv_transpose_equals_explicit_loops(make, shape):
    layer = make().double()
    pre = torch.rand(shape, dtype=torch.float64)
    post = torch.randn_like(layer(pre))
    torch.testing.assert_close(
        correlate(layer, pre, post), conv_transpose_reference(layer, pre, post)
    )


def test_linear_is_sum_of_outer_products():
    layer = nn.Linear(3, 2).double()
    pre = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    post = torch.tensor([[1.0, 0.0], [2.0, 3.0]], dtype=torch.float64)
    expected = torch.tensor([[1.0, 2.0, 4.0], [0.0, 3.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(correlate(layer, pre, post), expected)
    # leading [T, B] dims are summed like a batch
    torch.testing.assert_close(correlate(layer, pre[None], post[None]), expected)


class CustomLinear(nn.Module):
    """Not an nn.Linear: exercises the torch.func.vjp fallback."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x):
        return F.linear(x, self.weight)


def test_vjp_fallback_equals_linear_fast_path():
    linear = nn.Linear(5, 3, bias=False).double()
    custom = CustomLinear(linear.weight.detach())
    pre = torch.rand(4, 5, dtype=torch.float64)
    post = torch.rand(4, 3, dtype=torch.float64)
    torch.testing.assert_close(correlate(custom, pre, post), correlate(linear, pre, post))
    with torch.no_grad():
        torch.testing.assert_close(correlate(custom, pre, post), correlate(linear, pre, post))
    pre_t, post_t = pre.reshape(2, 2, 5), post.reshape(2, 2, 3)
    torch.testing.assert_close(
        correlate_per_sample(custom, pre_t, post_t), correlate_per_sample(linear, pre_t, post_t)
    )


@pytest.mark.parametrize(
    "make, shape", CONVS[:5] + TRANSPOSED + [(lambda: nn.Linear(4, 3), (6, 4))]
)
def test_per_sample_sums_over_time_only(make, shape):
    layer = make().double()
    steps, batch = 2, 3
    pre = torch.rand((steps * batch, *shape[1:]), dtype=torch.float64)
    post = torch.randn_like(layer(pre))
    pre_w = pre.reshape(steps, batch, *shape[1:])
    post_w = post.reshape(steps, batch, *post.shape[1:])
    per_sample = correlate_per_sample(layer, pre_w, post_w)
    assert per_sample.shape == (batch, *layer.weight.shape)
    for b in range(batch):
        torch.testing.assert_close(per_sample[b], correlate(layer, pre_w[:, b], post_w[:, b]))
    torch.testing.assert_close(per_sample.sum(0), correlate(layer, pre, post))


def test_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 3\)"):
        correlate(nn.Linear(3, 3), torch.zeros(2, 4), torch.zeros(2, 3))
    conv = nn.Conv2d(2, 3, 3)
    with pytest.raises(ValueError, match=r"\(1, 3, 5, 5\)"):
        correlate(conv, torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3))
    with pytest.raises(ValueError, match="output shape"):
        correlate(conv, torch.zeros(1, 2, 5, 5), torch.zeros(1, 3, 4, 4))
    with pytest.raises(TypeError, match="weight"):
        correlate(nn.ReLU(), torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match=r"\[T, B"):
        correlate_per_sample(nn.Linear(2, 2), torch.zeros(2, 3, 2), torch.zeros(2, 4, 2))


def test_factor_between_one_and_one_and_a_half_samples_is_correlated():
    # 100 x 800 = 80000 entries: above the exact-count limit (65536) but too few for a
    # stride-3 sample of 32768; the density estimate falls back to the exact count.
    fc = nn.Linear(800, 3, bias=False).double()
    pre = (torch.rand(100, 800, dtype=torch.float64) < 0.01).double()
    post = torch.rand(100, 3, dtype=torch.float64)
    torch.testing.assert_close(correlate(fc, pre, post), post.t() @ pre)


@pytest.mark.parametrize(
    "make, shape, unfolds",
    [
        (lambda: nn.Conv2d(2, 3, 5, padding=2), (2, 2, 6, 6), True),  # patch 50
        (
            lambda: nn.Conv2d(3, 2, (3, 2), stride=(2, 3), padding=(2, 1), dilation=(2, 1)),
            (2, 3, 9, 8),
            True,
        ),
        (lambda: nn.Conv2d(8, 2, 3, padding=1), (2, 8, 5, 5), True),  # patch 72
        (lambda: nn.Conv2d(32, 2, 3, padding=1), (2, 32, 5, 5), False),  # patch 288 > 192
        (lambda: nn.Conv1d(3, 2, 4, stride=2, padding=3, dilation=2), (3, 3, 17), True),
        (lambda: nn.Conv2d(6, 4, 3, padding=1, groups=2), (2, 6, 5, 7), True),  # patch 27
        (lambda: nn.Conv1d(4, 6, 3, stride=2, groups=2), (3, 4, 12), True),
        (lambda: nn.Conv2d(64, 8, 5, groups=2), (1, 64, 6, 6), False),  # patch 800
        (lambda: nn.Conv2d(8, 8, 3, padding=1, groups=4), (2, 8, 5, 5), False),  # 4 groups
        (
            lambda: nn.Conv3d(
                2, 3, (3, 2, 2), stride=(1, 2, 1), padding=(1, 0, 1), dilation=(1, 1, 2)
            ),
            (2, 2, 5, 7, 6),
            True,
        ),
    ],
)
def test_small_patch_conv_takes_the_unfold_kernel(make, shape, unfolds, monkeypatch):
    # against torch's own weight gradient (autograd of the layer), with and without a
    # lent workspace for the columns (which must not leak into the result); the static
    # rule (no timing of the two kernels), so that which one runs is known
    from plastorch.functional import correlation_scope

    monkeypatch.setattr(correlate_module, "_AUTOTUNE", False)
    from plastorch.functional.correlate import _unfold_weight_grad
    from plastorch.functional.workspace import Workspace

    layer = make().double()
    pre = torch.rand(shape, dtype=torch.float64)
    post = torch.randn_like(layer(pre))
    weight = layer.weight.detach().requires_grad_()
    out = torch.nn.functional.__dict__[f"conv{weight.dim() - 2}d"](
        pre, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups
    )
    (expected,) = torch.autograd.grad(out, weight, post)
    grad = _unfold_weight_grad(
        layer, pre, post, list(layer.padding), layer.weight.shape, layer.groups
    )
    # the patch limit is the kernel's own, the group limit its caller's
    assert (grad is None) == (math.prod(layer.weight.shape[1:]) > 192)
    if grad is not None:
        torch.testing.assert_close(grad, expected)
    workspace = Workspace()
    with correlation_scope(workspace):
        first = correlate(layer, pre, post, sparse=False)
        second = correlate(layer, 2 * pre, post, sparse=False)
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, 2 * expected)
    assert (workspace.nbytes > 0) == unfolds
    torch.testing.assert_close(correlate(layer, pre, post, sparse=False), expected)


def test_unfold_kernel_rejects_a_transposed_output_shape():
    # [.., 4, 6] where the layer gives [.., 6, 4]: as many positions, another shape
    layer = nn.Conv2d(1, 2, 3, padding=1)
    pre, post = torch.rand(1, 1, 6, 4), torch.rand(1, 2, 4, 6)
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 6\).*\(1, 1, 6, 4\)"):
        correlate(layer, pre, post, sparse=False)


@pytest.mark.parametrize("padding", [(0, 0), (2, 1)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed view", "offset view"])
def test_columns_equal_unfold_for_any_input_layout(layout, padding):
    # _columns reads the input through its own strides and storage offset
    from plastorch.functional.correlate import _columns

    g = torch.Generator().manual_seed(5)
    base = torch.rand(3, 2, 9, 11, generator=g)
    if layout == "transposed view":
        base = torch.rand(3, 2, 11, 9, generator=g).transpose(2, 3)
    elif layout == "offset view":
        base = torch.rand(4, 2, 9, 11, generator=g)[1:]
    kernel, dilation, stride = (3, 2), (2, 1), (1, 2)
    expected = torch.nn.functional.unfold(base, kernel, dilation, padding, stride)
    out_spatial = [
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, p, d, k, s in zip(base.shape[2:], padding, dilation, kernel, stride)
    ]
    assert torch.equal(_columns(base, kernel, dilation, padding, stride, out_spatial), expected)
    out = torch.full(expected.shape, float("nan"))
    assert _columns(base, kernel, dilation, padding, stride, out_spatial, out) is out
    assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="does not give"):
        _columns(base, kernel, dilation, padding, stride, [s + 1 for s in out_spatial])


def test_conv_kernel_choice_is_timed_once_per_geometry_and_follows_the_timing(monkeypatch):
    # the unfold kernel made slow by 20 ms per call loses to oneDNN; the choice is cached
    # per geometry, and either kernel gives torch's weight gradient
    monkeypatch.setattr(correlate_module, "_AUTOTUNE", True)
    monkeypatch.setattr(correlate_module, "_UNFOLD_CHOICE", {})
    original = correlate_module._columns
    calls = []

    def slow_columns(*args):
        calls.append(1)
        time.sleep(0.02)
        return original(*args)

    monkeypatch.setattr(correlate_module, "_columns", slow_columns)
    layer = nn.Conv2d(2, 3, 3, padding=1).double()
    pre = torch.rand(2, 2, 6, 6, dtype=torch.float64)
    post = torch.randn_like(layer(pre))
    weight = layer.weight.detach().requires_grad_()
    out = torch.nn.functional.conv2d(pre, weight, None, 1, 1)
    (expected,) = torch.autograd.grad(out, weight, post)
    torch.testing.assert_close(correlate(layer, pre, post, sparse=False), expected)
    assert len(calls) == 3 and list(correlate_module._UNFOLD_CHOICE.values()) == [False]
    torch.testing.assert_close(correlate(layer, pre, post, sparse=False), expected)
    assert len(calls) == 3  # remembered: neither timed nor unfolded again
    # another geometry is timed anew; without the slow columns unfold may win or lose,
    # and the sum is the same either way
    monkeypatch.setattr(correlate_module, "_columns", original)
    pre2 = torch.rand(3, 2, 6, 6, dtype=torch.float64)
    post2 = torch.randn_like(layer(pre2))
    out2 = torch.nn.functional.conv2d(pre2, weight, None, 1, 1)
    (expected2,) = torch.autograd.grad(out2, weight, post2)
    torch.testing.assert_close(correlate(layer, pre2, post2, sparse=False), expected2)
    assert len(correlate_module._UNFOLD_CHOICE) == 2
    # with PLASTORCH_CONV_AUTOTUNE=0 (or factors requiring grad) the static rule: unfold
    monkeypatch.setattr(correlate_module, "_AUTOTUNE", False)
    assert correlate_module._unfold_wins(layer, pre, post, [1, 1], layer.weight.shape, 1)


MIXED = [
    (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),  # pre the smaller factor
    (lambda: nn.Conv2d(4, 2, 3, stride=2, padding=1, groups=2), (2, 4, 6, 6)),  # post smaller
    (lambda: nn.Conv3d(2, 2, 2, stride=(1, 2, 1), padding=1, dilation=(2, 1, 1)), (1, 2, 4, 4, 3)),
]


@pytest.mark.parametrize("last", ["pre", "post"])
@pytest.mark.parametrize("make, shape", MIXED)
def test_factors_in_different_memory_formats_are_brought_to_one(make, shape, last):
    # one channels-last factor and one channels-first: the smaller one is copied into
    # the other's layout (into the scope's workspace, reused by the next call), the
    # factors themselves are left alone, and the result is the loops' sum
    layer = make().double()
    pre = (torch.rand(shape, dtype=torch.float64) < 0.5).double()
    post = torch.randn_like(layer(pre))
    expected = conv_reference(layer, pre, post)
    fmt = torch.channels_last if pre.dim() == 4 else torch.channels_last_3d
    given = {"pre": pre, "post": post}
    given[last] = given[last].contiguous(memory_format=fmt)
    copies = {name: t.clone(memory_format=torch.preserve_format) for name, t in given.items()}
    workspace = Workspace()
    for _ in range(2):
        with correlation_scope(workspace):
            torch.testing.assert_close(
                correlate(layer, given["pre"], given["post"], sparse=False), expected
            )
        if _ == 0:
            kept = {n: t.data_ptr() for n, t in workspace._tensors.items() if "layout" in n}
    smaller = "pre" if pre.numel() <= post.numel() else "post"
    into = "last" if smaller != last else "first"
    assert list(kept) == [f"layout_{smaller}_{into}"]
    assert {n: t.data_ptr() for n, t in workspace._tensors.items() if "layout" in n} == kept
    for name, t in given.items():
        assert torch.equal(t, copies[name]) and t.stride() == copies[name].stride()
    # without a scope the copy is a fresh tensor, the sum the same
    torch.testing.assert_close(
        correlate(layer, given["pre"], given["post"], sparse=False), expected
    )


def test_layer_hyperparameters_as_lists_and_changed_in_place():
    # a layer whose stride / padding are lists (unhashable) is correlated without the
    # geometry cache; changing a hyperparameter in place gives the new geometry's sum
    layer = nn.Conv2d(2, 3, 3, padding=1).double()
    pre = (torch.rand(2, 2, 6, 6, dtype=torch.float64) < 0.5).double()
    post = torch.randn_like(layer(pre))
    expected = conv_reference(layer, pre, post)
    torch.testing.assert_close(correlate(layer, pre, post, sparse=False), expected)
    layer.stride, layer.padding = [1, 1], [1, 1]
    torch.testing.assert_close(correlate(layer, pre, post, sparse=False), expected)
    layer.stride, layer.padding = (2, 2), (0, 0)
    post = torch.randn_like(layer(pre))
    torch.testing.assert_close(
        correlate(layer, pre, post, sparse=False), conv_reference(layer, pre, post)
    )
    with pytest.raises(ValueError, match="is not the output shape"):
        correlate(layer, pre, torch.zeros(2, 3, 6, 6, dtype=torch.float64), sparse=False)


def test_mixed_memory_formats_keep_the_autograd_graph_and_the_workspace_clean():
    # a factor that requires grad is copied into the other layout outside the lent
    # workspace: the gradient flows back to it, and no workspace buffer joins a graph
    layer = nn.Conv2d(2, 3, 3, padding=1).double()
    pre = torch.rand(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    post = torch.randn(2, 3, 5, 5, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last
    )
    workspace = Workspace()
    with correlation_scope(workspace):
        value = correlate(layer, pre, post, sparse=False)
    (grad,) = torch.autograd.grad(value.square().sum(), pre)
    flat = pre.detach().clone().requires_grad_()
    (expected,) = torch.autograd.grad(
        correlate(layer, flat, post.contiguous(), sparse=False).square().sum(), flat
    )
    torch.testing.assert_close(grad, expected)
    assert not any(t.requires_grad for t in workspace._tensors.values())


@pytest.mark.parametrize(
    "make, shape, leading",
    [
        (make, shape, leading)
        for make, shape in CONVS + TRANSPOSED + [(lambda: nn.Linear(4, 3), (6, 4))]
        for leading in ((), (3,))
    ]
    + [(lambda: nn.Linear(4, 3), (4,), ())],  # an unbatched input
)
def test_a_constant_pre_factor_is_one_correlation_of_the_summed_post(make, shape, leading):
    # C(v 1, post) = C(v 1_one sample, sum_n post_n): the post factor summed first
    layer = make().double()
    g = torch.Generator().manual_seed(9)
    pre = torch.empty(*leading, *shape, dtype=torch.float64)
    out = layer(pre.reshape(-1, *shape[1:]) if leading else pre).shape
    post = torch.randn(out, generator=g, dtype=torch.float64)
    if leading:
        post = post.reshape(*leading, shape[0], *out[1:])
    got = correlate_constant(layer, -0.75, pre, post)
    expected = correlate(layer, torch.full_like(pre, -0.75), post, sparse=False)
    assert got.shape == layer.weight.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_a_constant_pre_factor_on_another_module_folds_its_samples():
    custom = CustomLinear(torch.randn(3, 5, dtype=torch.float64))
    pre, post = torch.empty(4, 5, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    expected = correlate(custom, torch.full_like(pre, 2.0), post)
    torch.testing.assert_close(correlate_constant(custom, 2.0, pre, post), expected)
