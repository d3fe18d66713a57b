"""Time this plastorch against an older copy of itself, interleaved in one process.

Export an older commit's package under another name and point ``--old`` at it::

    git archive <commit> plastorch | tar -x -C /tmp/old && mv /tmp/old/plastorch /tmp/old/plastorch_old
    python -m plastorch.bench.before_after --old /tmp/old

Both versions run ``Learner.step()`` on the same spikes: cases like the suite's (STDP
Linear one step at batch 64, 16 and 1, and a T=100 window; the one step with Hard,
Soft and Exponential bounds; ExpSTDP, TripletSTDP, KernelSTDP (exponential window) and
LinearHomeostasis of the weights, one step and a window each; an MSTDP window with a
scalar reward; MSTDP-ET's one step at batch 1 with a scalar reward (SpikingJelly's
setting); the two Conv2d steps; the MSTDP-ET window with per-sample reward, split and
combined eligibility) and two runs in which a quarter of the neurons never fire, long
enough for their state to reach the subnormal range. ``--cases TEXT`` runs only the
cases whose name contains it. The table gives medians, old/new and its 95 % bootstrap
interval over the paired rounds (:func:`~plastorch.bench.timing.ratio_interval`).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import sys

import torch
from torch import nn

from .common import Replay, spike_patterns
from .timing import interleaved, ratio_interval

__all__ = ["main"]


def _driver(
    package, layer, rule, pres, posts, step_mode, warm, signal=None, prime=False, bound=None
):
    source = Replay()
    learner = package.Learner(layer, source, rule, step_mode=step_mode, bound=bound)
    index = [0]
    if prime:  # every neuron fires once: the silent ones then decay from 1
        with torch.no_grad():
            source.value = torch.ones_like(posts[0])
            source(layer(torch.ones_like(pres[0])))
        learner.step() if signal is None else learner.step(signal=signal)

    def record():
        i = index[0] % len(pres)
        index[0] += 1
        with torch.no_grad():
            source.value = posts[i]
            source(layer(pres[i]))

    def step():
        return learner.step() if signal is None else learner.step(signal=signal)

    for _ in range(warm):
        record()
        step()
    layer.weight.grad = None
    return record, step


def _cases():
    generator = torch.Generator().manual_seed(0)
    linear = nn.Linear(784, 400, bias=False)
    step_pres = spike_patterns(16, (64, 784), 0.05, generator, device="cpu", dtype=torch.float32)
    step_posts = spike_patterns(16, (64, 400), 0.02, generator, device="cpu", dtype=torch.float32)
    win_pres = spike_patterns(2, (100, 64, 784), 0.05, generator, device="cpu", dtype=torch.float32)
    win_posts = spike_patterns(
        2, (100, 64, 400), 0.02, generator, device="cpu", dtype=torch.float32
    )
    conv_a = nn.Conv2d(2, 32, 5, padding=2, bias=False)
    conv_b = nn.Conv2d(32, 64, 3, padding=1, bias=False)
    conv_cases = []
    for conv, shape in ((conv_a, (16, 2, 28, 28)), (conv_b, (16, 32, 14, 14))):
        out = tuple(conv(torch.zeros(shape)).shape)
        conv_cases.append(
            (
                conv,
                spike_patterns(8, shape, 0.05, generator, device="cpu", dtype=torch.float32),
                spike_patterns(8, out, 0.02, generator, device="cpu", dtype=torch.float32),
            )
        )
    reward = torch.rand(64, generator=generator) * 2 - 1
    # online learning: one sample (or a few) per step, where the fixed costs dominate
    small = {
        batch: (
            spike_patterns(16, (batch, 784), 0.05, generator, device="cpu", dtype=torch.float32),
            spike_patterns(16, (batch, 400), 0.02, generator, device="cpu", dtype=torch.float32),
        )
        for batch in (1, 16)
    }
    # a quarter of the inputs and outputs never fire: after ~1750 steps (tau = 20 dt)
    # their traces and eligibilities would be subnormal, were they not flushed
    silent_in, silent_out = torch.ones(784), torch.ones(400)
    silent_in[:196], silent_out[:100] = 0.0, 0.0
    quiet_step = ([p * silent_in for p in step_pres], [p * silent_out for p in step_posts])
    quiet_window = ([p * silent_in for p in win_pres], [p * silent_out for p in win_posts])
    stdp = lambda p: p.rules.STDP(1e-3, -1e-3)  # noqa: E731
    mstdpet = lambda p: p.rules.MSTDPET(1e-3, -1e-3, per_sample_signal=True)  # noqa: E731
    mstdpet_scalar = lambda p: p.rules.MSTDPET(1e-3, -1e-3)  # noqa: E731
    combined_scalar = lambda p: p.rules.MSTDPET(1e-3, -1e-3, eligibility="combined")  # noqa: E731
    homeostasis = lambda p: p.rules.LinearHomeostasis(1e-3, 20.0)  # noqa: E731
    exp_stdp = lambda p: p.rules.ExpSTDP(1e-3, a_minus=0.5)  # noqa: E731
    triplet = lambda p: p.rules.TripletSTDP(5e-3, 6e-3, 7e-3, 2e-4)  # noqa: E731
    mstdp = lambda p: p.rules.MSTDP(1e-3, -1e-3)  # noqa: E731

    def kernel_stdp(p):
        window = importlib.import_module(p.__name__ + ".rules.kernel").exponential_window
        kernel = p.rules.Kernel(
            window, lr_causal=1e-3, lr_acausal=-1e-3, tau_causal=20.0, tau_acausal=20.0
        )
        return p.rules.KernelSTDP(kernel)

    combined = lambda p: p.rules.MSTDPET(  # noqa: E731
        1e-3, -1e-3, per_sample_signal=True, eligibility="combined"
    )
    # weight dependence and clipping (the weights start well inside the range)
    bounded = {
        "Hard": lambda p: p.bounds.Hard(-1.0, 1.0),
        "Soft": lambda p: p.bounds.Soft(-1.0, 1.0),
        "Exponential": lambda p: p.bounds.Exponential(-1.0, 1.0, beta=3.0),
    }

    def step(
        name,
        rule,
        spikes=(step_pres, step_posts),
        warm=50,
        repeats=50,
        *,
        layer=linear,
        signal=None,
        bound=None,
    ):
        """A one-step case: ``(name, layer, rule, pres, posts, mode, warm, signal,
        repeats, bound)``."""
        return (name, layer, rule, *spikes, "single", warm, signal, repeats, bound)

    def window(name, rule, spikes=(win_pres, win_posts), warm=1, repeats=8, signal=None):
        return (name, linear, rule, *spikes, "multi", warm, signal, repeats, None)

    return [
        step("STDP Linear 784->400 B=64, one step", stdp),
        *(
            step(f"STDP one step B=64, {name}(-1, 1)", stdp, bound=make_bound)
            for name, make_bound in bounded.items()
        ),
        step("STDP one step B=1, Soft(-1, 1)", stdp, small[1], repeats=100, bound=bounded["Soft"]),
        *(
            step(f"STDP Linear 784->400 B={batch}, one step", stdp, small[batch], repeats=100)
            for batch in small
        ),
        window("STDP Linear 784->400 B=64, T=100", stdp),
        step("ExpSTDP 784->400 B=64, one step", exp_stdp),
        window("ExpSTDP 784->400 B=64, T=100", exp_stdp),
        window("MSTDP 784->400 B=64, T=100, scalar reward", mstdp, signal=0.5),
        step("KernelSTDP 784->400 B=64, one step", kernel_stdp),
        window("KernelSTDP 784->400 B=64, T=100", kernel_stdp),
        step("TripletSTDP 784->400 B=64, one step", triplet),
        window("TripletSTDP 784->400 B=64, T=100", triplet),
        step("LinearHomeostasis 784->400 B=64, one step", homeostasis),
        window("LinearHomeostasis 784->400 B=64, T=100", homeostasis),
        *(
            step(name, stdp, conv[1:], warm=30, repeats=30, layer=conv[0])
            for name, conv in zip(
                ("STDP Conv2d 2->32 k5, one step", "STDP Conv2d 32->64 k3, one step"), conv_cases
            )
        ),
        *(
            step(f"MSTDP-ET one step B=1, scalar reward, {kind}", rule, small[1], signal=0.5)
            for kind, rule in (("split", mstdpet_scalar), ("combined", combined_scalar))
        ),
        window("MSTDP-ET 784->400 B=64, T=100, [B] reward", mstdpet, repeats=5, signal=reward),
        window("MSTDP-ET as above, combined eligibility", combined, repeats=5, signal=reward),
        step("STDP one step, 1/4 silent, after 2500 steps", stdp, quiet_step, 2500, 30),
        window(
            "MSTDP-ET combined, 1/4 silent, after 35 windows",
            combined,
            quiet_window,
            warm=35,
            repeats=5,
            signal=reward,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plastorch.bench.before_after")
    parser.add_argument("--old", required=True, help="directory holding the package plastorch_old")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cases", default="", help="only the cases whose name contains this text (e.g. 'one step')"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, args.old)
    old = importlib.import_module("plastorch_old")
    new = importlib.import_module("plastorch")
    print(f"{'case':<44} {'old':>10} {'new':>10} {'old/new':>8}  95% CI")
    for name, layer, make_rule, pres, posts, mode, warm, signal, repeats, make_bound in _cases():
        if args.cases not in name:
            continue
        contenders = {}
        prime = "silent" in name  # (those runs start with every neuron firing once)
        for label, package in (("old", old), ("new", new)):
            rule = make_rule(package)
            record, step = _driver(
                package,
                copy.deepcopy(layer),
                rule,
                pres,
                posts,
                mode,
                warm,
                signal,
                prime,
                None if make_bound is None else make_bound(package),
            )
            contenders[label] = (record, step)
        timings = interleaved(contenders, repeats=repeats, warmup=1, shuffle=True)
        o, n = timings["old"].median, timings["new"].median
        bounds = ratio_interval(timings["old"].seconds, timings["new"].seconds)
        interval = "" if bounds is None else f"  {bounds[0]:.2f}-{bounds[1]:.2f}"
        print(
            f"{name:<44} {o * 1e3:>8.2f}ms {n * 1e3:>8.2f}ms {o / n:>7.2f}x{interval}", flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
