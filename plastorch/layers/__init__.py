"""Connections the rules need that torch lacks."""

from .delayed import DelayedLinear
from .inhibition import InhibitedPopulation, LateralInhibition

__all__ = [
    "DelayedLinear",
    "InhibitedPopulation",
    "LateralInhibition",
]
