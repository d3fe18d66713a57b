"""The result of a plasticity rule: a weight change split into potentiation and depression."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

__all__ = ["Deferred", "Update", "add_optional"]


class Deferred(Protocol):
    """Work that computes an update's halves on demand (see :meth:`Update.deferred`)."""

    def halves(self) -> tuple[Tensor | None, Tensor | None]:
        """``(potentiation, depression)``, each non-negative or ``None``."""

    def delta(self) -> Tensor | None:
        """``potentiation - depression``, by the cheapest route (``None`` when empty)."""

    def scaled(self, factor: float) -> Deferred:
        """The same work with both halves times a non-negative ``factor``."""


class Update:
    """A weight update split into its two non-negative halves.

    ``potentiation`` and ``depression`` are shaped like the weight (``None``
    when a half is empty); the change is ``potentiation - depression``.

    A rule may return a *deferred* update (:meth:`deferred`): its halves are
    computed on first access, while :meth:`delta` alone (what a learner
    without weight dependence needs) may take a cheaper route, e.g. one fused
    correlation of all terms instead of one per half. Both routes compute the
    same sum; only the order of additions differs.

    Examples
    --------
    >>> u = Update(torch.tensor([2.0]), torch.tensor([0.5]))
    >>> u.delta()
    tensor([1.5000])
    >>> u.potentiation
    tensor([2.])
    """

    __slots__ = ("_potentiation", "_depression", "_deferred")

    def __init__(self, potentiation: Tensor | None = None, depression: Tensor | None = None):
        self._potentiation = potentiation
        self._depression = depression
        self._deferred: Deferred | None = None

    @classmethod
    def deferred(cls, work: Deferred) -> Update:
        """An update whose halves ``work`` computes when they are first read."""
        update = cls()
        update._deferred = work
        return update

    @property
    def is_deferred(self) -> bool:
        """Whether the halves are still to be computed."""
        return self._deferred is not None

    def _materialize(self) -> None:
        if self._deferred is not None:
            self._potentiation, self._depression = self._deferred.halves()
            self._deferred = None

    @property
    def potentiation(self) -> Tensor | None:
        """The non-negative potentiation half (``None`` when empty)."""
        self._materialize()
        return self._potentiation

    @property
    def depression(self) -> Tensor | None:
        """The non-negative depression half (``None`` when empty)."""
        self._materialize()
        return self._depression

    @property
    def empty(self) -> bool:
        """True for the zero update (no half, nothing deferred)."""
        return self._deferred is None and self._potentiation is None and self._depression is None

    def delta(self) -> Tensor | None:
        """``potentiation - depression`` (``None`` when both halves are empty).

        A deferred update computes it without forming the halves.
        """
        if self._deferred is not None:
            return self._deferred.delta()
        if self._potentiation is None:
            return None if self._depression is None else -self._depression
        if self._depression is None:
            return self._potentiation
        return self._potentiation - self._depression

    def delta_like(self, target: Tensor) -> Tensor:
        """:meth:`delta` as a tensor in ``target``'s dtype; zeros shaped like it when empty.

        Examples
        --------
        >>> Update().delta_like(torch.ones(2, dtype=torch.float64))
        tensor([0., 0.], dtype=torch.float64)
        """
        delta = self.delta()
        if delta is None:
            return torch.zeros_like(target)
        return delta if delta.dtype == target.dtype else delta.to(target.dtype)

    def __add__(self, other: Update) -> Update:
        if self.empty:
            return other
        if other.empty:
            return self
        return Update(
            add_optional(self.potentiation, other.potentiation),
            add_optional(self.depression, other.depression),
        )

    def scale(self, factor: float) -> Update:
        """Both halves times a non-negative ``factor`` (``self`` itself when it is 1)."""
        if factor == 1.0:
            return self
        if self._deferred is not None:
            return Update.deferred(self._deferred.scaled(factor))
        return Update(
            None if self._potentiation is None else self._potentiation * factor,
            None if self._depression is None else self._depression * factor,
        )

    def __repr__(self) -> str:
        if self._deferred is not None:
            return f"Update(deferred={self._deferred!r})"
        return f"Update(potentiation={self._potentiation!r}, depression={self._depression!r})"


def add_optional(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """``a + b`` where ``None`` stands for zero."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b
