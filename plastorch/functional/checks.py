"""Argument and tensor checks shared by the whole package.

Every check raises ``ValueError`` or ``TypeError`` with a message that names the
argument and shows the offending value or shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import torch
from torch import Tensor

__all__ = [
    "check_choice",
    "check_finite",
    "check_nonnegative",
    "check_positive",
    "check_real",
    "check_same_device_dtype",
]


def check_real(name: str, value: float) -> float:
    """Return ``value`` as a finite float, raising naming ``name`` otherwise."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as a float, raising naming ``name`` unless it is finite and > 0."""
    value = check_real(name, value)
    if value <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def check_nonnegative(name: str, value: float) -> float:
    """Return ``value`` as a float, raising naming ``name`` unless it is finite and >= 0."""
    value = check_real(name, value)
    if value < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """Return the lower-cased ``value``, raising naming ``name`` unless it is one of ``choices``."""
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value.lower()


def check_finite(name: str, tensor: Tensor) -> Tensor:
    """Raise ``ValueError`` naming ``name`` if ``tensor`` holds NaN or inf.

    A NaN or an infinity makes the sum non-finite, so a finite sum (one pass, no
    temporary) proves every entry finite; only a non-finite sum (a bad entry, or
    an overflow of the sum itself) pays for the elementwise test.
    """
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return tensor
    if math.isfinite(tensor.sum().item()):
        return tensor
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or inf (shape {tuple(tensor.shape)})")
    return tensor


def check_same_device_dtype(name: str, tensor: Tensor, reference: Tensor, ref_name: str) -> None:
    """Raise ``ValueError`` if ``tensor`` and ``reference`` differ in device or floating dtype."""
    if tensor.device != reference.device:
        raise ValueError(
            f"{name} is on {tensor.device} but {ref_name} is on {reference.device}; "
            "move them to the same device"
        )
    if tensor.is_floating_point() and tensor.dtype != reference.dtype:
        raise ValueError(
            f"{name} has dtype {tensor.dtype} but {ref_name} has dtype {reference.dtype}"
        )
