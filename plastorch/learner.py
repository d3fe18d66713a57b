r"""Learner: binds a rule to a layer and a spike source, owns the state, applies updates.

A :class:`Learner` watches two modules through forward hooks: the *layer* (any
module with a ``weight`` linear in its output, e.g. ``nn.Linear``, ``nn.Conv2d``)
whose input is the presynaptic spikes, and the *spike source* (any module whose
output is the postsynaptic spike tensor, from plastorch or another library).
Each forward pass of the two records one *window* of steps. Windows are settled
one at a time, in order: the rule scans its traces over the window and turns
it into an :class:`~plastorch.functional.Update`.

When is a window settled?

* by :meth:`Learner.step`, which settles the latest window with the ``signal``
  given and applies everything accumulated since the previous ``step``;
* by the next forward pass, if ``step`` was not called in between. The window
  is then settled without a signal: unmodulated rules (STDP) add their update
  to an accumulator, modulated ones (MSTDP, MSTDP-ET) treat it as :math:`M = 0`
  (their traces and eligibility still advance). To modulate a whole episode
  with one reward, pass it as one ``[T, B, ...]`` window, or call ``step`` after
  every forward.

So at most one window of spikes is held at any time, plus weight-shaped
accumulators: memory does not grow with the number of steps between updates.

Every piece of state (traces, eligibility, the pending window, accumulators)
is a registered buffer, so ``state_dict()`` saved mid-episode and loaded into a
fresh Learner resumes bit-identically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from .bounds import Bound
from .functional import Update, correlation_scope
from .functional.checks import check_choice, check_finite, check_real, check_same_device_dtype
from .functional.workspace import Workspace
from .rules.base import Rule, state_use

__all__ = ["Learner"]

# The learner's own buffers; every other buffer is the rule's state (traces, eligibility).
_OWN_BUFFERS = (
    "pending_pre",
    "pending_post",
    "batch_size",
    "accumulated_potentiation",
    "accumulated_depression",
)


def _default_post_from(output):
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(
        f"the spike source returned {type(output).__name__}; pass post_from=callable that "
        "extracts the spike tensor from it"
    )


class Learner(nn.Module):
    r"""Train ``layer`` with ``rule`` from its input spikes and ``spike_source``'s output.

    Parameters
    ----------
    layer : nn.Module
        Module with a ``weight`` tensor; its first positional input is the
        presynaptic spikes ``[B, *in]`` (single step) or ``[T, B, *in]`` /
        ``[T * B, *in]`` (multi step).
    spike_source : nn.Module
        Module whose output holds the postsynaptic spikes, shaped like the
        layer's output (``[T, B, *out]`` in multi step). A tuple output (e.g.
        ``(spikes, membrane)``) uses its first element unless ``post_from`` says
        otherwise. Graded (non-binary) spikes are accepted and correlated as values.
    rule : Rule
        :class:`~plastorch.rules.STDP`, :class:`~plastorch.rules.MSTDP`, ...
    bound : Bound, optional
        Weight dependence and clipping (:mod:`plastorch.bounds`); ``None`` applies
        the update as it is.
    step_mode : {"single", "multi"}
        Whether forward passes carry one step or a ``[T, B, ...]`` window.
    apply : bool
        Default of :meth:`step`: add :math:`\Delta w` to the weight directly
        (``True``) or write :math:`-\Delta w` into ``weight.grad`` for an optimizer.
    constraints : iterable of callables ``weight -> weight``
        Applied after each direct update (e.g. :class:`~plastorch.bounds.Normalize`);
        call :meth:`constrain` yourself after ``optimizer.step()``.
    post_from : callable, optional
        Extracts the spike tensor from the spike source's output.
    check_finite : bool
        Reject spikes containing NaN/inf at record time, and a target weight
        containing NaN/inf at :meth:`step` (one reduction each).
    synchronize : callable ``(update, learner) -> update``, optional
        Called by :meth:`step` with everything learned since the previous step
        (accumulated windows plus the one settled now), before ``scale``, the
        bound and the application; returns the update to apply. While it runs,
        ``learner.accumulated_potentiation`` / ``accumulated_depression`` still
        hold the windows settled before this step (``None`` if there were none).
        Data parallelism plugs in here
        (:class:`plastorch.distributed.SynchronizeUpdate`); the Learner itself
        knows nothing about processes.

    Examples
    --------
    >>> from plastorch.rules import STDP
    >>> fc, neuron = nn.Linear(4, 2, bias=False), nn.Identity()
    >>> learner = Learner(fc, neuron, STDP(lr_post=1e-2, lr_pre=-1e-2))
    >>> spikes_in = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    >>> _ = neuron((fc(spikes_in) > 0).float())
    >>> dw = learner.step(apply=True)  # or: learner.step(); optimizer.step()
    >>> dw.shape
    torch.Size([2, 4])
    """

    def __init__(
        self,
        layer: nn.Module,
        spike_source: nn.Module,
        rule: Rule,
        bound: Bound | None = None,
        *,
        step_mode: str = "single",
        apply: bool = False,
        constraints: Iterable[Callable[[Tensor], Tensor]] = (),
        post_from: Callable[[object], Tensor] | None = None,
        check_finite: bool = True,
        synchronize: Callable[[Update, Learner], Update] | None = None,
    ):
        super().__init__()
        if not isinstance(layer, nn.Module) or not isinstance(
            getattr(layer, "weight", None), Tensor
        ):
            raise TypeError(
                f"layer must be an nn.Module with a tensor 'weight', got {type(layer).__name__}"
            )
        if not isinstance(spike_source, nn.Module):
            raise TypeError(f"spike_source must be an nn.Module, got {type(spike_source).__name__}")
        if not isinstance(rule, Rule):
            raise TypeError(f"rule must be a plastorch Rule, got {type(rule).__name__}")
        if not isinstance(getattr(layer, rule.target, None), Tensor):
            raise TypeError(
                f"{type(rule).__name__} updates layer.{rule.target}, which "
                f"{type(layer).__name__} does not have as a tensor"
            )
        if bound is not None and not isinstance(bound, Bound):
            raise TypeError(f"bound must be a plastorch.bounds.Bound, got {type(bound).__name__}")
        self.rule = rule
        self.bound = bound
        self.step_mode = check_choice("step_mode", step_mode, ("single", "multi"))
        self.apply = bool(apply)
        self.constraints = tuple(constraints)
        for constraint in self.constraints:
            if not callable(constraint):
                raise TypeError(f"constraints must be callables, got {type(constraint).__name__}")
        self.post_from = post_from or _default_post_from
        self.check_finite = bool(check_finite)
        if synchronize is not None and not callable(synchronize):
            raise TypeError(
                f"synchronize must be a callable (update, learner) -> update, got "
                f"{type(synchronize).__name__}"
            )
        self.synchronize = synchronize
        # Plain attributes (not submodules): the learner's state_dict holds learning
        # state only; the layer's weights belong to the user's model.
        self._modules_watched = (layer, spike_source)
        self._handles = [
            layer.register_forward_hook(self._record_pre),
            spike_source.register_forward_hook(self._record_post),
        ]
        self._in_flight: tuple[Tensor, torch.Size] | None = None
        self.enabled = True
        self.state_names: tuple[str, ...] = ()
        #: buffers lent to the rule for a window's temporaries, reused by the next
        #: window (not state: not saved, not reset; ``workspace.clear()`` frees them)
        self.workspace = Workspace()
        #: ``int(batch_size)`` (``None`` until read): comparing it costs no device read
        self._batch: int | None = None

    # -- properties -------------------------------------------------------------------
    @property
    def layer(self) -> nn.Module:
        """The trained layer."""
        return self._modules_watched[0]

    @property
    def target(self) -> Tensor:
        """The tensor the rule updates: ``getattr(layer, rule.target)`` (the weight by default)."""
        return getattr(self.layer, self.rule.target)

    @property
    def spike_source(self) -> nn.Module:
        """The module whose output is the postsynaptic spikes."""
        return self._modules_watched[1]

    # -- recording --------------------------------------------------------------------
    def _record_pre(self, module, args, output) -> None:
        if not self.enabled:
            return
        if self._in_flight is not None:
            raise RuntimeError(
                "the layer ran twice before the spike source; a Learner expects layer -> "
                "spike source once per forward pass"
            )
        if not args or not isinstance(args[0], Tensor):
            raise TypeError("the layer's first positional input must be the presynaptic spikes")
        out = output[0] if isinstance(output, (tuple, list)) else output
        self.__dict__["_in_flight"] = (args[0].detach(), out.shape)

    def _record_post(self, module, args, output) -> None:
        if not self.enabled:
            return
        if self._in_flight is None:
            raise RuntimeError(
                "the spike source ran before the layer: the Learner pairs each layer call with "
                "the next spike-source call"
            )
        pre, layer_out_shape = self._in_flight
        self.__dict__["_in_flight"] = None
        post = self.post_from(output).detach()
        pre, post = self._as_window(pre, post, layer_out_shape)
        if self._pending_window() is not None:
            self._accumulate(self._settle(None))
        self._set("pending_pre", pre)
        self._set("pending_post", post)

    def _as_window(self, pre: Tensor, post: Tensor, layer_out: torch.Size) -> tuple[Tensor, Tensor]:
        weight = self.layer.weight
        for name, tensor in (("presynaptic spikes", pre), ("postsynaptic spikes", post)):
            check_same_device_dtype(name, tensor, weight, "the layer weight")
            if self.check_finite:
                check_finite(name, tensor)
        if self.step_mode == "single":
            if post.shape != layer_out:
                raise ValueError(
                    f"spike source output {tuple(post.shape)} does not match the layer output "
                    f"{tuple(layer_out)}"
                )
            pre, post = pre.unsqueeze(0), post.unsqueeze(0)
        else:
            if post.dim() < 2:
                raise ValueError(f"multi-step spikes must be [T, B, ...], got {tuple(post.shape)}")
            if post.shape != layer_out and post.flatten(0, 1).shape != layer_out:
                raise ValueError(
                    f"spike source output {tuple(post.shape)} does not match the layer output "
                    f"{tuple(layer_out)}"
                )
            steps, batch = post.shape[:2]
            if pre.dim() == post.dim() - 1 and pre.shape[0] == steps * batch:
                pre = pre.reshape(steps, batch, *pre.shape[1:])
            elif pre.dim() != post.dim() or pre.shape[:2] != post.shape[:2]:
                raise ValueError(
                    f"multi-step presynaptic spikes {tuple(pre.shape)} do not match postsynaptic "
                    f"spikes {tuple(post.shape)}: expected [T, B, ...] or [T * B, ...]"
                )
        dtype = weight.dtype  # (a no-op .to still costs a dispatch per step)
        return (
            pre if pre.dtype == dtype else pre.to(dtype),
            post if post.dtype == dtype else post.to(dtype),
        )

    # -- state ------------------------------------------------------------------------
    def _pending_window(self) -> tuple[Tensor, Tensor] | None:
        pre = self._buffers.get("pending_pre")
        return None if pre is None else (pre, self._buffers["pending_post"])

    def _set(self, name: str, value: Tensor | None) -> None:
        if name in self._buffers:
            self._buffers[name] = value
        else:
            self.register_buffer(name, value)

    def __setattr__(self, name, value):
        if name in _OWN_BUFFERS and isinstance(value, (Tensor, type(None))):
            self._set(name, value)
        else:
            super().__setattr__(name, value)

    def _state(self, pre: Tensor, post: Tensor) -> tuple[dict[str, Tensor], bool]:
        """The rule state for this window, and whether it is the rule's initial state."""
        batch = pre.shape[1]
        initial = not self.state_names
        if initial:
            fresh = self.rule.initial_state(self.layer, pre[0], post[0])
            for name, value in fresh.items():
                self._set(name, value)
            self.state_names = tuple(fresh)
            self._set("batch_size", torch.tensor(batch))
            self._batch = batch
        elif batch != self._batch:
            if self._batch is None:  # after load_state_dict (one read of the buffer)
                self._batch = int(self.batch_size)
            if batch != self._batch:
                raise ValueError(
                    f"batch size changed from {self._batch} to {batch}; call "
                    "learner.reset() before feeding batches of another size"
                )
        return {name: self._buffers[name] for name in self.state_names}, initial

    def _settle(self, signal, discard: bool = False, delta_only: bool = False) -> Update:
        pre, post = self._pending_window()
        state, initial = self._state(pre, post)
        # the old state is replaced below and read by nobody: rules may reuse it
        with state_use(
            reusable=True,
            discarded=discard,
            initial=initial,
            workspace=self.workspace,
            delta_only=delta_only,
        ):
            update, new_state = self.rule(self.layer, pre, post, state, signal)
        for name, value in new_state.items():
            self._buffers[name] = value
        self._set("pending_pre", None)
        self._set("pending_post", None)
        return update

    def _accumulate(self, update: Update) -> None:
        total = (
            Update(
                self._buffers.get("accumulated_potentiation"),
                self._buffers.get("accumulated_depression"),
            )
            + update
        )
        self._set("accumulated_potentiation", total.potentiation)
        self._set("accumulated_depression", total.depression)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # State buffers are created lazily (their shapes depend on the data); a fresh
        # Learner makes room for every buffer the saved one had before loading.
        names = []
        for key, value in state_dict.items():
            name = key[len(prefix) :]
            if key.startswith(prefix) and "." not in name and isinstance(value, Tensor):
                current = self._buffers.get(name)
                # a broadcast view (a rule's lazy initial state) cannot be written into
                if current is None or not current.is_contiguous():
                    self._set(name, torch.empty_like(value))
                if name not in _OWN_BUFFERS:  # everything else is rule state
                    names.append(name)
        if names:
            self.state_names = tuple(sorted(set(self.state_names) | set(names)))
        self._batch = None
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # -- public API -------------------------------------------------------------------
    def step(
        self,
        signal: float | Tensor | None = None,
        scale: float = 1.0,
        *,
        apply: bool | None = None,
        reset: bool = False,
    ) -> Tensor:
        r"""Settle the latest window and apply everything learned since the last step.

        Parameters
        ----------
        signal : float or Tensor, optional
            Modulation :math:`M` for modulated rules (required there, rejected by
            unmodulated ones): scalar, ``[B]``, ``[T, B]`` or ``[T, 1]`` for the
            steps of the latest window.
        scale : float
            :math:`\gamma`, multiplies the whole update (its absolute value is used).
        apply : bool, optional
            Add :math:`\Delta w` to the weight now (then run the constraints), or
            write :math:`-\Delta w` into ``weight.grad`` (accumulating) for an
            optimizer: one ``SGD(lr=1)`` step then gives ``w + Δw``. Defaults to
            the Learner's ``apply``.
        reset : bool
            End of an episode: :meth:`reset` after this step. The same as calling
            it afterwards, except that the rule is told its new state will not be
            read and skips forming it (MSTDP-ET's carried eligibility).

        Returns
        -------
        Tensor
            :math:`\Delta w`, shaped like the target (the weight unless the rule's
            ``target`` names another tensor), after bounds and clipping.
        """
        rule = self.rule
        if rule.modulated and signal is None:
            raise ValueError(f"{type(rule).__name__} needs a signal: call step(signal=...)")
        if not rule.modulated and signal is not None:
            raise TypeError(f"{type(rule).__name__} takes no signal; call step() without one")
        if type(scale) is not float or scale != 1.0:  # (the common 1.0 skips the checks)
            scale = abs(check_real("scale", scale))
        pending = self._pending_window()
        if pending is None and not self.state_names:
            raise RuntimeError(
                "step() called before any forward pass was recorded: run the layer and the "
                "spike source first"
            )
        weight = self.target
        if self.check_finite:
            check_finite(f"layer.{rule.target}", weight.detach())
        update = Update(
            self._buffers.get("accumulated_potentiation"),
            self._buffers.get("accumulated_depression"),
        )
        # nothing but Δw is read from this window's update: no bound (or one without
        # weight dependence) or synchronize reads its halves, and no accumulated halves
        # are added to it
        delta_only = (
            (self.bound is None or not self.bound.reads_halves)
            and self.synchronize is None
            and update.empty
        )
        # the window's correlations (in the rule, and deferred into the update) that
        # walk the same spikes scan them once, and write temporaries into the workspace
        with correlation_scope(self.workspace):
            if pending is not None:
                update = update + self._settle(signal, discard=reset, delta_only=delta_only)
            if self.synchronize is not None:
                update = self.synchronize(update, self)
            self._set("accumulated_potentiation", None)
            self._set("accumulated_depression", None)
            update = update.scale(scale)
            if self.bound is not None:
                delta = self.bound(weight, update)
            else:
                delta = update.delta_like(weight)
        if self.apply if apply is None else apply:
            with torch.no_grad():
                weight.add_(delta)
            self.constrain()
        elif weight.grad is None:
            weight.grad = -delta
        else:
            weight.grad.sub_(delta)
        if reset:
            self.reset()
        return delta

    @torch.no_grad()
    def constrain(self) -> None:
        """Apply the constraints (e.g. :class:`~plastorch.bounds.Normalize`) to the target."""
        target = self.target
        for constraint in self.constraints:
            target.copy_(constraint(target))

    def reset(self) -> None:
        """Forget traces, eligibility, the pending window and accumulated updates."""
        for name in self.state_names + _OWN_BUFFERS:
            if name in self._buffers:
                self._buffers[name] = None
        self.state_names = ()
        self._batch = None
        self._in_flight = None

    def enable(self) -> None:
        """Record forward passes again (the default)."""
        self.enabled = True

    def disable(self) -> None:
        """Stop recording forward passes (e.g. during evaluation); state is kept."""
        self.enabled = False
        self._in_flight = None

    def remove(self) -> None:
        """Detach the hooks from the layer and the spike source for good."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.enabled = False

    def extra_repr(self) -> str:
        return (
            f"layer={type(self.layer).__name__}, spike_source={type(self.spike_source).__name__}, "
            f"bound={self.bound!r}, step_mode={self.step_mode!r}, apply={self.apply}"
        )
