"""The performance issue's speed targets, judged on one suite run.

Each target names a case, a row and one of its ratios (``vs_limit``: the row's time
over the bare-arithmetic limit; ``vs_baseline``: a peer's time over plastorch's) and
a bound. A target is judged on the ratio's bootstrap interval over the run's rounds
(:func:`~plastorch.bench.timing.ratio_interval`), not on the point alone: *met*
when the whole interval is on the right side of the bound, *missed* when the whole
interval is on the wrong side, and *inside the interval* otherwise, where this run
cannot tell. Quick runs (small shapes) are not judged. Only speed is judged here;
the Diehl & Cook accuracy comparison is ``python -m plastorch.bench.peer_accuracy``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MET", "MISSED", "NOT_RUN", "TARGETS", "UNDECIDED", "Target", "find_row", "judge"]

MET, MISSED, UNDECIDED, NOT_RUN = "met", "missed", "inside the interval", "not run"


@dataclass(frozen=True)
class Target:
    """``row``'s ``ratio`` in ``case`` must be at most (``at_most``) or at least ``bound``.

    ``row`` is a contender's name, or a peer's name followed by its version (the
    rows name ``"spikingjelly 2.0.0"``, ``"bindsnet 0.3.4, batch 1"``).
    """

    label: str
    case: str
    row: str
    ratio: str  # "vs_limit" or "vs_baseline"
    bound: float
    at_most: bool

    def verdict(self, value: float, interval: list[float] | None) -> str:
        """:data:`MET`, :data:`MISSED` or :data:`UNDECIDED` for this ratio and interval.

        Examples
        --------
        >>> t = Target("step <= 1.3x limit", "dense_step", "plastorch", "vs_limit", 1.3, True)
        >>> t.verdict(1.2, [1.1, 1.25]), t.verdict(1.32, [1.23, 1.43]), t.verdict(1.5, [1.4, 1.6])
        ('met', 'inside the interval', 'missed')
        """
        low, high = (value, value) if interval is None else interval
        good, bad = (high, low) if self.at_most else (low, high)
        if self._holds(good):
            return MET
        if not self._holds(bad):
            return MISSED
        return UNDECIDED

    def _holds(self, value: float) -> bool:
        return value <= self.bound if self.at_most else value >= self.bound


def _faster(label: str, case: str, peer: str, factor: float = 1.0) -> Target:
    return Target(label, case, peer, "vs_baseline", factor, False)


def _limit(label: str, case: str, row: str, bound: float) -> Target:
    return Target(label, case, row, "vs_limit", bound, True)


#: the targets of the performance issue ("Targets" and "Beyond the dense limit")
TARGETS = (
    _limit("dense step <= 1.3x the two-GEMM limit", "dense_step", "plastorch", 1.3),
    _faster("dense step >= 50x SpikingJelly", "dense_step", "spikingjelly", 50.0),
    _faster("dense step faster than BindsNET", "dense_step", "bindsnet"),
    _limit("window T=100 <= 1.3x the fused-GEMM limit", "dense_window", "plastorch", 1.3),
    _faster("window >= 2x BindsNET's 100 steps", "dense_window", "bindsnet", 2.0),
    _faster("window >= 150x SpikingJelly", "dense_window", "spikingjelly", 150.0),
    _limit("conv2d 2->32 <= 1.3x the conv2d_weight limit", "conv2d_2_32", "plastorch", 1.3),
    _faster("conv2d 2->32 >= 5x SpikingJelly", "conv2d_2_32", "spikingjelly", 5.0),
    _faster("conv2d 2->32 faster than BindsNET", "conv2d_2_32", "bindsnet"),
    _limit("conv2d 32->64 <= 1.3x the conv2d_weight limit", "conv2d_32_64", "plastorch", 1.3),
    _faster("conv2d 32->64 >= 20x SpikingJelly", "conv2d_32_64", "spikingjelly", 20.0),
    _faster("conv2d 32->64 faster than BindsNET", "conv2d_32_64", "bindsnet"),
    Target(
        "MSTDP-ET episodic window <= 1.5x the STDP window",
        "mstdpet_window",
        "plastorch MSTDP-ET, step(reset=True)",
        "vs_baseline",
        1.5,
        True,
    ),
    Target(
        "MSTDP-ET continuing window <= 1.5x the STDP window",
        "mstdpet_window",
        "plastorch MSTDP-ET, combined eligibility",
        "vs_baseline",
        1.5,
        True,
    ),
    _faster("Diehl & Cook batch 1 >= 10x BindsNET samples/s", "diehl_cook", "bindsnet", 10.0),
    _limit(
        "STDP step at 2 % density below the two-GEMM limit",
        "crossover",
        "auto path, density 0.02",
        1.0,
    ),
)


def find_row(result: dict, name: str) -> dict | None:
    """The contender row ``name`` of one case's result (a peer row by its name without
    the version), or ``None``."""
    for row in result.get("contenders", []):
        if row["name"] == name or (row["role"] == "peer" and row["name"].startswith(name + " ")):
            return row
    return None


def judge(report: dict, targets: tuple[Target, ...] = TARGETS) -> list[dict]:
    """One entry per target of a case in ``report`` (a suite run): ratio, interval, verdict.

    Targets of cases the run left out are left out. A target whose row was not timed
    (a peer that is not installed, a case that failed to build) is :data:`NOT_RUN`,
    with the row's status when there is one.
    """
    cases = {result["name"]: result for result in report.get("cases", [])}
    out = []
    for target in targets:
        if target.case not in cases:
            continue
        entry = {"label": target.label, "case": target.case, "row": target.row}
        row = find_row(cases[target.case], target.row)
        value = None if row is None else row.get(target.ratio)
        if value is None or math.isnan(value):
            entry["verdict"] = NOT_RUN
            if "error" in cases[target.case]:
                entry["status"] = "the case failed"
            elif row is not None and row.get("status") not in (None, "ok"):
                entry["status"] = row["status"]
        else:
            interval = row.get(f"{target.ratio}_interval")
            entry.update(value=value, interval=interval, verdict=target.verdict(value, interval))
        out.append(entry)
    return out
