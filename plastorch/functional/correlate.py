r"""Correlation of a presynaptic and a postsynaptic factor, mapped onto a weight.

For a layer :math:`y = f(x; W)` linear in :math:`W`, every pair-based plasticity
term is

.. math:: C(a, b) = \sum_n \frac{\partial \langle b_n, f(a_n; W)\rangle}{\partial W}

i.e. the weight gradient of the layer at input :math:`a` with upstream gradient
:math:`b`. For ``nn.Linear`` that is :math:`b^\top a` (one GEMM); for
convolutions it is the convolution weight gradient, which already handles every
stride, padding, dilation and group layout without a Python loop over kernel
positions; for any other module it is ``torch.func.vjp`` of ``W -> f(a; W)``.

Sparse path
-----------
Spikes are sparse, and in every pair term one factor is a spike tensor. Writing
the correlation of a Linear or convolution layer as

.. math::

    C[m, c, k] = \sum_{n, p} A[n, m, p]\; B[n, g(m) C_g + c,\ p s + k d - \text{pad}]

(:math:`A` the factor on the side of the weight's first dimension: ``post`` for
Linear and ConvNd, ``pre`` for ConvTransposeNd; :math:`g(m)` the group of
:math:`m`), only the non-zero entries of the sparse factor contribute. For each of
them and each kernel offset :math:`k` the sparse path looks up one row of the
other factor (laid out channels-last, so the row is contiguous) and sums the rows
into the weight entry they belong to with ``torch.nn.functional.embedding_bag``
(a segmented, weighted row sum): the arithmetic is
:math:`\text{nnz} \times K \times C_g` instead of the dense
:math:`N \times M \times P \times K \times C_g`.

Which path runs is chosen per call by the ``sparse`` argument or, when that is
``None``, by :func:`sparse_mode` (default ``"auto"``): on CPU, ``"auto"`` counts
the non-zeros of both factors and takes the sparse path when its estimated cost
(:func:`sparse_cost_ratio`) is below the dense one. On other devices ``"auto"``
stays dense (counting non-zeros synchronises the device, and the crossover has
not been measured there); ``sparse=True`` or ``sparse_mode("sparse")`` forces it.
Both paths compute the same sum; only the order of the additions differs.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_choice

__all__ = [
    "SPARSE_MODES",
    "correlate",
    "correlate_per_sample",
    "get_sparse_mode",
    "sparse_cost_ratio",
    "sparse_mode",
]

SPARSE_MODES: tuple[str, ...] = ("auto", "sparse", "dense")
_MODE: contextvars.ContextVar[str] = contextvars.ContextVar("plastorch_sparse_mode", default="auto")

#: Cost of one looked-up row in the sparse path, in dense multiply-adds, is
#: ``(row length + _ROW_OVERHEAD) * _SPARSE_MAC_COST``: a gathered, scattered
#: row is slower per element than a GEMM and has a fixed cost per lookup.
#: Calibrated on a 2-core x86 CPU (docs/performance.md, "crossover").
_ROW_OVERHEAD = 24.0
_SPARSE_MAC_COST = 3.0

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@contextmanager
def sparse_mode(mode: str) -> Iterator[None]:
    """Choose how :func:`correlate` and :func:`correlate_per_sample` pick their path.

    Parameters
    ----------
    mode : {"auto", "sparse", "dense"}
        ``"auto"`` (the default outside any ``with``): on CPU, the sparse path when
        :func:`sparse_cost_ratio` says it is cheaper, else dense; dense on other
        devices. ``"sparse"``: always the sparse path (for Linear and
        convolutions; other layers are always dense). ``"dense"``: never.

    Examples
    --------
    >>> fc = nn.Linear(3, 2, bias=False)
    >>> pre, post = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.0, 1.0]])
    >>> with sparse_mode("sparse"):
    ...     correlate(fc, pre, post)
    tensor([[0., 0., 0.],
            [1., 0., 2.]])
    >>> get_sparse_mode()
    'auto'
    """
    token = _MODE.set(check_choice("mode", mode, SPARSE_MODES))
    try:
        yield
    finally:
        _MODE.reset(token)


def get_sparse_mode() -> str:
    """The mode set by the innermost :func:`sparse_mode` (``"auto"`` by default)."""
    return _MODE.get()


def correlate(layer: nn.Module, pre: Tensor, post: Tensor, *, sparse: bool | None = None) -> Tensor:
    r"""Correlate ``pre`` (shaped like the layer's input) with ``post`` (like its output).

    Returns :math:`\sum_n \partial \langle \text{post}_n, f(\text{pre}_n; W)\rangle / \partial W`,
    a tensor shaped like ``layer.weight``, summed over every sample (batch and,
    when time is folded into the batch, time).

    Parameters
    ----------
    layer : nn.Module
        ``nn.Linear``, ``nn.Conv{1,2,3}d`` (any stride, padding, padding mode,
        dilation, groups), ``nn.ConvTranspose{1,2,3}d``, or any module with a
        ``weight`` whose output is linear in it (handled by ``torch.func.vjp``).
    pre : Tensor
        Presynaptic factor, e.g. spike traces, shaped as the layer's input. For
        Linear and convolutions any number of leading sample dimensions is
        allowed (``[T, B, ...]`` included); other modules get ``pre`` as it is.
    post : Tensor
        Postsynaptic factor, shaped as the layer's output for ``pre``.
    sparse : bool, optional
        ``True``: sum over the non-zeros of the sparser factor (Linear and
        convolutions; see the module docstring); ``False``: dense GEMM /
        convolution weight gradient; ``None`` (default): as :func:`sparse_mode` says.

    Returns
    -------
    Tensor
        Shaped like ``layer.weight`` (contiguous).

    Examples
    --------
    >>> fc = nn.Linear(3, 2, bias=False)
    >>> pre = torch.tensor([[1.0, 0.0, 2.0]])
    >>> post = torch.tensor([[0.0, 1.0]])
    >>> correlate(fc, pre, post)
    tensor([[0., 0., 0.],
            [1., 0., 2.]])
    >>> torch.equal(correlate(fc, pre, post, sparse=True), correlate(fc, pre, post, sparse=False))
    True
    """
    weight = _weight_of(layer)
    if isinstance(layer, nn.Linear):
        _check_linear(layer, pre, post)
        pre = pre.reshape(-1, layer.in_features)
        post = post.reshape(-1, layer.out_features)
        side = _choose_path(sparse, post, pre, weight.shape, 1, 1)
        if side is None:
            return post.t() @ pre
        return _sparse_weight_grad(post, pre, _Geometry.linear(weight.shape), side, None)
    if isinstance(layer, _CONV + _CONV_T):
        pre, post = _conv_samples(layer, pre, post)
        geometry = _Geometry.conv(layer, weight.shape, layer.groups, pre, post)
        side = _choose_path(
            sparse,
            geometry.a_of(pre, post),
            geometry.b_of(pre, post),
            weight.shape,
            geometry.positions,
            geometry.kernel_size,
        )
        if side is None:
            return _conv_weight_grad(
                layer, pre, post, groups=layer.groups, weight_shape=weight.shape
            )
        a, b = geometry.a_of(pre, post), geometry.b_of(pre, post)
        return _sparse_weight_grad(a, b, geometry, side, None)
    return _vjp_correlate(layer, pre, post)


def correlate_per_sample(
    layer: nn.Module, pre: Tensor, post: Tensor, *, sparse: bool | None = None
) -> Tensor:
    r"""Like :func:`correlate` but keeps the batch: ``[T, B, ...]`` in, ``[B, *W.shape]`` out.

    Sums over time only. This materialises one weight-shaped tensor per sample,
    so use it only where the math needs per-sample terms (a non-linear batch
    reduction, or a per-sample eligibility carried across windows).

    Parameters
    ----------
    pre, post : Tensor
        ``[T, B, *in]`` and ``[T, B, *out]`` (a single step is ``T = 1``).
    sparse : bool, optional
        As in :func:`correlate`.

    Examples
    --------
    >>> fc = nn.Linear(2, 1, bias=False)
    >>> pre = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # T=1, B=2
    >>> post = torch.tensor([[[1.0], [3.0]]])
    >>> correlate_per_sample(fc, pre, post)
    tensor([[[1., 0.]],
    <BLANKLINE>
            [[0., 3.]]])
    """
    weight = _weight_of(layer)
    if pre.dim() < 2 or post.dim() < 2 or pre.shape[:2] != post.shape[:2]:
        raise ValueError(
            "correlate_per_sample expects pre [T, B, ...] and post [T, B, ...] with equal T and B, "
            f"got pre {tuple(pre.shape)} and post {tuple(post.shape)}"
        )
    steps, batch = pre.shape[:2]
    if isinstance(layer, nn.Linear):
        _check_linear(layer, pre, post)
        pre_f = pre.reshape(steps * batch, -1)
        post_f = post.reshape(steps * batch, -1)
        side = _choose_path(sparse, post_f, pre_f, weight.shape, 1, 1)
        if side is not None:
            return _sparse_weight_grad(post_f, pre_f, _Geometry.linear(weight.shape), side, batch)
        return torch.einsum(
            "tbo,tbi->boi", post.reshape(steps, batch, -1), pre.reshape(steps, batch, -1)
        )
    if isinstance(layer, _CONV + _CONV_T):
        pre_f, post_f = _conv_samples(layer, pre.flatten(0, 1), post.flatten(0, 1))
        geometry = _Geometry.conv(layer, weight.shape, layer.groups, pre_f, post_f)
        a, b = geometry.a_of(pre_f, post_f), geometry.b_of(pre_f, post_f)
        side = _choose_path(sparse, a, b, weight.shape, geometry.positions, geometry.kernel_size)
        if side is not None:
            return _sparse_weight_grad(a, b, geometry, side, batch)
        # Each sample becomes its own group: channels [B * C] with groups B * g,
        # and time plays the role of the batch that the weight gradient sums over.
        pre_s = pre_f.reshape(steps, batch, *pre_f.shape[1:]).flatten(1, 2)
        post_s = post_f.reshape(steps, batch, *post_f.shape[1:]).flatten(1, 2)
        shape = (batch * weight.shape[0], *weight.shape[1:])
        grad = _conv_weight_grad(
            layer, pre_s, post_s, groups=batch * layer.groups, weight_shape=shape
        )
        return grad.reshape(batch, *weight.shape)
    return torch.func.vmap(lambda p, q: _vjp_correlate(layer, p, q), in_dims=1)(pre, post)


def sparse_cost_ratio(
    density: float, row_length: int, *, kernel_size: int = 1, dense_positions: int = 1
) -> float:
    r"""Estimated cost of the sparse path relative to the dense one (< 1: sparse is cheaper).

    The dense correlation costs one multiply-add per sample, output unit,
    position, kernel offset and input channel; the sparse path costs, per
    non-zero of the sparse factor and kernel offset, one looked-up row of
    ``row_length`` values plus a fixed overhead:

    .. math::

        \frac{\rho\, K\, (L + c_0)\, c_1}{K L} = \rho\, c_1 (1 + c_0 / L)

    with :math:`\rho` the density of the sparse factor, :math:`L` the row length
    (the other factor's channels per group), :math:`c_0, c_1` calibrated on CPU
    (``_ROW_OVERHEAD``, ``_SPARSE_MAC_COST``). ``kernel_size`` and
    ``dense_positions`` are accepted for the record; they cancel out.

    Examples
    --------
    >>> round(sparse_cost_ratio(0.02, 784), 3)  # LTP of STDP 784 -> 400 at 2 % post spikes
    0.062
    """
    del kernel_size, dense_positions
    return density * _SPARSE_MAC_COST * (1.0 + _ROW_OVERHEAD / max(row_length, 1))


def _choose_path(
    sparse: bool | None,
    a: Tensor,
    b: Tensor,
    weight_shape: torch.Size,
    positions: int,
    kernel_size: int,
) -> str | None:
    """``"a"`` or ``"b"`` (the side whose non-zeros the sparse path walks) or ``None`` (dense)."""
    if sparse is None:
        mode = _MODE.get()
        if mode == "dense" or (mode == "auto" and a.device.type != "cpu"):
            return None
        sparse = True if mode == "sparse" else None
    elif not isinstance(sparse, bool):
        raise TypeError(f"sparse must be None, True or False, got {sparse!r}")
    if sparse is False or a.numel() == 0 or b.numel() == 0:
        return None
    nnz_a = int(torch.count_nonzero(a))
    nnz_b = int(torch.count_nonzero(b))
    # Row lengths: a-side lookups read the b factor's channels per group (the
    # weight's second dimension), b-side lookups the a factor's per group.
    groups = max(1, b.shape[1] // weight_shape[1]) if b.dim() > 1 else 1
    len_a, len_b = weight_shape[1], max(1, weight_shape[0] // groups)
    ratio_a = sparse_cost_ratio(nnz_a / a.numel(), len_a)
    ratio_b = sparse_cost_ratio(nnz_b / b.numel(), len_b)
    side, ratio = ("a", ratio_a) if ratio_a <= ratio_b else ("b", ratio_b)
    if sparse is None and ratio >= 1.0:
        return None
    return side


class _Geometry:
    """Index geometry of ``C[m, c, k] = sum_{n,p} A[n, m, p] B[n, g(m) Cg + c, p s + k d - pad]``."""

    def __init__(
        self, weight_shape, groups, stride, padding, dilation, a_is_post, p_shape, q_shape
    ):
        self.weight_shape = tuple(weight_shape)
        self.groups = groups
        self.stride = tuple(stride)
        self.padding = tuple(padding)
        self.dilation = tuple(dilation)
        self.a_is_post = a_is_post
        self.p_shape = tuple(p_shape)  # spatial shape of A
        self.q_shape = tuple(q_shape)  # spatial shape of B
        self.kernel = self.weight_shape[2:]
        self.kernel_size = math.prod(self.kernel)
        self.positions = math.prod(self.p_shape)

    @classmethod
    def linear(cls, weight_shape) -> _Geometry:
        return cls(weight_shape, 1, (), (), (), True, (), ())

    @classmethod
    def conv(cls, layer, weight_shape, groups, pre, post) -> _Geometry:
        spatial = len(weight_shape) - 2
        transposed = isinstance(layer, _CONV_T)
        explicit_pad = isinstance(layer.padding, str) or layer.padding_mode != "zeros"
        padding = (0,) * spatial if explicit_pad else tuple(layer.padding)
        a, b = (pre, post) if transposed else (post, pre)
        geometry = cls(
            weight_shape,
            groups,
            layer.stride,
            padding,
            layer.dilation,
            not transposed,
            a.shape[2:],
            b.shape[2:],
        )
        geometry.check(layer, pre, post, transposed)
        return geometry

    def check(self, layer, pre, post, transposed) -> None:
        """Raise like the dense path if ``post`` is not the layer's output shape for ``pre``."""
        a_shape, b_shape = (pre.shape, post.shape) if transposed else (post.shape, pre.shape)
        ok = a_shape[0] == b_shape[0] and b_shape[1] == self.weight_shape[1] * self.groups
        ok = ok and a_shape[1] == self.weight_shape[0]
        for p, q, k, s, d, pad, extra in zip(
            self.p_shape,
            self.q_shape,
            self.kernel,
            self.stride,
            self.dilation,
            self.padding,
            layer.output_padding if transposed else (0,) * len(self.kernel),
        ):
            if transposed:
                ok = ok and q == (p - 1) * s - 2 * pad + d * (k - 1) + extra + 1
            else:
                ok = ok and p == (q + 2 * pad - d * (k - 1) - 1) // s + 1 and p > 0
        if not ok:
            raise ValueError(
                f"post {tuple(post.shape)} is not the output shape of {layer} for pre "
                f"{tuple(pre.shape)}"
            )

    def a_of(self, pre: Tensor, post: Tensor) -> Tensor:
        return post if self.a_is_post else pre

    def b_of(self, pre: Tensor, post: Tensor) -> Tensor:
        return pre if self.a_is_post else post


def _unravel(flat: Tensor, shape: tuple[int, ...]) -> list[Tensor]:
    """Multi-index of flat positions into ``shape`` (row-major), one tensor per dimension."""
    out = []
    for size in reversed(shape):
        out.append(flat % size)
        flat = flat // size
    return out[::-1]


def _segment_sum(
    rows: Tensor, bags: Tensor, values: Tensor, table: Tensor, num_bags: int
) -> Tensor:
    """``out[j] = sum_{l: bags[l] = j} values[l] * table[rows[l]]`` with ``bags`` sorted."""
    counts = torch.bincount(bags, minlength=num_bags)
    offsets = torch.zeros(num_bags + 1, dtype=torch.long, device=bags.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    return F.embedding_bag(
        rows,
        table,
        offsets,
        mode="sum",
        per_sample_weights=values.to(table.dtype),
        include_last_offset=True,
    )


def _sparse_weight_grad(
    a: Tensor, b: Tensor, geo: _Geometry, side: str, batch: int | None
) -> Tensor:
    r"""``C`` of :class:`_Geometry` from the non-zeros of ``a`` (side ``"a"``) or ``b``.

    ``a`` is ``[N, M, *P]``, ``b`` is ``[N, G Cg, *Q]``; with ``batch`` the samples
    are ``N = T B`` (time-major) and the result is per sample, ``[B, M, Cg, *K]``.
    """
    m_total, c_group = geo.weight_shape[:2]
    groups = geo.groups
    m_group = m_total // groups
    kernel, spatial = geo.kernel, len(geo.kernel)
    k_total = geo.kernel_size
    samples = a.shape[0]
    per = batch if batch is not None else 1
    sparse_t, dense_t = (a, b) if side == "a" else (b, a)
    channels = sparse_t.shape[1]  # M for side a, G Cg for side b
    own_shape = geo.p_shape if side == "a" else geo.q_shape
    other_shape = geo.q_shape if side == "a" else geo.p_shape
    own_pos, other_pos = math.prod(own_shape), math.prod(other_shape)
    row_length = c_group if side == "a" else m_group
    dtype = torch.promote_types(a.dtype, b.dtype)

    # Non-zeros of the sparse factor, ordered by (sample, channel) so bags are contiguous.
    flat_sparse = sparse_t.reshape(-1)
    flat = flat_sparse.nonzero().squeeze(1)
    values = flat_sparse[flat]
    position = flat % own_pos
    channel = (flat // own_pos) % channels
    sample = flat // (own_pos * channels)
    owner = channel if batch is None else (sample % per) * channels + channel
    owner, order = torch.sort(owner, stable=True)
    sample, channel, position, values = (
        sample[order],
        channel[order],
        position[order],
        values[order],
    )

    # Table: the dense factor channels-last, one row per (sample, group, position).
    table = (
        dense_t.reshape(samples, groups, row_length, other_pos)
        .transpose(2, 3)
        .reshape(samples * groups * other_pos, row_length)
        .to(dtype)
    )
    if not table.is_contiguous():
        table = table.contiguous()
    group = channel // (m_group if side == "a" else c_group)
    base = (sample * groups + group) * other_pos  # [nnz]

    num_owners = per * channels
    if spatial == 0:
        rows, bags, weights = base, owner, values
    else:
        offsets = torch.stack(
            torch.meshgrid(*[torch.arange(k, device=a.device) for k in kernel], indexing="ij")
        ).reshape(spatial, k_total)  # [spatial, K]
        own_idx = _unravel(position, own_shape)
        valid = None
        other_idx = []
        for j in range(spatial):
            s, d, pad = geo.stride[j], geo.dilation[j], geo.padding[j]
            kd = offsets[j][:, None] * d  # [K, 1]
            if side == "a":  # q = p s + k d - pad
                q = own_idx[j][None, :] * s + kd - pad
                ok = (q >= 0) & (q < other_shape[j])
            else:  # p s = q + pad - k d
                num = own_idx[j][None, :] + pad - kd
                q = torch.div(num, s, rounding_mode="floor")
                ok = (num >= 0) & (num % s == 0) & (q < other_shape[j])
            valid = ok if valid is None else valid & ok
            other_idx.append(q)
        other_flat = other_idx[0]
        for j in range(1, spatial):
            other_flat = other_flat * other_shape[j] + other_idx[j]
        k_index = torch.arange(k_total, device=a.device)[:, None]
        rows = (base[None, :] + other_flat)[valid]
        bags = (k_index * num_owners + owner[None, :]).expand(k_total, -1)[valid]
        weights = values[None, :].expand(k_total, -1)[valid]
    out = _segment_sum(rows, bags, weights, table, k_total * num_owners)
    # out: [K, per, channels, row_length] -> [per, M, Cg, K]
    out = out.reshape(k_total, per, channels, row_length)
    if side == "a":  # channels = M, row_length = Cg
        out = out.permute(1, 2, 3, 0)
    else:  # channels = G Cg, row_length = M/G
        out = out.reshape(k_total, per, groups, c_group, m_group).permute(1, 2, 4, 3, 0)
    out = out.reshape(per, m_total, c_group, *kernel).contiguous()
    if spatial == 0:
        out = out.reshape(per, m_total, c_group)
    return out if batch is not None else out[0]


def _weight_of(layer: nn.Module) -> Tensor:
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, Tensor):
        raise TypeError(
            f"layer must have a tensor attribute 'weight', {type(layer).__name__} has "
            f"{type(weight).__name__}"
        )
    return weight


def _check_linear(layer: nn.Linear, pre: Tensor, post: Tensor) -> None:
    if (
        pre.shape[-1] != layer.in_features
        or post.shape[-1] != layer.out_features
        or pre.shape[:-1] != post.shape[:-1]
    ):
        raise ValueError(
            f"Linear({layer.in_features}, {layer.out_features}) needs pre [..., "
            f"{layer.in_features}] and post [..., {layer.out_features}] with the same leading "
            f"shape, got pre {tuple(pre.shape)} and post {tuple(post.shape)}"
        )


def _conv_samples(layer: nn.Module, pre: Tensor, post: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten leading sample dims to ``[N, C, *spatial]`` and apply non-zero padding modes."""
    spatial = layer.weight.dim() - 2
    rank = spatial + 2
    in_channels, out_channels = layer.in_channels, layer.out_channels
    if (
        pre.dim() < rank - 1
        or pre.dim() != post.dim()
        or pre.shape[: pre.dim() - rank + 1] != post.shape[: post.dim() - rank + 1]
        or pre.shape[-spatial - 1] != in_channels
        or post.shape[-spatial - 1] != out_channels
    ):
        raise ValueError(
            f"{type(layer).__name__}({in_channels}, {out_channels}) needs pre [..., {in_channels}, "
            f"*spatial] and post [..., {out_channels}, *spatial] with the same leading shape, "
            f"got pre {tuple(pre.shape)} and post {tuple(post.shape)}"
        )
    pre = pre.reshape(-1, *pre.shape[-spatial - 1 :])
    post = post.reshape(-1, *post.shape[-spatial - 1 :])
    if isinstance(layer, _CONV) and (
        isinstance(layer.padding, str) or layer.padding_mode != "zeros"
    ):
        mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        pre = F.pad(pre, layer._reversed_padding_repeated_twice, mode=mode)
    return pre, post


def _conv_weight_grad(
    layer: nn.Module, pre: Tensor, post: Tensor, *, groups: int, weight_shape: tuple[int, ...]
) -> Tensor:
    spatial = len(weight_shape) - 2
    transposed = isinstance(layer, _CONV_T)
    explicit_pad = (
        isinstance(layer.padding, str) or getattr(layer, "padding_mode", "zeros") != "zeros"
    )
    padding = [0] * spatial if explicit_pad else list(layer.padding)
    output_padding = list(layer.output_padding) if transposed else [0] * spatial
    weight = post.new_empty(1).expand(weight_shape)
    try:
        return torch.ops.aten.convolution_backward(
            post,
            pre,
            weight,
            None,
            list(layer.stride),
            padding,
            list(layer.dilation),
            transposed,
            output_padding,
            groups,
            (False, True, False),
        )[1]
    except RuntimeError as error:
        raise ValueError(
            f"post {tuple(post.shape)} is not the output shape of {layer} for pre "
            f"{tuple(pre.shape)}: {error}"
        ) from error


def _vjp_correlate(layer: nn.Module, pre: Tensor, post: Tensor) -> Tensor:
    weight = layer.weight.detach()

    def forward(w: Tensor) -> Tensor:
        return torch.func.functional_call(layer, {"weight": w}, (pre,))

    with torch.enable_grad():
        out, pullback = torch.func.vjp(forward, weight)
    if out.shape != post.shape:
        raise ValueError(
            f"post has shape {tuple(post.shape)} but {type(layer).__name__} maps pre "
            f"{tuple(pre.shape)} to {tuple(out.shape)}"
        )
    return pullback(post.to(out.dtype))[0]
