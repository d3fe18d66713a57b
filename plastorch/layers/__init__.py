"""Connections the rules need that torch lacks."""

from .inhibition import InhibitedPopulation, LateralInhibition

__all__ = [
    "InhibitedPopulation",
    "LateralInhibition",
]
