"""Named scratch tensors reused from one call to the next (:class:`Workspace`).

The lowest layer that needs one is the correlations' (``functional.correlate``
writes a convolution's ``unfold`` columns into the workspace lent by a
:func:`~plastorch.functional.correlation_scope`); rules get theirs through
:func:`~plastorch.rules.base.state_use`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Workspace"]


class Workspace:
    """Named scratch tensors reused from one call to the next.

    :meth:`get` returns the tensor kept under a name if it has the requested
    shape, dtype and device, else a new one that replaces it. Contents are not
    kept meaningful: whoever gets a tensor overwrites it. A
    :class:`~plastorch.Learner` owns one and lends it to its rule
    (:func:`~plastorch.rules.base.state_use`) and to the correlations of a step
    (:func:`~plastorch.functional.correlation_scope`); it holds the largest
    temporaries of one window (for an STDP window of ``T`` steps about
    ``2 T B n_in`` numbers) until :meth:`clear`.

    Examples
    --------
    >>> ws = Workspace()
    >>> a = ws.get("x", (2, 3), torch.float32, torch.device("cpu"))
    >>> ws.get("x", (2, 3), torch.float32, torch.device("cpu")) is a, ws.nbytes
    (True, 24)
    """

    def __init__(self) -> None:
        self._tensors: dict[str, Tensor] = {}

    def get(self, name: str, shape, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The tensor kept under ``name``, (re)allocated to ``shape``, ``dtype``, ``device``."""
        tensor = self._tensors.get(name)
        shape = torch.Size(shape)
        if (
            tensor is None
            or tensor.shape != shape
            or tensor.dtype != dtype
            or tensor.device != device
        ):
            self._tensors.pop(name, None)  # free the old one before allocating
            tensor = torch.empty(shape, dtype=dtype, device=device)
            self._tensors[name] = tensor
        return tensor

    def clear(self) -> None:
        """Drop every tensor."""
        self._tensors.clear()

    def __getstate__(self) -> dict:
        # scratch is not worth copying or pickling with its owner: start empty
        return {"_tensors": {}}

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(t.untyped_storage().nbytes() for t in self._tensors.values())

    def __repr__(self) -> str:
        return f"Workspace({len(self._tensors)} tensors, {self.nbytes} bytes)"
