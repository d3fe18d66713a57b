"""Long-run numerical stability: many steps of every rule under every bound.

Runs each rule for ``--steps`` simulation steps (in windows of ``--window``) on
random Bernoulli spike trains with a bound applied after every window, and
reports whether the weights stayed finite and inside ``[wmin, wmax]``::

    python -m plastorch.stability --steps 100000

The CI test runs a short version; the full run is a benchmark-style check.

Examples
--------
>>> rows = long_run(steps=200, window=50, rules=["STDP"], bounds=["Soft"])
>>> rows[0]["finite"], rows[0]["in_bounds"]
(True, True)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch import nn

from .bounds import Bound, Exponential, Hard, PowerLaw, Soft
from .learner import Learner
from .rules import MSTDP, MSTDPET, STDP, Rule

__all__ = ["BOUNDS", "RULES", "long_run"]

RULES: dict[str, Callable[[], Rule]] = {
    "STDP": lambda: STDP(0.05, -0.06, tau_post=20.0, tau_pre=20.0),
    "STDP-nearest": lambda: STDP(0.05, -0.06, trace_mode="nearest"),
    "MSTDP": lambda: MSTDP(0.05, -0.06),
    "MSTDPET": lambda: MSTDPET(0.05, -0.06, tau_eligibility=25.0, per_sample_signal=True),
}

BOUNDS: dict[str, Callable[[], Bound]] = {
    "Hard": lambda: Hard(-1.0, 1.0),
    "Soft": lambda: Soft(-1.0, 1.0),
    "PowerLaw": lambda: PowerLaw(-1.0, 1.0, mu=0.5),
    "Exponential": lambda: Exponential(-1.0, 1.0, beta=3.0),
}


class _Replay(nn.Module):
    """Spike source that emits a prepared window (the stability run needs no neuron model)."""

    def __init__(self):
        super().__init__()
        self.spikes: torch.Tensor | None = None

    def forward(self, current):
        return self.spikes


def long_run(
    steps: int = 100_000,
    window: int = 100,
    batch: int = 4,
    in_features: int = 32,
    out_features: int = 16,
    rules: list[str] | None = None,
    bounds: list[str] | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> list[dict]:
    """Run every (rule, bound) pair for ``steps`` steps and report the weight range.

    Returns one dict per pair with keys ``rule``, ``bound``, ``steps``, ``finite``,
    ``in_bounds``, ``min``, ``max``, ``mean_change`` (mean absolute change of the
    weights), ``checksum`` (sum of the final weights) and ``seconds``.
    """
    rows = []
    for rule_name in rules or list(RULES):
        for bound_name in bounds or list(BOUNDS):
            generator = torch.Generator().manual_seed(seed)
            layer = nn.Linear(in_features, out_features, bias=False).to(dtype)
            with torch.no_grad():
                layer.weight.uniform_(-1.0, 1.0, generator=generator)
            initial = layer.weight.detach().clone()
            source = _Replay()
            bound = BOUNDS[bound_name]()
            learner = Learner(
                layer, source, RULES[rule_name](), bound, step_mode="multi", apply=True
            )
            start = time.perf_counter()
            done = 0
            while done < steps:
                length = min(window, steps - done)
                pre = torch.rand(length, batch, in_features, generator=generator) < 0.2
                post = torch.rand(length, batch, out_features, generator=generator) < 0.2
                source.spikes = post.to(dtype)
                source(layer(pre.to(dtype)))
                signal = None
                if learner.rule.modulated:
                    signal = torch.randn(length, batch, generator=generator, dtype=dtype)
                learner.step(signal)
                done += length
            weight = layer.weight.detach()
            rows.append(
                {
                    "rule": rule_name,
                    "bound": bound_name,
                    "steps": steps,
                    "finite": bool(torch.isfinite(weight).all()),
                    "in_bounds": bool(
                        (weight >= bound.wmin).all() and (weight <= bound.wmax).all()
                    ),
                    "min": float(weight.min()),
                    "max": float(weight.max()),
                    "mean_change": float((weight - initial).abs().mean()),
                    "checksum": float(weight.double().sum()),
                    "seconds": time.perf_counter() - start,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plastorch.stability", description=__doc__)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = long_run(steps=args.steps, window=args.window, seed=args.seed)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            f"{'rule':<14}{'bound':<13}{'steps':>8}  finite  in_bounds     min      max   seconds"
        )
        for r in rows:
            print(
                f"{r['rule']:<14}{r['bound']:<13}{r['steps']:>8}  {r['finite']!s:<6}  "
                f"{r['in_bounds']!s:<9} {r['min']:>7.3f}  {r['max']:>7.3f}  {r['seconds']:>7.2f}"
            )
    return 0 if all(r["finite"] and r["in_bounds"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
