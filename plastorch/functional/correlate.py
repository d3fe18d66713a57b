r"""Correlation of a presynaptic and a postsynaptic factor, mapped onto a weight.

For a layer :math:`y = f(x; W)` linear in :math:`W`, every pair-based plasticity
term is

.. math:: C(a, b) = \sum_n \frac{\partial \langle b_n, f(a_n; W)\rangle}{\partial W}

i.e. the weight gradient of the layer at input :math:`a` with upstream gradient
:math:`b`. For ``nn.Linear`` that is :math:`b^\top a` (one GEMM); for
convolutions it is the convolution weight gradient, which already handles every
stride, padding, dilation and group layout without a Python loop over kernel
positions; for any other module it is ``torch.func.vjp`` of ``W -> f(a; W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["correlate", "correlate_per_sample"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def correlate(layer: nn.Module, pre: Tensor, post: Tensor) -> Tensor:
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

    Returns
    -------
    Tensor
        Shaped like ``layer.weight``.

    Examples
    --------
    >>> fc = nn.Linear(3, 2, bias=False)
    >>> pre = torch.tensor([[1.0, 0.0, 2.0]])
    >>> post = torch.tensor([[0.0, 1.0]])
    >>> correlate(fc, pre, post)
    tensor([[0., 0., 0.],
            [1., 0., 2.]])
    """
    weight = _weight_of(layer)
    if isinstance(layer, nn.Linear):
        _check_linear(layer, pre, post)
        return post.reshape(-1, layer.out_features).t() @ pre.reshape(-1, layer.in_features)
    if isinstance(layer, _CONV + _CONV_T):
        pre, post = _conv_samples(layer, pre, post)
        return _conv_weight_grad(layer, pre, post, groups=layer.groups, weight_shape=weight.shape)
    return _vjp_correlate(layer, pre, post)


def correlate_per_sample(layer: nn.Module, pre: Tensor, post: Tensor) -> Tensor:
    r"""Like :func:`correlate` but keeps the batch: ``[T, B, ...]`` in, ``[B, *W.shape]`` out.

    Sums over time only. This materialises one weight-shaped tensor per sample,
    so use it only where the math needs per-sample terms (a non-linear batch
    reduction, or a per-sample eligibility carried across windows).

    Parameters
    ----------
    pre, post : Tensor
        ``[T, B, *in]`` and ``[T, B, *out]`` (a single step is ``T = 1``).

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
        return torch.einsum(
            "tbo,tbi->boi", post.reshape(steps, batch, -1), pre.reshape(steps, batch, -1)
        )
    if isinstance(layer, _CONV + _CONV_T):
        # Each sample becomes its own group: channels [B * C] with groups B * g,
        # and time plays the role of the batch that the weight gradient sums over.
        pre_s, post_s = _conv_samples(layer, pre.flatten(0, 1), post.flatten(0, 1))
        pre_s = pre_s.reshape(steps, batch, *pre_s.shape[1:]).flatten(1, 2)
        post_s = post_s.reshape(steps, batch, *post_s.shape[1:]).flatten(1, 2)
        shape = (batch * weight.shape[0], *weight.shape[1:])
        grad = _conv_weight_grad(
            layer, pre_s, post_s, groups=batch * layer.groups, weight_shape=shape
        )
        return grad.reshape(batch, *weight.shape)
    return torch.func.vmap(lambda p, q: _vjp_correlate(layer, p, q), in_dims=1)(pre, post)


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
