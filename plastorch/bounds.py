r"""Weight dependence and weight constraints.

A bound turns an :class:`~plastorch.rules.Update` into the change actually made
to the weight :math:`w` *as it is when the update is applied*:

.. math:: \Delta w = A_+(w)\,\text{potentiation} - A_-(w)\,\text{depression}

then clips the change so that :math:`w + \Delta w \in [w_\min, w_\max]` (for
every bound, whatever the update size). With a ``.grad`` update and
``torch.optim.SGD(lr=1)`` that is exactly the weight the optimizer writes.

=============  ==================================  ==================================
bound          :math:`A_+(w)`                      :math:`A_-(w)`
=============  ==================================  ==================================
Hard           1                                   1
Soft           :math:`w_\max - w`                  :math:`w - w_\min`
PowerLaw       :math:`(w_\max - w)^\mu`            :math:`(w - w_\min)^\mu`
Exponential    :math:`e^{-\beta (w - w_\min)}`     :math:`e^{-\beta (w_\max - w)}`
=============  ==================================  ==================================

Constraints (:class:`Normalize`) act on the weight after it has changed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .functional import compiled
from .functional.checks import check_nonnegative, check_positive, check_real
from .functional.update import Update

__all__ = ["Bound", "Exponential", "Hard", "Normalize", "PowerLaw", "Soft"]


class Bound:
    """Base class: weight range ``[wmin, wmax]`` and the clipping of the change.

    Subclasses override :meth:`dependence` to return :math:`(A_+(w), A_-(w))`.
    """

    def __init__(self, wmin: float = 0.0, wmax: float = 1.0, *, clip: bool = True):
        self.wmin = check_real("wmin", wmin)
        self.wmax = check_real("wmax", wmax)
        if self.wmin >= self.wmax:
            raise ValueError(f"wmin must be < wmax, got wmin={self.wmin!r}, wmax={self.wmax!r}")
        self.clip = bool(clip)

    def dependence(self, weight: Tensor) -> tuple[Tensor | float, Tensor | float]:
        """Factors :math:`A_+(w)` and :math:`A_-(w)` (broadcastable to ``weight``)."""
        return 1.0, 1.0

    @property
    def reads_halves(self) -> bool:
        """Whether the bound reads the update's halves (it has a weight dependence), or
        only its net change (:class:`Hard`).

        Examples
        --------
        >>> Hard().reads_halves, Soft().reads_halves
        (False, True)
        """
        return type(self).dependence is not Bound.dependence

    def __call__(self, weight: Tensor, update: Update) -> Tensor:
        """The change to make to ``weight`` for ``update``, shaped like ``weight``.

        Examples
        --------
        >>> w = torch.tensor([0.2, 0.9])
        >>> Soft(0.0, 1.0)(w, Update(torch.tensor([1.0, 1.0]), None))
        tensor([0.8000, 0.1000])
        """
        weight = weight.detach()
        if not self.reads_halves:
            # no weight dependence: the net change is all that is needed, which a
            # deferred update computes without forming its halves
            delta = update.delta_like(weight)
            return self.clip_change(weight, delta) if self.clip else delta
        halves = (update.potentiation, update.depression)
        kind = _INLINE.get(type(self).dependence, compiled.FACTORS)
        factors = self.dependence(weight) if kind == compiled.FACTORS else None
        if _compiles(weight, (*halves, *(factors or ()))):
            # one pass instead of the dozen below
            delta = compiled._weight_change_unchecked(
                weight, *halves, self.wmin, self.wmax, kind, factors, self.clip
            )
            if delta is not None:
                return delta
        delta = self._combine(weight, *halves, factors)
        return _clip_delta(weight, delta, self.wmin, self.wmax) if self.clip else delta

    def clip_change(self, weight: Tensor, delta: Tensor) -> Tensor:
        """``delta`` clipped so that ``weight + delta``, as floating point adds it, lies
        in ``[wmin, wmax]`` (a new tensor; for subclasses that form their own change).

        Examples
        --------
        >>> Hard(0.0, 1.0).clip_change(torch.tensor([0.5, 0.5]), torch.tensor([0.25, 2.0]))
        tensor([0.2500, 0.5000])
        """
        weight = weight.detach()
        delta = delta.detach()
        if delta.dtype != weight.dtype:
            delta = delta.to(weight.dtype)
        if _compiles(weight, (delta,)):
            clipped = compiled._weight_change_unchecked(
                weight, delta, None, self.wmin, self.wmax, compiled.HARD, None, True
            )
            if clipped is not None:
                return clipped
        return _clip_delta(weight, delta, self.wmin, self.wmax)

    def _combine(self, weight: Tensor, potentiation, depression, factors=None) -> Tensor:
        r""":math:`A_+(w)\,p - A_-(w)\,d` in torch (an absent half is zero)."""
        up, down = self.dependence(weight) if factors is None else factors
        if potentiation is None:
            return torch.zeros_like(weight) if depression is None else -(down * depression)
        delta = up * potentiation
        return delta if depression is None else delta - down * depression

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in vars(self).items() if k not in ("wmin", "wmax"))
        return f"{type(self).__name__}(wmin={self.wmin!r}, wmax={self.wmax!r}{extra})"


def _clip_delta(weight: Tensor, delta: Tensor, wmin: float, wmax: float) -> Tensor:
    """Change such that ``weight + delta`` (as floating point computes it) lies in ``[wmin, wmax]``.

    ``clamp(w + d) - w`` alone can round so that adding it back lands one ulp
    outside the range; such entries are nudged toward the inside ulp by ulp.
    """
    delta = (weight + delta).clamp_(wmin, wmax).sub_(weight)
    for _ in range(8 if delta.numel() else 0):
        new = weight + delta
        low, high = torch.aminmax(new)
        if not (low < wmin or high > wmax):  # (NaN compares false: it stays)
            break
        delta = torch.where(new > wmax, torch.nextafter(delta, delta.new_tensor(-math.inf)), delta)
        delta = torch.where(new < wmin, torch.nextafter(delta, delta.new_tensor(math.inf)), delta)
    return delta


def _compiles(weight: Tensor, tensors) -> bool:
    """Whether :func:`~plastorch.functional.compiled.weight_change` takes ``weight`` and
    ``tensors`` (the update's halves, ``None`` where absent, and the dependence's factors)
    as they are: contiguous CPU tensors of one shape and dtype."""
    if not compiled.available() or weight.dtype not in compiled.DTYPES:
        return False
    if weight.device.type != "cpu" or not weight.is_contiguous():
        return False
    return all(
        t is None
        or (
            isinstance(t, Tensor)
            and t.dtype == weight.dtype
            and t.shape == weight.shape
            and t.device.type == "cpu"
            and t.is_contiguous()
        )
        for t in tensors
    )


class Hard(Bound):
    """No weight dependence; the weight is clipped to ``[wmin, wmax]``.

    Examples
    --------
    >>> Hard(0.0, 1.0)(torch.tensor([0.9]), Update(torch.tensor([0.5]), None))
    tensor([0.1000])
    """


class Soft(Bound):
    """Multiplicative bounds: LTP times ``wmax - w``, LTD times ``w - wmin``.

    Examples
    --------
    >>> Soft(0.0, 1.0)(torch.tensor([0.25]), Update(None, torch.tensor([1.0])))
    tensor([-0.2500])
    """

    def dependence(self, weight):
        return self.wmax - weight, weight - self.wmin


class PowerLaw(Bound):
    r"""Power-law bounds (Gütig et al. 2003): LTP times :math:`(w_\max - w)^\mu`, LTD times
    :math:`(w - w_\min)^\mu`. ``mu = 1`` is :class:`Soft`, ``mu = 0`` is :class:`Hard`.

    Examples
    --------
    >>> PowerLaw(0.0, 1.0, mu=0.5)(torch.tensor([0.75]), Update(torch.tensor([1.0]), None))
    tensor([0.2500])
    """

    def __init__(self, wmin: float = 0.0, wmax: float = 1.0, *, mu: float = 1.0, clip: bool = True):
        super().__init__(wmin, wmax, clip=clip)
        self.mu = check_nonnegative("mu", mu)

    def dependence(self, weight):
        return (
            (self.wmax - weight).clamp_(min=0).pow_(self.mu),
            (weight - self.wmin).clamp_(min=0).pow_(self.mu),
        )


class Exponential(Bound):
    r"""Exponential weight dependence (Nessler et al. 2013; Diehl & Cook 2015 eq. 4):
    LTP times :math:`e^{-\beta (w - w_\min)}`, LTD times :math:`e^{-\beta (w_\max - w)}`.

    Examples
    --------
    >>> Exponential(0.0, 1.0, beta=1.0)(torch.tensor([0.0]), Update(torch.tensor([0.5]), None))
    tensor([0.5000])
    """

    def __init__(
        self, wmin: float = 0.0, wmax: float = 1.0, *, beta: float = 1.0, clip: bool = True
    ):
        super().__init__(wmin, wmax, clip=clip)
        self.beta = check_nonnegative("beta", beta)

    def dependence(self, weight):
        return (
            torch.sub(weight, self.wmin).mul_(-self.beta).exp_(),
            torch.rsub(weight, self.wmax).mul_(-self.beta).exp_(),
        )


# the dependences the compiled kernel computes in its pass (it is given the others' factors)
_INLINE = {Soft.dependence: compiled.SOFT}


class Normalize:
    r"""Per-neuron normalisation: each output unit's incoming weights sum to ``total``.

    .. math:: w_{ij} \leftarrow w_{ij}\, \frac{\text{total}}{\sum_k w_{ik}}

    where :math:`i` indexes the first weight dimension (output neurons / channels)
    and the sum runs over all the others. Diehl & Cook (2015) keep each
    excitatory neuron's input weights at a constant sum this way. Rows summing
    to zero are left unchanged.

    Examples
    --------
    >>> Normalize(1.0)(torch.tensor([[1.0, 3.0], [0.0, 0.0]]))
    tensor([[0.2500, 0.7500],
            [0.0000, 0.0000]])
    """

    def __init__(self, total: float):
        self.total = check_positive("total", total)

    def __call__(self, weight: Tensor) -> Tensor:
        sums = weight.sum(dim=tuple(range(1, weight.dim())), keepdim=True)
        factor = torch.where(sums != 0, self.total / torch.where(sums != 0, sums, 1), 1)
        return weight * factor

    def __repr__(self) -> str:
        return f"Normalize(total={self.total!r})"
