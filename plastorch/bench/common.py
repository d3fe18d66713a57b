"""Building blocks shared by the benchmark cases: configuration, contenders, drivers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..functional import sparse_mode
from ..learner import Learner
from ..rules.base import Rule

__all__ = [
    "Case",
    "CaseSetup",
    "Check",
    "Config",
    "Contender",
    "LearnerDriver",
    "Replay",
    "delay_stdp_reference",
    "spike_patterns",
    "stdp_reference",
]


@dataclass(frozen=True)
class Config:
    """How the suite runs.

    Attributes
    ----------
    quick : bool
        Small shapes and few repetitions (CI smoke run, well under a minute).
    device : torch.device
        Where plastorch and the limit run (peers too, where they support it).
    repeats, warmup : int
        Timed and untimed rounds per case (``repeats=None``: each case's default).
    peers : tuple of str
        Peer libraries to include (those not installed get a status row).
    seed : int
        Seed of the spike generator.
    """

    quick: bool = False
    device: torch.device = torch.device("cpu")
    repeats: int | None = None
    warmup: int = 1
    peers: tuple[str, ...] = ("spikingjelly", "bindsnet", "inferno")
    seed: int = 0

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)


@dataclass
class Contender:
    """One timed implementation of a case.

    ``role`` is ``"plastorch"``, ``"limit"`` (the arithmetic of the update alone),
    ``"floor"`` (the least work plastorch's semantics add to it, as bare torch calls),
    ``"alternative"`` (another kernel for the limit's arithmetic) or ``"peer"``.
    ``fn`` is timed; ``setup`` runs untimed before each call (for
    example the forward pass whose hooks record the spikes). A contender that
    cannot run has ``fn=None`` and a ``status`` saying why.
    """

    name: str
    role: str
    fn: Callable[[], object] | None
    setup: Callable[[], object] | None = None
    status: str = "ok"
    items_per_call: int = 1


@dataclass
class Check:
    """A correctness comparison: plastorch's result against an independent reference."""

    name: str
    actual: Tensor
    expected: Tensor
    rtol: float
    atol: float

    def error(self) -> float:
        return float((self.actual.double() - self.expected.double()).abs().max())

    def passed(self) -> bool:
        if self.actual.shape != self.expected.shape:
            return False
        return bool(
            torch.allclose(
                self.actual.double().cpu(),
                self.expected.double().cpu(),
                rtol=self.rtol,
                atol=self.atol,
            )
        )


@dataclass
class CaseSetup:
    """What a case builds: contenders to time, checks, and how to report them."""

    contenders: list[Contender]
    checks: Callable[[], list[Check]] = list
    unit: str = "ms"  # "ms" (time per call) or "items/s" (throughput)
    repeats: int = 10
    notes: list[str] = field(default_factory=list)
    # reference contender for "vs plastorch" ratios (defaults to the first plastorch row)
    baseline: str | None = None
    # extra result rows computed without timing (memory case), name -> value
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """A named benchmark: ``build(config)`` returns its :class:`CaseSetup`."""

    name: str
    title: str
    build: Callable[[Config], CaseSetup]
    quick: bool = True  # part of --quick


def spike_patterns(
    count: int,
    shape: Sequence[int],
    probability: float,
    generator: torch.Generator,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> list[Tensor]:
    """``count`` Bernoulli(``probability``) 0/1 tensors of ``shape``."""
    return [
        (torch.rand(tuple(shape), generator=generator) < probability).to(device=device, dtype=dtype)
        for _ in range(count)
    ]


class Replay(nn.Module):
    """Spike source standing for a neuron layer: returns the spikes it was last given."""

    def __init__(self):
        super().__init__()
        self.value: Tensor | None = None

    def forward(self, current: Tensor) -> Tensor:
        del current
        return self.value


class LearnerDriver:
    """Feeds cycling spike patterns through a :class:`~plastorch.Learner`'s hooks.

    ``record()`` runs the layer forward (its hook records the presynaptic
    spikes) and the :class:`Replay` source (recording the postsynaptic ones);
    ``step()`` settles the window. ``warm`` steps beforehand fill the traces
    with realistic, mostly non-zero values.
    """

    def __init__(
        self,
        layer: nn.Module,
        rule: Rule,
        pres: list[Tensor],
        posts: list[Tensor],
        *,
        step_mode: str = "single",
        warm: int = 0,
        signal: Callable[[int], object] | None = None,
        mode: str | None = None,
        step_kwargs: dict[str, object] | None = None,
        reset_after_step: bool = False,
        **learner_kwargs,
    ):
        self.layer = layer
        self.source = Replay()
        self.learner = Learner(layer, self.source, rule, step_mode=step_mode, **learner_kwargs)
        self.pres, self.posts = pres, posts
        self.signal = signal
        self.mode = mode
        self.step_kwargs = dict(step_kwargs or {})
        self.reset_after_step = reset_after_step
        self.index = 0
        for _ in range(warm):
            self.record()
            self.step()
        self.reset_grad()

    def reset_grad(self) -> None:
        for parameter in self.layer.parameters():
            parameter.grad = None

    def record(self) -> None:
        i = self.index % len(self.pres)
        self.index += 1
        x = self.pres[i]
        with torch.no_grad():
            self.source.value = self.posts[i]
            if self.learner.step_mode == "multi" and not isinstance(self.layer, nn.Linear):
                # a convolution takes [N, ...]: time folded into the batch and back
                self.source(self.layer(x.flatten(0, 1)).unflatten(0, x.shape[:2]))
            else:
                self.source(self.layer(x))

    def step(self) -> Tensor:
        context = nullcontext() if self.mode is None else sparse_mode(self.mode)
        with context:
            if self.signal is None:
                delta = self.learner.step(**self.step_kwargs)
            else:
                delta = self.learner.step(signal=self.signal(self.index), **self.step_kwargs)
        if self.reset_after_step:
            self.learner.reset()
        return delta


def stdp_reference(
    layer_grad: Callable[[Tensor, Tensor], Tensor],
    pre: Tensor,
    post: Tensor,
    trace_pre: Tensor,
    trace_post: Tensor,
    *,
    decay_pre: float,
    decay_post: float,
    lr_post: float,
    lr_pre: float,
) -> Tensor:
    r"""Pair STDP of one window ``[T, B, ...]`` by bare arithmetic, independent of the rules.

    Traces by the explicit recursion :math:`x(t) = d\,x(t-1) + s(t)`, then
    :math:`\Delta w = \eta_\text{post} C(x_\text{pre}, s_\text{post}) + \eta_\text{pre}
    C(s_\text{pre}, d_\text{post} x_\text{post}(t-1))` with ``layer_grad(a, b)`` the
    weight gradient of the layer (``b^T a`` for Linear, ``conv_weight`` for convs)
    over time folded into the batch.
    """
    x_pre, x_post = torch.empty_like(pre), torch.empty_like(post)
    before = torch.empty_like(post)
    a, b = trace_pre, trace_post
    for t in range(pre.shape[0]):
        before[t] = decay_post * b
        a = decay_pre * a + pre[t]
        b = decay_post * b + post[t]
        x_pre[t], x_post[t] = a, b
    return lr_post * layer_grad(x_pre.flatten(0, 1), post.flatten(0, 1)) + lr_pre * layer_grad(
        pre.flatten(0, 1), before.flatten(0, 1)
    )


def delay_stdp_reference(
    pre: Tensor,
    post: Tensor,
    delay: Tensor,
    dt: float,
    kernel_post: Callable[[Tensor], Tensor],
    kernel_pre: Callable[[Tensor], Tensor],
) -> tuple[Tensor, Tensor]:
    r"""Delay-adjusted nearest-pair STDP of one window, synapse by synapse (float64).

    From the definition (:mod:`plastorch.rules.kernel`), independent of the rules'
    vectorised code: a spike sent by input :math:`i` at step :math:`s` arrives at
    synapse :math:`(o, i)` at step :math:`s + n_{oi}`, :math:`n_{oi} = \lfloor
    d_{oi}/\Delta t + 1/2 \rfloor`. At each step the arrivals come first and pair with
    the latest post spike strictly before (:math:`K_\text{pre}`, times the spike's
    amplitude), then each post spike pairs with the latest arrival at or before it
    (:math:`K_\text{post}`, times the post value), both on :math:`t_\Delta =
    t_\text{post} - t_\text{sent} - d_{oi}` in ms. Positive values add to the returned
    potentiation, negative ones (negated) to the depression, summed over the batch.
    ``pre [T, B, in]``, ``post [T, B, out]`` start a fresh state; no signal,
    co-occurrence tolerance 0.
    """
    steps, batch, n_in = pre.shape
    n_out = post.shape[2]
    pre, post, delay = pre.double(), post.double(), delay.double()
    arrival_steps = torch.floor(delay / dt + 0.5).long()
    potentiation = torch.zeros(n_out, n_in, dtype=torch.float64)
    depression = torch.zeros_like(potentiation)

    def add(o: int, i: int, value: Tensor) -> None:
        if value > 0:
            potentiation[o, i] += value
        else:
            depression[o, i] -= value

    for b in range(batch):
        for o in range(n_out):
            for i in range(n_in):
                lag, d = int(arrival_steps[o, i]), delay[o, i]
                last_sent = last_post = None
                for t in range(steps):
                    sent = t - lag
                    if sent >= 0 and pre[sent, b, i] != 0:
                        if last_post is not None:
                            t_delta = (last_post - sent) * dt - d
                            add(o, i, kernel_pre(t_delta) * pre[sent, b, i])
                        last_sent = sent
                    if post[t, b, o] != 0:
                        if last_sent is not None:
                            t_delta = (t - last_sent) * dt - d
                            add(o, i, kernel_post(t_delta) * post[t, b, o])
                        last_post = t
    return potentiation, depression
