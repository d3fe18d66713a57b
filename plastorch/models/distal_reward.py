r"""Izhikevich (2007): solving the distal reward problem with dopamine-modulated STDP.

E. M. Izhikevich, *Solving the distal reward problem through linkage of STDP and
dopamine signaling*, Cerebral Cortex 17(10), 2007, first experiment (Fig. 1). A
network of Izhikevich neurons (``n_exc`` regular-spiking excitatory, ``n_inh``
fast-spiking inhibitory) fires irregularly under random input. One excitatory synapse
:math:`n_1 \to n_2` is *chosen* and starts at weight 0. Every time :math:`n_2` fires
within 20 ms after :math:`n_1`, a reward (a dopamine puff) is delivered 1 to 3 s later,
while the network goes on producing thousands of other pairings in between. The chosen
synapse grows to the cap because only its eligibility trace is systematically
positive when the dopamine arrives; the other synapses stay near their mean.

The network (as in Izhikevich's ``dastdp.m``)
----------------------------------------------
- Neurons: :class:`~plastorch.neurons.Izhikevich`, excitatory ``regular_spiking``
  (:math:`a = 0.02, d = 8`), inhibitory ``fast_spiking`` (:math:`a = 0.1, d = 2`).
- Each neuron sends ``synapses_per_neuron`` synapses to distinct random targets
  (excitatory neurons to any other neuron, inhibitory ones to excitatory neurons only),
  all with a 1 ms conduction delay: spikes of step :math:`t - 1` are the synaptic input
  of step :math:`t`. Excitatory weights start at ``weight_init`` (1 mV) and are
  plastic in :math:`[0, w_\max]` (:math:`w_\max = 4`); inhibitory weights are fixed at
  ``inhibitory_weight`` (-1).
- Input: every neuron receives an independent uniform current in
  :math:`[-\tfrac{13}{2}, \tfrac{13}{2}]` per ms (``noise = 13``).

Dopamine-modulated STDP as MSTDP-ET (the mapping of constants)
--------------------------------------------------------------
Izhikevich's synapse keeps an eligibility :math:`c` that every STDP event increments
(:math:`+0.1\, e^{-\Delta/\tau_+}` for pre-before-post, :math:`-0.15\, e^{-\Delta/\tau_-}`
for post-before-pre, nearest-spike pairing) and that decays with :math:`\tau_c = 1` s,
and a dopamine concentration :math:`d(t)` that jumps by 0.5 at each reward and decays
with :math:`\tau_d = 200` ms. The weight follows :math:`\dot w = c\,(d + 0.002)` per
10 ms (his code adds :math:`(0.002 + d)\,c` to :math:`w` every 10 ms).
:class:`~plastorch.rules.MSTDPET` with

- ``lr_post = 0.1``, ``lr_pre = -0.15``, ``tau_post = tau_pre = 20`` ms,
  ``trace_mode = "nearest"`` (Izhikevich's trace is *set* to 0.1 at each spike),
- ``tau_eligibility = 1000`` ms, so its :math:`\eta z = c / \tau_c`,
- the signal :math:`M(t) = d(t) + 0.002` per 1 ms step, a ``[T, 1]`` tensor,
- ``scale`` :math:`= \tau_c / 10\,\text{ms} = 100` (``learning_rate`` multiplies it),

gives :math:`\Delta w = \sum_t M(t)\, c(t) / 10` per step, the per-millisecond form of
his 10 ms update. Differences from ``dastdp.m``: weights change once per window of
``window`` steps (default 100 ms) instead of every 10 ms (the change within a window is
first order in the learning rate and tiny next to one reward's); decays are exact
exponentials with :math:`\tau = 20` ms, 1 s and 200 ms instead of the factors 0.95 per
ms, 0.99 per 10 ms and 0.995 per ms (time constants 19.5 ms, 995 ms, 199.5 ms); and a
presynaptic arrival in the same step as a postsynaptic spike potentiates once (the
library's event order, :mod:`plastorch.rules.stdp`) where his code applies both the
potentiation and the depression.

How the learner sees a recurrent network
----------------------------------------
A :class:`~plastorch.Learner` records a window by watching a layer and a spike source.
In a recurrent network the window's spikes are known only after stepping through it, so
the simulation computes synaptic input from the weight directly, then passes the
window once through the plastic layer and a spike tap (``[T, 1, n_exc]`` presynaptic
arrivals, ``[T, 1, n]`` postsynaptic spikes), and calls ``learner.step`` with the
window's dopamine.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..bounds import Hard
from ..experiments import Experiment, register
from ..functional.checks import check_nonnegative, check_positive, check_real
from ..learner import Learner
from ..neurons import Izhikevich
from ..rules import MSTDPET

__all__ = ["DistalRewardNetwork", "DistalRewardResult", "run_distal_reward"]


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class Connectivity:
    """Constraint that keeps absent synapses at zero: ``weight -> weight * mask``."""

    def __init__(self, mask: Tensor):
        self.mask = mask

    def __call__(self, weight: Tensor) -> Tensor:
        return weight * self.mask

    def __repr__(self) -> str:
        return f"Connectivity({int(self.mask.sum())} synapses)"


class DistalRewardNetwork(nn.Module):
    r"""Izhikevich's (2007) sparse recurrent network with one chosen synapse.

    Parameters
    ----------
    n_exc, n_inh : int
        Numbers of excitatory and inhibitory neurons (800 and 200 in the paper).
    synapses_per_neuron : int
        Outgoing synapses of each neuron, to distinct targets (100 in the paper).
    weight_init, weight_max : float
        Initial and largest excitatory weight (1 and 4).
    inhibitory_weight : float
        Fixed weight of the inhibitory synapses (-1).
    noise : float
        Width of the uniform random input per ms: :math:`I \sim U(-\text{noise}/2,
        \text{noise}/2)` (13).
    pair_drive : float
        Constant extra input to :math:`n_1` and :math:`n_2` (0 in the paper). A drive of
        2 raises their rate from about 1.25 Hz to about 6.7 Hz, so the rewarded pairing
        happens about 30 times as often while every other synapse sees the same
        background (see :func:`compressed`).
    seed : int
        Seed of the connectivity, the chosen synapse and the input noise.

    Attributes
    ----------
    exc_synapses : nn.Linear
        ``[n, n_exc]`` plastic excitatory weights (zero where there is no synapse).
    inh_synapses : nn.Linear
        ``[n_exc, n_inh]`` fixed inhibitory weights.
    mask : Tensor
        ``[n, n_exc]`` 1 where an excitatory synapse exists.
    chosen : tuple[int, int]
        ``(n1, n2)``: the rewarded synapse goes from excitatory neuron ``n1`` to
        excitatory neuron ``n2``; ``exc_synapses.weight[n2, n1]`` starts at 0.

    Examples
    --------
    >>> net = DistalRewardNetwork(40, 10, 5, seed=0)
    >>> pre, post = net.simulate(50)
    >>> pre.shape, post.shape  # arrivals of excitatory spikes, spikes of all neurons
    (torch.Size([50, 1, 40]), torch.Size([50, 1, 50]))
    >>> int(net.mask.sum())  # 40 excitatory neurons x 5 synapses
    200
    """

    def __init__(
        self,
        n_exc: int = 800,
        n_inh: int = 200,
        synapses_per_neuron: int = 100,
        *,
        weight_init: float = 1.0,
        weight_max: float = 4.0,
        inhibitory_weight: float = -1.0,
        noise: float = 13.0,
        pair_drive: float = 0.0,
        seed: int = 0,
    ):
        super().__init__()
        self.n_exc = _check_count("n_exc", n_exc, 2)
        self.n_inh = _check_count("n_inh", n_inh, 1)
        n = n_exc + n_inh
        fanout = _check_count("synapses_per_neuron", synapses_per_neuron, 1)
        if fanout > n_exc - 1:
            raise ValueError(
                f"synapses_per_neuron must be at most n_exc - 1 = {n_exc - 1}, got {fanout}"
            )
        self.weight_init = check_nonnegative("weight_init", weight_init)
        self.weight_max = check_positive("weight_max", weight_max)
        self.inhibitory_weight = check_real("inhibitory_weight", inhibitory_weight)
        self.noise = check_nonnegative("noise", noise)
        self.pair_drive = check_real("pair_drive", pair_drive)
        self.generator = torch.Generator().manual_seed(int(seed))

        # Each neuron's targets: distinct, never itself (a random permutation per row).
        mask = torch.zeros(n, n_exc)
        for i in range(n_exc):
            others = torch.cat((torch.arange(i), torch.arange(i + 1, n)))
            targets = others[torch.randperm(n - 1, generator=self.generator)[:fanout]]
            mask[targets, i] = 1.0
        inh_mask = torch.zeros(n_exc, n_inh)
        for i in range(n_inh):
            inh_mask[torch.randperm(n_exc, generator=self.generator)[:fanout], i] = 1.0
        self.register_buffer("mask", mask)
        self.exc_synapses = nn.Linear(n_exc, n, bias=False)
        self.inh_synapses = nn.Linear(n_inh, n_exc, bias=False)
        self.inh_synapses.requires_grad_(False)
        with torch.no_grad():
            self.exc_synapses.weight.copy_(mask * self.weight_init)
            self.inh_synapses.weight.copy_(inh_mask * self.inhibitory_weight)
        # The chosen synapse: from excitatory neuron 0 to its first excitatory target.
        targets = mask[:n_exc, 0].nonzero().flatten()
        if targets.numel() == 0:
            raise ValueError("excitatory neuron 0 has no excitatory target; use another seed")
        self.chosen = (0, int(targets[0]))
        with torch.no_grad():
            self.exc_synapses.weight[self.chosen[1], self.chosen[0]] = 0.0
        drive = torch.zeros(n)
        drive[list(self.chosen)] = self.pair_drive
        self.register_buffer("drive", drive)

        self.excitatory = Izhikevich.from_preset("regular_spiking", n_exc)
        self.inhibitory = Izhikevich.from_preset("fast_spiking", n_inh)
        self.spike_tap = nn.Identity()  # the learner's spike source (see the module doc)
        self.register_buffer("last_spikes", torch.zeros(n))

    @property
    def n(self) -> int:
        """Number of neurons."""
        return self.n_exc + self.n_inh

    def connectivity(self) -> Connectivity:
        """The constraint that keeps absent excitatory synapses at zero."""
        return Connectivity(self.mask)

    @torch.no_grad()
    def simulate(self, steps: int) -> tuple[Tensor, Tensor]:
        r"""Run ``steps`` 1 ms steps with the current weights.

        One step is

        .. math::

            I(t) &= W_E\, s_E(t-1) + W_I\, s_I(t-1) + \text{noise}(t) + \text{drive} \\
            s(t) &= \text{Izhikevich}(I(t))

        Returns
        -------
        pre : Tensor
            ``[steps, 1, n_exc]``: :math:`s_E(t - 1)`, the excitatory spikes arriving at
            step ``t`` (the plastic layer's input).
        post : Tensor
            ``[steps, 1, n]``: :math:`s(t)`, every neuron's spikes.
        """
        n_exc, n = self.n_exc, self.n
        # All synaptic weights as one [n, n] matrix (inhibitory columns reach only the
        # excitatory rows): one matrix-vector product per step.
        weight = torch.zeros(n, n)
        weight[:, :n_exc] = self.exc_synapses.weight.detach()
        weight[:n_exc, n_exc:] = self.inh_synapses.weight.detach()
        post = torch.empty(steps, 1, n)
        noise = (torch.rand(steps, n, generator=self.generator) - 0.5) * self.noise + self.drive
        last = self.last_spikes
        for t in range(steps):
            current = torch.addmv(noise[t], weight, last)
            post[t, 0, :n_exc] = self.excitatory(current[None, :n_exc])[0]
            post[t, 0, n_exc:] = self.inhibitory(current[None, n_exc:])[0]
            last = post[t, 0]
        pre = torch.cat((self.last_spikes[None, None, :n_exc], post[:-1, :, :n_exc]))
        self.last_spikes = last
        return pre, post


class DistalRewardResult(NamedTuple):
    """What :func:`run_distal_reward` measured.

    Attributes
    ----------
    time_s : Tensor
        ``[R]`` network time of each record in s (every ``record_every`` steps).
    chosen_weight : Tensor
        ``[R]`` weight of the chosen synapse at each record.
    other_mean, other_p10, other_p90 : Tensor
        ``[R]`` mean and 10th/90th percentiles of the other excitatory weights.
    reward_times_s : list of float
        When each reward was delivered.
    final_weights : Tensor
        The other excitatory weights at the end (for their histogram).
    rates_hz : Tensor
        ``[R]`` mean firing rate of the network since the previous record.
    dopamine : Tensor
        ``[steps]`` the signal :math:`M(t) = d(t) + 0.002` (float32, every ms).
    """

    time_s: Tensor
    chosen_weight: Tensor
    other_mean: Tensor
    other_p10: Tensor
    other_p90: Tensor
    reward_times_s: list
    final_weights: Tensor
    rates_hz: Tensor
    dopamine: Tensor


def dopamine_rule(tau_eligibility: float = 1000.0, *, dt: float = 1.0) -> MSTDPET:
    """Izhikevich's (2007) dopamine-modulated STDP as :class:`~plastorch.rules.MSTDPET`.

    See the module docstring for the mapping of constants; use it with
    ``learner.step(dopamine, scale=tau_eligibility / 10)``.

    Examples
    --------
    >>> dopamine_rule()
    MSTDPET(lr_post=0.1, lr_pre=-0.15, tau_post=20.0, tau_pre=20.0, dt=1.0, trace_mode='nearest', batch_reduction='sum', tau_eligibility=1000.0, per_sample_signal=False, eligibility='split')
    """
    return MSTDPET(0.1, -0.15, 20.0, 20.0, tau_eligibility, dt=dt, trace_mode="nearest")


#: Izhikevich's weight update period in ms: ``dw = c * (d + 0.002)`` every 10 ms.
IZHIKEVICH_UPDATE_MS = 10.0


def run_distal_reward(
    seconds: float = 3600.0,
    *,
    n_exc: int = 800,
    n_inh: int = 200,
    synapses_per_neuron: int = 100,
    noise: float = 13.0,
    pair_drive: float = 0.0,
    window: int = 100,
    reward_delay: tuple[float, float] = (1000.0, 3000.0),
    pairing_interval: float = 20.0,
    dopamine_puff: float = 0.5,
    tonic_dopamine: float = 0.002,
    tau_dopamine: float = 200.0,
    tau_eligibility: float = 1000.0,
    learning_rate: float = 1.0,
    record_every: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> DistalRewardResult:
    r"""Simulate Izhikevich's (2007) first experiment for ``seconds`` of network time.

    Each window of ``window`` 1 ms steps: simulate (:meth:`DistalRewardNetwork.simulate`),
    find every spike of :math:`n_2` that comes within ``pairing_interval`` ms after a
    spike of :math:`n_1` and schedule a reward uniformly ``reward_delay`` ms later, then
    train the excitatory weights with :func:`dopamine_rule` on the window and its
    dopamine :math:`M(t) = d(t) + 0.002`, with
    :math:`d(t) = d(t-1) e^{-1/\tau_d} + 0.5 \cdot [\text{reward at } t]`
    (``scale = learning_rate * tau_eligibility / 10``, see the module docstring).

    Parameters
    ----------
    seconds : float
        Network time to simulate (3600 s in the paper).
    n_exc, n_inh, synapses_per_neuron, noise, pair_drive
        The network (see :class:`DistalRewardNetwork`).
    window : int
        Steps per weight update; must not exceed the shortest reward delay.
    reward_delay : (float, float)
        Range of the reward delay in ms.
    pairing_interval : float
        Largest :math:`t_{n_2} - t_{n_1}` in ms that earns a reward.
    dopamine_puff, tonic_dopamine, tau_dopamine : float
        Jump of :math:`d` per reward, the constant added to it, its decay in ms.
    tau_eligibility : float
        :math:`\tau_c` in ms.
    learning_rate : float
        Multiplies Izhikevich's rate.
    record_every : int
        Steps between two records of the weights (rounded up to whole windows).
    seed : int
        Seed of the network and of the reward delays.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    DistalRewardResult

    Examples
    --------
    >>> result = run_distal_reward(0.2, n_exc=40, n_inh=10, synapses_per_neuron=5,
    ...                            record_every=100)
    >>> result.time_s.tolist(), float(result.chosen_weight[-1]) >= 0.0
    ([0.1, 0.2], True)
    """
    window = _check_count("window", window, 1)
    low, high = (check_nonnegative("reward_delay", value) for value in reward_delay)
    if high < low or window > low:
        raise ValueError(
            f"reward_delay must be (low, high) with low <= high and window <= low, got "
            f"{reward_delay!r} with window={window}"
        )
    check_positive("seconds", seconds)
    network = DistalRewardNetwork(
        n_exc, n_inh, synapses_per_neuron, noise=noise, pair_drive=pair_drive, seed=seed
    )
    learner = Learner(
        network.exc_synapses,
        network.spike_tap,
        dopamine_rule(tau_eligibility),
        bound=Hard(0.0, network.weight_max),
        step_mode="multi",
        apply=True,
        constraints=[network.connectivity()],
    )
    scale = check_positive("learning_rate", learning_rate) * tau_eligibility / IZHIKEVICH_UPDATE_MS
    decay = math.exp(-1.0 / check_positive("tau_dopamine", tau_dopamine))
    delays = torch.Generator().manual_seed(int(seed) + 1)
    n1, n2 = network.chosen
    windows = max(1, round(seconds * 1000.0 / window))
    every = max(1, math.ceil(_check_count("record_every", record_every, 1) / window))
    pending: dict[int, int] = {}  # step -> number of rewards due then
    last_n1 = -math.inf
    level = 0.0
    dopamine = torch.empty(windows * window)
    reward_times: list[float] = []
    others = network.mask.bool().clone()
    others[n2, n1] = False
    records: dict[str, list[float]] = {
        key: [] for key in ("time", "chosen", "mean", "p10", "p90", "rate")
    }
    spikes, steps_since = 0.0, 0
    iterator = range(windows)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="distal-reward", unit="window")
    for w in iterator:
        start = w * window
        # The dopamine of this window: every reward due in it was scheduled >= 1 s ago.
        signal = torch.empty(window, 1)
        for k in range(window):
            puffs = pending.pop(start + k, 0)
            reward_times.extend([(start + k) / 1000.0] * puffs)
            level = level * decay + dopamine_puff * puffs
            signal[k, 0] = level + tonic_dopamine
        dopamine[start : start + window] = signal[:, 0]
        pre, post = network.simulate(window)
        spikes += float(post.sum())
        steps_since += window
        # Rewards earned in this window: n2 fires within pairing_interval after n1.
        n1_steps = (post[:, 0, n1].nonzero().flatten() + start).tolist()
        n2_steps = (post[:, 0, n2].nonzero().flatten() + start).tolist()
        for t, neuron in sorted([(t, 1) for t in n1_steps] + [(t, 2) for t in n2_steps]):
            if neuron == 1:
                last_n1 = t
            elif 0 < t - last_n1 < pairing_interval:
                due = t + round(low + (high - low) * float(torch.rand((), generator=delays)))
                pending[due] = pending.get(due, 0) + 1
        # Learn from the window: the layer sees the arrivals, the tap the spikes.
        network.exc_synapses(pre)
        network.spike_tap(post)
        learner.step(signal, scale=scale)
        if (w + 1) % every == 0 or w + 1 == windows:
            weight = network.exc_synapses.weight.detach()
            rest = weight[others]
            low_q, high_q = torch.quantile(rest, torch.tensor([0.1, 0.9])).tolist()
            records["time"].append((w + 1) * window / 1000.0)
            records["chosen"].append(float(weight[n2, n1]))
            records["mean"].append(float(rest.mean()))
            records["p10"].append(low_q)
            records["p90"].append(high_q)
            records["rate"].append(spikes / network.n / steps_since * 1000.0)
            spikes, steps_since = 0.0, 0
    weight = network.exc_synapses.weight.detach()
    return DistalRewardResult(
        time_s=torch.tensor(records["time"], dtype=torch.float64),
        chosen_weight=torch.tensor(records["chosen"]),
        other_mean=torch.tensor(records["mean"]),
        other_p10=torch.tensor(records["p10"]),
        other_p90=torch.tensor(records["p90"]),
        reward_times_s=reward_times,
        final_weights=weight[others].clone(),
        rates_hz=torch.tensor(records["rate"]),
        dopamine=dopamine,
    )


# -- presets, figure and the ``plastorch run distal-reward`` entry ---------------------------
#: Izhikevich's (2007) experiment as published: 1 h of network time.
PAPER = dict(
    seconds=3600.0,
    window=100,
    reward_delay=(1000.0, 3000.0),
    tau_dopamine=200.0,
    tau_eligibility=1000.0,
    learning_rate=1.0,
    pair_drive=0.0,
)


def compressed(factor: float, seconds: float, pair_drive: float) -> dict:
    r"""Settings that run the experiment ``factor`` times faster with the same statistics.

    The reward pathway is sped up by ``factor``: reward delays, :math:`\tau_d` and
    :math:`\tau_c` shrink by it (the STDP window and the neurons do not change; the
    update window stays 100 ms unless the shortest delay is shorter), and the learning
    rate grows by it, so one reward still moves a weight
    as much as in the paper (the dopamine integral :math:`0.5\,\tau_d` shrank by
    ``factor``). What makes the problem hard is kept if ``pair_drive`` raises
    :math:`\nu_1 \nu_2` by about ``factor``: per reward, the expected number of other
    :math:`n_1`/:math:`n_2` pairings between the rewarded pairing and its reward,
    :math:`\nu_1 \nu_2 \cdot 40\,\text{ms} \cdot \bar d`, stays near the paper's
    (1.25 Hz, 2 s: 0.13; with ``factor = 20`` and drive 2 in the full network, 6.7 Hz
    and 100 ms: 0.18), every other synapse keeps the paper's background, and
    ``seconds`` hold about as many rewards as ``factor * seconds`` of the paper.

    Examples
    --------
    >>> compressed(20, 180.0, 2.0)["reward_delay"]
    (50.0, 150.0)
    """
    factor = check_positive("factor", factor)
    return dict(
        seconds=seconds,
        window=max(1, min(PAPER["window"], int(PAPER["reward_delay"][0] / factor))),
        reward_delay=tuple(d / factor for d in PAPER["reward_delay"]),
        tau_dopamine=PAPER["tau_dopamine"] / factor,
        tau_eligibility=PAPER["tau_eligibility"] / factor,
        learning_rate=PAPER["learning_rate"] * factor,
        pair_drive=pair_drive,
    )


def plot_distal_reward(result: DistalRewardResult, weight_max: float, path) -> None:
    """Izhikevich's Fig. 1-style figure: the chosen weight against the others, the rewards."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.0, 7.0), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(3, 3)
    ax = figure.add_subplot(grid[0:2, 0:2])
    time = result.time_s
    ax.fill_between(time, result.other_p10, result.other_p90, color="0.8",
                    label="other synapses, 10-90 %")  # fmt: skip
    ax.plot(time, result.other_mean, color="0.3", label="other synapses, mean")
    ax.plot(time, result.chosen_weight, color="tab:red", lw=2, label="chosen synapse n1 -> n2")
    ax.axhline(weight_max, color="tab:red", ls=":", lw=1)
    ax.set_ylabel("synaptic weight (mV)")
    ax.set_ylim(-0.1, weight_max * 1.08)
    ax.legend(loc="center right", fontsize=8)
    ax.set_title("Dopamine-modulated STDP (MSTDP-ET) with rewards delayed 1-3 s (scaled)")
    hist = figure.add_subplot(grid[0:2, 2])
    hist.hist(result.final_weights.numpy(), bins=40, range=(0.0, weight_max),
              orientation="horizontal", color="0.5")  # fmt: skip
    hist.axhline(float(result.chosen_weight[-1]), color="tab:red", lw=2)
    hist.set_xscale("log")
    hist.set_ylim(-0.1, weight_max * 1.08)
    hist.set_title("final weights")
    hist.set_xlabel("synapses")
    rewards = figure.add_subplot(grid[2, 0:2], sharex=ax)
    steps = torch.arange(result.dopamine.shape[0]) / 1000.0
    stride = max(1, result.dopamine.shape[0] // 20000)
    rewards.plot(steps[::stride], result.dopamine[::stride], color="tab:purple", lw=0.6)
    rewards.vlines(result.reward_times_s, 0.0, -0.1, color="k", lw=0.8)
    rewards.set_ylabel("dopamine d + 0.002")
    rewards.set_xlabel("time (s)")
    rates = figure.add_subplot(grid[2, 2])
    rates.plot(time, result.rates_hz, color="0.3")
    rates.set_xlabel("time (s)")
    rates.set_ylabel("network rate (Hz)")
    figure.savefig(path, dpi=110)


def _arguments(parser) -> None:
    parser.add_argument("--paper", action="store_true",
                        help="Izhikevich's settings as published (1 h of network time; slow)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=None,
                        help="network time in s (default: 180, or 3600 with --paper)")  # fmt: skip
    parser.add_argument("--speedup", type=float, default=20.0,
                        help="time compression of the reward pathway (ignored with --paper)")  # fmt: skip
    parser.add_argument("--pair-drive", type=float, default=2.0,
                        help="extra input to n1 and n2 (ignored with --paper)")  # fmt: skip
    parser.add_argument("--n-exc", type=int, default=800)
    parser.add_argument("--n-inh", type=int, default=200)
    parser.add_argument("--synapses", type=int, default=100, help="synapses per neuron")
    parser.add_argument("--seed", type=int, default=0)


def _run(args, out_dir) -> dict:
    if args.paper:
        settings = dict(PAPER)
        if args.seconds is not None:
            settings["seconds"] = args.seconds
    else:
        seconds = 180.0 if args.seconds is None else args.seconds
        settings = compressed(args.speedup, seconds, args.pair_drive)
    result = run_distal_reward(
        n_exc=args.n_exc,
        n_inh=args.n_inh,
        synapses_per_neuron=args.synapses,
        seed=args.seed,
        progress=True,
        **settings,
    )
    network_max = 4.0
    plot_distal_reward(result, network_max, out_dir / "distal_reward.png")
    final = result.final_weights
    chosen = float(result.chosen_weight[-1])
    reached = (result.chosen_weight >= 0.95 * network_max).nonzero().flatten()
    return {
        "settings": {key: list(v) if isinstance(v, tuple) else v for key, v in settings.items()},
        "network": {"n_exc": args.n_exc, "n_inh": args.n_inh, "synapses": args.synapses},
        "chosen_weight_final": chosen,
        "chosen_weight_max": float(result.chosen_weight.max()),
        "seconds_to_95_percent_of_cap": float(result.time_s[reached[0]]) if len(reached) else None,
        "other_weights_final": {
            "mean": float(final.mean()),
            "std": float(final.std()),
            "p99": float(torch.quantile(final, 0.99)),
            "max": float(final.max()),
            "fraction_above_chosen": float((final >= chosen).double().mean()),
        },
        "rewards": len(result.reward_times_s),
        "mean_rate_hz": float(result.rates_hz.mean()),
    }


register(
    Experiment(
        name="distal-reward",
        help="Izhikevich (2007): a chosen synapse grows under rewards delayed 1-3 s",
        add_arguments=_arguments,
        run=_run,
    )
)
