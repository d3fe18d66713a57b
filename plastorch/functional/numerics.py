r"""Keeping subnormal numbers out of the state that recursions carry.

A trace or an eligibility of a neuron that stops firing decays geometrically:
after :math:`\ln(1/\text{tiny})\,\tau/\Delta t` steps (about 1750 steps for float32
at :math:`\tau = 20\,\Delta t`, 88 at :math:`\tau = \Delta t`) it falls below the
smallest normal number of its dtype. x86 CPUs compute with such *subnormal*
numbers through a microcode assist, 10-100x slower than with normal ones, and
every GEMM and elementwise pass that reads them slows down with them. Worse,
rounding keeps a decaying value at the smallest subnormal forever
(:math:`2^{-149} \cdot 0.95` rounds back to :math:`2^{-149}`), so the slow state
never leaves: a 784->400 STDP step at batch 64 took 13 ms instead of 0.86 ms after
2500 steps in which a quarter of its neurons stayed silent.

The recursions therefore flush: on CPU, in float32, float64 and bfloat16, a
value decayed below the smallest normal number is stored as zero. Such a value
is below :math:`10^{-37}` (float32) of a trace whose spikes add 1, so no update
that reads it changes by more than that times a learning rate. float16 is left
alone (CPU kernels compute it in float32, where its subnormals are normal), and
so are other devices (GPUs compute with subnormal numbers at full speed).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

__all__ = ["FLUSHED_DTYPES", "flush_subnormal_", "flushes", "largest_subnormal"]

FLUSHED_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64, torch.bfloat16)


@functools.lru_cache(maxsize=8)
def largest_subnormal(dtype: torch.dtype) -> float:
    """The largest subnormal number of ``dtype``: everything up to it in magnitude is flushed.

    Examples
    --------
    >>> largest_subnormal(torch.float32) < torch.finfo(torch.float32).tiny
    True
    """
    tiny = torch.tensor(torch.finfo(dtype).tiny, dtype=dtype)
    return float(torch.nextafter(tiny, torch.zeros((), dtype=dtype)))


def flushes(x: Tensor) -> bool:
    """Whether :func:`flush_subnormal_` changes anything in ``x`` (a CPU float32,
    float64 or bfloat16 tensor)."""
    return x.dtype in FLUSHED_DTYPES and x.device.type == "cpu"


def flush_subnormal_(x: Tensor) -> Tensor:
    """Set the subnormal entries of ``x`` to zero, in place; returns ``x``.

    Entries whose magnitude is below the smallest normal number of the dtype
    (``torch.finfo(dtype).tiny``) become 0; normal numbers, zeros, infinities and
    NaN are kept. One elementwise pass; a no-op where :func:`flushes` is false. A
    tensor that requires grad gets a new (differentiable) tensor back instead.

    Examples
    --------
    >>> x = torch.tensor([1.0, 1e-39, -1e-40, 0.0])
    >>> flush_subnormal_(x) is x, x.tolist()
    (True, [1.0, 0.0, 0.0, 0.0])
    """
    if not flushes(x) or x.numel() == 0:
        return x
    if x.requires_grad:
        return torch.hardshrink(x, largest_subnormal(x.dtype))
    # hardshrink: 0 where |x| <= lambda, x elsewhere (NaN fails both comparisons: kept)
    return torch.hardshrink(x, largest_subnormal(x.dtype), out=x)
