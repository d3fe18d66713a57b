r"""Florian (2007): reward-modulated STDP, with and without an eligibility trace.

Two reference experiments of R. V. Florian, *Reinforcement learning through modulation
of spike-timing-dependent synaptic plasticity*, Neural Computation 19(6), 2007:

- :func:`single_synapse`: one synapse between two neurons with imposed spike trains,
  the weight trajectory under STDP, MSTDP and MSTDP-ET for a given reward (the paper's
  illustration of the rules). With a reward that arrives *after* the pairing, MSTDP
  does not change the weight at all (its change is :math:`r(t)\,\zeta(t)` and
  :math:`\zeta` is non-zero only at spike times), while MSTDP-ET's eligibility trace
  still holds the pairing when the reward comes.
- :func:`train_xor`: the rate-coded XOR problem (:class:`FlorianXOR`).

Rules and constants
-------------------
:math:`A_+ = 1`, :math:`A_- = -1`, :math:`\tau_+ = \tau_- = 20` ms,
:math:`\tau_z = 25` ms, :math:`\Delta t = 1` ms, i.e. ``lr_post=1, lr_pre=-1`` of
:class:`~plastorch.rules.STDP`, :class:`~plastorch.rules.MSTDP` and
:class:`~plastorch.rules.MSTDPET`; Florian's learning rate :math:`\gamma` is the
``scale`` of :meth:`plastorch.Learner.step` (for MSTDP-ET it also absorbs his
:math:`\Delta t = 1` ms). Florian's discrete update pairs the reward of step
:math:`t + \Delta t` with the eligibility of step :math:`t`; here the reward of step
:math:`t` multiplies the eligibility that includes the spikes of step :math:`t` (the
library's event order, :mod:`plastorch.rules.stdp`), so the same protocol is seen one
step earlier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..bounds import Hard
from ..encoders import poisson
from ..experiments import Experiment, register
from ..functional.checks import check_nonnegative, check_positive
from ..learner import Learner
from ..neurons import LIF
from ..rules import MSTDP, MSTDPET, STDP
from ..rules.base import Rule

__all__ = [
    "XOR_PATTERNS",
    "XOR_TARGETS",
    "FlorianXOR",
    "SingleSynapseProtocol",
    "SynapseTrajectory",
    "florian_rules",
    "single_synapse",
    "single_synapse_protocol",
    "spike_train",
    "train_xor",
    "XORResult",
]

#: Florian's (2007) constants: A+ = 1, A- = -1, tau+- = 20 ms, tau_z = 25 ms.
FLORIAN_LR_POST = 1.0
FLORIAN_LR_PRE = -1.0
FLORIAN_TAU = 20.0
FLORIAN_TAU_Z = 25.0


def spike_train(times: Sequence[int], steps: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """A 0/1 train ``[steps]`` with spikes at the given steps.

    Examples
    --------
    >>> spike_train([1, 3], 5)
    tensor([0., 1., 0., 1., 0.], dtype=torch.float64)
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    train = torch.zeros(steps, dtype=dtype)
    for time in times:
        if not 0 <= int(time) < steps:
            raise ValueError(f"spike time {time!r} is outside [0, {steps})")
        train[int(time)] = 1.0
    return train


def florian_rules(dt: float = 1.0) -> dict[str, Rule]:
    """STDP, MSTDP and MSTDP-ET with Florian's (2007) constants.

    Examples
    --------
    >>> sorted(florian_rules())
    ['MSTDP', 'MSTDP-ET', 'STDP']
    """
    pair = dict(tau_post=FLORIAN_TAU, tau_pre=FLORIAN_TAU, dt=dt)
    return {
        "STDP": STDP(FLORIAN_LR_POST, FLORIAN_LR_PRE, **pair),
        "MSTDP": MSTDP(FLORIAN_LR_POST, FLORIAN_LR_PRE, **pair),
        "MSTDP-ET": MSTDPET(FLORIAN_LR_POST, FLORIAN_LR_PRE, tau_eligibility=FLORIAN_TAU_Z, **pair),
    }


class SynapseTrajectory(NamedTuple):
    """What :func:`single_synapse` records after every step.

    Attributes
    ----------
    weight : Tensor
        ``[T]``, the weight after step ``t`` (all updates of steps ``<= t`` applied).
    eligibility : Tensor or None
        ``[T]``, MSTDP-ET's :math:`\\eta_+ z_+(t) + \\eta_- z_-(t)` after step ``t``
        (``None`` for rules without an eligibility trace).
    """

    weight: Tensor
    eligibility: Tensor | None


def single_synapse(
    rule: Rule,
    pre: Tensor,
    post: Tensor,
    reward: Tensor | None = None,
    *,
    weight: float = 0.0,
    scale: float = 1.0,
) -> SynapseTrajectory:
    r"""Weight of one synapse whose pre- and postsynaptic spike trains are imposed.

    The synapse is an ``nn.Linear(1, 1)`` trained by a :class:`~plastorch.Learner` in
    single-step mode; each step records ``pre[t]`` and ``post[t]`` and calls
    ``learner.step(reward[t], scale=scale, apply=True)``, so for MSTDP

    .. math:: w(t) = w(t - 1) + \gamma\, r(t)\, \bigl[A_+ s_\text{post}(t) x_\text{pre}(t)
              + A_- \tilde x_\text{post}(t) s_\text{pre}(t)\bigr]

    and for MSTDP-ET :math:`w(t) = w(t-1) + \gamma\, r(t) [A_+ z_+(t) + A_- z_-(t)]`
    with :math:`z_\pm(t) = e^{-\Delta t/\tau_z} z_\pm(t-1) + \xi_\pm(t)/\tau_z`
    (:class:`~plastorch.rules.MSTDPET`). The weight has no bound.

    Parameters
    ----------
    rule : Rule
        :class:`~plastorch.rules.STDP`, :class:`~plastorch.rules.MSTDP` or
        :class:`~plastorch.rules.MSTDPET` (see :func:`florian_rules`).
    pre, post : Tensor
        ``[T]`` spike trains (0/1).
    reward : Tensor, optional
        ``[T]`` reward :math:`r(t)`; required by modulated rules, ignored by STDP.
    weight : float
        Initial weight.
    scale : float
        :math:`\gamma`.

    Returns
    -------
    SynapseTrajectory

    Examples
    --------
    >>> rules = florian_rules()
    >>> pre, post = spike_train([0], 3), spike_train([1], 3)
    >>> single_synapse(rules["STDP"], pre, post).weight  # exp(-1/20) at the post spike
    tensor([0.0000, 0.9512, 0.9512], dtype=torch.float64)
    >>> late = spike_train([2], 3)  # a reward one step after the pairing
    >>> single_synapse(rules["MSTDP"], pre, post, late).weight
    tensor([0., 0., 0.], dtype=torch.float64)
    >>> single_synapse(rules["MSTDP-ET"], pre, post, late).weight[-1].item() > 0
    True
    """
    if pre.dim() != 1 or post.shape != pre.shape:
        raise ValueError(
            f"pre and post must be [T] spike trains of equal length, got {tuple(pre.shape)} "
            f"and {tuple(post.shape)}"
        )
    if rule.modulated and (reward is None or reward.shape != pre.shape):
        shape = None if reward is None else tuple(reward.shape)
        raise ValueError(
            f"{type(rule).__name__} needs a reward [T] = {[pre.shape[0]]}, got {shape}"
        )
    layer = nn.Linear(1, 1, bias=False).to(torch.float64)
    with torch.no_grad():
        layer.weight.fill_(float(weight))
    source = nn.Identity()
    learner = Learner(layer, source, rule, apply=True)
    weights = torch.empty(pre.shape[0], dtype=torch.float64)
    eligibility = torch.empty_like(weights) if isinstance(rule, MSTDPET) else None
    pre, post = pre.to(torch.float64), post.to(torch.float64)
    for t in range(pre.shape[0]):
        layer(pre[t].reshape(1, 1))  # the learner's hooks record the pre- and
        source(post[t].reshape(1, 1))  # postsynaptic spikes of this step
        signal = float(reward[t]) if rule.modulated else None
        learner.step(signal, scale=scale)
        weights[t] = layer.weight.detach().reshape(())
        if eligibility is not None:
            eligibility[t] = (
                rule.lr_post * learner.eligibility_post + rule.lr_pre * learner.eligibility_pre
            ).reshape(())
    return SynapseTrajectory(weights, eligibility)


class SingleSynapseProtocol(NamedTuple):
    """Imposed spike trains and rewards of the single-synapse experiment (all ``[T]``).

    Attributes
    ----------
    pre, post : Tensor
        Spike trains.
    reward_delayed : Tensor
        A reward pulse after each pairing (too late for MSTDP).
    reward_immediate : Tensor
        A reward at the step of each pairing's second spike (what MSTDP needs).
    """

    pre: Tensor
    post: Tensor
    reward_delayed: Tensor
    reward_immediate: Tensor


def single_synapse_protocol(
    steps: int = 300,
    *,
    causal: tuple[int, int] = (20, 30),
    acausal: tuple[int, int] = (160, 150),
    reward_delay: int = 30,
    reward_duration: int = 20,
) -> SingleSynapseProtocol:
    r"""Two pairings, each followed by a reward pulse.

    A causal pairing (pre at ``causal[0]``, post at ``causal[1]``) and an acausal one
    (pre at ``acausal[0]``, post at ``acausal[1]``, post first). The delayed reward is
    :math:`r = 1` for ``reward_duration`` steps starting ``reward_delay`` steps after
    each pairing's second spike; the immediate reward is :math:`r = 1` at that spike's
    step only.

    Examples
    --------
    >>> p = single_synapse_protocol()
    >>> p.pre.nonzero().flatten().tolist(), p.post.nonzero().flatten().tolist()
    ([20, 160], [30, 150])
    >>> p.reward_delayed.nonzero().flatten()[[0, -1]].tolist()
    [60, 209]
    """
    pre = spike_train([causal[0], acausal[0]], steps)
    post = spike_train([causal[1], acausal[1]], steps)
    delayed = torch.zeros(steps, dtype=torch.float64)
    immediate = torch.zeros(steps, dtype=torch.float64)
    for last in (max(causal), max(acausal)):
        start = last + reward_delay
        if start + reward_duration > steps:
            raise ValueError(
                f"the reward after step {last} ends at {start + reward_duration}, past "
                f"steps={steps}"
            )
        delayed[start : start + reward_duration] = 1.0
        immediate[last] = 1.0
    return SingleSynapseProtocol(pre, post, delayed, immediate)


# -- rate-coded XOR --------------------------------------------------------------------------
#: The four XOR patterns (bit A, bit B) and their targets.
XOR_PATTERNS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_TARGETS = torch.tensor([0.0, 1.0, 1.0, 0.0])


class FlorianXOR(nn.Module):
    r"""Florian's (2007) rate-coded XOR network: 2 x 30 inputs, 60 hidden, 1 output.

    Each input bit is a group of ``group_size`` Poisson neurons firing at ``rate`` Hz
    when the bit is 1 and silent when it is 0; half of each group is excitatory and half
    inhibitory (as in Florian's simulations: an input neuron's synapses are all
    excitatory, weights in :math:`[0, w_\max]`, or all inhibitory, in
    :math:`[-w_\max, 0]`). The hidden and the output neurons are leaky
    integrate-and-fire (:class:`~plastorch.neurons.LIF`: :math:`\tau_m = 20` ms, rest and
    reset -70 mV, threshold -54 mV, 1 ms refractory) and the hidden neurons excite the
    output (:math:`[0, w_\max]`). A presynaptic spike raises the membrane by the weight
    in mV in the step it is emitted (no transmission delay):

    .. math::

        h(t) = \text{LIF}\bigl(W_E\, x_E(t) + W_I\, x_I(t)\bigr), \qquad
        o(t) = \text{LIF}\bigl(W_O\, h(t) + 100\, \xi(t)\bigr),
        \quad \xi(t) \sim \text{Bernoulli}(\nu_\text{spont} \Delta t)

    so a hidden spike and the output spike it causes fall in the same step, which the
    library's event order counts as causal (pre before post). This matters for MSTDP,
    whose reward reaches a hidden synapse only through spikes in the rewarded step: with
    a 1 ms delay the hidden spikes that caused an output spike are one step earlier, and
    MSTDP separated the patterns in 0 of 5 seeds (MSTDP-ET, whose eligibility spans
    25 ms, learned XOR either way).

    Parameters
    ----------
    group_size : int
        Input neurons per bit (30), split evenly into excitatory and inhibitory.
    hidden : int
        Hidden neurons (60).
    weight_max : float
        :math:`w_\max` in mV (5).
    hidden_init, output_init : float
        Initial weight magnitudes are uniform in ``[0, hidden_init]`` and
        ``[0, output_init]`` mV.
    spontaneous_rate : float
        The output neuron also fires spontaneously, as a Poisson process of this rate
        in Hz (a forced spike: +100 mV in that step). This is exploration: a reward can
        only reach a pattern the output fires on, and without it a pattern whose output
        fell silent early is never learned (Florian's derivation assumes stochastic
        neurons; independent re-implementations report the same need).
    seed : int
        Seed of the initial weights.

    Examples
    --------
    >>> net = FlorianXOR(seed=0)
    >>> exc, inh = net.encode(XOR_PATTERNS, 10, torch.Generator().manual_seed(0))
    >>> exc.shape, inh.shape  # [T, 4 patterns, 15 per bit x 2 bits]
    (torch.Size([10, 4, 30]), torch.Size([10, 4, 30]))
    >>> hidden, output = net(exc, inh)
    >>> hidden.shape, output.shape
    (torch.Size([10, 4, 60]), torch.Size([10, 4, 1]))
    """

    def __init__(
        self,
        group_size: int = 30,
        hidden: int = 60,
        *,
        rate: float = 40.0,
        weight_max: float = 5.0,
        hidden_init: float = 5.0,
        output_init: float = 3.0,
        spontaneous_rate: float = 5.0,
        seed: int = 0,
    ):
        super().__init__()
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
            raise ValueError(f"group_size must be an even int >= 2, got {group_size!r}")
        if group_size % 2:
            raise ValueError(f"group_size must be even (half excitatory), got {group_size}")
        half = group_size // 2
        self.half, self.rate = half, check_positive("rate", rate)
        self.weight_max = check_positive("weight_max", weight_max)
        self.spontaneous_rate = check_nonnegative("spontaneous_rate", spontaneous_rate)
        generator = torch.Generator().manual_seed(int(seed))
        self.hidden_exc = nn.Linear(2 * half, hidden, bias=False)
        self.hidden_inh = nn.Linear(2 * half, hidden, bias=False)
        self.output = nn.Linear(hidden, 1, bias=False)
        with torch.no_grad():
            hidden_init = check_nonnegative("hidden_init", hidden_init)
            output_init = check_nonnegative("output_init", output_init)
            self.hidden_exc.weight.uniform_(0.0, hidden_init, generator=generator)
            self.hidden_inh.weight.uniform_(-hidden_init, 0.0, generator=generator)
            self.output.weight.uniform_(0.0, output_init, generator=generator)
        lif = dict(
            tau_mem=20.0, v_rest=-70.0, v_reset=-70.0, v_threshold=-54.0, refractory=1.0,
            step_mode="multi",
        )  # fmt: skip
        self.hidden_neurons = LIF(hidden, **lif)
        self.output_neuron = LIF(1, **lif)

    def encode(self, bits: Tensor, steps: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Poisson spikes of the excitatory and inhibitory inputs for ``bits [B, 2]``.

        Returns two ``[steps, B, 2 * group_size / 2]`` tensors (bit A's neurons first).
        """
        intensity = bits.repeat_interleave(self.half, dim=1)
        exc = poisson(intensity, steps, max_rate=self.rate, generator=generator)
        inh = poisson(intensity, steps, max_rate=self.rate, generator=generator)
        return exc, inh

    def forward(
        self, exc: Tensor, inh: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Hidden ``[T, B, hidden]`` and output ``[T, B, 1]`` spikes for a window of inputs.

        ``generator`` draws the spontaneous output spikes (torch's global one if omitted).
        """
        self.hidden_neurons.reset()
        self.output_neuron.reset()
        hidden = self.hidden_neurons(self.hidden_exc(exc) + self.hidden_inh(inh))
        drive = self.output(hidden)
        if self.spontaneous_rate > 0.0:
            draw = torch.rand(drive.shape, generator=generator, dtype=drive.dtype)
            drive = drive + 100.0 * (draw < self.spontaneous_rate / 1000.0).to(drive.dtype)
        return hidden, self.output_neuron(drive)

    def learners(self, rule: Callable[[], Rule]) -> list[Learner]:
        """One :class:`~plastorch.Learner` per plastic layer, with the sign's weight bound."""
        wmax = self.weight_max
        return [
            Learner(layer, neurons, rule(), bound=bound, step_mode="multi", apply=True)
            for layer, neurons, bound in (
                (self.hidden_exc, self.hidden_neurons, Hard(0.0, wmax)),
                (self.hidden_inh, self.hidden_neurons, Hard(-wmax, 0.0)),
                (self.output, self.output_neuron, Hard(0.0, wmax)),
            )
        ]


class XORResult(NamedTuple):
    """What :func:`train_xor` measured (rates in Hz, patterns in :data:`XOR_PATTERNS` order).

    Attributes
    ----------
    rates_during_training : Tensor
        ``[epochs, 4]`` output rate of each pattern in each training epoch.
    rates_before, rates_after : Tensor
        ``[4]`` output rates with learning off, before and after training, averaged
        over ``eval_repeats`` presentations.
    reward_per_epoch : Tensor
        ``[epochs]`` total reward of each epoch (output spikes on true patterns minus
        those on false ones).
    """

    rates_during_training: Tensor
    rates_before: Tensor
    rates_after: Tensor
    reward_per_epoch: Tensor


#: Learning rates (mV) for the rate-coded XOR, the ``scale`` of ``Learner.step``: 0.625 mV
#: for MSTDP-ET (the value third-party re-implementations read from the paper).
#: MSTDP-ET's :math:`z` carries a :math:`1/\tau_z` that MSTDP's :math:`\zeta` does not,
#: so MSTDP's rate is MSTDP-ET's divided by :math:`\tau_z = 25` ms.
XOR_GAMMA = {"MSTDP-ET": 0.625, "MSTDP": 0.625 / FLORIAN_TAU_Z}


def xor_rule(name: str) -> Callable[[], Rule]:
    """A factory of the rule ``name`` ("MSTDP" or "MSTDP-ET") with Florian's constants.

    MSTDP-ET carries one eligibility trace per pattern (``per_sample_signal=True``),
    because the four patterns are simulated side by side and rewarded separately.
    """
    pair = dict(tau_post=FLORIAN_TAU, tau_pre=FLORIAN_TAU)
    if name == "MSTDP":
        return lambda: MSTDP(FLORIAN_LR_POST, FLORIAN_LR_PRE, **pair)
    if name == "MSTDP-ET":
        return lambda: MSTDPET(
            FLORIAN_LR_POST, FLORIAN_LR_PRE, tau_eligibility=FLORIAN_TAU_Z,
            per_sample_signal=True, **pair,
        )  # fmt: skip
    raise ValueError(f"rule must be 'MSTDP' or 'MSTDP-ET', got {name!r}")


def _rates(output: Tensor) -> Tensor:
    return output[..., 0].mean(0) * 1000.0


def evaluate_xor(
    network: FlorianXOR, steps: int, repeats: int, generator: torch.Generator
) -> Tensor:
    """Output rate (Hz) of each pattern, averaged over ``repeats`` presentations, no learning."""
    total = torch.zeros(4)
    for _ in range(repeats):
        _, output = network(*network.encode(XOR_PATTERNS, steps, generator), generator)
        total += _rates(output)
    return total / repeats


def train_xor(
    rule: str = "MSTDP-ET",
    *,
    epochs: int = 200,
    pattern_ms: int = 500,
    gamma: float | None = None,
    eval_repeats: int = 10,
    seed: int = 0,
    network: FlorianXOR | None = None,
    progress: bool = False,
) -> XORResult:
    r"""Train :class:`FlorianXOR` on XOR with reward :math:`\pm 1` per output spike.

    One epoch presents the four patterns for ``pattern_ms`` ms each, side by side (a
    batch of 4, every pattern with its own state and eligibility; in Florian's protocol
    they follow each other, and with :math:`\tau_z = 25` ms nothing but the weights
    carries from one 500 ms pattern to the next). The reward of pattern :math:`b` at
    step :math:`t` is :math:`r_b(t) = \pm o_b(t)`, + when the pattern's XOR is 1 and -
    when it is 0, and every plastic layer is updated once per epoch with
    ``learner.step(r, scale=gamma)`` (``r`` is ``[T, 4]``); within an epoch the weights
    are those it started with.

    Parameters
    ----------
    rule : {"MSTDP", "MSTDP-ET"}
    epochs : int
        Training epochs (each: the 4 patterns once).
    pattern_ms : int
        Presentation time per pattern in ms (``dt = 1`` ms).
    gamma : float, optional
        Learning rate in mV; :data:`XOR_GAMMA` by default.
    eval_repeats : int
        Presentations per pattern for the rates before and after training.
    seed : int
        Seed of the network (unless ``network`` is given) and of the input spikes.
    network : FlorianXOR, optional
        The network to train (a new ``FlorianXOR(seed=seed)`` by default).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    XORResult

    Examples
    --------
    >>> result = train_xor("MSTDP-ET", epochs=2, pattern_ms=50, eval_repeats=1)
    >>> result.rates_during_training.shape, result.rates_after.shape
    (torch.Size([2, 4]), torch.Size([4]))
    """
    factory = xor_rule(rule)
    gamma = XOR_GAMMA[rule] if gamma is None else check_positive("gamma", gamma)
    network = FlorianXOR(seed=seed) if network is None else network
    generator = torch.Generator().manual_seed(int(seed) + 1)
    sign = XOR_TARGETS * 2.0 - 1.0
    rates_before = evaluate_xor(network, pattern_ms, eval_repeats, generator)
    learners = network.learners(factory)
    history = torch.empty(epochs, 4)
    reward = torch.empty(epochs)
    iterator = range(epochs)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"florian-xor {rule}", unit="epoch", leave=False)
    for epoch in iterator:
        _, output = network(*network.encode(XOR_PATTERNS, pattern_ms, generator), generator)
        signal = output[..., 0] * sign  # [T, 4]: +-1 at each output spike
        for learner in learners:
            learner.step(signal, scale=gamma)
        history[epoch] = _rates(output)
        reward[epoch] = signal.sum()
    for learner in learners:
        learner.remove()
    rates_after = evaluate_xor(network, pattern_ms, eval_repeats, generator)
    return XORResult(history, rates_before, rates_after, reward)


# -- figures and the ``plastorch run`` entries -----------------------------------------------
def _figure(rows: int, height: float = 2.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]


def plot_single_synapse(
    protocol: SingleSynapseProtocol,
    delayed: dict[str, SynapseTrajectory],
    immediate: dict[str, SynapseTrajectory],
    path,
) -> None:
    """Florian's Fig. 1-style figure: spikes and rewards, then the weight under each rule."""
    steps = torch.arange(protocol.pre.shape[0])
    figure, axes = _figure(4)
    ax = axes[0]
    for row, (name, train) in enumerate((("pre", protocol.pre), ("post", protocol.post))):
        times = train.nonzero().flatten()
        ax.vlines(times, 1.6 - row, 2.4 - row, color="k")
        ax.text(-4, 2 - row, name, ha="right", va="center")
    ax.fill_between(steps, 0, protocol.reward_delayed * 0.5, step="mid", color="tab:orange",
                    alpha=0.6, label="delayed reward r(t)")  # fmt: skip
    ax.vlines(protocol.reward_immediate.nonzero().flatten(), 0, 0.5, color="tab:green",
              label="immediate reward")  # fmt: skip
    ax.set_yticks([])
    ax.set_ylim(-0.1, 2.6)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Imposed spike trains: causal pairing (pre 10 ms before post), then acausal")
    colors = {"STDP": "k", "MSTDP": "tab:blue", "MSTDP-ET": "tab:red"}
    for name, trajectory in delayed.items():
        axes[1].plot(steps, trajectory.weight, color=colors[name], label=name)
    axes[1].set_ylabel("w (delayed reward)")
    axes[1].legend(loc="upper right", fontsize=8)
    z = delayed["MSTDP-ET"].eligibility
    axes[2].plot(steps, z, color="tab:red")
    axes[2].axhline(0.0, color="0.7", lw=0.8)
    axes[2].set_ylabel("MSTDP-ET z(t)")
    for name, trajectory in immediate.items():
        if name != "STDP":
            axes[3].plot(steps, trajectory.weight, color=colors[name], label=name)
    axes[3].set_ylabel("w (immediate reward)")
    axes[3].set_xlabel("time (ms)")
    axes[3].legend(loc="upper right", fontsize=8)
    figure.savefig(path, dpi=110)


def _single_synapse_arguments(parser) -> None:
    parser.add_argument("--reward-delay", type=int, default=30,
                        help="ms from a pairing's second spike to its reward pulse")  # fmt: skip
    parser.add_argument("--reward-duration", type=int, default=20,
                        help="length of each reward pulse in ms")  # fmt: skip


def _run_single_synapse(args, out_dir) -> dict:
    from tqdm import tqdm

    protocol = single_synapse_protocol(
        reward_delay=args.reward_delay, reward_duration=args.reward_duration
    )
    delayed, immediate = {}, {}
    for name in tqdm(list(florian_rules()), desc="florian-synapse", unit="rule"):
        rule = florian_rules()[name]
        delayed[name] = single_synapse(rule, protocol.pre, protocol.post, protocol.reward_delayed)
        rule = florian_rules()[name]
        immediate[name] = single_synapse(
            rule, protocol.pre, protocol.post, protocol.reward_immediate
        )
    plot_single_synapse(protocol, delayed, immediate, out_dir / "single_synapse.png")
    # the last step before the acausal pairing starts (its post spike)
    before_acausal = int(protocol.post.nonzero()[1]) - 1
    metrics = {
        "protocol": {
            "pre_spikes_ms": protocol.pre.nonzero().flatten().tolist(),
            "post_spikes_ms": protocol.post.nonzero().flatten().tolist(),
            "reward_delay_ms": args.reward_delay,
            "reward_duration_ms": args.reward_duration,
        },
        "delayed_reward": {},
        "immediate_reward": {},
    }
    for key, runs in (("delayed_reward", delayed), ("immediate_reward", immediate)):
        for name, trajectory in runs.items():
            metrics[key][name] = {
                "weight_after_causal_pairing": float(trajectory.weight[before_acausal]),
                "final_weight": float(trajectory.weight[-1]),
            }
    return metrics


def plot_xor(results: dict[str, list[XORResult]], path) -> None:
    """Learning curves (output rate per pattern and epoch) and the rates after training."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rules = list(results)
    figure = Figure(figsize=(5.0 * len(rules), 7.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, len(rules), squeeze=False)
    labels = ["(0, 0) -> 0", "(0, 1) -> 1", "(1, 0) -> 1", "(1, 1) -> 0"]
    colors = ["tab:gray", "tab:blue", "tab:green", "tab:red"]
    for column, rule in enumerate(rules):
        runs = results[rule]
        curves = torch.stack([run.rates_during_training for run in runs])  # [S, E, 4]
        epochs = torch.arange(1, curves.shape[1] + 1)
        ax = axes[0, column]
        for p in range(4):
            mean = curves[:, :, p].mean(0)
            ax.plot(epochs, mean, color=colors[p], label=labels[p])
            ax.fill_between(epochs, curves[:, :, p].amin(0), curves[:, :, p].amax(0),
                            color=colors[p], alpha=0.15)  # fmt: skip
        ax.set_title(f"{rule}: output rate while training ({len(runs)} seeds)")
        ax.set_xlabel("epoch (4 patterns x 500 ms)")
        ax.set_ylabel("output rate (Hz)")
        ax.legend(fontsize=8, loc="upper left")
        ax = axes[1, column]
        after = torch.stack([run.rates_after for run in runs])  # [S, 4]
        width = 0.8 / len(runs)
        for s in range(len(runs)):
            ax.bar(torch.arange(4) + (s - (len(runs) - 1) / 2) * width, after[s], width,
                   color=colors, edgecolor="k", linewidth=0.3)  # fmt: skip
        ax.set_xticks(range(4), labels, fontsize=8)
        ax.set_ylabel("output rate after training (Hz)")
        ax.set_title(f"{rule}: each bar one seed, learning off")
    figure.savefig(path, dpi=110)


def _xor_arguments(parser) -> None:
    parser.add_argument("--rules", nargs="+", default=["MSTDP", "MSTDP-ET"],
                        choices=["MSTDP", "MSTDP-ET"])  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. SEEDS-1")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--pattern-ms", type=int, default=500)


def _run_xor(args, out_dir) -> dict:
    from tqdm import tqdm

    results: dict[str, list[XORResult]] = {rule: [] for rule in args.rules}
    jobs = [(rule, seed) for rule in args.rules for seed in range(args.seeds)]
    for rule, seed in tqdm(jobs, desc="florian-xor", unit="run"):
        results[rule].append(
            train_xor(
                rule, epochs=args.epochs, pattern_ms=args.pattern_ms, seed=seed, progress=True
            )  # fmt: skip
        )
    plot_xor(results, out_dir / "xor.png")
    metrics: dict = {"epochs": args.epochs, "pattern_ms": args.pattern_ms, "rules": {}}
    for rule, runs in results.items():
        after = torch.stack([run.rates_after for run in runs])
        gap = after[:, 1:3].amin(1) - after[:, [0, 3]].amax(1)
        metrics["rules"][rule] = {
            "gamma_mV": XOR_GAMMA[rule],
            "rates_after_hz": {
                f"seed {s}": dict(zip(("00", "01", "10", "11"), after[s].tolist()))
                for s in range(len(runs))
            },
            "rates_before_hz": {
                f"seed {s}": dict(zip(("00", "01", "10", "11"), runs[s].rates_before.tolist()))
                for s in range(len(runs))
            },
            "separation_hz": gap.tolist(),
            "separated_seeds": int((gap > 0).sum()),
            "mean_rate_true_hz": float(after[:, 1:3].mean()),
            "mean_rate_false_hz": float(after[:, [0, 3]].mean()),
        }
    return metrics


register(
    Experiment(
        name="florian-synapse",
        help="Florian (2007) Fig. 1: one synapse under STDP, MSTDP, MSTDP-ET and a delayed reward",
        add_arguments=_single_synapse_arguments,
        run=_run_single_synapse,
    )
)
register(
    Experiment(
        name="florian-xor",
        help="Florian (2007): rate-coded XOR learned with MSTDP and MSTDP-ET",
        add_arguments=_xor_arguments,
        run=_run_xor,
    )
)
