"""The result of a plasticity rule: a weight change split into potentiation and depression."""

from __future__ import annotations

from dataclasses import dataclass

import torch  # noqa: F401  (used in the doctest)
from torch import Tensor

__all__ = ["Update", "add_optional"]


@dataclass
class Update:
    """A weight update split into its two non-negative halves.

    ``potentiation`` and ``depression`` are shaped like the weight (``None``
    when a half is empty); the change is ``potentiation - depression``.

    Examples
    --------
    >>> u = Update(torch.tensor([2.0]), torch.tensor([0.5]))
    >>> u.delta()
    tensor([1.5000])
    """

    potentiation: Tensor | None = None
    depression: Tensor | None = None

    def delta(self) -> Tensor | None:
        """``potentiation - depression`` (``None`` when both halves are empty)."""
        if self.potentiation is None:
            return None if self.depression is None else -self.depression
        if self.depression is None:
            return self.potentiation
        return self.potentiation - self.depression

    def __add__(self, other: Update) -> Update:
        return Update(
            add_optional(self.potentiation, other.potentiation),
            add_optional(self.depression, other.depression),
        )

    def scale(self, factor: float) -> Update:
        """Both halves times a non-negative ``factor`` (``self`` itself when it is 1)."""
        if factor == 1.0:
            return self
        return Update(
            None if self.potentiation is None else self.potentiation * factor,
            None if self.depression is None else self.depression * factor,
        )


def add_optional(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """``a + b`` where ``None`` stands for zero."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b
