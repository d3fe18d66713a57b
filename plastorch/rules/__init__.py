"""Plasticity rules: each turns a window of recorded spikes into an ``Update``.

See :mod:`plastorch.rules.stdp` for the shared event order and the sign-mode table.
"""

from ..functional import Update
from .base import Rule, Term
from .delay import DelayAdjustedMSTDP, DelayAdjustedMSTDPD, DelayAdjustedSTDP, DelayAdjustedSTDPD
from .exp_stdp import ExpSTDP, ExpSTDPBound
from .homeostasis import LinearHomeostasis
from .kernel import DelayAdjustedKernelSTDP, DelayAdjustedKernelSTDPD, Kernel, KernelSTDP
from .stdp import MSTDP, MSTDPET, STDP
from .triplet import TripletSTDP

__all__ = [
    "MSTDP",
    "MSTDPET",
    "STDP",
    "Rule",
    "Term",
    "Update",
    "DelayAdjustedKernelSTDP",
    "DelayAdjustedKernelSTDPD",
    "DelayAdjustedMSTDP",
    "DelayAdjustedMSTDPD",
    "DelayAdjustedSTDP",
    "DelayAdjustedSTDPD",
    "Kernel",
    "KernelSTDP",
    "LinearHomeostasis",
    "ExpSTDP",
    "ExpSTDPBound",
    "TripletSTDP",
]
