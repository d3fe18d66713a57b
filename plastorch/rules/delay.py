r"""Delay-adjusted STDP and MSTDP of weights and of delays (inferno's trainers, reference 000).

All four rules are :class:`~plastorch.rules.kernel.DelayAdjustedKernelSTDP` /
:class:`~plastorch.rules.kernel.DelayAdjustedKernelSTDPD` with the exponential window
of reference 000 on :math:`t_\Delta = t^f_\text{post} - t^f_\text{pre} - d`
(ms; see :mod:`plastorch.rules.kernel` for which spikes pair):

.. math::

    \text{weights:}\quad \zeta(t_\Delta) &= \eta_+ e^{-|t_\Delta|/\tau_+} [t_\Delta \ge 0]
        + \eta_- e^{-|t_\Delta|/\tau_-} [t_\Delta < 0],
        \qquad \Delta w = M \zeta \\
    \text{delays:}\quad \zeta_d(t_\Delta) &= \eta_- e^{-|t_\Delta|/\tau_-} [t_\Delta \ge 0]
        + \eta_+ e^{-|t_\Delta|/\tau_+} [t_\Delta < 0],
        \qquad \Delta d = M \zeta_d

(:math:`M = 1` for the unmodulated rules). The signs of the rates select the mode,
and a negative signal swaps the halves:

============  ==================  ==================  ===============================  ===============================
weights       :math:`\eta_+`      :math:`\eta_-`      potentiation (:math:`w` up)      depression (:math:`w` down)
============  ==================  ==================  ===============================  ===============================
Hebbian       :math:`+`           :math:`-`           causal pairs                     acausal pairs
anti-Hebbian  :math:`-`           :math:`+`           acausal pairs                    causal pairs
potentiative  :math:`+`           :math:`+`           both                             none
depressive    :math:`-`           :math:`-`           none                             both
============  ==================  ==================  ===============================  ===============================

============  ==================  ==================  ===============================  ===============================
delays        :math:`\eta_-`      :math:`\eta_+`      lengthening (update's            shortening (update's
                                                      ``potentiation``)                ``depression``)
============  ==================  ==================  ===============================  ===============================
Hebbian       :math:`-`           :math:`+`           acausal pairs                    causal pairs
anti-Hebbian  :math:`+`           :math:`-`           causal pairs                     acausal pairs
potentiative  :math:`-`           :math:`-`           none                             both
depressive    :math:`+`           :math:`+`           both                             none
============  ==================  ==================  ===============================  ===============================

("causal": :math:`t_\Delta \ge 0`, the spike arrived at or before the post spike.)
Hebbian delay learning shortens the delays of causal pairs, so the presynaptic spike
arrives earlier still, as potentiation strengthens a causal synapse; the
potentiative / depressive names refer to that effect on the synapse, as in
reference 000. Anti-Hebbian delay learning (or Hebbian with a negative signal) moves
every delay toward :math:`t^f_\text{post} - t^f_\text{pre}`, aligning arrivals with
post spikes.

Differences from reference 000: inferno evaluates :math:`\zeta` at *every* step on
the latest spike times (a pair keeps contributing until a newer spike replaces it);
here each nearest pair contributes once, when its second event happens (post spike,
or arrival at the synapse), so that with zero delays the rule is nearest-spike STDP
and a window gives the same update as its single steps. inferno pairs with the
latest *sent* presynaptic spike; here the latest one that has *arrived*, so a spike
still in flight does not pair with an earlier post spike as if it were causal.
"""

from __future__ import annotations

import torch  # noqa: F401  (used in the doctests)

from ..functional.checks import check_positive, check_real
from .base import BatchReduction
from .kernel import DelayAdjustedKernelSTDP, DelayAdjustedKernelSTDPD, Kernel, exponential_window

__all__ = ["DelayAdjustedMSTDP", "DelayAdjustedMSTDPD", "DelayAdjustedSTDP", "DelayAdjustedSTDPD"]


def _window(lr_causal, lr_acausal, tau_causal, tau_acausal, names) -> Kernel:
    return Kernel(
        exponential_window,
        lr_causal=check_real(names[0], lr_causal),
        lr_acausal=check_real(names[1], lr_acausal),
        tau_causal=check_positive(names[2], tau_causal),
        tau_acausal=check_positive(names[3], tau_acausal),
    )


class DelayAdjustedSTDP(DelayAdjustedKernelSTDP):
    r"""Delay-adjusted STDP of the weights (unmodulated).

    :math:`\Delta w = \sum \zeta(t_\Delta)` over nearest pairs of post spikes and
    arrivals, with :math:`\zeta` and the mode table of :mod:`plastorch.rules.delay`.
    Hyperparameters are stored in ``rule.kernel_post`` (``lr_causal = lr_pos``,
    ``lr_acausal = lr_neg``, ``tau_causal = tau_pos``, ``tau_acausal = tau_neg``).

    Parameters
    ----------
    lr_pos : float
        :math:`\eta_+`, for :math:`t_\Delta \ge 0` (post spike at or after the arrival).
    lr_neg : float
        :math:`\eta_-`, for :math:`t_\Delta < 0`.
    tau_pos, tau_neg : float
        :math:`\tau_+`, :math:`\tau_-` in ms (> 0).
    batch_reduction : {"sum", "mean"} or callable
        See :mod:`plastorch.rules.base`.

    Examples
    --------
    >>> from plastorch.layers import DelayedLinear
    >>> layer = DelayedLinear(1, 1, max_delay=5.0, bias=False, delay_init=1.0)
    >>> rule = DelayAdjustedSTDP(lr_pos=1.0, lr_neg=-1.0, tau_pos=2.0, tau_neg=2.0)
    >>> pre = torch.zeros(4, 1, 1); pre[0] = 1    # arrives at step 1
    >>> post = torch.zeros(4, 1, 1); post[3] = 1  # t_delta = 3 - 0 - 1 = 2
    >>> update, _ = rule(layer, pre, post, rule.initial_state(layer, pre[0], post[0]))
    >>> round(update.potentiation.item(), 6)  # exp(-2/2)
    0.367879

    References
    ----------
    inferno ``DelayAdjustedSTDP`` / ``DelayAdjustedMSTDP`` (reference 000).
    """

    _modulated_variant = False

    def __init__(
        self,
        lr_pos: float,
        lr_neg: float,
        tau_pos: float = 20.0,
        tau_neg: float = 20.0,
        *,
        batch_reduction: BatchReduction = "sum",
    ):
        kernel = _window(
            lr_pos, lr_neg, tau_pos, tau_neg, ("lr_pos", "lr_neg", "tau_pos", "tau_neg")
        )
        super().__init__(kernel, batch_reduction=batch_reduction, modulated=self._modulated_variant)


class DelayAdjustedMSTDP(DelayAdjustedSTDP):
    r"""Delay-adjusted reward-modulated STDP of the weights: :math:`\Delta w = \sum M(t)\, \zeta(t_\Delta)`.

    :math:`M` is the signal given to :meth:`plastorch.Learner.step`: a scalar, ``[B]``,
    ``[T, B]`` or ``[T, 1]``; it multiplies the pairs completed at each step (no signal
    means :math:`M = 0`). Where :math:`M \zeta > 0` the pair potentiates, else it
    depresses. Parameters are those of :class:`DelayAdjustedSTDP`.

    Examples
    --------
    >>> from plastorch.layers import DelayedLinear
    >>> layer = DelayedLinear(1, 1, max_delay=5.0, bias=False, delay_init=1.0)
    >>> rule = DelayAdjustedMSTDP(lr_pos=1.0, lr_neg=-1.0, tau_pos=2.0, tau_neg=2.0)
    >>> pre = torch.zeros(4, 1, 1); pre[0] = 1; post = torch.zeros(4, 1, 1); post[3] = 1
    >>> state = rule.initial_state(layer, pre[0], post[0])
    >>> update, _ = rule(layer, pre, post, state, signal=-2.0)
    >>> round(update.depression.item(), 6)  # a negative reward turns LTP into LTD
    0.735759
    """

    _modulated_variant = True


class DelayAdjustedSTDPD(DelayAdjustedKernelSTDPD):
    r"""Delay-adjusted STDP of the *delays* (unmodulated): :math:`\Delta d = \sum \zeta_d(t_\Delta)`.

    With the mode table of :mod:`plastorch.rules.delay`; the update applies to
    ``layer.delay`` (``target = "delay"``). Argument order follows reference 000.

    Parameters
    ----------
    lr_neg : float
        :math:`\eta_-`, for :math:`t_\Delta \ge 0` (post spike at or after the arrival).
    lr_pos : float
        :math:`\eta_+`, for :math:`t_\Delta < 0`.
    tau_neg, tau_pos : float
        :math:`\tau_-` (causal side), :math:`\tau_+` (acausal side) in ms (> 0).
    batch_reduction : {"sum", "mean"} or callable
        See :mod:`plastorch.rules.base`.

    Examples
    --------
    >>> from plastorch.layers import DelayedLinear
    >>> layer = DelayedLinear(1, 1, max_delay=5.0, bias=False, delay_init=1.0)
    >>> rule = DelayAdjustedSTDPD(lr_neg=0.5, lr_pos=-0.5, tau_neg=2.0, tau_pos=2.0)
    >>> pre = torch.zeros(4, 1, 1); pre[0] = 1; post = torch.zeros(4, 1, 1); post[3] = 1
    >>> update, _ = rule(layer, pre, post, rule.initial_state(layer, pre[0], post[0]))
    >>> round(update.potentiation.item(), 6)  # anti-Hebbian: lengthen by 0.5 exp(-2/2)
    0.18394
    """

    _modulated_variant = False

    def __init__(
        self,
        lr_neg: float,
        lr_pos: float,
        tau_neg: float = 20.0,
        tau_pos: float = 20.0,
        *,
        batch_reduction: BatchReduction = "sum",
    ):
        kernel = _window(
            lr_neg, lr_pos, tau_neg, tau_pos, ("lr_neg", "lr_pos", "tau_neg", "tau_pos")
        )
        super().__init__(kernel, batch_reduction=batch_reduction, modulated=self._modulated_variant)


class DelayAdjustedMSTDPD(DelayAdjustedSTDPD):
    r"""Delay-adjusted reward-modulated STDP of the delays: :math:`\Delta d = \sum M(t)\, \zeta_d(t_\Delta)`.

    Signals as for :class:`DelayAdjustedMSTDP`; parameters as for
    :class:`DelayAdjustedSTDPD`.

    Examples
    --------
    >>> from plastorch.layers import DelayedLinear
    >>> layer = DelayedLinear(1, 1, max_delay=5.0, bias=False, delay_init=1.0)
    >>> rule = DelayAdjustedMSTDPD(lr_neg=-0.5, lr_pos=0.5, tau_neg=2.0, tau_pos=2.0)
    >>> pre = torch.zeros(4, 1, 1); pre[0] = 1; post = torch.zeros(4, 1, 1); post[3] = 1
    >>> state = rule.initial_state(layer, pre[0], post[0])
    >>> update, _ = rule(layer, pre, post, state, signal=-1.0)
    >>> round(update.delta().item(), 6)  # Hebbian signs, negative reward: lengthen
    0.18394
    """

    _modulated_variant = True
