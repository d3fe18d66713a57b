"""Reference networks built from the library's rules, neurons and layers."""

from .diehl_cook import (
    DiehlCook2015,
    assign_labels,
    vote_all_activity,
    vote_proportion_weighting,
)

__all__ = [
    "DiehlCook2015",
    "assign_labels",
    "vote_all_activity",
    "vote_proportion_weighting",
]
