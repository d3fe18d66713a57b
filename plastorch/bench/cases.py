r"""The benchmark cases: plastorch, the bare-arithmetic limit, and the peers, on the same inputs.

Every STDP case uses :math:`\eta_\text{post} = 10^{-3}`, :math:`\eta_\text{pre} = -10^{-3}`,
:math:`\tau = 20` ms, :math:`\Delta t = 1` ms, presynaptic spike probability 0.05
and postsynaptic 0.02 per step (the issue's setting), float32 unless the case
says otherwise. plastorch is timed through :class:`~plastorch.Learner`
(``step()`` after the forward pass its hooks record, writing ``.grad``), once
with the default path choice (``"auto"``: sparse where it is cheaper) and once
forced dense. Its traces are warmed up by earlier steps so they are dense, as
in a running network.

The *limit* is the arithmetic no implementation can skip on the dense path:
the two weight-gradient products of the update (``torch.mm`` /
``torch.nn.grad.convNd_weight``) on precomputed traces, rates folded in.

A *floor* row (role ``"floor"``) times the least work that plastorch's semantics
need beyond the limit, written as bare torch calls, so each run shows whether a
target is reachable on the machine at hand: the one-step update with its trace
updates, weight check and ``.grad`` write (``dense_step``), the STDP window plus
one pass over MSTDP-ET's carried per-sample eligibility (``mstdpet_window``), and
the conv step with its spikes' scan in place of one of the two products
(``conv2d_*``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..bounds import Soft
from ..functional import sparse_mode
from ..functional.checks import check_finite
from ..functional.correlate import _AS_INT
from ..layers import DelayedLinear
from ..rules import MSTDP, MSTDPET, STDP, DelayAdjustedSTDP, DelayAdjustedSTDPD
from .common import (
    Case,
    CaseSetup,
    Check,
    Config,
    Contender,
    LearnerDriver,
    delay_stdp_reference,
    spike_patterns,
    stdp_reference,
)
from .peer_cases import (
    LR,
    TAU,
    bindsnet_diehl_cook,
    bindsnet_stdp,
    inferno_delay_window,
    inferno_stdp_dense,
    peer_rows,
    spikingjelly_mstdpet,
    spikingjelly_stdp,
)
from .timing import AllocationTracker

__all__ = ["CASES", "case_names"]

P_PRE, P_POST = 0.05, 0.02
DECAY = math.exp(-1.0 / TAU)


def _rule() -> STDP:
    return STDP(lr_post=LR, lr_pre=-LR, tau_post=TAU, tau_pre=TAU)


def _tolerances(dtype: torch.dtype) -> tuple[float, float]:
    return {
        torch.float64: (1e-10, 1e-12),
        torch.float32: (1e-4, 1e-7),
        torch.bfloat16: (1e-1, 1e-3),  # traces scanned in bfloat16 over the window
    }[dtype]


def _linear_grad(a: Tensor, b: Tensor) -> Tensor:
    """Weight gradient of a Linear layer at input ``a`` with upstream ``b``: ``b^T a``."""
    return b.double().t() @ a.double()


def _conv_grad(layer: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """Weight gradient of a convolution, by ``torch.nn.grad.convNd_weight`` in float64."""
    spatial = layer.weight.dim() - 2

    def grad(a: Tensor, b: Tensor) -> Tensor:
        fn = {
            1: torch.nn.grad.conv1d_weight,
            2: torch.nn.grad.conv2d_weight,
            3: torch.nn.grad.conv3d_weight,
        }[spatial]
        return fn(
            a.double(),
            layer.weight.shape,
            b.double(),
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
        )

    return grad


def _dense_traces(shape, generator, device, dtype) -> Tensor:
    """Uniform [0, 1) traces: what a warmed-up trace looks like to a GEMM."""
    return torch.rand(tuple(shape), generator=generator).to(device=device, dtype=dtype)


def _stdp_check(
    name: str,
    delta: Tensor,
    layer_grad: Callable[[Tensor, Tensor], Tensor],
    pre: Tensor,
    post: Tensor,
    trace_pre: Tensor,
    trace_post: Tensor,
    dtype: torch.dtype,
) -> Check:
    """``delta`` of one ``[T, B, ...]`` window against :func:`stdp_reference` from these traces."""
    rtol, atol = _tolerances(dtype)
    expected = stdp_reference(
        layer_grad,
        pre.double(),
        post.double(),
        trace_pre.double(),
        trace_post.double(),
        decay_pre=DECAY,
        decay_post=DECAY,
        lr_post=LR,
        lr_pre=-LR,
    )
    # float32/bfloat16 sums over up to T x B samples: compare relative to the
    # largest entry (the reference is float64 on the same inputs)
    scale = max(float(expected.abs().max()), 1e-30)
    tolerance = max(atol, rtol * scale) if dtype != torch.float64 else atol
    return Check(name, delta, expected, rtol, tolerance)


def _stdp_checks(
    make_layer: Callable[[], nn.Module],
    grad: Callable[[nn.Module], Callable[[Tensor, Tensor], Tensor]] | None,
    pres: list[Tensor],
    posts: list[Tensor],
    *,
    step_mode: str,
    dtype: torch.dtype,
) -> Callable[[], list[Check]]:
    """plastorch's Learner on every path against :func:`stdp_reference` from the same state."""

    def checks() -> list[Check]:
        out = []
        for mode in ("auto", "sparse", "dense"):
            layer = make_layer()
            driver = LearnerDriver(
                layer, _rule(), pres, posts, step_mode=step_mode, warm=3, mode=mode
            )
            name = f"Learner.step() on the {mode} path == bare-arithmetic STDP"
            layer_grad = _linear_grad if grad is None else grad(layer)
            out.append(_learner_check(name, driver, layer_grad, step_mode, dtype))
        return out

    return checks


def _learner_check(
    name: str,
    driver: LearnerDriver,
    layer_grad: Callable[[Tensor, Tensor], Tensor],
    step_mode: str,
    dtype: torch.dtype,
) -> Check:
    """The driver's next step against :func:`stdp_reference` from the traces it has now."""
    trace_pre = driver.learner.trace_pre.clone()
    trace_post = driver.learner.trace_post.clone()
    i = driver.index % len(driver.pres)
    driver.record()
    delta = driver.step()
    pre, post = driver.pres[i], driver.posts[i]
    if step_mode == "single":
        pre, post = pre[None], post[None]
    return _stdp_check(name, delta, layer_grad, pre, post, trace_pre, trace_post, dtype)


def _plastorch_rows(
    make_layer: Callable[[], nn.Module],
    pres: list[Tensor],
    posts: list[Tensor],
    *,
    step_mode: str,
    warm: int,
) -> list[Contender]:
    rows = []
    for name, mode in (("plastorch", None), ("plastorch, dense path", "dense")):
        driver = LearnerDriver(
            make_layer(), _rule(), pres, posts, step_mode=step_mode, warm=warm, mode=mode
        )
        rows.append(Contender(name, "plastorch", driver.step, driver.record))
    # The rule alone (traces + correlations -> the net change Update.delta(), as a
    # learner without weight dependence asks for it), without the Learner's weight
    # check and .grad write: what the functional core costs.
    layer = driver.layer
    rule = driver.learner.rule
    state = {name: driver.learner._buffers[name] for name in driver.learner.state_names}
    cursor = [0]

    def rule_only() -> None:
        i = cursor[0] % len(pres)
        cursor[0] += 1
        pre, post = pres[i], posts[i]
        if step_mode == "single":
            pre, post = pre[None], post[None]
        with sparse_mode("dense"):
            rule(layer, pre, post, state)[0].delta()

    rows.append(Contender("plastorch rule only, dense path", "plastorch", rule_only))
    return rows


# -- dense (Linear) ------------------------------------------------------------------------


class StepFloor:
    r"""STDP's one-step update as bare torch calls: what ``Learner.step()`` cannot skip.

    Per call: both traces advance in place, the acausal GEMM reading the decayed
    post trace before its spikes are added (pre-before-post event order); the two
    GEMMs write :math:`\Delta w` (rates as ``addmm_``'s coefficients); the weight is
    checked for NaN/inf with one reduction; :math:`-\Delta w` is subtracted from
    ``.grad``. ``record()`` runs the layer's forward pass, untimed as the Learner's.
    The same semantics as the Learner's step with no Python layers around them
    (its result is checked against :func:`~plastorch.bench.common.stdp_reference`).
    """

    def __init__(self, layer: nn.Module, pres: list[Tensor], posts: list[Tensor], warm: int):
        self.layer, self.pres, self.posts = layer, pres, posts
        self.trace_pre = torch.zeros_like(pres[0])
        self.trace_post = torch.zeros_like(posts[0])
        self.index = 0
        layer.weight.grad = torch.zeros_like(layer.weight)
        for _ in range(warm):
            self.record()
            self.step()

    def record(self) -> None:
        with torch.no_grad():
            self.layer(self.pres[self.index % len(self.pres)])

    def step(self) -> Tensor:
        i = self.index % len(self.pres)
        self.index += 1
        pre, post = self.pres[i], self.posts[i]
        x_pre = self.trace_pre.mul_(DECAY).add_(pre)
        x_post = self.trace_post.mul_(DECAY)
        delta = torch.mm(post.t(), x_pre)
        delta.addmm_(x_post.t(), pre, beta=LR, alpha=-LR)
        x_post.add_(post)
        weight = self.layer.weight
        check_finite("layer.weight", weight.detach())  # one sum, as the Learner's check
        weight.grad.sub_(delta)
        return delta


def _step_floor_check(make_layer, pres, posts, dtype) -> Callable[[], list[Check]]:
    def checks() -> list[Check]:
        floor = StepFloor(make_layer(), pres, posts, warm=3)
        trace_pre, trace_post = floor.trace_pre.clone(), floor.trace_post.clone()
        i = floor.index % len(pres)
        delta = floor.step()
        name = "step floor (bare torch) == bare-arithmetic STDP"
        pre, post = pres[i][None], posts[i][None]
        return [_stdp_check(name, delta, _linear_grad, pre, post, trace_pre, trace_post, dtype)]

    return checks


def _linear_setup(
    config: Config, *, steps: int | None, dtype: torch.dtype, patterns: int, batch: int = 64
):
    quick = config.quick
    n_in, n_out = 784, 400
    if quick:
        batch, n_in, n_out = min(batch, 16), 196, 100
        steps = None if steps is None else 10
    generator = config.generator()
    lead = (batch,) if steps is None else (steps, batch)
    device = config.device
    pres = spike_patterns(patterns, (*lead, n_in), P_PRE, generator, device=device, dtype=dtype)
    posts = spike_patterns(patterns, (*lead, n_out), P_POST, generator, device=device, dtype=dtype)
    base = nn.Linear(n_in, n_out, bias=False)
    with torch.no_grad():
        base.weight.uniform_(0.0, 0.1, generator=generator)
    base = base.to(device=device, dtype=dtype)
    make_layer = lambda: copy.deepcopy(base)  # noqa: E731
    return batch, n_in, n_out, steps, generator, pres, posts, make_layer


def _linear_limit(pres, posts, generator, config, dtype) -> Contender:
    pre, post = pres[0], posts[0]
    x_pre = _dense_traces(pre.shape, generator, config.device, dtype)
    x_post = _dense_traces(post.shape, generator, config.device, dtype)
    n_in, n_out = pre.shape[-1], post.shape[-1]
    pre2, post2 = pre.reshape(-1, n_in), post.reshape(-1, n_out)
    x_pre2, x_post2 = x_pre.reshape(-1, n_in), x_post.reshape(-1, n_out)

    def limit() -> Tensor:
        delta = torch.mm(post2.t(), x_pre2)
        return delta.addmm_(x_post2.t(), pre2, beta=LR, alpha=-LR)

    label = "limit: two GEMMs" if pre.dim() == 2 else "limit: two fused GEMMs (T folded)"
    return Contender(label, "limit", limit)


def dense_step(config: Config, dtype: torch.dtype = torch.float32, batch: int = 64) -> CaseSetup:
    batch, n_in, n_out, _, generator, pres, posts, make_layer = _linear_setup(
        config, steps=None, dtype=dtype, patterns=16, batch=batch
    )
    rows = [_linear_limit(pres, posts, generator, config, dtype)]
    rows += _plastorch_rows(
        make_layer, pres, posts, step_mode="single", warm=100 if not config.quick else 5
    )
    floor = StepFloor(make_layer(), pres, posts, warm=100 if not config.quick else 5)
    rows.append(
        Contender("floor: the step's semantics in bare torch", "floor", floor.step, floor.record)
    )
    if dtype == torch.float32:
        traces_pre = [_dense_traces(p.shape, generator, config.device, dtype) for p in pres]
        traces_post = [_dense_traces(p.shape, generator, config.device, dtype) for p in posts]
        rows += peer_rows(
            config,
            {
                "spikingjelly": lambda: spikingjelly_stdp(
                    config, make_layer(), pres, posts, step_mode="single"
                ),
                "bindsnet": lambda: bindsnet_stdp(
                    config, "dense", pres, posts, traces_pre, traces_post
                ),
                "inferno": lambda: inferno_stdp_dense(config, pres, n_out),
            },
        )
    stdp_checks = _stdp_checks(make_layer, None, pres, posts, step_mode="single", dtype=dtype)
    floor_check = _step_floor_check(make_layer, pres, posts, dtype)
    return CaseSetup(
        rows,
        lambda: stdp_checks() + floor_check(),
        repeats=100 if not config.quick else 3,
    )


def dense_window(config: Config, dtype: torch.dtype = torch.float32) -> CaseSetup:
    batch, n_in, n_out, steps, generator, pres, posts, make_layer = _linear_setup(
        config, steps=100, dtype=dtype, patterns=2
    )
    rows = [_linear_limit(pres, posts, generator, config, dtype)]
    rows += _plastorch_rows(make_layer, pres, posts, step_mode="multi", warm=1)
    if dtype == torch.float32:
        traces_pre = [_dense_traces(p.shape, generator, config.device, dtype) for p in pres]
        traces_post = [_dense_traces(p.shape, generator, config.device, dtype) for p in posts]
        rows += peer_rows(
            config,
            {
                "spikingjelly": lambda: spikingjelly_stdp(
                    config, make_layer(), pres, posts, step_mode="multi", warm=1
                ),
                "bindsnet": lambda: bindsnet_stdp(
                    config, "dense", pres, posts, traces_pre, traces_post, window=True
                ),
            },
        )
    return CaseSetup(
        rows,
        _stdp_checks(make_layer, None, pres, posts, step_mode="multi", dtype=dtype),
        repeats=10 if not config.quick else 2,
    )


# -- convolutions ---------------------------------------------------------------------------


_WEIGHT_GRADS = {
    1: torch.nn.grad.conv1d_weight,
    2: torch.nn.grad.conv2d_weight,
    3: torch.nn.grad.conv3d_weight,
}


def _conv_inputs(config: Config, make, in_shape, dtype, generator):
    """``(layer, pres, posts, x_pre, x_post)`` of a conv case: the layer with uniform
    [0, 0.1) weights, 8 spike patterns of each side, a dense trace of each side."""
    base = make()
    with torch.no_grad():
        base.weight.uniform_(0.0, 0.1, generator=generator)
    base = base.to(device=config.device, dtype=dtype)
    with torch.no_grad():
        out_shape = tuple(base(torch.zeros(in_shape, device=config.device, dtype=dtype)).shape)
    pres = spike_patterns(8, in_shape, P_PRE, generator, device=config.device, dtype=dtype)
    posts = spike_patterns(8, out_shape, P_POST, generator, device=config.device, dtype=dtype)
    x_pre = _dense_traces(in_shape, generator, config.device, dtype)
    x_post = _dense_traces(out_shape, generator, config.device, dtype)
    return base, pres, posts, x_pre, x_post


def _conv_limit(base: nn.Module, x_pre, x_post, pre, post) -> Callable[[], Tensor]:
    """The limit of a conv step: the two weight gradients on these factors, rates folded in."""
    weight_grad = _WEIGHT_GRADS[base.weight.dim() - 2]
    args = (base.stride, base.padding, base.dilation, base.groups)

    def limit() -> Tensor:
        ltp = weight_grad(x_pre, base.weight.shape, post, *args)
        ltd = weight_grad(pre, base.weight.shape, x_post, *args)
        return ltp.mul_(LR).sub_(ltd, alpha=LR)

    return limit


def _conv_case(
    config: Config,
    make: Callable[[], nn.Module],
    in_shape: tuple[int, ...],
    *,
    bindsnet_kind: str,
    repeats: int,
    dtype: torch.dtype = torch.float32,
) -> CaseSetup:
    """One conv STDP step case; ``bindsnet_kind`` is BindsNET's connection kind
    (``"conv2d"``, ``"conv3d"``) or, starting with ``"unsupported:"``, why it has none."""
    generator = config.generator()
    base, pres, posts, x_pre, x_post = _conv_inputs(config, make, in_shape, dtype, generator)
    make_layer = lambda: copy.deepcopy(base)  # noqa: E731
    out_shape = tuple(posts[0].shape)
    spatial = base.weight.dim() - 2
    weight_grad = _WEIGHT_GRADS[spatial]
    args = (base.stride, base.padding, base.dilation, base.groups)
    limit = _conv_limit(base, x_pre, x_post, pres[0], posts[0])
    rows = [Contender(f"limit: conv{spatial}d_weight x2", "limit", limit)]
    as_int = _AS_INT[posts[0].element_size()]  # the sparse path's scan reads floats as ints

    def scan_floor() -> Tensor:
        # a sparse LTP term must at least find the post spikes; the LTD term dense
        posts[0].view(as_int).nonzero()
        return weight_grad(pres[0], base.weight.shape, x_post, *args)

    rows.append(Contender("floor: post-spike scan + one conv_weight", "floor", scan_floor))
    if spatial == 2 and base.groups == 1 and base.dilation == (1, 1):

        def unfold_bmm() -> Tensor:
            # the peers' kernel: im2col of the input factor, a batched GEMM, a sum
            out = []
            for a, b in ((x_pre, posts[0]), (pres[0], x_post)):
                columns = torch.nn.functional.unfold(
                    a, base.kernel_size, padding=base.padding, stride=base.stride
                )
                out.append(torch.bmm(b.flatten(2), columns.transpose(1, 2)).sum(0))
            return out[0].mul_(LR).sub_(out[1], alpha=LR).view(base.weight.shape)

        rows.append(Contender("unfold + bmm x2 (the peers' kernel)", "alternative", unfold_bmm))
    rows += _plastorch_rows(
        make_layer, pres, posts, step_mode="single", warm=60 if not config.quick else 5
    )
    builders: dict[str, Callable[[], Contender] | str] = {
        "spikingjelly": lambda: spikingjelly_stdp(
            config, make_layer(), pres, posts, step_mode="single"
        ),
    }
    if bindsnet_kind.startswith("unsupported:"):
        builders["bindsnet"] = bindsnet_kind
    else:
        traces_pre = [_dense_traces(in_shape, generator, config.device, dtype) for _ in pres]
        traces_post = [_dense_traces(out_shape, generator, config.device, dtype) for _ in posts]
        builders["bindsnet"] = lambda: bindsnet_stdp(
            config,
            bindsnet_kind,
            [p[:, :] for p in pres],
            posts,
            traces_pre,
            traces_post,
            kernel_size=base.kernel_size,
            padding=base.padding,
            stride=base.stride,
        )
    rows += peer_rows(config, builders)
    return CaseSetup(
        rows,
        _stdp_checks(make_layer, _conv_grad, pres, posts, step_mode="single", dtype=dtype),
        repeats=repeats if not config.quick else 3,
    )


def conv2d_small(config: Config) -> CaseSetup:
    return _conv_case(
        config,
        lambda: nn.Conv2d(2, 32, 5, padding=2, bias=False),
        (16, 2, 28, 28) if not config.quick else (4, 2, 14, 14),
        bindsnet_kind="conv2d",
        repeats=40,
    )


def conv2d_large(config: Config) -> CaseSetup:
    return _conv_case(
        config,
        lambda: nn.Conv2d(32, 64, 3, padding=1, bias=False),
        (16, 32, 14, 14) if not config.quick else (4, 32, 7, 7),
        bindsnet_kind="conv2d",
        repeats=40,
    )


def conv2d_layouts(config: Config) -> CaseSetup:
    """Conv2d 2->32 in three memory-format setups, against the limits of both layouts.

    A channels-first network; a channels-last one (weights, input and spikes); and
    channels-last weights fed channels-first input, whose output (the post spikes) is
    channels-last while the pre spikes are not (``model.to(memory_format=...)``
    without converting the input). The limits are the two weight gradients on
    factors in either layout.
    """
    generator = config.generator()
    last = torch.channels_last
    in_shape = (16, 2, 28, 28) if not config.quick else (4, 2, 14, 14)
    dtype = torch.float32
    base, pres, posts, x_pre, x_post = _conv_inputs(
        config, lambda: nn.Conv2d(2, 32, 5, padding=2, bias=False), in_shape, dtype, generator
    )

    def as_last(tensors):
        return [t.contiguous(memory_format=last) for t in tensors]

    setups = {
        "channels-first network": (lambda: copy.deepcopy(base), pres, posts),
        "channels-last network": (
            lambda: copy.deepcopy(base).to(memory_format=last),
            as_last(pres),
            as_last(posts),
        ),
        "channels-last weights, channels-first input": (
            lambda: copy.deepcopy(base).to(memory_format=last),
            pres,
            as_last(posts),
        ),
    }
    rows = [
        Contender(
            "limit: conv2d_weight x2", "limit", _conv_limit(base, x_pre, x_post, pres[0], posts[0])
        ),
        Contender(
            "limit, channels-last factors",
            "alternative",
            _conv_limit(base, *as_last([x_pre, x_post, pres[0], posts[0]])),
        ),
    ]
    warm = 60 if not config.quick else 5
    for label, (make_layer, p, q) in setups.items():
        driver = LearnerDriver(make_layer(), _rule(), p, q, warm=warm)
        rows.append(Contender(f"plastorch, {label}", "plastorch", driver.step, driver.record))

    def checks() -> list[Check]:
        out = []
        for label, (make_layer, p, q) in setups.items():
            layer = make_layer()
            driver = LearnerDriver(layer, _rule(), p, q, warm=3)
            name = f"Learner.step(), {label} == bare-arithmetic STDP"
            out.append(_learner_check(name, driver, _conv_grad(layer), "single", dtype))
        return out

    return CaseSetup(rows, checks, repeats=40 if not config.quick else 3)


def conv3d(config: Config) -> CaseSetup:
    return _conv_case(
        config,
        lambda: nn.Conv3d(4, 16, 3, padding=1, bias=False),
        (8, 4, 16, 16, 16) if not config.quick else (2, 4, 8, 8, 8),
        bindsnet_kind="conv3d",
        repeats=20,
    )


def conv2d_dilated(config: Config) -> CaseSetup:
    return _conv_case(
        config,
        lambda: nn.Conv2d(16, 32, 3, padding=2, dilation=2, bias=False),
        (16, 16, 28, 28) if not config.quick else (4, 16, 14, 14),
        bindsnet_kind="unsupported: PostPre ignores dilation",
        repeats=20,
    )


def conv2d_grouped(config: Config) -> CaseSetup:
    return _conv_case(
        config,
        lambda: nn.Conv2d(32, 64, 3, padding=1, groups=4, bias=False),
        (16, 32, 14, 14) if not config.quick else (4, 32, 7, 7),
        bindsnet_kind="unsupported: no grouped connection",
        repeats=20,
    )


def dense_step_batch1(config: Config) -> CaseSetup:
    """``dense_step`` at batch 1, an online network's step: the fixed per-step work
    (Python, weight-sized passes) that batch 64 hides is most of the time here."""
    return dense_step(config, batch=1)


def dense_step_soft(config: Config) -> CaseSetup:
    """``dense_step`` with soft bounds, ``Soft(0, 1)`` clipped: each half of the update
    times its weight factor (``1 - w``, ``w``), as BindsNET's ``WeightDependentPostPre``.
    The limit stays the two GEMMs: the factors are weight-sized work on top."""
    batch, n_in, n_out, _, generator, pres, posts, make_layer = _linear_setup(
        config, steps=None, dtype=torch.float32, patterns=16
    )
    warm = 100 if not config.quick else 5
    driver = LearnerDriver(make_layer(), _rule(), pres, posts, warm=warm, bound=Soft(0.0, 1.0))
    rows = [
        _linear_limit(pres, posts, generator, config, torch.float32),
        Contender("plastorch", "plastorch", driver.step, driver.record),
    ]
    unbounded = LearnerDriver(make_layer(), _rule(), pres, posts, warm=warm)
    rows.append(Contender("plastorch, no bound", "plastorch", unbounded.step, unbounded.record))
    traces_pre = [_dense_traces(p.shape, generator, config.device, torch.float32) for p in pres]
    traces_post = [_dense_traces(p.shape, generator, config.device, torch.float32) for p in posts]
    rows += peer_rows(
        config,
        {
            "bindsnet": lambda: bindsnet_stdp(
                config, "dense", pres, posts, traces_pre, traces_post, weight_dependent=True
            )
        },
    )

    def checks() -> list[Check]:
        # the next step against the soft-bound formula on the reference halves (float64)
        check = LearnerDriver(make_layer(), _rule(), pres, posts, warm=3, bound=Soft(0.0, 1.0))
        learner = check.learner
        x_pre, x_post = learner.trace_pre.double(), learner.trace_post.double()
        i = check.index % len(pres)
        check.record()
        delta = check.step()
        pre, post = pres[i][None].double(), posts[i][None].double()
        halves = [
            stdp_reference(
                _linear_grad,
                pre,
                post,
                x_pre,
                x_post,
                decay_pre=DECAY,
                decay_post=DECAY,
                lr_post=lr_post,
                lr_pre=lr_pre,
            )
            for lr_post, lr_pre in ((LR, 0.0), (0.0, LR))
        ]
        w = check.layer.weight.detach().double()
        expected = ((1 - w) * halves[0] - w * halves[1]).add(w).clamp(0.0, 1.0).sub(w)
        scale = max(float(expected.abs().max()), 1e-30)
        return [
            Check(
                "Learner.step() with Soft(0, 1) == soft-bound STDP",
                delta,
                expected,
                1e-4,
                1e-4 * scale,
            )
        ]

    return CaseSetup(rows, checks, repeats=100 if not config.quick else 3)


# -- dtypes ----------------------------------------------------------------------------------


def dense_step_float64(config: Config) -> CaseSetup:
    return dense_step(config, torch.float64)


def dense_window_float64(config: Config) -> CaseSetup:
    return dense_window(config, torch.float64)


def dense_step_bfloat16(config: Config) -> CaseSetup:
    return dense_step(config, torch.bfloat16)


def dense_window_bfloat16(config: Config) -> CaseSetup:
    return dense_window(config, torch.bfloat16)


# -- MSTDP-ET with per-sample reward ----------------------------------------------------------


def _reward(batch: int, generator: torch.Generator, device) -> Tensor:
    """Per-sample reward of either sign, ``[B]``."""
    return (torch.rand(batch, generator=generator) * 2.0 - 1.0).to(device)


def mstdpet_reference(layer, rule, pre, post, signal, state) -> tuple[Tensor, Tensor]:
    r"""MSTDP-ET by the step-by-step per-sample recursion (bare arithmetic, Linear only).

    :math:`z_b(t) = d z_b(t-1) + \xi_b(t)/\tau_z` for both terms, and every step adds
    :math:`|\eta M_b(t)| z_b(t)` to the half the sign of :math:`\eta M_b(t)` selects.
    Returns ``(potentiation, depression)`` in float64.
    """
    steps, batch = pre.shape[:2]
    pre, post, signal = pre.double(), post.double(), signal.double()
    x_pre = state["trace_pre"].double()
    x_post = state["trace_post"].double()
    z = [state["eligibility_post"].double().clone(), state["eligibility_pre"].double().clone()]
    d = rule.decay_eligibility
    pot = torch.zeros(layer.weight.shape, dtype=torch.float64)
    dep = torch.zeros_like(pot)
    for t in range(steps):
        before = rule.decay_post * x_post
        x_pre = rule.decay_pre * x_pre + pre[t]
        x_post = rule.decay_post * x_post + post[t]
        xi = [
            torch.einsum("bo,bi->boi", post[t], x_pre),
            torch.einsum("bo,bi->boi", before, pre[t]),
        ]
        m = signal[t] if signal.dim() == 2 else signal
        for k, rate in enumerate((rule.lr_post, rule.lr_pre)):
            z[k] = d * z[k] + xi[k] / rule.tau_eligibility
            gain = rate * m  # [B]
            pot += torch.einsum("b,boi->oi", gain.clamp(min=0), z[k])
            dep += torch.einsum("b,boi->oi", (-gain).clamp(min=0), z[k])
    return pot, dep


def _halves_checks(label: str, update, potentiation: Tensor, depression: Tensor) -> list[Check]:
    """Both halves of a float64 ``update`` against a reference's, to 1e-10 relative;
    ``{half}`` in ``label`` names the half."""
    return [
        Check(label.format(half=half), actual.cpu(), expected.cpu(), 1e-10, 1e-12)
        for half, actual, expected in (
            ("potentiation", update.potentiation, potentiation),
            ("depression", update.depression, depression),
        )
    ]


def _carried_floor(make_layer, pres, posts, config: Config, count: int, which: str) -> Contender:
    """The STDP window plus one read-and-write pass over ``count`` carried ``[B, out, in]``
    eligibilities (a sign flip, so that repeated rounds keep the values normal)."""
    driver = LearnerDriver(make_layer(), _rule(), pres, posts, step_mode="multi", warm=1)
    batch, n_out, n_in = pres[0].shape[1], posts[0].shape[-1], pres[0].shape[-1]
    generator = config.generator()
    carried = [
        torch.rand(batch, n_out, n_in, generator=generator).to(config.device) for _ in range(count)
    ]

    def floor() -> None:
        driver.step()
        for eligibility in carried:
            eligibility.neg_()

    return Contender(f"floor: STDP window + 1 pass over {which}", "floor", floor, driver.record)


def mstdpet_window(config: Config) -> CaseSetup:
    batch, n_in, n_out, steps, generator, pres, posts, make_layer = _linear_setup(
        config, steps=100, dtype=torch.float32, patterns=2
    )
    rewards = [_reward(batch, generator, config.device) for _ in range(4)]
    signal = lambda index: rewards[index % len(rewards)]  # noqa: E731

    def make_rule(eligibility: str = "split") -> MSTDPET:
        return MSTDPET(LR, -LR, TAU, TAU, 25.0, per_sample_signal=True, eligibility=eligibility)

    rows = [_linear_limit(pres, posts, generator, config, torch.float32)]
    # episodic: one rewarded window per episode, the state reset after it;
    # step(reset=True) tells the rule, so it does not form the eligibility it would carry
    # combined: one carried eligibility, eta_post z_post + eta_pre z_pre (Florian's z)
    variants = (
        ("plastorch MSTDP-ET", None, {}, False, "split"),
        ("plastorch MSTDP-ET, combined eligibility", None, {}, False, "combined"),
        ("plastorch MSTDP-ET, dense path", "dense", {}, False, "split"),
        ("plastorch MSTDP-ET, step(); reset()", None, {}, True, "split"),
        ("plastorch MSTDP-ET, step(reset=True)", None, {"reset": True}, False, "split"),
    )
    for name, mode, step_kwargs, reset_after_step, eligibility in variants:
        driver = LearnerDriver(
            make_layer(),
            make_rule(eligibility),
            pres,
            posts,
            step_mode="multi",
            warm=1,
            signal=signal,
            mode=mode,
            step_kwargs=step_kwargs,
            reset_after_step=reset_after_step,
        )
        rows.append(Contender(name, "plastorch", driver.step, driver.record))
    stdp = LearnerDriver(make_layer(), _rule(), pres, posts, step_mode="multi", warm=1)
    rows.append(Contender("plastorch STDP (same window)", "plastorch", stdp.step, stdp.record))
    # A continuing window must read and write each carried [B, out, in] eligibility at
    # least once (its decay over the window), besides the pairs an STDP window has.
    for count, which in ((2, "the 2 carried eligibilities"), (1, "the combined eligibility")):
        rows.append(_carried_floor(make_layer, pres, posts, config, count, which))
    rows += peer_rows(
        config,
        {
            "spikingjelly": (
                "unsupported: MSTDPETLearner takes a scalar reward, unbatched, single step"
            ),
        },
    )

    def checks() -> list[Check]:
        small = Config(quick=True, device=config.device, seed=config.seed)
        b, _, _, t, gen, small_pres, small_posts, small_layer = _linear_setup(
            small, steps=100, dtype=torch.float64, patterns=2
        )
        layer = small_layer()
        rule = make_rule().double()
        state = rule.initial_state(layer, small_pres[0][0], small_posts[0][0])
        # a first window carries eligibility into the checked one
        reward0 = _reward(b, gen, config.device).double()
        _, state = rule(layer, small_pres[0], small_posts[0], state, reward0)
        reward = _reward(b, gen, config.device).double()
        pot, dep = mstdpet_reference(layer, rule, small_pres[1], small_posts[1], reward, state)
        out = []
        for mode in ("auto", "sparse", "dense"):
            with sparse_mode(mode):
                update, _ = rule(layer, small_pres[1], small_posts[1], state, reward)
            label = f"MSTDP-ET {{half}}, {mode} path == per-sample recursion"
            out += _halves_checks(label, update, pot, dep)
        # the combined eligibility carries eta_post z_post + eta_pre z_pre: the same change
        combined = make_rule("combined").double()
        one = {
            "trace_pre": state["trace_pre"],
            "trace_post": state["trace_post"],
            "eligibility": LR * state["eligibility_post"] - LR * state["eligibility_pre"],
        }
        update, _ = combined(layer, small_pres[1], small_posts[1], one, reward)
        out.append(
            Check(
                "MSTDP-ET combined eligibility, net change == per-sample recursion",
                update.delta(),
                pot - dep,
                1e-10,
                1e-12,
            )
        )
        return out

    return CaseSetup(
        rows,
        checks,
        repeats=10 if not config.quick else 2,
        baseline="plastorch STDP (same window)",
        notes=["per-sample reward [B] of both signs; MSTDPET(per_sample_signal=True)"],
    )


def mstdpet_step_batch1(config: Config) -> CaseSetup:
    """MSTDP-ET, one step at batch 1 with a scalar reward: what SpikingJelly's
    ``MSTDPETLearner`` runs (single step, unbatched). Split and combined eligibility;
    the limit is the step's two outer products."""
    batch, n_in, n_out, _, generator, pres, posts, make_layer = _linear_setup(
        config, steps=None, dtype=torch.float32, patterns=16, batch=1
    )
    reward = 0.5
    warm = 100 if not config.quick else 5

    def make_rule(eligibility: str) -> MSTDPET:
        return MSTDPET(LR, -LR, TAU, TAU, TAU, eligibility=eligibility)

    rows = [_linear_limit(pres, posts, generator, config, torch.float32)]
    for eligibility in ("split", "combined"):
        driver = LearnerDriver(
            make_layer(), make_rule(eligibility), pres, posts, warm=warm, signal=lambda i: reward
        )
        label = f"plastorch, {eligibility} eligibility"
        rows.append(Contender(label, "plastorch", driver.step, driver.record))
    rows += peer_rows(
        config,
        {"spikingjelly": lambda: spikingjelly_mstdpet(config, make_layer(), pres, posts, reward)},
    )

    def checks() -> list[Check]:
        # the next step from a warmed state against the step-by-step recursion (float64)
        layer = make_layer().double()
        steps = [p.double() for p in pres], [p.double() for p in posts]
        rule = make_rule("split").double()
        driver = LearnerDriver(layer, rule, *steps, warm=3, signal=lambda i: reward)
        state = {name: driver.learner._buffers[name].clone() for name in driver.learner.state_names}
        i = driver.index % len(pres)
        driver.record()
        delta = driver.step()
        signal = torch.full((1, 1), reward, dtype=torch.float64)
        pot, dep = mstdpet_reference(
            layer, rule, steps[0][i][None], steps[1][i][None], signal, state
        )
        expected = pot - dep
        scale = max(float(expected.abs().max()), 1e-30)
        return [
            Check("Learner.step() == MSTDP-ET recursion", delta, expected, 1e-10, 1e-12 * scale)
        ]

    return CaseSetup(rows, checks, repeats=100 if not config.quick else 3)


# -- delay-adjusted STDP of weights and delays ---------------------------------------------------

MAX_DELAY = 10.0


def _delay_rules() -> dict[str, Callable[[], nn.Module]]:
    return {
        "weights": lambda: DelayAdjustedSTDP(LR, -LR, TAU, TAU),
        "delays": lambda: DelayAdjustedSTDPD(-LR, LR, TAU, TAU),
    }


def delay_window(config: Config) -> CaseSetup:
    steps, batch, n_in, n_out = (20, 4, 40, 20) if config.quick else (100, 16, 200, 100)
    generator = config.generator()
    device = config.device
    pres = spike_patterns(
        2, (steps, batch, n_in), P_PRE, generator, device=device, dtype=torch.float32
    )
    posts = spike_patterns(
        2, (steps, batch, n_out), P_POST, generator, device=device, dtype=torch.float32
    )
    base = DelayedLinear(n_in, n_out, max_delay=MAX_DELAY, bias=False)
    with torch.no_grad():
        base.weight.uniform_(0.0, 0.1, generator=generator)
        base.delay.uniform_(0.0, MAX_DELAY, generator=generator)
    base = base.to(device)
    rows = []
    for learn, make_rule in _delay_rules().items():
        rule = make_rule()
        driver = LearnerDriver(copy.deepcopy(base), rule, pres, posts, step_mode="multi", warm=1)
        name = f"plastorch {type(rule).__name__} ({learn}), step"
        rows.append(Contender(name, "plastorch", driver.step, driver.record))
    # as the peer is timed: the layer's forward pass of the window, then the update
    both = LearnerDriver(
        copy.deepcopy(base), _delay_rules()["weights"](), pres, posts, step_mode="multi", warm=1
    )

    def forward_and_step() -> None:
        both.record()
        both.step()

    baseline = "plastorch forward + DelayAdjustedSTDP step"
    rows.append(Contender(baseline, "plastorch", forward_and_step))
    # the layer's own work: it gathers the arrivals [T, B, out, in] of the window
    layer = copy.deepcopy(base)
    cursor = [0]

    def forward() -> None:
        with torch.no_grad():
            layer(pres[cursor[0] % len(pres)])
        cursor[0] += 1

    rows.append(Contender("floor: the DelayedLinear forward of the window", "floor", forward))
    unsupported = "unsupported: no learned synaptic delays"
    rows += peer_rows(
        config,
        {
            "spikingjelly": unsupported,
            "bindsnet": unsupported,
            "inferno": lambda: inferno_delay_window(
                config, pres, n_out, MAX_DELAY, learn="weights"
            ),
        },
    )
    if "inferno" in config.peers:
        rows.append(inferno_delay_window(config, pres, n_out, MAX_DELAY, learn="delays"))

    def checks() -> list[Check]:
        gen = config.generator(1)
        small_pre = (torch.rand(30, 2, 6, generator=gen) < 0.3).double().to(device)
        small_post = (torch.rand(30, 2, 4, generator=gen) < 0.2).double().to(device)
        small = DelayedLinear(6, 4, max_delay=5.0, bias=False).double().to(device)
        with torch.no_grad():
            small.delay.copy_(torch.rand(4, 6, generator=gen, dtype=torch.float64) * 5.0)
        out = []
        for make_rule in _delay_rules().values():
            rule = make_rule().double()
            state = rule.initial_state(small, small_pre[0], small_post[0])
            update, _ = rule(small, small_pre, small_post, state)
            kernel_post, kernel_pre = (
                lambda t, k=k: k(torch.as_tensor(t, dtype=torch.float64))
                for k in (rule.kernel_post, rule.kernel_pre)
            )
            delay = small.delay.detach().cpu()
            pot, dep = delay_stdp_reference(
                small_pre.cpu(), small_post.cpu(), delay, 1.0, kernel_post, kernel_pre
            )
            label = f"{type(rule).__name__} {{half}} == synapse-by-synapse reference"
            out += _halves_checks(label, update, pot, dep)
        return out

    return CaseSetup(
        rows,
        checks,
        repeats=5 if not config.quick else 2,
        baseline=baseline,
        notes=[
            f"DelayedLinear {n_in}->{n_out}, max delay {MAX_DELAY:g} ms, T={steps}, batch "
            f"{batch}, pre {P_PRE:g} / post {P_POST:g}; inferno runs its own LIF neurons and "
            "updates after every step (its cost does not depend on the spike counts)"
        ],
    )


# -- memory ------------------------------------------------------------------------------------


def window_memory(config: Config) -> CaseSetup:
    """Peak bytes allocated while settling one window, for several rules and batch sizes."""
    n_in, n_out = 784, 400
    steps = 100 if not config.quick else 10
    batches = (16, 64) if not config.quick else (4, 8)
    values: dict[str, float] = {}
    notes = []
    generator = config.generator(11)
    for batch in batches:
        synapses = batch * n_out * n_in * 4
        values[f"B={batch}: B x out x in x 4 bytes (reference)"] = synapses
        pre = spike_patterns(
            1, (steps, batch, n_in), P_PRE, generator, device=config.device, dtype=torch.float32
        )[0]
        post = spike_patterns(
            1, (steps, batch, n_out), P_POST, generator, device=config.device, dtype=torch.float32
        )[0]
        layer = nn.Linear(n_in, n_out, bias=False).to(config.device)
        reward_tb = (torch.rand(steps, batch, generator=generator) * 2 - 1).to(config.device)
        reward_b = _reward(batch, generator, config.device)
        rules = {
            "STDP": (_rule(), None),
            "MSTDP, [T, B] reward": (MSTDP(LR, -LR), reward_tb),
            "MSTDP-ET, scalar reward": (MSTDPET(LR, -LR), 1.0),
            "MSTDP-ET, per-sample [B] reward": (MSTDPET(LR, -LR, per_sample_signal=True), reward_b),
        }
        for name, (rule, signal) in rules.items():
            for mode in ("auto", "dense"):
                state = rule.initial_state(layer, pre[0], post[0])
                with torch.no_grad(), sparse_mode(mode), AllocationTracker() as tracker:
                    update, new_state = rule(layer, pre, post, state, signal)
                    del update, new_state
                values[f"B={batch}: {name}, {mode} path: peak bytes"] = tracker.peak
                values[f"B={batch}: {name}, {mode} path: largest tensor bytes"] = tracker.largest
    notes.append(
        "peak = most bytes of tensors allocated inside rule.forward alive at once "
        f"(window of T={steps} steps, Linear {n_in}->{n_out}, float32)"
    )
    return CaseSetup([], unit="bytes", repeats=0, values=values, notes=notes)


# -- crossover ----------------------------------------------------------------------------------


def crossover(config: Config, steps: int | None = None) -> CaseSetup:
    """STDP at equal pre/post density, sparse vs dense vs auto path (Linear 784 -> 400, batch 64).

    ``steps=None``: one step; else a window of ``steps`` steps (time folded into the batch).
    """
    densities = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2) if not config.quick else (0.02, 0.2)
    batch, n_in, n_out = (64, 784, 400) if not config.quick else (16, 196, 100)
    if config.quick and steps is not None:
        steps = 5
    lead = (batch,) if steps is None else (steps, batch)
    generator = config.generator(5)
    base = nn.Linear(n_in, n_out, bias=False).to(config.device)
    dtype = torch.float32
    full = [torch.ones((*lead, n_in), device=config.device)]
    rows = [
        _linear_limit(
            full, [torch.ones((*lead, n_out), device=config.device)], generator, config, dtype
        )
    ]
    patterns = 8 if steps is None else 2
    for density in densities:
        pres = spike_patterns(
            patterns, (*lead, n_in), density, generator, device=config.device, dtype=dtype
        )
        posts = spike_patterns(
            patterns, (*lead, n_out), density, generator, device=config.device, dtype=dtype
        )
        # "auto" is the default choice, per term (e.g. a one-step LTP term sparse, LTD dense)
        for path in ("auto", "sparse", "dense"):
            driver = LearnerDriver(
                copy.deepcopy(base),
                _rule(),
                pres,
                posts,
                step_mode="single" if steps is None else "multi",
                warm=(60 if steps is None else 1) if not config.quick else 2,
                mode=None if path == "auto" else path,
            )
            rows.append(
                Contender(
                    f"{path} path, density {density:g}", "plastorch", driver.step, driver.record
                )
            )

    def summarize(medians: dict[str, float]) -> dict[str, float]:
        ratios = []
        for density in densities:
            sparse = medians.get(f"sparse path, density {density:g}")
            dense = medians.get(f"dense path, density {density:g}")
            if sparse and dense:
                ratios.append((density, sparse / dense))
        out = {f"sparse/dense at density {d:g}": r for d, r in ratios}
        out["crossover density (sparse = dense)"] = _crossing(ratios)
        for density in densities:
            auto, dense = (medians.get(f"{p} path, density {density:g}") for p in ("auto", "dense"))
            if auto and dense:
                out[f"auto/dense at density {density:g}"] = auto / dense
        return out

    setup = CaseSetup(
        rows,
        repeats=(30 if steps is None else 5) if not config.quick else 2,
        baseline="dense path, density 0.02",
    )
    setup.summarize = summarize  # type: ignore[attr-defined]
    return setup


def crossover_window(config: Config) -> CaseSetup:
    return crossover(config, steps=25)


def _crossing(ratios: list[tuple[float, float]]) -> float:
    """Density where sparse/dense crosses 1, interpolated in log density (nan if it does not)."""
    for (d0, r0), (d1, r1) in zip(ratios, ratios[1:]):
        if r0 < 1.0 <= r1:
            f = (1.0 - r0) / (r1 - r0)
            return math.exp(math.log(d0) + f * (math.log(d1) - math.log(d0)))
    return float("nan")


# -- Diehl & Cook end to end -------------------------------------------------------------------


def _digits(device) -> Tensor:
    """scikit-learn's 8x8 digits, intensities in [0, 1], ``[1797, 8, 8]``."""
    from sklearn.datasets import load_digits

    return torch.tensor(load_digits().images, dtype=torch.float32, device=device) / 16.0


def diehl_cook(config: Config) -> CaseSetup:
    """Training throughput of Diehl & Cook (64 inputs, 100 neurons, 250 steps of 1 ms)."""
    try:
        from ..models import DiehlCook2015
    except ImportError:
        return CaseSetup(
            [
                Contender(
                    "plastorch", "plastorch", None, status="pending: plastorch.models.DiehlCook2015"
                )
            ],
            repeats=0,
        )
    steps = 250 if not config.quick else 25
    images = _digits(config.device)
    rows = []
    batches = (1, 16, 64) if not config.quick else (1, 4)
    for batch in batches:
        model = DiehlCook2015(
            n_input=64, n_neurons=100, time_steps=steps, max_retries=0, seed=config.seed
        ).to(config.device)
        model.train()
        cursor = [0]

        def present(model=model, batch=batch, cursor=cursor) -> None:
            start = cursor[0] % (images.shape[0] - batch)
            cursor[0] += batch
            model(images[start : start + batch])

        rows.append(
            Contender(f"plastorch, batch {batch}", "plastorch", present, items_per_call=batch)
        )
    rows += peer_rows(config, {"bindsnet": lambda: bindsnet_diehl_cook(config, images, steps)})
    return CaseSetup(
        rows,
        unit="items/s",
        repeats=5 if not config.quick else 2,
        notes=[
            "one training presentation per sample, no retries (max_retries=0), "
            "Poisson encoding included; vs column: time per sample relative to plastorch batch 1"
        ],
    )


# -- registry ---------------------------------------------------------------------------------

CASES: tuple[Case, ...] = (
    Case("dense_step", "STDP Linear 784->400, batch 64, one step (LTP+LTD)", dense_step),
    Case("dense_window", "STDP Linear 784->400, window T=100, batch 64", dense_window),
    Case("conv2d_2_32", "STDP Conv2d 2->32 k5 pad2 on 16x2x28x28, one step", conv2d_small),
    Case("conv2d_32_64", "STDP Conv2d 32->64 k3 pad1 on 16x32x14x14, one step", conv2d_large),
    Case(
        "conv2d_layouts",
        "STDP Conv2d 2->32 k5 pad2 on 16x2x28x28, one step, by memory format",
        conv2d_layouts,
    ),
    Case("conv3d", "STDP Conv3d 4->16 k3 pad1 on 8x4x16x16x16, one step", conv3d),
    Case(
        "conv2d_dilated",
        "STDP Conv2d 16->32 k3 dilation 2 on 16x16x28x28, one step",
        conv2d_dilated,
    ),
    Case(
        "conv2d_grouped", "STDP Conv2d 32->64 k3 groups 4 on 16x32x14x14, one step", conv2d_grouped
    ),
    Case(
        "mstdpet_window",
        "MSTDP-ET Linear 784->400, T=100, batch 64, per-sample reward",
        mstdpet_window,
    ),
    Case(
        "dense_step_batch1",
        "STDP Linear 784->400, batch 1, one step (LTP+LTD)",
        dense_step_batch1,
    ),
    Case(
        "dense_step_soft",
        "STDP Linear 784->400, batch 64, one step, soft bounds (weight-dependent)",
        dense_step_soft,
    ),
    Case(
        "mstdpet_step_batch1",
        "MSTDP-ET Linear 784->400, batch 1, one step, scalar reward",
        mstdpet_step_batch1,
    ),
    Case(
        "dense_step_float64",
        "STDP Linear 784->400, batch 64, one step, float64",
        dense_step_float64,
    ),
    Case(
        "dense_window_float64",
        "STDP Linear 784->400, T=100, batch 64, float64",
        dense_window_float64,
    ),
    Case(
        "dense_step_bfloat16",
        "STDP Linear 784->400, batch 64, one step, bfloat16",
        dense_step_bfloat16,
    ),
    Case(
        "dense_window_bfloat16",
        "STDP Linear 784->400, T=100, batch 64, bfloat16",
        dense_window_bfloat16,
    ),
    Case(
        "delay_window",
        "Delay-adjusted STDP of weights and delays, DelayedLinear 200->100, T=100, batch 16",
        delay_window,
    ),
    Case("diehl_cook", "Diehl & Cook training, 64 inputs, 100 neurons, 250 ms at dt=1", diehl_cook),
    Case("window_memory", "Peak memory of one window (T=100), Linear 784->400", window_memory),
    Case("crossover", "Sparse vs dense path by density, STDP step 784->400, batch 64", crossover),
    Case(
        "crossover_window",
        "Sparse vs dense path by density, STDP window T=25, 784->400, batch 64",
        crossover_window,
    ),
)


def case_names() -> list[str]:
    """Names of all cases, in run order.

    Examples
    --------
    >>> case_names()[:2]
    ['dense_step', 'dense_window']
    """
    return [case.name for case in CASES]
