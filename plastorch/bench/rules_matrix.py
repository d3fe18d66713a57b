"""Every rule on the same layers and spikes, timed against STDP in one run.

    python -m plastorch.bench.rules_matrix [--quick] [--rules TEXT] [--json PATH]

A rule whose math is STDP's plus a few weight- or trace-sized terms should cost a
small multiple of STDP's ``Learner.step()``; a large ratio points at a path that does
more than its math needs (a window taking the pre-triggered form, a correlation over
every sample where one would do, a factor the sparse scan walks in full). Each layer
and step mode is one interleaved group (:func:`~plastorch.bench.timing.interleaved`):
``Linear 784->400`` at batch 64 and ``Conv2d 2->32 k5`` on ``16x2x28x28``, one step
and a ``T = 50`` window, input spikes at 5 % and output spikes at 2 %, no bound. The
table gives each rule's median and its ratio to STDP's with a 95 % bootstrap interval
over the paired rounds (:func:`~plastorch.bench.timing.ratio_interval`). ``--quick``
runs small shapes and few rounds (a smoke run: nothing is asserted about speed).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
from torch import nn

from .. import rules
from ..rules.kernel import exponential_window
from .common import LearnerDriver, spike_patterns
from .timing import interleaved, ratio_interval

__all__ = ["RULES", "main", "run_matrix"]

#: name -> (rule factory, signal per step or None): a scalar reward, or one per sample
RULES: dict[str, tuple[Callable[[], rules.Rule], object]] = {
    "STDP": (lambda: rules.STDP(5e-3, -7e-3), None),
    "STDP nearest": (lambda: rules.STDP(5e-3, -7e-3, trace_mode="nearest"), None),
    "anti-Hebbian STDP": (lambda: rules.STDP(-5e-3, 7e-3), None),
    "MSTDP, scalar reward": (lambda: rules.MSTDP(5e-3, -7e-3), 0.5),
    "MSTDP, [B] reward": (lambda: rules.MSTDP(5e-3, -7e-3), "per sample"),
    "MSTDP-ET, scalar reward": (lambda: rules.MSTDPET(5e-3, -7e-3), 0.5),
    "MSTDP-ET, [B] reward, combined": (
        lambda: rules.MSTDPET(5e-3, -7e-3, per_sample_signal=True, eligibility="combined"),
        "per sample",
    ),
    "ExpSTDP": (lambda: rules.ExpSTDP(5e-3, a_minus=0.5), None),
    "TripletSTDP": (lambda: rules.TripletSTDP(5e-3, 6e-3, 7e-3, 2e-4), None),
    "TripletSTDP nearest": (
        lambda: rules.TripletSTDP(5e-3, 6e-3, 7e-3, 2e-4, trace_mode="nearest"),
        None,
    ),
    "LinearHomeostasis": (lambda: rules.LinearHomeostasis(1e-3, 20.0), None),
    "KernelSTDP, exponential window": (
        lambda: rules.KernelSTDP(
            rules.Kernel(
                exponential_window,
                lr_causal=5e-3,
                lr_acausal=-7e-3,
                tau_causal=20.0,
                tau_acausal=20.0,
            )
        ),
        None,
    ),
}


def _layers(quick: bool) -> dict[str, tuple[Callable[[], nn.Module], tuple, tuple, int]]:
    """name -> (layer factory, input shape, output shape, batch)."""
    if quick:
        return {
            "Linear 64->32": (lambda: nn.Linear(64, 32, bias=False), (64,), (32,), 8),
            "Conv2d 2->4 k3": (
                lambda: nn.Conv2d(2, 4, 3, padding=1, bias=False),
                (2, 8, 8),
                (4, 8, 8),
                4,
            ),
        }
    return {
        "Linear 784->400": (lambda: nn.Linear(784, 400, bias=False), (784,), (400,), 64),
        "Conv2d 2->32 k5": (
            lambda: nn.Conv2d(2, 32, 5, padding=2, bias=False),
            (2, 28, 28),
            (32, 28, 28),
            16,
        ),
    }


def run_matrix(*, quick: bool = False, only: str = "", seed: int = 0) -> list[dict[str, object]]:
    """Time every rule whose name contains ``only``; one row per (layer, mode, rule).

    Rows hold ``layer``, ``mode``, ``rule``, ``median_ms`` and, where STDP ran in the
    same group, ``vs_stdp`` and its interval ``vs_stdp_ci`` (``None`` with too few
    rounds).
    """
    chosen = {name: spec for name, spec in RULES.items() if only in name or name == "STDP"}
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for layer_name, (make, shape_in, shape_out, batch) in _layers(quick).items():
        for mode, steps in (("one step", None), ("window", 10 if quick else 50)):
            lead = () if steps is None else (steps,)
            spikes = {"device": "cpu", "dtype": torch.float32}
            pres = spike_patterns(2, (*lead, batch, *shape_in), 0.05, generator, **spikes)
            posts = spike_patterns(2, (*lead, batch, *shape_out), 0.02, generator, **spikes)
            reward = torch.linspace(-1.0, 1.0, batch)
            contenders = {}
            for name, (make_rule, signal) in chosen.items():
                if signal == "per sample":
                    signal = reward
                driver = LearnerDriver(
                    make(),
                    make_rule(),
                    pres,
                    posts,
                    step_mode="single" if steps is None else "multi",
                    warm=2,
                    signal=None if signal is None else (lambda index, value=signal: value),
                )
                contenders[name] = (driver.record, driver.step)
            repeats = 3 if quick else (30 if steps is None else 6)
            timings = interleaved(contenders, repeats=repeats, warmup=1, shuffle=True, seed=seed)
            reference = timings.get("STDP")
            for name, timing in timings.items():
                row = {
                    "layer": layer_name,
                    "mode": mode,
                    "rule": name,
                    "median_ms": timing.median * 1e3,
                }
                if reference is not None:
                    row["vs_stdp"] = timing.median / reference.median
                    row["vs_stdp_ci"] = ratio_interval(timing.seconds, reference.seconds)
                rows.append(row)
    return rows


def format_table(rows: list[dict[str, object]]) -> str:
    lines = [f"{'layer':<17} {'mode':<9} {'rule':<31} {'ms':>9} {'vs STDP':>8}  95% CI"]
    for row in rows:
        ratio = row.get("vs_stdp")
        interval = row.get("vs_stdp_ci")
        lines.append(
            f"{row['layer']:<17} {row['mode']:<9} {row['rule']:<31} {row['median_ms']:9.2f} "
            + (f"{ratio:7.2f}x" if ratio is not None else f"{'':>8}")
            + (f"  {interval[0]:.2f}-{interval[1]:.2f}" if interval else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plastorch.bench.rules_matrix")
    parser.add_argument("--quick", action="store_true", help="small shapes, few rounds")
    parser.add_argument("--rules", default="", help="only the rules whose name contains this")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run_matrix(quick=args.quick, only=args.rules)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
