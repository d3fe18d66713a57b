"""Compiled CPU kernels for the sparse correlations (optional: ``pip install plastorch[fast]``).

With `numba <https://numba.pydata.org>`_ installed, :func:`~plastorch.functional.correlate`
sums a Linear's sparse factor in one parallel pass (:func:`sparse_rows_`) instead of
the pure-torch scan, index arithmetic and ``embedding_bag`` (on a one-step factor
those small kernels cost about what the GEMM does); a window's spikes are found
(:func:`flat_nonzero`) and ordered by one counting sort (:func:`entries_by_owner`); window traces are one scan each
(:func:`scan_`; with ``end=`` the trace just before each step), and so are MSTDP-ET's
weighted acausal factors and KernelSTDP's steps since the latest spike; a per-sample eligibility is read
out, decayed and given its new pairs in one pass (:func:`advance_`); delay-adjusted
rules bucket their arrivals by step (:func:`expand_by_step`); a bound's weight dependence
and exact clip are one pass (:func:`weight_change`). Without numba, with the
environment variable ``PLASTORCH_NUMBA=0``, or if numba fails to load or to compile
(a warning says so), nothing here is used and every result is the same up to the
order of the additions (and, for graded factors of the acausal scan, the rounding of
torch's fused multiply-add; for a bound's change, of the kernel's).

Loops over a row are njit functions of their own, called from the ``prange`` bodies:
written inline there, numba's parallel lowering leaves them unvectorised.
"""

from __future__ import annotations

import os
import threading
import warnings

import torch
from torch import Tensor

from .numerics import largest_subnormal

__all__ = [
    "advance_",
    "available",
    "count_nonzero",
    "entries_by_owner",
    "expand_by_step",
    "flat_nonzero",
    "scan_",
    "sparse_rows_",
    "sparse_rows_sum_",
    "weight_change",
]

#: dtypes the kernels take (numba has no half precision)
DTYPES = (torch.float32, torch.float64)

#: weight dependences :func:`weight_change` takes (:mod:`plastorch.bounds`): both factors
#: 1, Soft's (computed in the pass), or factors given as tensors
HARD, SOFT, FACTORS = range(3)

try:
    if os.environ.get("PLASTORCH_NUMBA", "1").strip() in ("0", "false", "no", "off"):
        raise ImportError("disabled by PLASTORCH_NUMBA")
    import numba
    import numpy as np
except ImportError:  # the optional extra is not installed (or it is switched off)
    numba = None
    _SCALAR = {}
except Exception as error:  # installed but broken (e.g. built for another NumPy)
    warnings.warn(
        f"plastorch: numba did not load ({error!r}); using the torch kernels", stacklevel=2
    )
    numba = None
    _SCALAR = {}
else:
    _SCALAR = {torch.float32: np.float32, torch.float64: np.float64}

_ENABLED = numba is not None
#: an empty read-out (``[0, 0]``) per dtype, for the kernels that take one optionally
_NO_READ = {dtype: np.zeros((0, 0), scalar) for dtype, scalar in _SCALAR.items()}


def available() -> bool:
    """Whether the compiled kernels are used (numba importable and not switched off).

    Examples
    --------
    >>> available() in (True, False)
    True
    """
    return _ENABLED


def _require() -> None:
    if not _ENABLED:
        raise RuntimeError("the compiled kernels need numba: pip install plastorch[fast]")


def _check_float_input(kernel: str, name: str, tensor: Tensor) -> None:
    """Raise a TypeError naming ``kernel`` and ``name`` unless ``tensor`` is a contiguous
    CPU tensor of one of :data:`DTYPES` (an input whose shape the kernel follows)."""
    if tensor.dtype not in _SCALAR or tensor.device.type != "cpu" or not tensor.is_contiguous():
        raise TypeError(
            f"{kernel}: {name} must be a contiguous CPU tensor of float32 or float64, "
            f"got {tensor.dtype} on {tensor.device}"
        )


def _check_floats(kernel: str, like: str, dtype: torch.dtype, named) -> None:
    """Each ``(name, tensor, shape)`` of ``named`` is a contiguous CPU tensor of ``dtype``
    (one of :data:`DTYPES`, the dtype of the argument ``like``), of that shape, not
    requiring grad; else a TypeError or ValueError naming ``kernel`` and the argument."""
    for name, tensor, shape in named:
        if tensor.dtype != dtype or dtype not in _SCALAR or tensor.device.type != "cpu":
            raise TypeError(
                f"{kernel}: {name} must be a CPU tensor of float32 or float64 like {like}, "
                f"got {tensor.dtype} on {tensor.device}"
            )
        if (
            tuple(tensor.shape) != tuple(shape)
            or not tensor.is_contiguous()
            or tensor.requires_grad
        ):
            raise ValueError(
                f"{kernel}: {name} must be contiguous, not require grad and be of shape "
                f"{list(shape)}, got {list(tensor.shape)}"
            )


if numba is not None:
    # The loops over a row are functions of their own: written inline in a ``prange``
    # body, numba's parallel lowering leaves them scalar (the one-step LTP term of
    # 784->400, batch 64, took 81-84 us that way against 53-58 us).

    @numba.njit(cache=True, nogil=True)
    def _add_row(row, weight, source):  # pragma: no cover - compiled
        for c in range(row.shape[0]):
            row[c] += weight * source[c]

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _sparse_rows(out, a, b, alpha, beta, floor, read, gain, fresh):
        # pragma: no cover - compiled
        # out[m, :] = beta * out[m, :] + sum_k alpha[k] sum_n a[k, n, m] * b[k, n, :], over
        # a's non-zeros (beta * out flushed where |.| <= floor: -1 flushes nothing; beta 0:
        # out is not read). With a non-empty ``read``, then read[m, :] = gain * out[m, :]
        # (``fresh``: read is uninitialised) or += it, while the row is in cache. Every
        # output row is one thread's: no write is shared.
        terms, rows, columns = a.shape
        reads = read.shape[0] > 0
        for m in numba.prange(columns):
            row = out[m]
            _decay_row(row, beta, floor)
            for k in range(terms):
                for n in range(rows):
                    value = a[k, n, m]
                    if value != 0:
                        _add_row(row, alpha[k] * value, b[k, n])
            if reads:
                if fresh:
                    _set_row(read[m], gain, row)
                else:
                    _add_row(read[m], gain, row)

    @numba.njit(cache=True, nogil=True)
    def _expand_by_step(step0, first, count, order, lag, steps):  # pragma: no cover - compiled
        # events (p, order[first[p] + k]) for k < count[p], at step step0[p] + lag[...],
        # bucketed by step (stable): a counting sort, two passes over the events
        sources = step0.shape[0]
        ends = np.zeros(steps + 1, np.int64)
        for p in range(sources):
            base, start = step0[p], first[p]
            for k in range(count[p]):
                t = base + lag[order[start + k]]
                if t < 0 or t >= steps:
                    raise ValueError("expand_by_step: an event's step is outside [0, steps)")
                ends[t + 1] += 1
        for t in range(steps):
            ends[t + 1] += ends[t]
        total = ends[steps]
        source = np.empty(total, np.int64)
        target = np.empty(total, np.int64)
        cursor = ends[:steps].copy()
        for p in range(sources):
            base, start = step0[p], first[p]
            for k in range(count[p]):
                item = order[start + k]
                t = base + lag[item]
                at = cursor[t]
                source[at] = p
                target[at] = item
                cursor[t] = at + 1
        return ends[1:], source, target

    @numba.njit(cache=True, nogil=True, inline="always")
    def _flushed(value, floor):  # pragma: no cover - compiled
        # 0 where |value| <= floor (the dtype's largest subnormal), else value (NaN kept)
        if abs(value) <= floor:
            return floor - floor
        return value

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _scan(out, values, start, decay, amplitude, reverse, floor, nearest, end):
        # pragma: no cover - compiled
        # out[t] = out[t -+ 1] * decay + amplitude * values[t] over [T, N], from ``start``
        # (out[-1] or out[T]; none if it has no entries: the first step is its value),
        # the roundings of torch's mul then add (no fused multiply-add), the product
        # set to 0 where its magnitude is at most ``floor`` (the largest subnormal: see
        # plastorch.functional.numerics); ``nearest``: amplitude where values[t] != 0,
        # the flushed product elsewhere. By blocks of columns, each carried in a small
        # array through the steps. With entries in ``end``, out[t] takes the flushed
        # product alone (the carry decayed, before values[t] enters) and ``end`` the
        # carry after the last step.
        steps, width = values.shape
        block = 2048
        decayed_only = end.shape[0] > 0
        for c in numba.prange((width + block - 1) // block):
            lo, hi = c * block, min(width, (c + 1) * block)
            if start.shape[0] > 0:
                carry = start[lo:hi].copy()
                factor = decay
            else:
                carry = np.zeros(hi - lo, values.dtype)
                factor = decay - decay  # zero, of the dtype
            for k in range(steps):
                t = steps - 1 - k if reverse else k
                row = values[t, lo:hi]
                if decayed_only:
                    dest = out[t, lo:hi]
                    if nearest:
                        for n in range(hi - lo):
                            decayed = _flushed(carry[n] * factor, floor)
                            dest[n] = decayed
                            carry[n] = amplitude if row[n] != 0 else decayed
                    else:
                        for n in range(hi - lo):
                            decayed = _flushed(carry[n] * factor, floor)
                            dest[n] = decayed
                            carry[n] = decayed + amplitude * row[n]
                else:
                    if nearest:
                        for n in range(hi - lo):
                            decayed = _flushed(carry[n] * factor, floor)
                            carry[n] = amplitude if row[n] != 0 else decayed
                    else:
                        for n in range(hi - lo):
                            carry[n] = _flushed(carry[n] * factor, floor) + amplitude * row[n]
                    out[t, lo:hi] = carry
                factor = decay
            if decayed_only:
                end[lo:hi] = carry

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _ages(out, spikes, start, end, before):  # pragma: no cover - compiled
        # a(t) = 0 where spikes[t] != 0, else a(t - 1) + 1, from a(-1) = start, over
        # [T, N]; out[t] takes a(t), or with ``before`` a(t - 1) + 1; end takes a(T - 1).
        # The roundings of torch's add then masked_fill (integers and inf: exact).
        steps, width = spikes.shape
        block = 2048
        for c in numba.prange((width + block - 1) // block):
            lo, hi = c * block, min(width, (c + 1) * block)
            carry = start[lo:hi].copy()
            for t in range(steps):
                row = spikes[t, lo:hi]
                dest = out[t, lo:hi]
                if before:
                    for n in range(hi - lo):
                        grown = carry[n] + 1
                        dest[n] = grown
                        carry[n] = 0 if row[n] != 0 else grown
                else:
                    for n in range(hi - lo):
                        grown = 0 if row[n] != 0 else carry[n] + 1
                        dest[n] = grown
                        carry[n] = grown
            end[lo:hi] = carry

    from llvmlite import ir as _ir
    from numba.core import cgutils
    from numba.extending import intrinsic as _intrinsic

    @_intrinsic
    def _fma(typingctx, a, b, c):  # pragma: no cover - compiled
        # a * b + c rounded once (llvm.fma), as torch's add with alpha computes it
        def codegen(context, builder, signature, args):
            kind = context.get_value_type(signature.return_type)
            name = "llvm.fma.f32" if kind == _ir.FloatType() else "llvm.fma.f64"
            function = cgutils.get_or_insert_function(
                builder.module, _ir.FunctionType(kind, [kind, kind, kind]), name
            )
            return builder.call(function, args)

        return c(c, c, c), codegen

    @numba.njit(cache=True, nogil=True)
    def _lif_block(
        drive,
        v,
        last_spike,
        spikes,
        previous,
        threshold,
        increments,
        growth,
        scale,
        start,
        steps,
        decay,
        v_reset,
        refractory_steps,
        inhibition,
        self_inhibition,
        exclusive,
        floor,
    ):  # pragma: no cover - compiled
        # plastorch.neurons.lif._lif_block as one loop (see there): drive [T, B, N], v
        # [B, N], last_spike [B, N] int64, spikes [T, B, N] uint8, previous [B, N] uint8,
        # threshold [T, N], increments [N] (an adaptive block when growth has entries);
        # every addition with a coefficient is a fused multiply-add, as torch's add with
        # alpha; the floats (decay, v_reset, inhibition, growth, scale) in v's dtype.
        batch, neurons = v.shape
        adaptive = growth.shape[0] > 0
        zero = decay - decay
        busy_until = last_spike.max() + refractory_steps
        fired_before = previous.any() if start == 0 else spikes[start - 1].any()
        blocked = np.zeros(neurons, np.bool_)
        as_float = np.zeros(1, v.dtype)  # (an integer converted to v's dtype)
        for k in range(steps):
            t = start + k
            inhibit = inhibition != 0 and fired_before
            refractory = t <= busy_until
            fired_before = False
            for b in range(batch):
                row = v[b]
                if floor > 0:  # a loop per case, so each vectorises
                    for n in range(neurons):
                        x = _fma(row[n], decay, drive[t, b, n])
                        row[n] = zero if abs(x) <= floor else x
                else:
                    for n in range(neurons):
                        row[n] = _fma(row[n], decay, drive[t, b, n])
                if inhibit:
                    total = 0
                    for n in range(neurons):
                        total += spikes[t - 1, b, n] if t > 0 else previous[b, n]
                    for n in range(neurons):
                        last = spikes[t - 1, b, n] if t > 0 else previous[b, n]
                        as_float[0] = total if self_inhibition else total - last
                        row[n] = _fma(as_float[0], -inhibition, row[n])
                for n in range(neurons):
                    blocked[n] = refractory and last_spike[b, n] > t - refractory_steps - 1
                    if blocked[n]:
                        row[n] = v_reset
                    if adaptive:
                        level = _fma(increments[n], scale[k], threshold[t, n])
                    else:
                        level = threshold[t, n]
                    fired = row[n] >= level
                    if refractory and not exclusive and blocked[n]:
                        fired = False
                    spikes[t, b, n] = 1 if fired else 0
                    if fired:
                        fired_before = True
            if fired_before:
                for b in range(batch):
                    for n in range(neurons):
                        if spikes[t, b, n] != 0:
                            v[b, n] = v_reset
                            last_spike[b, n] = t
                busy_until = t + refractory_steps
                if adaptive:
                    for n in range(neurons):
                        count = 0
                        for b in range(batch):
                            count += spikes[t, b, n]
                        as_float[0] = count
                        increments[n] = _fma(as_float[0], growth[k], increments[n])

    @numba.njit(cache=True, nogil=True)
    def _izhikevich(current, v, u, spikes, constants):  # pragma: no cover - compiled
        # plastorch.neurons.Izhikevich._step over the steps of current [T, N], v and u
        # [N] in place, spikes [T, N] written 1/0; every operation of the torch step in
        # its order and dtype (no fused multiply-add: torch has none there). constants:
        # half_dt, 0.04, 5, 140, b, dt a, v_peak, c, d, in v's dtype.
        half_dt, k2, k1, k0 = constants[0], constants[1], constants[2], constants[3]
        b, dt_a, v_peak, c, d = constants[4], constants[5], constants[6], constants[7], constants[8]
        one, zero = k1 / k1, k1 - k1
        for t in range(current.shape[0]):
            for n in range(v.shape[0]):
                x, w, drive = v[n], u[n], current[t, n]
                x = x + half_dt * ((((k2 * (x * x)) + k1 * x) + k0) - w + drive)
                x = x + half_dt * ((((k2 * (x * x)) + k1 * x) + k0) - w + drive)
                w = w + dt_a * (b * x - w)
                if x >= v_peak:
                    spikes[t, n] = one
                    v[n], u[n] = c, w + d
                else:
                    spikes[t, n] = zero
                    v[n], u[n] = x, w

    @numba.njit(cache=True, nogil=True)
    def _count(flat, stride):  # pragma: no cover - compiled
        count = 0
        if stride == 1:  # a loop of unit step: 5x faster than the strided one
            for k in range(flat.shape[0]):
                if flat[k] != 0:
                    count += 1
            return count
        for k in range(0, flat.shape[0], stride):
            if flat[k] != 0:
                count += 1
        return count

    @numba.njit(cache=True, nogil=True)
    def _decay_row(row, beta, floor):  # pragma: no cover - compiled
        # row *= beta, the decayed values flushed where |.| <= floor (-1: none); beta 0
        # writes zeros and never reads the row (it may be uninitialised)
        if beta == 0:
            row[:] = 0
        elif beta != 1:
            for c in range(row.shape[0]):
                row[c] = _flushed(row[c] * beta, floor)

    @numba.njit(cache=True, nogil=True)
    def _decay_add_row(row, beta, scale, source, floor):  # pragma: no cover - compiled
        for c in range(row.shape[0]):
            row[c] = _flushed(beta * row[c], floor) + scale * source[c]

    @numba.njit(cache=True, nogil=True)
    def _set_row(row, weight, source):  # pragma: no cover - compiled
        for c in range(row.shape[0]):
            row[c] = weight * source[c]

    @numba.njit(cache=True, nogil=True)
    def _advance_row(row, read, mode, g, beta, s, src, t0, w0, t1, w1, n, floor):
        # pragma: no cover - compiled
        # One row of _advance in one loop: read <- g row (mode 1) or read += g row (mode
        # 2; 0: no read-out), then row <- beta row + s src + w0 t0 + w1 t1 (the first n
        # of the two lookups; beta row flushed), every operation rounded in the row's
        # dtype and in this order: the bits of the separate passes. A loop per case, so
        # each vectorises.
        width = row.shape[0]
        if mode == 0:
            if n == 0:
                for c in range(width):
                    row[c] = _flushed(beta * row[c], floor) + s * src[c]
            elif n == 1:
                for c in range(width):
                    row[c] = (_flushed(beta * row[c], floor) + s * src[c]) + w0 * t0[c]
            else:
                for c in range(width):
                    decayed = _flushed(beta * row[c], floor)
                    row[c] = ((decayed + s * src[c]) + w0 * t0[c]) + w1 * t1[c]
        elif mode == 1:
            if n == 0:
                for c in range(width):
                    old = row[c]
                    read[c] = g * old
                    row[c] = _flushed(beta * old, floor) + s * src[c]
            elif n == 1:
                for c in range(width):
                    old = row[c]
                    read[c] = g * old
                    row[c] = (_flushed(beta * old, floor) + s * src[c]) + w0 * t0[c]
            else:
                for c in range(width):
                    old = row[c]
                    read[c] = g * old
                    row[c] = ((_flushed(beta * old, floor) + s * src[c]) + w0 * t0[c]) + w1 * t1[c]
        else:
            if n == 0:
                for c in range(width):
                    old = row[c]
                    read[c] += g * old
                    row[c] = _flushed(beta * old, floor) + s * src[c]
            elif n == 1:
                for c in range(width):
                    old = row[c]
                    read[c] += g * old
                    row[c] = (_flushed(beta * old, floor) + s * src[c]) + w0 * t0[c]
            else:
                for c in range(width):
                    old = row[c]
                    read[c] += g * old
                    row[c] = ((_flushed(beta * old, floor) + s * src[c]) + w0 * t0[c]) + w1 * t1[c]

    @numba.njit(cache=True, nogil=True)
    def _add_two_rows(row, w0, t0, w1, t1):  # pragma: no cover - compiled
        for c in range(row.shape[0]):
            row[c] = (row[c] + w0 * t0[c]) + w1 * t1[c]

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _advance(
        z,
        read,
        gain,
        beta,
        scale,
        source,
        table,
        start,
        lookups,
        weights,
        chunks,
        fresh,
        one,
        read_table,
        read_weights,
        floor,
    ):  # pragma: no cover - compiled
        # Per row (b, m) of z [B, M, C], in place: read[m] += gain[b] z[b, m] (where gain
        # is not 0; with ``fresh`` read is written, not read: uninitialised memory needs
        # no zeroing pass), then z[b, m] <- beta z[b, m] + scale[b, m] source[b] (source
        # may be empty: no rank-one term) + the table rows lookups[start[bag]:start[bag
        # + 1]], times weights (empty: ``one``, 1 of z's dtype), bag = b M + m. Each
        # thread owns a range of m (its rows of read) and walks it sample by sample, so
        # sample b's table rows stay cached; every row is read and written once. With
        # the rank-one term and beta != 0 (the carried eligibility) a row's read-out,
        # decay and first two lookups are one loop (_advance_row): 9.4 -> 6.6 ms for
        # 784->400, B=64, 51k lookups, against one loop per operation. With a
        # ``read_table`` (empty: none) the same lookups of it, times ``read_weights``
        # (empty: ``one``), are added into read[m] as well: a correlation over the same
        # sparse factor, summed over the batch, in the pass that walks its entries.
        batch, rows, width = z.shape
        ranked, weighted = source.shape[0] > 0, weights.shape[0] > 0
        reads = read.shape[0] > 0
        paired, read_weighted = read_table.shape[0] > 0, read_weights.shape[0] > 0
        fused = ranked and beta != 0  # (beta 0: z may be uninitialised, never read it)
        first = batch  # the first sample read out
        if reads:
            for b in range(batch - 1, -1, -1):
                if gain[b] != 0:
                    first = b
        size = (rows + chunks - 1) // chunks
        for k in numba.prange(chunks):
            lo, hi = min(rows, k * size), min(rows, (k + 1) * size)
            if reads and fresh and (first == batch or paired):  # zeros to add into
                for m in range(lo, hi):
                    read[m, :] = 0
            for b in range(batch):
                g = gain[b]
                mode = 0
                if reads and g != 0:
                    mode = 1 if fresh and b == first and not paired else 2
                for m in range(lo, hi):
                    row = z[b, m]
                    bag = b * rows + m
                    e0, e1 = start[bag], start[bag + 1]
                    if fused:
                        n = min(e1 - e0, 2)
                        # (rows not looked up stand in for the lookups past n)
                        t0 = table[lookups[e0]] if n > 0 else row
                        t1 = table[lookups[e0 + 1]] if n > 1 else row
                        w0 = weights[e0] if weighted and n > 0 else one
                        w1 = weights[e0 + 1] if weighted and n > 1 else one
                        _advance_row(
                            row,
                            read[m] if reads else row,
                            mode,
                            g,
                            beta,
                            scale[b, m],
                            source[b],
                            t0,
                            w0,
                            t1,
                            w1,
                            n,
                            floor,
                        )
                        e0 += n
                    else:
                        if mode == 1:
                            _set_row(read[m], g, row)
                        elif mode == 2:
                            _add_row(read[m], g, row)
                        if ranked:
                            _decay_add_row(row, beta, scale[b, m], source[b], floor)
                        else:
                            _decay_row(row, beta, floor)
                    for e in range(e0, e1):
                        _add_row(row, weights[e] if weighted else one, table[lookups[e]])
                    if paired:
                        e, e1 = start[bag], start[bag + 1]
                        while e + 1 < e1:
                            _add_two_rows(
                                read[m],
                                read_weights[e] if read_weighted else one,
                                read_table[lookups[e]],
                                read_weights[e + 1] if read_weighted else one,
                                read_table[lookups[e + 1]],
                            )
                            e += 2
                        if e < e1:
                            _add_row(
                                read[m],
                                read_weights[e] if read_weighted else one,
                                read_table[lookups[e]],
                            )

    @numba.njit(cache=True, nogil=True)
    def _acausal_step(carry, out, weight, spikes, decay):  # pragma: no cover - compiled
        # out <- carry (y(t)); carry <- (carry + weight spikes) decay (y(t - 1))
        for n in range(carry.shape[0]):
            out[n] = carry[n]
            carry[n] = (carry[n] + weight * spikes[n]) * decay

    @numba.njit(cache=True, nogil=True)
    def _acausal_causal_step(carry, out, weight, spikes, decay, rate, trace):
        # pragma: no cover - compiled
        # out <- carry + rate trace (y(t) and the causal pairs' factor); carry <- y(t - 1)
        for n in range(carry.shape[0]):
            out[n] = carry[n] + rate * trace[n]
            carry[n] = (carry[n] + weight * spikes[n]) * decay

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _weighted_acausal(out, carried, weights, pre, decay, trace, rates):
        # pragma: no cover - compiled
        # out [K, T, B, C], carried [K, B, C], weights [K, T, B or 1], pre [T, B, C]:
        # y_k(T-1) = 0, y_k(t-1) = (y_k(t) + w_k(t) s(t)) d, carried_k = y_k(-1); out_k(t)
        # = y_k(t) + r_k(t) x(t) with ``trace`` x [T, B, C] and ``rates`` r [K, T, B or 1]
        # (both empty: out_k = y_k). One sample per job, its K scans together, so each
        # row of pre (and of x) is read once.
        count, steps, batch, width = out.shape
        causal = rates.shape[0] > 0
        for b in numba.prange(batch):
            column = b % weights.shape[2]  # weights of one sample serve every sample
            rate_column = b % rates.shape[2] if causal else 0
            carry = np.zeros((count, width), out.dtype)
            for k in range(steps):
                t = steps - 1 - k
                for j in range(count):
                    weight = weights[j, t, column]
                    if causal and rates[j, t, rate_column] != 0:
                        _acausal_causal_step(
                            carry[j],
                            out[j, t, b],
                            weight,
                            pre[t, b],
                            decay,
                            rates[j, t, rate_column],
                            trace[t, b],
                        )
                    else:
                        _acausal_step(carry[j], out[j, t, b], weight, pre[t, b], decay)
            for j in range(count):
                carried[j, b] = carry[j]

    @numba.njit(cache=True, nogil=True)
    def _count_block(bits):  # pragma: no cover - compiled
        count = 0
        for i in range(bits.shape[0]):
            count += bits[i] != 0
        return count

    @numba.njit(cache=True, nogil=True)
    def _write_block(bits, out, at, base):  # pragma: no cover - compiled
        for i in range(bits.shape[0]):
            if bits[i] != 0:
                out[at] = base + i
                at += 1

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _nonzero(bits, chunks):  # pragma: no cover - compiled
        # ascending indices of the non-zero entries: count per chunk, then each chunk
        # writes from its offset (two parallel passes, as torch's nonzero)
        n = bits.shape[0]
        size = (n + chunks - 1) // chunks
        counts = np.zeros(chunks + 1, np.int64)
        for k in numba.prange(chunks):
            lo, hi = min(n, k * size), min(n, (k + 1) * size)
            counts[k + 1] = _count_block(bits[lo:hi])
        for k in range(chunks):
            counts[k + 1] += counts[k]
        out = np.empty(counts[chunks], np.int64)
        for k in numba.prange(chunks):
            lo, hi = min(n, k * size), min(n, (k + 1) * size)
            _write_block(bits[lo:hi], out, counts[k], lo)
        return out

    @numba.njit(cache=True, nogil=True)
    def _entries(flat, values, channels, own_pos, per):  # pragma: no cover - compiled
        # the entries at ``flat`` (ascending) of a [N, channels, own_pos] factor, ordered
        # by owner (channel, or (n % per, channel)) and stably: a counting sort, so the
        # order of torch's stable sort by owner. One thread: at ~1e5 entries a parallel
        # launch costs more than the loops. Both passes walk ``flat`` in order, so an
        # integer division (~20-40 cycles) is needed only where the row changes (and by
        # own_pos when it is not 1), and no per-entry temporary is kept between them.
        count = flat.shape[0]
        owners = per * channels
        block = channels * own_pos
        start = np.zeros(owners + 1, np.int64)
        channel = np.empty(count, np.int64)
        rows = np.empty(count, np.int64)
        position = np.empty(count, np.int64)
        picked = np.empty(count, values.dtype)
        cursor = np.empty(owners, np.int64)
        for sweep in range(2):
            row, row_base, sample_base = -1, 0, 0
            for e in range(count):
                f = flat[e]
                if row < 0 or f >= row_base + block:
                    row = f // block
                    row_base = row * block
                    sample_base = (row % per) * channels
                offset = f - row_base
                c = offset if own_pos == 1 else offset // own_pos
                o = sample_base + c
                if sweep == 0:
                    start[o + 1] += 1
                else:
                    at = cursor[o]
                    cursor[o] = at + 1
                    channel[at] = c
                    rows[at] = row
                    position[at] = offset - c * own_pos
                    picked[at] = values[f]
            if sweep == 0:
                for o in range(owners):
                    start[o + 1] += start[o]
                cursor[:] = start[:owners]
        return channel, rows, position, picked, start

    # -- weight dependence and clipping (plastorch.bounds): one pass over the weight --
    # One loop per case, the case chosen outside it, so that every loop vectorises.

    @numba.njit(cache=True, nogil=True)
    def _ltp_block(out, w, pot, up, kind, wmax):  # pragma: no cover - compiled
        # out = A+(w) pot
        if kind == HARD:
            for i in range(out.shape[0]):
                out[i] = pot[i]
        elif kind == SOFT:
            for i in range(out.shape[0]):
                out[i] = (wmax - w[i]) * pot[i]
        else:
            for i in range(out.shape[0]):
                out[i] = up[i] * pot[i]

    @numba.njit(cache=True, nogil=True)
    def _ltd_block(out, w, dep, down, kind, wmin):  # pragma: no cover - compiled
        # out = out - A-(w) dep
        if kind == HARD:
            for i in range(out.shape[0]):
                out[i] = out[i] - dep[i]
        elif kind == SOFT:
            for i in range(out.shape[0]):
                out[i] = out[i] - (w[i] - wmin) * dep[i]
        else:
            for i in range(out.shape[0]):
                out[i] = out[i] - down[i] * dep[i]

    @numba.njit(cache=True, nogil=True)
    def _outside(out, w, wmin, wmax):  # pragma: no cover - compiled
        count = 0
        for i in range(out.shape[0]):
            x = w[i] + out[i]
            count += (x > wmax) | (x < wmin)
        return count

    @numba.njit(cache=True, nogil=True)
    def _clip_block(out, w, wmin, wmax, below, above):  # pragma: no cover - compiled
        # out <- clamp(w + out, wmin, wmax) - w, then, where w + out (as floating point
        # adds it) is still outside, nudged ulp by ulp; NaN stays NaN (comparisons fail)
        for i in range(out.shape[0]):
            x = w[i] + out[i]
            x = wmin if x < wmin else x
            x = wmax if x > wmax else x
            out[i] = x - w[i]
        if _outside(out, w, wmin, wmax) == 0:
            return
        for i in range(out.shape[0]):
            for _ in range(8):
                x = w[i] + out[i]
                if x > wmax:
                    out[i] = np.nextafter(out[i], below)
                elif x < wmin:
                    out[i] = np.nextafter(out[i], above)
                else:
                    break

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _weight_change(  # pragma: no cover - compiled
        out, w, pot, dep, up, down, kind, wmin, wmax, clip, zero, below, above
    ):
        # out = A+(w) pot - A-(w) dep (an empty pot or dep is an absent half; up and
        # down are the factors when kind is FACTORS), clipped; in blocks that stay in
        # cache between the loops: one pass over memory
        n = out.shape[0]
        size = 4096
        for k in numba.prange((n + size - 1) // size):
            lo, hi = k * size, min(n, (k + 1) * size)
            block, weight = out[lo:hi], w[lo:hi]
            if pot.shape[0] > 0:
                _ltp_block(
                    block, weight, pot[lo:hi], up[lo:hi] if kind == FACTORS else up, kind, wmax
                )
            else:
                block[:] = zero
            if dep.shape[0] > 0:
                _ltd_block(
                    block, weight, dep[lo:hi], down[lo:hi] if kind == FACTORS else down, kind, wmin
                )
            if clip:
                _clip_block(block, weight, wmin, wmax, below, above)


def count_nonzero(x: Tensor, stride: int = 1) -> int:
    """Non-zeros among ``x.flatten()[::stride]`` (a contiguous CPU tensor in :data:`DTYPES`).

    One compiled loop: ~3 us for 25,600 entries, where ``torch.count_nonzero`` of a
    strided sample costs ~20 us with its slicing (the path choice counts every
    factor it might walk).

    Examples
    --------
    >>> x = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]])
    >>> count_nonzero(x) if available() else int(torch.count_nonzero(x))
    3
    """
    _require()
    _check_float_input("count_nonzero", "x", x)
    return _count_unchecked(x, stride)


def _lif_block_unchecked(
    drive, v, last_spike, spikes, previous, threshold, increments, growth, scale, start,
    decay, v_reset, refractory_steps, inhibition, self_inhibition, exclusive, floor,
) -> bool:  # fmt: skip
    """:func:`plastorch.neurons.lif._lif_block` compiled, for CPU tensors of one dtype in
    :data:`DTYPES` (``v``, ``last_spike``, ``increments`` written in place as there);
    ``False`` (with a warning, and the kernels switched off) if it fails to compile."""
    scalar = _SCALAR[v.dtype]
    steps = len(scale) if scale else drive.shape[0] - start
    arrays = (
        drive.numpy(),
        v.numpy(),
        last_spike.numpy(),
        spikes.numpy(),
        previous.numpy(),
        threshold.numpy(),
        increments.reshape(-1).numpy(),
        np.asarray(growth, dtype=scalar),
        np.asarray(scale, dtype=scalar),
        int(start),
        int(steps),
        scalar(decay),
        scalar(v_reset),
        int(refractory_steps),
        scalar(inhibition),
        bool(self_inhibition),
        bool(exclusive),
        scalar(floor),
    )
    try:
        _lif_block(*arrays)
    except Exception as error:
        _did_not_compile(_lif_block, error)
        return False
    return True


def _izhikevich_unchecked(current, v, u, constants) -> Tensor | None:
    """Izhikevich steps over ``current [T, N]`` from ``v``, ``u`` ``[N]`` (CPU, one dtype
    in :data:`DTYPES`; written in place): the spikes ``[T, N]``, or ``None`` (with a
    warning, and the kernels switched off) if the kernel fails to compile."""
    spikes = torch.empty_like(current)
    values = np.asarray(constants, dtype=_SCALAR[v.dtype])
    try:
        _izhikevich(current.numpy(), v.numpy(), u.numpy(), spikes.numpy(), values)
    except Exception as error:
        _did_not_compile(_izhikevich, error)
        return None
    return spikes


def _count_unchecked(x: Tensor, stride: int = 1) -> int:
    """:func:`count_nonzero` for callers that guarantee its preconditions."""
    return int(_count(x.detach().numpy().reshape(-1), stride))


def flat_nonzero(x: Tensor) -> Tensor:
    """Ascending flat indices (int64) of the entries of ``x`` whose bits are not all zero.

    ``x`` is a contiguous CPU tensor of float32 or float64; a ``-0.0`` counts (the
    scans of the sparse path compare bits). Two parallel passes, as torch's
    ``nonzero`` of the same integer view, in less than half its time for a window's
    spikes (1.0-1.2 against 2.5 ms for 2.56M entries here).

    Examples
    --------
    >>> x = torch.tensor([[0.0, 2.0], [-0.0, 0.0], [1.0, 0.0]])
    >>> (flat_nonzero(x) if available() else torch.tensor([1, 2, 4])).tolist()
    [1, 2, 4]
    """
    _require()
    _check_float_input("flat_nonzero", "x", x)
    found = _nonzero_unchecked(x)
    if found is None:
        raise RuntimeError("flat_nonzero: the numba kernel did not compile")
    return found


def _nonzero_unchecked(x: Tensor) -> Tensor | None:
    """:func:`flat_nonzero` for callers that guarantee its preconditions; ``None``
    (with a warning, and the kernels switched off) if the kernel fails to compile."""
    _follow_torch_threads()
    bits = x.detach().reshape(-1).view(torch.int32 if x.element_size() == 4 else torch.int64)
    try:
        with _LAUNCH:
            found = _nonzero(bits.numpy(), max(1, 2 * numba.get_num_threads()))
    except Exception as error:
        _did_not_compile(_nonzero, error)
        return None
    return torch.from_numpy(found)


def entries_by_owner(
    flat: Tensor, values: Tensor, channels: int, own_pos: int, per: int = 1
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""The entries of a ``[N, channels, own_pos]`` factor at ``flat``, ordered by owner.

    ``flat`` holds ascending flat indices into ``values`` (the factor flattened, e.g.
    its non-zeros by ``nonzero``). The owner of entry ``(n, c, p)`` is its channel
    ``c``, or with ``per > 1`` the pair ``(n mod per, c)`` (``n = t per + b``: the
    sample of a time-major window). Returns ``(channel, row, position, values,
    owner_start)``: the entries ordered by owner, each owner's in ascending flat
    order (the order of a stable sort by owner; here a counting sort in one compiled
    pass, where torch takes a sort and six index kernels), their value, and the start
    of each owner's run (``[per * channels + 1]``). ``flat`` is an int64 and
    ``values`` a contiguous float32 or float64 CPU tensor.

    Examples
    --------
    >>> x = torch.tensor([[[1.0], [0.0]], [[2.0], [3.0]]])  # [N=2, channels=2, 1]
    >>> flat = x.flatten().nonzero().squeeze(1)
    >>> if available():
    ...     channel, row, _, value, start = entries_by_owner(flat, x.flatten(), 2, 1)
    ...     print(channel.tolist(), row.tolist(), value.tolist(), start.tolist())
    ... else:
    ...     print([0, 0, 1], [0, 1, 1], [1.0, 2.0, 3.0], [0, 2, 3])
    [0, 0, 1] [0, 1, 1] [1.0, 2.0, 3.0] [0, 2, 3]
    """
    _require()
    if flat.dtype != torch.int64 or flat.dim() != 1 or flat.device.type != "cpu":
        raise TypeError(
            f"entries_by_owner: flat must be a 1-d int64 CPU tensor, got {flat.dtype} "
            f"{list(flat.shape)} on {flat.device}"
        )
    _check_float_input("entries_by_owner", "values", values)
    for name, value in (("channels", channels), ("own_pos", own_pos), ("per", per)):
        if int(value) < 1:
            raise ValueError(f"entries_by_owner: {name} must be >= 1, got {value}")
    if values.numel() % (channels * own_pos * per) != 0:
        raise ValueError(
            f"entries_by_owner: {values.numel()} values are not [N, channels={channels}, "
            f"own_pos={own_pos}] with N a multiple of per={per}"
        )
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= values.numel()):
        raise ValueError(f"entries_by_owner: flat indexes outside [0, {values.numel()})")
    if flat.numel() > 1 and not bool((flat[1:] > flat[:-1]).all()):
        raise ValueError("entries_by_owner: flat must be strictly ascending")
    entries = _entries_unchecked(flat, values, channels, own_pos, per)
    if entries is None:
        raise RuntimeError("entries_by_owner: the numba kernel did not compile")
    return entries


def _weighted_acausal_unchecked(out, carried, weights, pre, decay, trace=None, rates=None) -> bool:
    """The scan of :func:`~plastorch.functional.weighted_acausal_factors` in one pass.

    ``out`` ``[K, T, B, C]``, ``carried`` ``[K, B, C]``, ``weights`` ``[K, T, B | 1]`` and
    ``pre`` ``[T, B, C]``, contiguous CPU tensors of one dtype in :data:`DTYPES`; with
    ``trace`` ``[T, B, C]`` and ``rates`` ``[K, T, B | 1]`` (the same) ``out_k`` is
    ``y_k + r_k x``, written as the scan goes. Each step rounds the product ``w s``,
    then the sum, then the decay (and ``r x``, then its sum with ``y``): torch's
    ``addcmul`` may fuse a product and a sum (it does on x86 with FMA), so the bits are
    torch's where the products are exact (0/1 spikes, no trace) and within a rounding
    of them otherwise. ``False`` (with a warning, and the kernels switched off) if the
    kernel fails to compile.
    """
    _follow_torch_threads()
    scalar = _SCALAR[out.dtype]
    width = out.shape[-1]
    try:
        with _LAUNCH:
            _weighted_acausal(
                out.numpy(),
                carried.numpy(),
                weights.numpy(),
                pre.numpy(),
                scalar(decay),
                np.zeros((0, 0, width), scalar) if trace is None else trace.numpy(),
                np.zeros((0, 0, 1), scalar) if rates is None else rates.numpy(),
            )
    except Exception as error:
        _did_not_compile(_weighted_acausal, error)
        return False
    return True


def _entries_unchecked(flat, values, channels, own_pos, per):
    """:func:`entries_by_owner` for callers that guarantee its preconditions.

    ``None`` (with a warning, and the kernels switched off) if the kernel fails to
    compile: the caller then takes its torch path.
    """
    try:
        out = _entries(
            flat.numpy(), values.detach().reshape(-1).numpy(), int(channels), int(own_pos), int(per)
        )
    except Exception as error:
        _did_not_compile(_entries, error)
        return None
    return tuple(torch.from_numpy(x) for x in out)


def advance_(
    z: Tensor,
    beta: float,
    table: Tensor,
    bag_start: Tensor,
    lookups: Tensor,
    weights: Tensor | None = None,
    *,
    gain: Tensor | None = None,
    read: Tensor | None = None,
    scale: Tensor | None = None,
    source: Tensor | None = None,
    read_table: Tensor | None = None,
    read_weights: Tensor | None = None,
) -> Tensor:
    r"""Advance a per-sample sum in one pass: read it out, decay it, add rows.

    ``z`` is ``[B, M, C]``; row ``(b, m)`` is *bag* ``b M + m`` and holds the lookups
    ``lookups[bag_start[bag] : bag_start[bag + 1]]`` (rows of ``table [R, C]``, with
    ``weights``, or 1). In place, row by row:

    .. math::

        \text{read}_m \mathrel{+}= \textstyle\sum_b g_b z_{b m},\qquad
        z_{b m} \leftarrow \beta z_{b m} + s_{b m}\, u_b + \sum_{e \in \text{bag}}
        w_e\, \text{table}_{\text{lookup}_e}

    with the read-out (``gain`` ``[B]``, into ``read [M, C]``) and the rank-one term
    (``scale [B, M]``, ``source [B, C]``) optional. With ``read_table`` (``[R, C]``,
    into ``read``; ``gain`` may then be left out) the same lookups of it, times
    ``read_weights`` (or 1), are added into the read-out too:
    :math:`\text{read}_m \mathrel{+}= \sum_b \sum_{e \in \text{bag}(b, m)} w'_e\,
    \text{read\_table}_{\text{lookup}_e}`, a second correlation over the same sparse
    factor, summed over the batch. This is a per-sample eligibility carried across
    windows (:class:`~plastorch.rules.MSTDPET`): its read-out, its decay, the
    carried-trace term and the window's pairs, which as torch calls (a matrix-vector
    product, a sparse CSR ``addmm`` and a ``baddbmm_``) read and write it three times,
    and the window's own change, which walks the same post spikes. A subnormal
    :math:`\beta z_{b m}` is flushed to zero (:mod:`plastorch.functional.numerics`),
    so the eligibility of a silent synapse reaches 0. All tensors are
    contiguous CPU tensors, the floats of ``z``'s dtype in :data:`DTYPES`, the indices
    int64. Returns ``z``.

    Examples
    --------
    >>> z = torch.ones(1, 2, 2)  # B=1, M=2, C=2
    >>> table = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> start, lookups = torch.tensor([0, 1, 3]), torch.tensor([0, 0, 1])  # bag 1: rows 0, 1
    >>> read = torch.zeros(2, 2)
    >>> if available():
    ...     _ = advance_(z, 0.5, table, start, lookups, gain=torch.tensor([2.0]), read=read)
    ... else:
    ...     read += 2.0; z.mul_(0.5); z[0, 0] += table[0]; z[0, 1] += table[0] + table[1]
    >>> z[0].tolist(), read.tolist()
    ([[1.5, 2.5], [4.5, 6.5]], [[2.0, 2.0], [2.0, 2.0]])
    """
    _require()
    if z.dim() != 3:
        raise ValueError(f"advance_: z must be [B, M, C], got {list(z.shape)}")
    batch, rows, width = z.shape
    floats = [("z", z, (batch, rows, width)), ("table", table, (table.shape[0], width))]
    if read is None and (gain is not None or read_table is not None):
        raise ValueError("advance_: a gain or a read_table needs read (the read-out)")
    if read is not None and gain is None and read_table is None:
        raise ValueError("advance_: read needs a gain or a read_table to read")
    if read_weights is not None and read_table is None:
        raise ValueError("advance_: read_weights weight the lookups of a read_table")
    if (scale is None) != (source is None):
        raise ValueError("advance_: scale and source go together (the rank-one term), or neither")
    if read is not None:
        floats.append(("read", read, (rows, width)))
    if gain is not None:
        floats.append(("gain", gain, (batch,)))
    if read_table is not None:
        floats.append(("read_table", read_table, (table.shape[0], width)))
    if read_weights is not None:
        floats.append(("read_weights", read_weights, (lookups.numel(),)))
    if scale is not None:
        floats += [("scale", scale, (batch, rows)), ("source", source, (batch, width))]
    if weights is not None:
        floats.append(("weights", weights, (lookups.numel(),)))
    _check_floats("advance_", "z", z.dtype, floats)
    for name, tensor, size in (
        ("bag_start", bag_start, batch * rows + 1),
        ("lookups", lookups, None),
    ):
        if tensor.dtype != torch.int64 or tensor.dim() != 1 or tensor.device.type != "cpu":
            raise TypeError(f"advance_: {name} must be a 1-d int64 CPU tensor, got {tensor.dtype}")
        if size is not None and tensor.numel() != size:
            raise ValueError(
                f"advance_: bag_start must have B M + 1 = {size} entries, got {tensor.numel()}"
            )
    bounds = bag_start.tolist()
    if (
        bounds[0] != 0
        or bounds[-1] != lookups.numel()
        or any(a > b for a, b in zip(bounds, bounds[1:]))
    ):
        raise ValueError(f"advance_: bag_start must rise from 0 to the {lookups.numel()} lookups")
    if lookups.numel() and (int(lookups.min()) < 0 or int(lookups.max()) >= table.shape[0]):
        raise ValueError(f"advance_: lookups name rows outside the table's {table.shape[0]}")
    if not _advance_unchecked(
        z,
        beta,
        table,
        bag_start,
        lookups,
        weights,
        gain,
        read,
        scale,
        source,
        read_table=read_table,
        read_weights=read_weights,
    ):
        raise RuntimeError("advance_: the numba kernel did not compile")
    return z


def _advance_unchecked(
    z,
    beta,
    table,
    bag_start,
    lookups,
    weights,
    gain,
    read,
    scale,
    source,
    fresh=False,
    read_table=None,
    read_weights=None,
):
    """:func:`advance_` for callers that guarantee its preconditions; with ``fresh`` the
    read-out is written into ``read`` (uninitialised memory), not added to it.

    ``False`` (with a warning, and the kernels switched off) if the kernel fails to
    compile: the caller then takes its torch path.
    """
    _follow_torch_threads()
    scalar = _SCALAR[z.dtype]
    batch, rows, width = z.shape
    empty = np.zeros(0, scalar)
    arrays = (
        z.numpy(),
        np.zeros((0, width), scalar) if read is None else read.numpy(),
        np.zeros(batch, scalar) if gain is None else gain.numpy(),
        scalar(beta),
        np.zeros((0, rows), scalar) if scale is None else scale.numpy(),
        np.zeros((0, width), scalar) if source is None else source.numpy(),
        table.numpy(),
        bag_start.numpy(),
        lookups.numpy(),
        empty if weights is None else weights.numpy(),
        max(1, numba.get_num_threads()),
        bool(fresh),
        scalar(1),
        np.zeros((0, width), scalar) if read_table is None else read_table.numpy(),
        empty if read_weights is None else read_weights.numpy(),
        scalar(largest_subnormal(z.dtype)),
    )
    try:
        with _LAUNCH:
            _advance(*arrays)
    except Exception as error:
        _did_not_compile(_advance, error)
        return False
    return True


_LOCAL = threading.local()  # per thread: the torch thread count numba was set to follow
# numba's fallback threading layer (workqueue, where neither OpenMP nor TBB loads)
# aborts the process on concurrent launches: callers from several threads take turns
_LAUNCH = threading.Lock()


def _follow_torch_threads() -> None:
    """Run the kernels on as many threads as torch's (``torch.set_num_threads``).

    numba's thread count is per calling thread, as torch's is.
    """
    wanted = torch.get_num_threads()
    if getattr(_LOCAL, "threads", None) != wanted:
        numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))
        _LOCAL.threads = wanted


def _sparse_rows_unchecked(out: Tensor, a: Tensor, b: Tensor, alpha: float, beta: float) -> None:
    """:func:`sparse_rows_` for callers that guarantee its preconditions.

    If the kernel fails to compile, the kernels are switched off (with a warning)
    and this call computes the same sum with ``addmm``.
    """
    if not _sparse_rows_sum_unchecked(out, [(a, b, alpha)], beta):
        out.addmm_(a.t(), b, beta=beta, alpha=alpha)


def _sparse_rows_sum_unchecked(
    out: Tensor,
    terms,
    beta: float,
    flush: bool = False,
    read: Tensor | None = None,
    gain: float = 1.0,
    fresh: bool = False,
) -> bool:
    """:func:`sparse_rows_sum_` for callers that guarantee its preconditions.

    ``False`` (with a warning, and the kernels switched off) if the kernel fails to
    compile: nothing is written then, and the caller takes its torch path.
    """
    _follow_torch_threads()
    scalar = _SCALAR[out.dtype]  # the kernel computes in out's dtype, not float64
    if len(terms) == 1:  # (no copy: numpy views with a leading 1, the cheapest views)
        a, b = terms[0][0].numpy()[None], terms[0][1].numpy()[None]
    else:
        a = torch.stack([term[0] for term in terms]).numpy()
        b = torch.stack([term[1] for term in terms]).numpy()
    alpha = np.array([term[2] for term in terms], dtype=scalar)
    floor = largest_subnormal(out.dtype) if flush else -1.0
    try:
        with _LAUNCH:
            _sparse_rows(
                out.numpy(),
                a,
                b,
                alpha,
                scalar(beta),
                scalar(floor),
                _NO_READ[out.dtype] if read is None else read.numpy(),
                scalar(gain),
                bool(fresh),
            )
    except Exception as error:
        _did_not_compile(_sparse_rows, error)
        return False
    return True


def _did_not_compile(kernel, error: Exception) -> None:
    """Switch the kernels off, with a warning, if ``kernel`` failed to compile; re-raise
    ``error`` if it had compiled before (a genuine error, not the compiler)."""
    global _ENABLED
    if kernel.signatures:
        raise error
    warnings.warn(
        f"plastorch: the numba kernel did not compile ({error!r}); using torch", stacklevel=4
    )
    _ENABLED = False


def sparse_rows_(out: Tensor, a: Tensor, b: Tensor, alpha: float, beta: float) -> Tensor:
    r"""``out <- beta * out + alpha * a^T b`` in place, from the non-zeros of ``a``.

    ``a`` is ``[N, M]`` (the sparse factor), ``b`` ``[N, C]`` and ``out`` ``[M, C]``,
    all contiguous CPU tensors of one dtype in :data:`DTYPES`. Each row of ``out``
    gets the rows of ``b`` its column of ``a`` names, scaled by their values: the
    arithmetic is ``nnz(a) * C`` instead of the GEMM's ``N M C``, after one read of
    ``a``. With ``beta == 0`` ``out`` is not read (it may be uninitialised).

    Examples
    --------
    >>> a = torch.tensor([[0.0, 1.0], [2.0, 0.0]])  # [N=2, M=2], two non-zeros
    >>> b = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> out = torch.ones(2, 2)
    >>> sparse_rows_(out, a, b, 0.5, 1.0) if available() else out.addmm_(a.t(), b, alpha=0.5)
    tensor([[4.0000, 5.0000],
            [1.5000, 2.0000]])
    """
    _require()
    named = (
        ("out", out, (a.shape[1], b.shape[1])),
        ("a", a, (b.shape[0], a.shape[1])),
        ("b", b, (a.shape[0], b.shape[1])),
    )
    _check_floats("sparse_rows_", "out", out.dtype, named)
    _sparse_rows_unchecked(out, a, b, alpha, beta)
    return out


def sparse_rows_sum_(
    out: Tensor,
    terms,
    beta: float = 1.0,
    *,
    flush: bool = False,
    read: Tensor | None = None,
    gain: float = 1.0,
    fresh: bool = False,
) -> Tensor:
    r"""``out <- beta * out + sum_k alpha_k a_k^T b_k`` in one pass, from the non-zeros of the ``a_k``.

    ``terms`` holds ``(a, b, alpha)``: ``a`` ``[N, M]``, ``b`` ``[N, C]`` (the same
    ``N`` for every term) and a real ``alpha``; ``out`` is ``[M, C]``. Each row of
    ``out`` is decayed and takes every term's rows while it is in cache, so a sum of
    rank-one terms (``N = 1``: one sample's step) reads and writes ``out`` once, where
    one GEMM per term reads and writes it per term. With ``flush`` the entries of
    ``beta * out`` below the dtype's smallest normal number become 0
    (:mod:`plastorch.functional.numerics`). With ``read`` (``[M, C]``) each finished
    row, times ``gain``, is added into it (written into it, uninitialised, with
    ``fresh``): a carried sum read out in the pass that advances it. With ``beta ==
    0`` ``out`` is not read. All tensors are contiguous CPU tensors of ``out``'s dtype,
    one of :data:`DTYPES`. Returns ``out``.

    Examples
    --------
    >>> out = torch.ones(2, 2)
    >>> a, b = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]])  # N = 1
    >>> read = torch.zeros(2, 2)
    >>> if available():
    ...     _ = sparse_rows_sum_(out, [(a, b, 2.0), (b, a, 1.0)], 0.5, read=read, gain=3.0)
    ... else:
    ...     _ = out.mul_(0.5).addmm_(a.t(), b, alpha=2.0).addmm_(b.t(), a); read += 3 * out
    >>> out.tolist(), read.tolist()
    ([[0.5, 1.5], [2.5, 6.5]], [[1.5, 4.5], [7.5, 19.5]])
    """
    _require()
    if not terms:
        raise ValueError("sparse_rows_sum_ needs at least one (a, b, alpha) term")
    if out.dim() != 2:
        raise ValueError(f"sparse_rows_sum_: out must be [M, C], got {list(out.shape)}")
    for k, (a, b, _) in enumerate(terms):
        if a.dim() != 2 or b.dim() != 2:
            raise ValueError(
                f"sparse_rows_sum_: term {k} needs a [N, M] and b [N, C], got "
                f"{list(a.shape)} and {list(b.shape)}"
            )
    (rows, width), depth = out.shape, terms[0][0].shape[0]  # every term has term 0's N
    named = [("out", out, (rows, width))]
    for k, (a, b, _) in enumerate(terms):
        named += [(f"term {k}'s a", a, (depth, rows)), (f"term {k}'s b", b, (depth, width))]
    if read is not None:
        named.append(("read", read, tuple(out.shape)))
    _check_floats("sparse_rows_sum_", "out", out.dtype, named)
    if not _sparse_rows_sum_unchecked(out, terms, beta, flush, read, gain, fresh):
        raise RuntimeError("sparse_rows_sum_: the numba kernel did not compile")
    return out


def expand_by_step(
    step0: Tensor, first: Tensor, count: Tensor, order: Tensor, lag: Tensor, steps: int
) -> tuple[list[int], Tensor, Tensor]:
    r"""Expand ranges of items into events and bucket them by step (a stable counting sort).

    Source ``p`` reaches the items ``order[first[p] : first[p] + count[p]]``; the event
    ``(p, item)`` happens at step ``step0[p] + lag[item]``, which must lie in
    ``[0, steps)`` (``ValueError`` otherwise). Returns ``(bounds, source, item)`` with
    the events in step order (in source order, then range order, within a step) and
    ``bounds[t]`` the number of events at steps ``<= t``. All tensors are CPU ``int64``, ``order`` and ``lag``
    contiguous. The torch equivalent takes a ``repeat_interleave``, an argsort and
    several gathers of the events; this is two passes over them.

    Examples
    --------
    >>> t = lambda *v: torch.tensor(v)
    >>> # source 0 (step 0) reaches items 0 (lag 1) and 1 (lag 0), source 1 (step 1) item 1
    >>> bounds, source, item = (expand_by_step(t(0, 1), t(0, 1), t(2, 1), t(0, 1), t(1, 0), 3)
    ...     if available() else ([1, 3, 3], t(0, 0, 1), t(1, 0, 1)))
    >>> bounds, source.tolist(), item.tolist()  # step 0: (0, 1); step 1: (0, 0), (1, 1)
    ([1, 3, 3], [0, 0, 1], [1, 0, 1])
    """
    _require()
    named = {"step0": step0, "first": first, "count": count, "order": order, "lag": lag}
    for name, tensor in named.items():
        if tensor.dtype != torch.long or tensor.device.type != "cpu" or tensor.dim() != 1:
            raise TypeError(f"expand_by_step: {name} must be a 1-d CPU int64 tensor")
        if name in ("first", "count") and tensor.shape != step0.shape:
            raise ValueError(
                f"expand_by_step: {name} has {tensor.numel()} entries, step0 {step0.numel()}"
            )
    result = _expand_by_step_unchecked(step0, first, count, order, lag, steps)
    if result is None:
        raise RuntimeError("expand_by_step: the numba kernel did not compile")
    return result


def _expand_by_step_unchecked(step0, first, count, order, lag, steps):
    """:func:`expand_by_step` for callers that guarantee its argument types.

    ``None`` (with a warning, and the kernels switched off) if the kernel fails to
    compile: the caller then takes its torch path.
    """
    arrays = [x.contiguous().numpy() for x in (step0, first, count, order, lag)]
    try:
        bounds, source, item = _expand_by_step(*arrays, int(steps))
    except Exception as error:
        _did_not_compile(_expand_by_step, error)
        return None
    return bounds.tolist(), torch.from_numpy(source), torch.from_numpy(item)


#: A window's scan is left to torch below this many steps, unless it has at least
#: ``SCAN_MIN_NUMEL`` entries: torch's loop costs ~12 us per step whatever the width
#: (T=100 of a [100, 2, 64] signal: 1.29 ms, compiled 77 us; T=10 of [10, 4]: 134
#: against 29 us), a launch ~30 us.
SCAN_MIN_STEPS = 4
SCAN_MIN_NUMEL = 1 << 14


def scan_(
    out: Tensor,
    values: Tensor,
    decay: float,
    *,
    start: Tensor | None = None,
    amplitude: float = 1.0,
    reverse: bool = False,
    nearest: bool = False,
    end: Tensor | None = None,
) -> Tensor:
    r"""A discounted scan over the leading (time) dimension, in one parallel pass.

    .. math:: \text{out}(t) = d\,\text{out}(t \mp 1) + a\,v(t)

    or, with ``nearest``, :math:`a` where :math:`v(t) \ne 0` and
    :math:`d\,\text{out}(t \mp 1)` elsewhere (a nearest-spike trace).

    forward from ``out(-1) = start`` (a cumulative trace over a window) or, with
    ``reverse``, backward from ``out(T) = start`` (a reverse discounted sum); without
    ``start`` the first step is :math:`a\,v`. Each step rounds as torch's ``mul`` then
    ``add`` would (no fused multiply-add), and a subnormal product :math:`d\,\text{out}`
    is flushed to zero (:mod:`plastorch.functional.numerics`), so the result has the bits
    of the step-by-step torch loop, which takes three kernels per step. ``out`` and ``values``
    are ``[T, ...]`` and ``start`` ``[...]``, all contiguous CPU tensors of one dtype
    in :data:`DTYPES`.

    With ``end`` (``[...]``, as ``start``), ``out(t)`` is the decayed value alone,
    :math:`d\,\text{out}(t \mp 1)` before :math:`v(t)` enters (a trace just before a
    spike, flushed as above), and ``end`` receives the value after the last step.

    Examples
    --------
    >>> v = torch.tensor([[1.0], [0.0], [1.0]])
    >>> out = torch.empty(3, 1)
    >>> ok = scan_(out, v, 0.5) if available() else out.copy_(torch.tensor([[1.0], [0.5], [1.25]]))
    >>> out.flatten()
    tensor([1.0000, 0.5000, 1.2500])
    """
    _require()
    shape = tuple(values.shape[1:])
    named = [("out", out, tuple(values.shape)), ("values", values, tuple(values.shape))]
    if start is not None:
        named.append(("start", start, shape))
    if end is not None:
        named.append(("end", end, shape))
    _check_floats("scan_", "out", out.dtype, named)
    if values.dim() == 0 or values.shape[0] == 0:
        return out
    if not _scan_unchecked(out, values, decay, start, amplitude, reverse, nearest, end):
        raise RuntimeError("scan_: the numba kernel did not compile")
    return out


def _scan_unchecked(
    out, values, decay, start=None, amplitude=1.0, reverse=False, nearest=False, end=None
) -> bool:
    """:func:`scan_` for callers that guarantee its preconditions (``T >= 1``).

    ``False`` (with a warning, and the kernels switched off) if the kernel fails to
    compile: the caller then takes its torch path.
    """
    _follow_torch_threads()
    scalar = _SCALAR[out.dtype]
    steps = values.shape[0]
    flat = out.view(steps, -1).numpy()
    source = values.reshape(steps, -1).numpy()
    first = np.zeros(0, scalar) if start is None else start.reshape(-1).numpy()
    last = np.zeros(0, scalar) if end is None else end.reshape(-1).numpy()
    try:
        with _LAUNCH:
            floor = scalar(largest_subnormal(out.dtype))
            factors = (scalar(decay), scalar(amplitude), bool(reverse), floor, bool(nearest))
            _scan(flat, source, first, *factors, last)
    except Exception as error:
        _did_not_compile(_scan, error)
        return False
    return True


def _ages_unchecked(out: Tensor, spikes: Tensor, start: Tensor, before: bool) -> Tensor | None:
    """The steps since the latest spike at every step of a window (see
    :func:`plastorch.rules.kernel.steps_since_window`) into ``out``, in one parallel pass;
    the last ages, or ``None`` (with a warning, and the kernels switched off) if the
    kernel fails to compile. ``out``, ``spikes`` and ``start`` are contiguous CPU tensors
    of one dtype in :data:`DTYPES`, ``[T, ...]``, ``[T, ...]`` and ``[...]``, ``T >= 1``."""
    _follow_torch_threads()
    steps = spikes.shape[0]
    end = torch.empty_like(start)
    try:
        with _LAUNCH:
            _ages(
                out.view(steps, -1).numpy(),
                spikes.reshape(steps, -1).numpy(),
                start.reshape(-1).numpy(),
                end.view(-1).numpy(),
                bool(before),
            )
    except Exception as error:
        _did_not_compile(_ages, error)
        return None
    return end


def weight_change(
    weight: Tensor,
    potentiation: Tensor | None,
    depression: Tensor | None,
    wmin: float,
    wmax: float,
    *,
    dependence: int = HARD,
    factors: tuple[Tensor, Tensor] | None = None,
    clip: bool = True,
) -> Tensor:
    r"""A bound's change :math:`A_+(w)\,p - A_-(w)\,d`, clipped (with ``clip``) so that
    ``weight`` plus it lies in ``[wmin, wmax]`` as floating point adds it, in one parallel
    pass (the same in torch takes about a dozen weight-sized passes).

    ``dependence`` is :data:`HARD` (both factors 1), :data:`SOFT` (:math:`w_\max - w` and
    :math:`w - w_\min`) or :data:`FACTORS` (``factors = (A_+, A_-)``, tensors like
    ``weight``); an absent half (``None``) is zero. All tensors are contiguous CPU
    tensors of ``weight``'s shape and of one dtype of :data:`DTYPES`, the dtype the
    arithmetic is done in, in the order of :mod:`plastorch.bounds` (a multiply and a
    subtraction may be fused into one rounding). Returns a new tensor.

    Examples
    --------
    >>> w = torch.tensor([0.25, 0.75])
    >>> p, d = torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.5])
    >>> weight_change(w, p, d, 0.0, 1.0, dependence=SOFT) if available() else (1 - w) - w * d
    tensor([ 0.6250, -0.1250])
    """
    _require()
    _check_float_input("weight_change", "weight", weight)
    if dependence not in (HARD, SOFT, FACTORS):
        raise ValueError(f"weight_change: unknown dependence {dependence!r}")
    if (dependence == FACTORS) != (factors is not None):
        raise ValueError("weight_change: factors are given exactly when dependence is FACTORS")
    named = [
        (name, tensor, weight.shape)
        for name, tensor in (
            ("potentiation", potentiation),
            ("depression", depression),
            *zip(("factors[0]", "factors[1]"), factors or ()),
        )
        if tensor is not None
    ]
    _check_floats("weight_change", "weight", weight.dtype, named)
    out = _weight_change_unchecked(
        weight, potentiation, depression, wmin, wmax, dependence, factors, clip
    )
    if out is None:
        raise RuntimeError("weight_change: the numba kernel did not compile")
    return out


def _weight_change_unchecked(
    weight, potentiation, depression, wmin, wmax, dependence=HARD, factors=None, clip=True
) -> Tensor | None:
    """:func:`weight_change` for callers that guarantee its preconditions; ``None`` (with
    a warning, and the kernels switched off) if the kernel fails to compile."""
    _follow_torch_threads()
    scalar = _SCALAR[weight.dtype]
    empty = np.zeros(0, scalar)
    out = torch.empty_like(weight, memory_format=torch.contiguous_format)
    arrays = [
        empty if t is None else t.detach().reshape(-1).numpy()
        for t in (potentiation, depression, *(factors or (None, None)))
    ]
    try:
        with _LAUNCH:
            _weight_change(
                out.view(-1).numpy(),
                weight.detach().reshape(-1).numpy(),
                *arrays,
                dependence,
                scalar(wmin),
                scalar(wmax),
                bool(clip),
                scalar(0),
                scalar(-np.inf),
                scalar(np.inf),
            )
    except Exception as error:
        _did_not_compile(_weight_change, error)
        return None
    return out
