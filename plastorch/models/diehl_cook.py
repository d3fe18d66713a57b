r"""Diehl & Cook (2015): unsupervised digit recognition with STDP and lateral inhibition.

The network
-----------
Pixel intensities :math:`x \in [0, 1]^{n_\text{in}}` are Poisson spike trains of rate
:math:`x \cdot r_\max` (:func:`plastorch.encoders.poisson`) for ``time_steps`` steps.
They drive ``n_neurons`` excitatory adaptive-threshold LIF neurons
(:class:`~plastorch.neurons.AdaptiveLIF`) through a plastic ``Linear`` layer, and each
excitatory spike inhibits all the other excitatory neurons by ``inhibition`` mV one step
later (:class:`~plastorch.layers.InhibitedPopulation`, the direct form of the original's
excitatory-inhibitory loop; see :mod:`plastorch.layers.inhibition`). One step is

.. math::

    c(t) &= W s_\text{in}(t) \\
    s(t) &= \text{AdaptiveLIF}\Bigl(c(t) - w_\text{inh}\bigl(\textstyle\sum_j s_j(t-1)
            - s(t-1)\bigr)\Bigr)

with the threshold :math:`v_\text{th} + \theta_i` rising by ``theta_plus`` per spike of
neuron :math:`i`. The weights learn by pair STDP (:class:`~plastorch.rules.STDP`,
nearest-spike traces as in the original code: a post spike potentiates by
``lr_post * x_pre``, a pre spike depresses by ``|lr_pre| * x_post``), scaled by a weight
dependence (:mod:`plastorch.bounds`; ``"hard"``, i.e. none, by default, as in the
original code), clipped to ``[0, wmax]``, and then every neuron's input weights are
rescaled to sum to ``weight_sum`` (:class:`~plastorch.bounds.Normalize`).

How a presentation is computed (and how it differs from the original)
---------------------------------------------------------------------
- *One GEMM, one fused update.* The input current of the whole presentation is one
  matrix product over the ``[T, B, n_in]`` spike window, the loop over time is
  elementwise (neurons and inhibition), and the :class:`~plastorch.Learner` turns the
  window into one STDP update applied after the presentation. The original (Brian)
  changes the weights at every spike, so a presentation here sees the weights it started
  with. Given the spikes, the update is the same sum of pair terms either way; the two
  differ only in that, per step, later spikes of a presentation would have been driven by
  weights already changed by its earlier ones. That change is :math:`O(\eta)` (each post
  spike adds at most ``lr_post`` to a weight), so its effect on the presentation's own
  update is :math:`O(\eta^2)`: negligible for small learning rates. With
  ``lr_post = 1e-2`` and the 5-20 spikes a winning neuron fires per presentation, its
  most active weights move by up to 0.05-0.2 of ``wmax`` before normalisation; the digits
  results (README) show that this still learns well.
- *Rest = reset.* The original lets the network relax without input for 150 ms between
  samples. Here the membranes, refractory counters, last spikes and STDP traces are
  reset to their resting values instead (the limit of a long rest); the adaptive
  thresholds :math:`\theta` are kept (their decay over 150 ms with
  :math:`\tau_\theta = 10^7` ms is a factor :math:`1 - 1.5 \cdot 10^{-5}`). This makes
  samples independent, so evaluation in batches is exact.
- *Retry.* If a sample makes fewer than ``min_spikes`` output spikes, it is presented
  again with the input rates raised by ``intensity_step`` times the base rate (the
  original's ``input_intensity += 1`` on a base of 2 is ``intensity_step = 0.5``), at
  most ``max_retries`` times. In training, a silent presentation still learns (it is
  settled and applied like any other, as in the original).
- *Batches.* With ``B > 1`` samples are simulated side by side with the same weights;
  their STDP updates are summed into one update (so a batch of ``B`` moves the weights
  like ``B`` consecutive samples to first order in the learning rate) and the adaptive
  threshold grows by the batch's total spikes (see :class:`~plastorch.neurons.AdaptiveLIF`).

Labels and voting
-----------------
After training (weights and thresholds frozen), every neuron is assigned the class to
which it responded most on average (:func:`assign_labels`), and a test sample is
classified by the neurons' votes (:func:`vote_all_activity`,
:func:`vote_proportion_weighting`).

References
----------
Diehl, P. U. & Cook, M. (2015). Unsupervised learning of digit recognition using
spike-timing-dependent plasticity. Frontiers in Computational Neuroscience 9:99.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from collections.abc import Callable
from numbers import Integral
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .. import distributed
from ..bounds import Bound, Exponential, Hard, Normalize, PowerLaw, Soft
from ..data import LabeledImages
from ..encoders import DIEHL_COOK_MAX_RATE, poisson
from ..functional.checks import check_choice, check_nonnegative, check_positive, check_real
from ..layers import InhibitedPopulation, LateralInhibition
from ..learner import Learner
from ..neurons import AdaptiveLIF
from ..rules import STDP

__all__ = [
    "Assignment",
    "DiehlCook2015",
    "DiehlCookTrainer",
    "OnlineAccuracy",
    "assign_labels",
    "collect_responses",
    "evaluate",
    "load_checkpoint",
    "save_checkpoint",
    "vote_all_activity",
    "vote_proportion_weighting",
]

WEIGHT_DEPENDENCES = ("hard", "soft", "power-law", "exponential")

#: Format tag of the checkpoints written by :class:`DiehlCookTrainer`.
CHECKPOINT_FORMAT = "plastorch.diehl-cook/1"


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


class DiehlCook2015(nn.Module):
    r"""The Diehl & Cook (2015) network: STDP input layer, adaptive thresholds, inhibition.

    ``forward(images)`` presents a batch and returns each excitatory neuron's spike count.
    In training mode (``model.train()``, the default) the presentation learns: STDP on the
    input weights and threshold adaptation; in evaluation mode (``model.eval()``) both are
    frozen. See :mod:`plastorch.models.diehl_cook` for the equations, the time stepping
    and how it departs from the original.

    Parameters
    ----------
    n_input : int
        Number of input pixels (64 for 8x8 digits, 784 for MNIST).
    n_neurons : int
        Excitatory neurons.
    time_steps : int
        Steps of ``dt`` ms per presentation (350 ms in the original).
    dt : float
        Step in ms.
    max_rate : float
        Input rate in Hz of intensity 1 (63.75 Hz = pixel 255 / 4 in the original).
    lr_post, lr_pre : float
        STDP rates of the post-triggered (potentiation, > 0) and pre-triggered
        (depression, < 0) terms; the original's ``nu_ee_post = 1e-2`` and
        ``nu_ee_pre = 1e-4``.
    tau_post, tau_pre : float
        STDP trace time constants in ms.
    trace_mode : {"nearest", "cumulative"}
        Nearest-spike traces (reset to 1 on a spike, as in the original) or cumulative.
    weight_dependence : {"hard", "soft", "power-law", "exponential"}
        Bound of :mod:`plastorch.bounds` on ``[0, wmax]`` (``mu`` for power-law, ``beta``
        for exponential).
    mu, beta : float
        Parameters of the power-law and exponential weight dependence.
    wmax : float
        Largest weight.
    weight_sum : float, optional
        Every neuron's input weights are normalised to this sum after each update (78 for
        the original's 784 inputs). Default ``0.1 * n_input``.
    inhibition : float
        Inhibition in mV that a spike sends to every other excitatory neuron.
    theta_plus, tau_theta : float
        Adaptive-threshold increment (mV per spike) and decay time constant (ms).
    tau_mem, v_rest, v_reset, v_threshold, refractory : float
        Excitatory LIF parameters (ms, mV), the original's values by default.
    min_spikes : int
        A presentation with fewer output spikes is retried with more input.
    intensity_step : float
        Added to the input scale (1 at the first try) per retry.
    max_retries : int
        Most retries per sample; ``1 + max_retries * intensity_step`` times ``max_rate``
        must stay a rate whose spike probability per step is <= 1.
    seed : int
        Seeds the initial weights and the Poisson spikes of training.

    Attributes
    ----------
    input_layer : nn.Linear
        The plastic weights ``[n_neurons, n_input]``.
    excitatory : InhibitedPopulation
        :class:`~plastorch.neurons.AdaptiveLIF` neurons (``excitatory.neuron``) with
        :class:`~plastorch.layers.LateralInhibition`.
    learner : Learner
        STDP learner on ``input_layer`` (its state is part of ``state_dict()``).

    Examples
    --------
    >>> model = DiehlCook2015(n_input=64, n_neurons=20, time_steps=100, weight_sum=30.0)
    >>> images = torch.rand(4, 8, 8)
    >>> counts = model(images)  # learns from these 4 samples
    >>> counts.shape
    torch.Size([4, 20])
    >>> bool((counts.sum(1) >= model.min_spikes).all())  # retried until >= 5 spikes
    True
    >>> weight_sums = model.input_layer.weight.sum(1)  # every neuron's: weight_sum
    >>> torch.allclose(weight_sums, torch.full((20,), 30.0))
    True
    """

    def __init__(
        self,
        n_input: int,
        n_neurons: int = 100,
        *,
        time_steps: int = 350,
        dt: float = 1.0,
        max_rate: float = DIEHL_COOK_MAX_RATE,
        lr_post: float = 1e-2,
        lr_pre: float = -1e-4,
        tau_post: float = 20.0,
        tau_pre: float = 20.0,
        trace_mode: str = "nearest",
        weight_dependence: str = "hard",
        mu: float = 1.0,
        beta: float = 3.0,
        wmax: float = 1.0,
        weight_sum: float | None = None,
        inhibition: float = 17.5,
        theta_plus: float = 0.05,
        tau_theta: float = 1e7,
        tau_mem: float = 100.0,
        v_rest: float = -65.0,
        v_reset: float = -65.0,
        v_threshold: float = -52.0,
        refractory: float = 5.0,
        min_spikes: int = 5,
        intensity_step: float = 0.5,
        max_retries: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        n_input = _check_int("n_input", n_input, 1)
        n_neurons = _check_int("n_neurons", n_neurons, 1)
        time_steps = _check_int("time_steps", time_steps, 1)
        weight_dependence = check_choice("weight_dependence", weight_dependence, WEIGHT_DEPENDENCES)
        if weight_sum is None:
            weight_sum = 0.1 * n_input
        weight_sum = check_positive("weight_sum", weight_sum)
        wmax = check_positive("wmax", wmax)
        if weight_sum > wmax * n_input:
            raise ValueError(
                f"weight_sum={weight_sum!r} cannot be reached with {n_input} weights of at "
                f"most wmax={wmax!r}"
            )
        dt = check_positive("dt", dt)
        max_rate = check_nonnegative("max_rate", max_rate)
        intensity_step = check_nonnegative("intensity_step", intensity_step)
        max_retries = _check_int("max_retries", max_retries, 0)
        top = (1.0 + max_retries * intensity_step) * max_rate * dt / 1000.0
        if top > 1.0:
            raise ValueError(
                f"max_retries={max_retries} retries of intensity_step={intensity_step} would "
                f"raise the spike probability per step to {top:.3g} > 1 "
                f"(max_rate={max_rate} Hz, dt={dt} ms)"
            )
        self.config: dict[str, Any] = dict(
            n_input=n_input,
            n_neurons=n_neurons,
            time_steps=time_steps,
            dt=dt,
            max_rate=max_rate,
            lr_post=check_real("lr_post", lr_post),
            lr_pre=check_real("lr_pre", lr_pre),
            tau_post=check_positive("tau_post", tau_post),
            tau_pre=check_positive("tau_pre", tau_pre),
            trace_mode=trace_mode,
            weight_dependence=weight_dependence,
            mu=check_nonnegative("mu", mu),
            beta=check_nonnegative("beta", beta),
            wmax=wmax,
            weight_sum=weight_sum,
            inhibition=check_nonnegative("inhibition", inhibition),
            theta_plus=theta_plus,
            tau_theta=tau_theta,
            tau_mem=tau_mem,
            v_rest=v_rest,
            v_reset=v_reset,
            v_threshold=v_threshold,
            refractory=refractory,
            min_spikes=_check_int("min_spikes", min_spikes, 0),
            intensity_step=intensity_step,
            max_retries=max_retries,
            seed=_check_int("seed", seed, 0),
        )
        cfg = self.config
        self.n_input, self.n_neurons, self.time_steps = n_input, n_neurons, time_steps
        self.dt, self.max_rate = dt, max_rate
        self.min_spikes, self.intensity_step = cfg["min_spikes"], intensity_step
        self.max_retries, self.seed = max_retries, cfg["seed"]

        self.input_layer = nn.Linear(n_input, n_neurons, bias=False)
        self.input_layer.weight.requires_grad_(False)  # learned by plasticity, not autograd
        neuron = AdaptiveLIF(
            n_neurons,
            theta_plus=theta_plus,
            tau_theta=tau_theta,
            tau_mem=tau_mem,
            v_rest=v_rest,
            v_reset=v_reset,
            v_threshold=v_threshold,
            refractory=refractory,
            dt=dt,
        )
        self.excitatory = InhibitedPopulation(neuron, LateralInhibition(cfg["inhibition"]))
        rule = STDP(
            cfg["lr_post"], cfg["lr_pre"], cfg["tau_post"], cfg["tau_pre"], dt=dt,
            trace_mode=trace_mode,
        )  # fmt: skip
        self.normalize = Normalize(weight_sum)
        self.learner = Learner(
            self.input_layer,
            self.excitatory,
            rule,
            _bound(weight_dependence, wmax, cfg["mu"], cfg["beta"]),
            step_mode="multi",
            apply=True,
            constraints=[self.normalize],
        )
        self._generator: torch.Generator | None = None
        init = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            weight = torch.rand(n_neurons, n_input, generator=init)
            self.input_layer.weight.copy_(self.normalize(weight))
        self._generator = init  # the training spikes continue the same stream
        self.synchronized = False  # set by synchronize(): one rank of a data-parallel run

    def synchronize(self) -> DiehlCook2015:
        """Train as one rank of several (``torch.distributed``); returns the model.

        Each rank presents its block of every batch (:class:`DiehlCookTrainer` splits
        them). The STDP update of every presentation is reduced over the ranks
        (:func:`plastorch.distributed.data_parallel`), so all ranks apply the update of
        the whole batch; after each presentation the adaptive thresholds gather every
        rank's increments (:func:`plastorch.distributed.sum_increments`); a retry happens
        when a sample is silent on any rank (ranks without one take part with an empty
        batch); evaluation splits the samples and gathers the counts. Within one
        presentation a rank's thresholds see only its own samples' spikes (the
        thresholds are synchronised at its end, as the weights are). Outside
        ``torch.distributed`` nothing changes. See docs/distributed.md.
        """
        distributed.data_parallel(self.learner)
        self.synchronized = True
        return self

    # -- random state ------------------------------------------------------------------
    def generator(self, device: torch.device) -> torch.Generator:
        """The generator of the training spikes on ``device`` (moved there on first use)."""
        if self._generator is None or self._generator.device != device:
            state = None if self._generator is None else self._generator.get_state()
            self._generator = torch.Generator(device=device)
            if state is not None and device.type == "cpu":
                self._generator.set_state(state)
            else:
                self._generator.manual_seed(self.seed + 1)
        return self._generator

    def rng_state(self) -> dict[str, Any]:
        """State of the training spike generator (for checkpoints)."""
        generator = self._generator
        return {"device": str(generator.device), "state": generator.get_state().clone()}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore a state returned by :meth:`rng_state`."""
        generator = torch.Generator(device=state["device"])
        generator.set_state(state["state"])
        self._generator = generator

    # -- presentations -----------------------------------------------------------------
    @property
    def thresholds(self) -> Tensor:
        """Adaptive thresholds :math:`\\theta` ``[n_neurons]`` in mV."""
        return self.excitatory.neuron.theta

    @torch.no_grad()
    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Present ``images`` ``[B, *]`` (intensities in [0, 1]); return spike counts ``[B, N]``.

        Parameters
        ----------
        images : Tensor
            ``[B, ...]`` with ``n_input`` values per sample.
        generator : torch.Generator, optional
            Source of the Poisson spikes; the model's own training stream by default.

        Returns
        -------
        Tensor
            Spike counts of the excitatory neurons in the accepted presentation of each
            sample (the first with at least ``min_spikes`` spikes, or the last retry).
        """
        counts, _ = self.present(images, generator)
        return counts

    @torch.no_grad()
    def present(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Like :meth:`forward`, and also return each sample's final input scale ``[B]``.

        A scale above 1 means the sample was retried.
        """
        weight = self.input_layer.weight
        if images.dim() < 1 or math.prod(images.shape[1:]) != self.n_input:
            raise ValueError(
                f"images must be [B, ...] with {self.n_input} values per sample, got "
                f"{tuple(images.shape)}"
            )
        intensity = images.reshape(images.shape[0], self.n_input).to(weight)
        generator = generator if generator is not None else self.generator(weight.device)
        learn = self.training
        self.excitatory.neuron.learning = learn
        if learn:
            self.learner.enable()
        else:
            self.learner.disable()
        batch = intensity.shape[0]
        counts = torch.zeros(batch, self.n_neurons, dtype=weight.dtype, device=weight.device)
        scale = torch.ones(batch, dtype=weight.dtype, device=weight.device)
        todo = torch.arange(batch, device=weight.device)
        share = learn and self.synchronized and distributed.is_distributed()
        for attempt in range(self.max_retries + 1):
            theta = self.thresholds.clone() if share else None
            spikes_in = poisson(
                intensity[todo] * scale[todo, None],
                self.time_steps,
                dt=self.dt,
                max_rate=self.max_rate,
                generator=generator,
            )
            spikes = self.excitatory(self.input_layer(spikes_in))
            if learn:
                self.learner.step()
                self.learner.reset()
                if share:  # add every rank's threshold increments of this presentation
                    decayed = theta * self.excitatory.neuron.decay_theta**self.time_steps
                    self.thresholds.copy_(distributed.sum_increments(self.thresholds, decayed))
            self.excitatory.reset()  # the rest period between presentations
            found = spikes.sum(0)
            counts[todo] = found
            silent = found.sum(1) < self.min_spikes
            if attempt == self.max_retries or not _anywhere(silent, share):
                break
            todo = todo[silent]
            scale[todo] += self.intensity_step
        return counts, scale

    def extra_repr(self) -> str:
        return f"n_input={self.n_input}, n_neurons={self.n_neurons}, time_steps={self.time_steps}"


def _anywhere(flags: Tensor, across_ranks: bool) -> bool:
    """Whether any flag is set, on this rank or (``across_ranks``) on any rank."""
    if not across_ranks:
        return bool(flags.any())
    return bool(distributed.all_reduce_tensor(flags.any().reshape(1).long(), "max"))


def _bound(name: str, wmax: float, mu: float, beta: float) -> Bound:
    if name == "hard":
        return Hard(0.0, wmax)
    if name == "soft":
        return Soft(0.0, wmax)
    if name == "power-law":
        return PowerLaw(0.0, wmax, mu=mu)
    return Exponential(0.0, wmax, beta=beta)


# -- labels and votes -------------------------------------------------------------------
class Assignment(NamedTuple):
    """Result of :func:`assign_labels`.

    Attributes
    ----------
    labels : Tensor
        ``[N]`` int64: the class of each neuron, ``-1`` for a neuron that never fired.
    rates : Tensor
        ``[N, C]``: mean response of each neuron to the samples of each class.
    proportions : Tensor
        ``[N, C]``: ``rates`` divided by their sum over classes (0 for silent neurons).
    """

    labels: Tensor
    rates: Tensor
    proportions: Tensor


def _check_responses(responses: Tensor) -> None:
    if not isinstance(responses, Tensor) or responses.dim() != 2:
        shape = tuple(responses.shape) if isinstance(responses, Tensor) else type(responses)
        raise ValueError(f"responses must be a [S, N] tensor of spike counts, got {shape}")


def assign_labels(responses: Tensor, labels: Tensor, n_classes: int) -> Assignment:
    r"""Assign every neuron the class it responds to most on average.

    .. math::

        \bar r_{nc} = \frac{1}{|S_c|} \sum_{s \in S_c} r_{sn}, \qquad
        a_n = \arg\max_c \bar r_{nc}, \qquad
        p_{nc} = \frac{\bar r_{nc}}{\sum_{c'} \bar r_{nc'}}

    where :math:`S_c` are the samples of class :math:`c` (:math:`\bar r_{nc} = 0` if
    there are none). Ties go to the lowest class, and a neuron with :math:`\bar r_{n\cdot}
    = 0` gets :math:`a_n = -1` and votes for nothing (as in the original code).

    Parameters
    ----------
    responses : Tensor
        ``[S, N]`` spike counts of ``N`` neurons for ``S`` samples.
    labels : Tensor
        ``[S]`` int64 classes in ``[0, n_classes)``.
    n_classes : int
        Number of classes ``C``.

    Returns
    -------
    Assignment

    Examples
    --------
    >>> responses = torch.tensor([[4.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    >>> assignment = assign_labels(responses, torch.tensor([0, 0, 1]), n_classes=2)
    >>> assignment.labels  # neuron 2 never fired
    tensor([ 0,  1, -1])
    >>> assignment.rates
    tensor([[3.0000, 0.0000],
            [0.5000, 3.0000],
            [0.0000, 0.0000]])
    """
    _check_responses(responses)
    n_classes = _check_int("n_classes", n_classes, 1)
    if labels.shape != responses.shape[:1]:
        raise ValueError(
            f"labels must be [S] for responses [S, N], got labels {tuple(labels.shape)} and "
            f"responses {tuple(responses.shape)}"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(
            f"labels must be in [0, {n_classes}), got values from {int(labels.min())} to "
            f"{int(labels.max())}"
        )
    if not responses.is_floating_point():
        responses = responses.to(torch.get_default_dtype())
    onehot = nn.functional.one_hot(labels.long(), n_classes).to(responses)  # [S, C]
    per_class = onehot.sum(0)
    rates = responses.t() @ onehot / per_class.clamp(min=1)  # [N, C]
    total = rates.sum(1, keepdim=True)
    proportions = torch.where(total > 0, rates / torch.where(total > 0, total, 1), 0)
    assigned = torch.where(total[:, 0] > 0, rates.argmax(1), -1)
    return Assignment(assigned, rates, proportions)


def _vote(responses: Tensor, assignment: Assignment, weights: Tensor) -> Tensor:
    _check_responses(responses)
    n_neurons, n_classes = assignment.rates.shape
    if responses.shape[1] != n_neurons:
        raise ValueError(
            f"responses have {responses.shape[1]} neurons but the assignment has {n_neurons} "
            f"(responses {tuple(responses.shape)}, rates {tuple(assignment.rates.shape)})"
        )
    member = assignment.labels[:, None] == torch.arange(n_classes, device=responses.device)
    member = member.to(weights.dtype)  # [N, C]; rows of unassigned neurons are 0
    size = member.sum(0)
    scores = responses.to(weights.dtype) @ (member * weights) / size.clamp(min=1)
    return scores.argmax(1)


def vote_all_activity(responses: Tensor, assignment: Assignment) -> Tensor:
    r"""Classify each sample by the mean response of the neurons assigned to each class.

    .. math:: \hat y_s = \arg\max_c \frac{1}{|N_c|} \sum_{n \in N_c} r_{sn},
              \qquad N_c = \{n : a_n = c\}

    (a class without neurons scores 0; ties go to the lowest class). This is Diehl & Cook's
    classification.

    Parameters
    ----------
    responses : Tensor
        ``[S, N]`` spike counts.
    assignment : Assignment
        From :func:`assign_labels`.

    Returns
    -------
    Tensor
        ``[S]`` int64 predicted classes.

    Examples
    --------
    >>> assignment = assign_labels(torch.eye(3), torch.tensor([0, 1, 1]), n_classes=2)
    >>> assignment.labels
    tensor([0, 1, 1])
    >>> vote_all_activity(torch.tensor([[3.0, 2.0, 2.0], [1.0, 4.0, 0.0]]), assignment)
    tensor([0, 1])
    """
    return _vote(responses, assignment, torch.ones_like(assignment.proportions))


def vote_proportion_weighting(responses: Tensor, assignment: Assignment) -> Tensor:
    r"""Like :func:`vote_all_activity`, each response weighted by the neuron's class share.

    .. math:: \hat y_s = \arg\max_c \frac{1}{|N_c|} \sum_{n \in N_c} p_{nc}\, r_{sn}

    with :math:`p_{nc}` the proportions of :func:`assign_labels`: a neuron that also
    responds to other classes counts less (the proportion-weighting vote of BindsNET).

    Examples
    --------
    >>> responses = torch.tensor([[4.0, 0.0], [2.0, 2.0]])  # neuron 0 is class 0 but unselective
    >>> assignment = assign_labels(responses, torch.tensor([0, 1]), n_classes=2)
    >>> assignment.proportions
    tensor([[0.6667, 0.3333],
            [0.0000, 1.0000]])
    >>> vote_all_activity(torch.tensor([[3.0, 2.5]]), assignment)
    tensor([0])
    >>> vote_proportion_weighting(torch.tensor([[3.0, 2.5]]), assignment)
    tensor([1])
    """
    return _vote(responses, assignment, assignment.proportions)


# -- evaluation -------------------------------------------------------------------------
def collect_responses(
    model: DiehlCook2015,
    images: Tensor,
    *,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    progress: Callable[..., Any] | None = None,
    desc: str = "",
) -> Tensor:
    """Spike counts ``[S, N]`` of ``model`` for ``images`` with learning frozen.

    The model is put in evaluation mode for the call and back in its previous mode after.
    ``progress`` is an optional ``tqdm``-like factory ``progress(total=, desc=, unit=)``.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    was_training = model.training
    model.eval()
    weight = model.input_layer.weight
    share = model.synchronized and distributed.is_distributed()
    if share:  # each rank answers for its block of the samples; all get every row
        images = distributed.shard(images)
    bar = progress(total=len(images), desc=desc, unit="sample") if progress else None
    try:
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size].to(weight.device)
            out.append(model(chunk, generator))
            if bar is not None:
                bar.update(len(chunk))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    counts = torch.cat(out) if out else torch.zeros(0, model.n_neurons)
    return distributed.all_gather_rows(counts.to(weight)) if share else counts


def evaluate(
    model: DiehlCook2015,
    train: LabeledImages,
    test: LabeledImages,
    *,
    n_classes: int = 10,
    batch_size: int = 256,
    seed: int = 0,
    progress: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Assign labels on ``train`` and classify ``test``, with weights and thresholds frozen.

    Spikes come from a fresh generator seeded with ``seed`` (so the same model, data,
    seed and ``batch_size`` always give the same numbers, whatever happened before).

    Returns
    -------
    dict
        ``accuracy_all_activity`` / ``accuracy_proportion_weighting`` on ``test``,
        ``train_accuracy_all_activity`` / ``train_accuracy_proportion_weighting`` on the
        labelling set, ``assignment`` (:class:`Assignment`), the class of each neuron
        in ``labels`` ([N] list) and ``silent_neurons`` (count of neurons never firing).

    Examples
    --------
    >>> from plastorch.data import load_digits
    >>> model = DiehlCook2015(64, 10, time_steps=50, weight_sum=30.0)
    >>> data = load_digits("train", n_train=40)
    >>> result = evaluate(model, data, data)
    >>> 0.0 <= result["accuracy_all_activity"] <= 1.0
    True
    """
    device = model.input_layer.weight.device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    kwargs = dict(batch_size=batch_size, generator=generator, progress=progress)
    train_responses = collect_responses(model, train.images, desc="assign", **kwargs)
    test_responses = collect_responses(model, test.images, desc="test", **kwargs)
    assignment = assign_labels(train_responses, train.labels.to(device), n_classes)
    result: dict[str, Any] = {}
    for name, vote in (
        ("all_activity", vote_all_activity),
        ("proportion_weighting", vote_proportion_weighting),
    ):
        for prefix, responses, data in (
            ("", test_responses, test),
            ("train_", train_responses, train),
        ):
            correct = vote(responses, assignment).cpu() == data.labels
            result[f"{prefix}accuracy_{name}"] = correct.double().mean().item()
    result["assignment"] = assignment
    result["labels"] = assignment.labels.cpu().tolist()
    result["silent_neurons"] = int((assignment.labels < 0).sum())
    return result


class OnlineAccuracy:
    """Running accuracy during training, as the original reports it.

    Responses are buffered; every ``interval`` samples the neurons are re-assigned from
    the buffered ones (:func:`assign_labels`) and the buffer is cleared. Each incoming
    sample is classified (all-activity vote) with the assignment of the *previous*
    interval before its label is used, so the first interval is not scored. ``history``
    holds ``(samples seen, accuracy over the interval)``.

    Examples
    --------
    >>> tracker = OnlineAccuracy(interval=2, n_classes=2)
    >>> tracker.update(torch.tensor([[5.0, 0.0], [0.0, 5.0]]), torch.tensor([0, 1]))
    >>> tracker.update(torch.tensor([[4.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
    >>> tracker.history  # second interval: sample 3 right, sample 4 wrong
    [[4, 0.5]]
    """

    def __init__(self, interval: int, n_classes: int = 10):
        self.interval = _check_int("interval", interval, 1)
        self.n_classes = _check_int("n_classes", n_classes, 1)
        self.assignment: Assignment | None = None
        self.responses: list[Tensor] = []
        self.labels: list[Tensor] = []
        self.seen = 0
        self.scored = 0
        self.correct = 0
        self.interval_scored = 0
        self.interval_correct = 0
        self.history: list[list[float]] = []

    @property
    def accuracy(self) -> float | None:
        """Accuracy over the samples scored since :meth:`new_epoch` (``None`` before one)."""
        return self.correct / self.scored if self.scored else None

    def new_epoch(self) -> None:
        """Restart :attr:`accuracy` (the assignment, buffer and history carry on)."""
        self.scored = self.correct = 0

    def update(self, responses: Tensor, labels: Tensor) -> None:
        """Score ``responses`` ``[B, N]`` against ``labels`` ``[B]``, then buffer them."""
        responses, labels = responses.detach().cpu(), labels.detach().cpu()
        if self.assignment is not None:
            hits = int((vote_all_activity(responses, self.assignment) == labels).sum())
            self.scored += len(labels)
            self.correct += hits
            self.interval_scored += len(labels)
            self.interval_correct += hits
        self.responses.append(responses)
        self.labels.append(labels)
        self.seen += len(labels)
        if sum(len(x) for x in self.labels) >= self.interval:
            if self.interval_scored:
                self.history.append([self.seen, self.interval_correct / self.interval_scored])
            self.assignment = assign_labels(
                torch.cat(self.responses), torch.cat(self.labels), self.n_classes
            )
            self.responses, self.labels = [], []
            self.interval_scored = self.interval_correct = 0

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically (for checkpoints).

        Lists are copied; the tensors in them are shared (nothing modifies them in place).
        """
        state = dict(vars(self))
        for key in ("responses", "labels", "history"):
            state[key] = list(state[key])
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        state = dict(state)
        for key in ("responses", "labels", "history"):
            state[key] = list(state[key])
        if state.get("assignment") is not None:
            state["assignment"] = Assignment(*state["assignment"])
        vars(self).update(state)


# -- checkpoints ------------------------------------------------------------------------
def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``checkpoint`` with ``torch.save`` atomically (temporary file + ``os.replace``).

    A reader never sees a half-written file: either the old checkpoint or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(checkpoint, temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :class:`DiehlCookTrainer`, with a clear error otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise ValueError(f"{path}: not a readable checkpoint ({error})") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    return checkpoint


def _epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The sample order of ``epoch``: a permutation that depends only on (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


class DiehlCookTrainer:
    """Trains :class:`DiehlCook2015` for some epochs, evaluating after each, with checkpoints.

    Every epoch presents the training set in an order drawn from ``(seed, epoch)`` in
    batches of ``batch_size``, tracking :class:`OnlineAccuracy`; then :func:`evaluate`
    assigns labels on the training set and classifies the test set (with its own
    generator, so evaluation never disturbs training).

    A checkpoint (:meth:`state_dict`) holds the model's ``state_dict`` (its learner's
    included, under ``learner.``), the training spike generator, the position (epoch and
    sample index), the online accuracy and the metrics so far. It is written atomically
    every ``checkpoint_every`` samples, after each epoch and at the end. A run resumed
    from any checkpoint ends with weights bit-identical to an uninterrupted run.

    On ``KeyboardInterrupt`` (Ctrl-C) the trainer writes the state as it was at the start
    of the interrupted batch (so the checkpoint is always consistent) and re-raises.

    Parameters
    ----------
    model : DiehlCook2015
    train, test : LabeledImages
        Training (and labelling) set, test set.
    epochs : int
        Total number of epochs (a resumed run continues up to it).
    batch_size : int
        Samples per training presentation.
    seed : int
        Seeds the sample order and the evaluation spikes.
    eval_batch_size : int
        Batch size of evaluation (exact at any size: nothing learns then).
    n_classes : int
    checkpoint_path : path, optional
        Where to write checkpoints; ``None`` writes none.
    checkpoint_every : int, optional
        Samples between checkpoints within an epoch (``None``: only at epoch ends).
    interval : int
        Samples per online-accuracy interval.
    info : dict, optional
        Extra JSON-serialisable facts stored in the checkpoint and metrics (data set...).
    progress : callable, optional
        ``tqdm``-like factory ``progress(total=, desc=, unit=, initial=)``.
    log : callable
        Receives one line after each epoch.

    Examples
    --------
    >>> from plastorch.data import load_digits
    >>> train, test = load_digits("train", n_train=40), load_digits("test", n_train=1757)
    >>> model = DiehlCook2015(64, 10, time_steps=50, weight_sum=30.0)
    >>> metrics = DiehlCookTrainer(model, train, test, epochs=1, batch_size=8).run()
    >>> len(metrics["epochs"]), metrics["finished"]
    (1, True)
    """

    def __init__(
        self,
        model: DiehlCook2015,
        train: LabeledImages,
        test: LabeledImages,
        *,
        epochs: int = 1,
        batch_size: int = 1,
        seed: int = 0,
        eval_batch_size: int = 256,
        n_classes: int = 10,
        checkpoint_path: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        interval: int = 250,
        info: dict[str, Any] | None = None,
        progress: Callable[..., Any] | None = None,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.model = model
        self.train, self.test = train, test
        self.epochs = _check_int("epochs", epochs, 0)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seed = _check_int("seed", seed, 0)
        self.eval_batch_size = _check_int("eval_batch_size", eval_batch_size, 1)
        self.n_classes = _check_int("n_classes", n_classes, 1)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.checkpoint_every = (
            None
            if checkpoint_every is None
            else _check_int("checkpoint_every", checkpoint_every, 1)
        )
        self.info = dict(info or {})
        self.progress = progress
        self.log = log
        self.online = OnlineAccuracy(interval, n_classes)
        self.epoch = 0
        self.index = 0
        self.train_seconds = 0.0  # of the current epoch, across resumed sessions
        self.retried = 0  # samples retried in the current epoch
        self.metrics: dict[str, Any] = {
            "model": "diehl-cook",
            "config": dict(model.config),
            "train": {
                **self.info,
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "seed": self.seed,
                "n_train": len(train),
                "n_test": len(test),
            },
            "epochs": [],
            "online_accuracy": self.online.history,
            "finished": False,
        }
        self.assignment: list[int] | None = None

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A checkpoint of the run as it is now (tensors cloned; safe to keep)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": dict(self.model.config),
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "rng": self.model.rng_state(),
            "position": {"epoch": self.epoch, "index": self.index},
            "train_seconds": self.train_seconds,
            "retried": self.retried,
            "online": self.online.state_dict(),
            "metrics": copy.deepcopy(self.metrics),
            "assignment": None if self.assignment is None else list(self.assignment),
            "trainer": {
                "batch_size": self.batch_size,
                "seed": self.seed,
                "eval_batch_size": self.eval_batch_size,
                "n_classes": self.n_classes,
                "interval": self.online.interval,
                "checkpoint_every": self.checkpoint_every,
                "info": dict(self.info),
            },
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Continue from ``checkpoint`` (model, generator, position, metrics)."""
        self.model.load_state_dict(checkpoint["model"])
        self.model.set_rng_state(checkpoint["rng"])
        self.epoch = checkpoint["position"]["epoch"]
        self.index = checkpoint["position"]["index"]
        self.train_seconds = checkpoint["train_seconds"]
        self.retried = checkpoint["retried"]
        self.online.load_state_dict(checkpoint["online"])
        self.metrics = copy.deepcopy(checkpoint["metrics"])
        self.metrics["online_accuracy"] = self.online.history
        self.metrics["train"]["epochs"] = self.epochs
        self.metrics["finished"] = False
        self.assignment = checkpoint.get("assignment")

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: dict[str, Any],
        train: LabeledImages,
        test: LabeledImages,
        *,
        epochs: int | None = None,
        **overrides: Any,
    ) -> DiehlCookTrainer:
        """Rebuild the model and trainer of ``checkpoint``; ``epochs`` may be raised."""
        model = DiehlCook2015(**checkpoint["config"])
        settings = dict(checkpoint["trainer"]) | overrides
        trainer = cls(
            model,
            train,
            test,
            epochs=checkpoint["metrics"]["train"]["epochs"] if epochs is None else epochs,
            **settings,
        )
        trainer.load_state_dict(checkpoint)
        return trainer

    def save(self, checkpoint: dict[str, Any] | None = None) -> Path | None:
        """Write ``checkpoint`` (default: the current state) to ``checkpoint_path``."""
        if self.checkpoint_path is None:
            return None
        state = self.state_dict() if checkpoint is None else checkpoint
        return save_checkpoint(state, self.checkpoint_path)

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train up to ``epochs``, evaluating after each; return the metrics."""
        snapshot = self.state_dict() if self.checkpoint_path else None
        try:
            while self.epoch < self.epochs:
                order = _epoch_order(len(self.train), self.seed, self.epoch)
                bar = None
                if self.progress is not None:
                    bar = self.progress(
                        total=len(self.train),
                        initial=self.index,
                        desc=f"epoch {self.epoch + 1}/{self.epochs}",
                        unit="sample",
                    )
                last_saved = self.index
                if self.index == 0:
                    self.online.new_epoch()
                try:
                    while self.index < len(self.train):
                        snapshot = self.state_dict() if self.checkpoint_path else None
                        self._train_batch(order[self.index : self.index + self.batch_size])
                        if bar is not None:
                            bar.update(self.index - bar.n)
                            postfix = {"retried": self.retried}
                            if self.online.accuracy is not None:
                                postfix = {"acc": f"{self.online.accuracy:.3f}"} | postfix
                            bar.set_postfix(postfix, refresh=False)
                        if (
                            self.checkpoint_every is not None
                            and self.index - last_saved >= self.checkpoint_every
                            and self.index < len(self.train)
                        ):
                            self.save()
                            last_saved = self.index
                finally:
                    if bar is not None:
                        bar.close()
                snapshot = self.state_dict() if self.checkpoint_path else None
                self._end_epoch()
                self.save()
            self.metrics["finished"] = True
            self.save()
        except KeyboardInterrupt:
            if snapshot is not None:
                self.save(snapshot)
            raise
        return self.metrics

    def _train_batch(self, index: Tensor) -> None:
        device = self.model.input_layer.weight.device
        start = time.perf_counter()
        local = index
        if self.model.synchronized and distributed.is_distributed():
            # this rank's block of the batch, and spikes from a stream of its own that a
            # resumed run draws again identically (seeded by the position and the rank)
            local = distributed.shard(index)
            key = f"{self.seed},{self.epoch},{self.index},{distributed.rank()}".encode()
            seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
            self.model.generator(device).manual_seed(seed >> 1)
        counts, scale = self.model.present(self.train.images[local].to(device))
        if local is not index:  # every rank scores the whole batch
            counts, scale = distributed.all_gather_rows(counts), distributed.all_gather_rows(scale)
        self.train_seconds += time.perf_counter() - start
        self.retried += int((scale > 1).sum())
        self.online.update(counts, self.train.labels[index])
        self.index += len(index)

    def _end_epoch(self) -> None:
        start = time.perf_counter()
        result = evaluate(
            self.model,
            self.train,
            self.test,
            n_classes=self.n_classes,
            batch_size=self.eval_batch_size,
            seed=self.seed + 1,
            progress=self.progress,
        )
        self.assignment = result["labels"]
        n_train = len(self.train)
        row = {
            "epoch": self.epoch + 1,
            **{k: v for k, v in result.items() if k not in ("assignment", "labels")},
            "online_accuracy": self.online.accuracy,
            "retried_samples": self.retried,
            "train_seconds": self.train_seconds,
            "train_samples_per_second": n_train / self.train_seconds
            if self.train_seconds > 0
            else math.inf,
            "eval_seconds": time.perf_counter() - start,
        }
        self.metrics["epochs"].append(row)
        self.metrics["accuracy_all_activity"] = row["accuracy_all_activity"]
        self.metrics["accuracy_proportion_weighting"] = row["accuracy_proportion_weighting"]
        self.log(
            f"epoch {row['epoch']}: test accuracy {row['accuracy_all_activity']:.2%} "
            f"(all activity), {row['accuracy_proportion_weighting']:.2%} (proportion "
            f"weighting); {row['train_samples_per_second']:.1f} training samples/s"
        )
        self.epoch += 1
        self.index = 0
        self.train_seconds = 0.0
        self.retried = 0
