"""Pure tensor functions: traces, correlations, time-fused STDP factors.

Nothing here holds state; rules and the learner are built from these.
"""

from .correlate import (
    advance_per_sample_,
    advance_sum_,
    correlate,
    correlate_constant,
    correlate_per_sample,
    correlate_sum,
    correlation_scope,
    fold_steps,
    get_sparse_mode,
    sparse_mode,
    uses_sparse_path,
)
from .numerics import flush_subnormal_
from .stdp import (
    PostTriggeredFactors,
    STDPFactors,
    cumulative_trace_at_end,
    stdp_factors,
    stdp_factors_post_triggered,
    weighted_acausal_factors,
)
from .traces import (
    TRACE_MODES,
    add_spikes_,
    decay_factor,
    discounted_reverse_sum,
    trace,
    trace_,
    trace_after,
    trace_after_window,
    trace_cumulative,
    trace_nearest,
    trace_window,
    trace_window_before,
)
from .update import Update

__all__ = [
    "PostTriggeredFactors",
    "TRACE_MODES",
    "STDPFactors",
    "Update",
    "add_spikes_",
    "advance_per_sample_",
    "advance_sum_",
    "correlate",
    "correlate_constant",
    "correlate_per_sample",
    "correlate_sum",
    "correlation_scope",
    "cumulative_trace_at_end",
    "decay_factor",
    "flush_subnormal_",
    "fold_steps",
    "discounted_reverse_sum",
    "get_sparse_mode",
    "sparse_mode",
    "stdp_factors",
    "stdp_factors_post_triggered",
    "trace",
    "trace_",
    "trace_after",
    "trace_after_window",
    "weighted_acausal_factors",
    "trace_cumulative",
    "trace_nearest",
    "trace_window",
    "trace_window_before",
    "uses_sparse_path",
]
