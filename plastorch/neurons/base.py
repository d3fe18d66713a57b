"""Shared machinery of the neuron models: argument checks, lazily sized state, step modes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from ..functional.checks import check_positive as _check_positive

__all__ = ["SpikingNeuron"]

_STEP_MODES = ("single", "multi")


def _check_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, int) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    if not dims or any(
        isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in dims
    ):
        raise ValueError(
            f"shape must be a positive int or a non-empty tuple of them, got {shape!r}"
        )
    return dims


class SpikingNeuron(nn.Module):
    """Base class of the neuron models: per-sample ``shape``, step modes and batch state.

    A subclass names its per-sample state tensors in ``_state_names``, fills them in
    :meth:`_init_state` and advances them by one time step in :meth:`_step`. This class
    validates the input, sizes the state to the batch on the first call, and loops over
    time in multi-step mode.

    The state tensors are registered buffers (so ``state_dict`` saves them and ``.to``
    moves them). They are empty (``numel() == 0``) until the first call and again after
    :meth:`reset`; the first call after that sizes them to ``[B, *shape]`` with the input's
    dtype and device. Loading a ``state_dict`` resizes them to the saved shape.

    The models are not differentiable: the input is detached, and the state never holds
    an autograd graph (no graph grows across time steps).

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the neuron population for one sample (without batch or time).
    dt : float
        Simulation time step in ms, > 0.
    step_mode : {"single", "multi"}
        ``"single"``: ``forward`` takes ``[B, *shape]`` (one step) and returns spikes of
        the same shape. ``"multi"``: ``forward`` takes ``[T, B, *shape]`` and returns
        ``[T, B, *shape]``, stepping through ``T`` inside.
    """

    _state_names: tuple[str, ...] = ()

    def __init__(self, shape: int | Sequence[int], *, dt: float, step_mode: str) -> None:
        super().__init__()
        self.shape: tuple[int, ...] = _check_shape(shape)
        self.dt: float = _check_positive("dt", dt)
        self.step_mode = step_mode
        for name in self._state_names:
            self.register_buffer(name, torch.empty(0))

    # -- configuration -------------------------------------------------------------------

    @property
    def step_mode(self) -> str:
        """``"single"`` (input ``[B, *shape]``) or ``"multi"`` (input ``[T, B, *shape]``)."""
        return self._step_mode

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        if value not in _STEP_MODES:
            raise ValueError(f"step_mode must be 'single' or 'multi', got {value!r}")
        self._step_mode = value
        self._forget_checks()

    # -- state ---------------------------------------------------------------------------

    def _state_tensors(self) -> Iterator[tuple[str, Tensor]]:
        for name in self._state_names:
            yield name, getattr(self, name)

    def _forget_checks(self) -> None:
        """Make the next single step check its input and the state in full again."""
        self.__dict__.pop("_checked_input", None)

    def _apply(self, fn, recurse=True):  # .to(), .double(), ...: check the next step again
        self._forget_checks()
        return super()._apply(fn, recurse)

    def reset(self) -> None:
        """Forget the per-sample state; the next call sizes it again to its batch."""
        self._forget_checks()
        for name, tensor in self._state_tensors():
            setattr(self, name, torch.empty(0, dtype=tensor.dtype, device=tensor.device))

    @property
    def state_initialized(self) -> bool:
        """Whether the per-sample state is sized (a call happened since the last reset)."""
        return all(tensor.numel() > 0 for _, tensor in self._state_tensors())

    def _init_state(self, like: Tensor) -> None:
        """Fill every state buffer with its initial value, shaped and typed like ``like``."""
        raise NotImplementedError

    def _check_state(self, step_input: Tensor) -> None:
        """Size the state to ``step_input`` ([B, *shape]) or check that it matches it."""
        for name, tensor in self.named_buffers(recurse=False):
            if name not in self._state_names and tensor.device != step_input.device:
                raise ValueError(
                    f"input is on {step_input.device} but buffer {name!r} of "
                    f"{type(self).__name__} is on {tensor.device}; move the module with .to()"
                )
        if not self.state_initialized:
            self._init_state(step_input)
            return
        _, state = next(self._state_tensors())
        if state.shape != step_input.shape:
            raise ValueError(
                f"{type(self).__name__} state has shape {tuple(state.shape)} but one step of "
                f"input has shape {tuple(step_input.shape)}; call reset() before changing "
                "the batch size"
            )
        if state.device != step_input.device:
            raise ValueError(
                f"{type(self).__name__} state is on {state.device} but the input is on "
                f"{step_input.device}; call reset() or move the module with .to()"
            )
        if state.dtype != step_input.dtype:
            raise TypeError(
                f"{type(self).__name__} state has dtype {state.dtype} but the input has "
                f"dtype {step_input.dtype}; call reset() or convert the input"
            )

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list,
        unexpected_keys: list,
        error_msgs: list,
    ) -> None:
        # The lazily sized state takes whatever batch shape was saved.
        self._forget_checks()
        for name, tensor in self._state_tensors():
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor):
                setattr(self, name, torch.empty_like(saved, device=tensor.device))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # -- stepping ------------------------------------------------------------------------

    def _step(self, step_input: Tensor) -> Tensor:
        """Advance the state by one step of ``dt``; return the 0/1 spikes ``[B, *shape]``."""
        raise NotImplementedError

    def forward(self, input: Tensor) -> Tensor:
        """Integrate ``input`` and return the spikes (0/1, same dtype and shape as ``input``).

        Parameters
        ----------
        input : Tensor
            ``[B, *shape]`` in single-step mode, ``[T, B, *shape]`` in multi-step mode,
            floating point.

        Returns
        -------
        Tensor
            Spikes, 1.0 where a neuron fired during the step and 0.0 elsewhere.
        """
        if self.step_mode == "single" and isinstance(input, Tensor):
            checked = self.__dict__.get("_checked_input")
            if checked is not None and checked == (input.shape, input.dtype, input.device):
                # the input of the previous single step and a state sized for it: the
                # checks below passed then and nothing has reset or moved the state since
                return self._step(input.detach())
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        if not input.is_floating_point():
            raise TypeError(f"input must be a floating point tensor, got dtype {input.dtype}")
        leading = 1 if self.step_mode == "single" else 2
        expected = ("B", *self.shape) if leading == 1 else ("T", "B", *self.shape)
        if input.dim() != leading + len(self.shape) or tuple(input.shape[leading:]) != self.shape:
            raise ValueError(
                f"{type(self).__name__} in {self.step_mode}-step mode expects input of shape "
                f"[{', '.join(map(str, expected))}], got {tuple(input.shape)}"
            )
        input = input.detach()
        if self.step_mode == "single":
            self._check_state(input)
            spikes = self._step(input)
            self.__dict__["_checked_input"] = (input.shape, input.dtype, input.device)
            return spikes
        if input.shape[0] == 0:
            raise ValueError("multi-step input must have at least one time step, got T = 0")
        window = getattr(self, "_window", None)
        if window is not None:  # a compiled loop over the window (LIF, AdaptiveLIF)
            return window(input)
        self._check_state(input[0])
        return torch.stack([self._step(step_input) for step_input in input])

    def extra_repr(self) -> str:
        return f"shape={self.shape}, dt={self.dt}, step_mode={self.step_mode!r}"
