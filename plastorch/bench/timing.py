"""Interleaved timing and allocation tracking for the benchmark suite.

Machine noise (other processes, frequency scaling) drifts over seconds, so the
contenders of one case are timed round-robin: repetition ``r`` runs every
contender once before repetition ``r + 1`` starts, and each contender's median
is taken over its repetitions. Ratios between medians of one run are what the
suite reports, each with a bootstrap interval over the rounds (:func:`ratio_interval`);
absolute times move with the machine.
"""

from __future__ import annotations

import random
import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["AllocationTracker", "Timing", "interleaved", "ratio_interval", "synchronize"]


def synchronize(device: torch.device | str) -> None:
    """Wait for queued work on ``device`` (a no-op on CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Seconds of every timed repetition of one contender."""

    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median seconds (``nan`` when nothing was timed)."""
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def low(self) -> float:
        """Lower decile (``nan`` when nothing was timed): the run least disturbed by others."""
        if not self.seconds:
            return float("nan")
        ordered = sorted(self.seconds)
        return ordered[(len(ordered) - 1) // 10]

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (0 for fewer than 4 samples)."""
        if len(self.seconds) < 4:
            return 0.0
        q = statistics.quantiles(self.seconds, n=4)
        return (q[2] - q[0]) / q[1] if q[1] > 0 else 0.0


def interleaved(
    contenders: dict[str, tuple[Callable[[], object] | None, Callable[[], object]]],
    *,
    repeats: int,
    warmup: int = 1,
    device: torch.device | str = "cpu",
    shuffle: bool = False,
    seed: int = 0,
) -> dict[str, Timing]:
    """Time ``fn`` of every contender round-robin, ``warmup + repeats`` rounds.

    With ``shuffle`` the order within each round is a fresh (seeded) permutation,
    so no contender always runs right after the same neighbour (whose memory
    traffic would evict its data from the caches every time).

    Parameters
    ----------
    contenders : dict
        ``name -> (setup, fn)``; ``setup`` (may be ``None``) runs untimed right
        before each ``fn`` call (e.g. the forward pass that records spikes).
    repeats, warmup : int
        Timed and untimed rounds.

    Returns
    -------
    dict
        ``name -> Timing``.

    Examples
    --------
    >>> out = interleaved({"add": (None, lambda: 1 + 1)}, repeats=3)
    >>> len(out["add"].seconds)
    3
    """
    timings = {name: Timing() for name in contenders}
    order = list(contenders)
    shuffler = random.Random(seed)
    for round_index in range(warmup + repeats):
        if shuffle:
            shuffler.shuffle(order)
        for name in order:
            setup, fn = contenders[name]
            if setup is not None:
                setup()
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                timings[name].seconds.append(elapsed)
    return timings


def ratio_interval(
    numerator: list[float],
    denominator: list[float],
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Bootstrap interval of ``median(numerator) / median(denominator)`` over paired rounds.

    Sample ``r`` of both lists must come from round ``r`` of :func:`interleaved`. The
    rounds are resampled with replacement (``resamples`` times, seeded), keeping each
    round's pair together, and the ratio of the resampled medians is taken each time;
    the interval holds the central ``level`` of those ratios (percentile bootstrap).
    Drift that slows both contenders of a round alike cancels in the pairs, so the
    interval says how far the one-run ratio could move with the rounds it happened to
    get: a target inside it is neither met nor missed by this run. ``None`` for fewer
    than two rounds.

    Examples
    --------
    >>> ratio_interval([2.0, 20.0, 4.0], [1.0, 10.0, 2.0])  # the same 2x in every round
    (2.0, 2.0)
    """
    if len(numerator) != len(denominator):
        raise ValueError(
            f"ratio_interval pairs rounds: got {len(numerator)} numerator samples and "
            f"{len(denominator)} denominator samples"
        )
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    rounds = len(numerator)
    if rounds < 2:
        return None
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(rounds, (resamples, rounds), generator=generator)
    pairs = torch.tensor([numerator, denominator], dtype=torch.float64)[:, picks]
    # interpolated medians, as statistics.median (torch.median takes the lower one)
    ratios = pairs[0].quantile(0.5, dim=1) / pairs[1].quantile(0.5, dim=1)
    tail = (1.0 - level) / 2.0
    bounds = ratios.quantile(torch.tensor([tail, 1.0 - tail], dtype=torch.float64))
    low, high = bounds.tolist()
    return low, high


def _owns_storage(t: object) -> bool:
    """A dense tensor with memory (sparse tensors hold theirs in member tensors,
    which the ops that made them were counted for)."""
    return isinstance(t, torch.Tensor) and t.device.type != "meta" and t.layout == torch.strided


class AllocationTracker(TorchDispatchMode):
    """Track the bytes of tensor storage allocated by ATen ops inside the ``with`` block.

    Every op output whose storage was not seen before counts as an allocation;
    the storage counts as freed when the last tensor object that was seen
    holding it is collected. ``peak`` is the largest total of live allocations
    (bytes allocated before the block do not count), ``largest`` the largest
    single allocation, ``sizes`` every allocation in order.

    Examples
    --------
    >>> with AllocationTracker() as tracker:
    ...     a = torch.zeros(1000)          # 4000 bytes
    ...     b = torch.zeros(500)           # 2000 bytes, both alive
    ...     del a
    ...     c = torch.zeros(250)           # 1000 bytes
    ...     _ = c.add_(1.0).view(25, 10)   # in place and a view: no new memory
    >>> tracker.peak, tracker.largest, tracker.sizes
    (6000, 4000, [4000, 2000, 1000])
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self.largest = 0
        self.sizes: list[int] = []
        self._holders: dict[int, int] = {}
        self._bytes: dict[int, int] = {}

    def _release(self, key: int) -> None:
        self._holders[key] -= 1
        if self._holders[key] == 0:
            self.current -= self._bytes.pop(key)
            del self._holders[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if _owns_storage(t)
        }
        out = func(*args, **kwargs)
        for tensor in tree_flatten(out)[0]:
            if not _owns_storage(tensor):
                continue
            storage = tensor.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or (key in inputs and key not in self._holders):
                continue  # a view of, or an in-place op on, memory from before the block
            if key not in self._holders:
                self._holders[key] = 0
                self._bytes[key] = nbytes
                self.current += nbytes
                self.sizes.append(nbytes)
                self.peak = max(self.peak, self.current)
                self.largest = max(self.largest, nbytes)
            self._holders[key] += 1
            weakref.finalize(tensor, self._release, key)
        return out
