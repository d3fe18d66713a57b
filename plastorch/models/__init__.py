"""Reference networks built from the library's rules, neurons and layers."""

from .delay_task import DelayTask, train_delay_task
from .diehl_cook import (
    DiehlCook2015,
    assign_labels,
    vote_all_activity,
    vote_proportion_weighting,
)
from .distal_reward import DistalRewardNetwork, run_distal_reward
from .florian import FlorianXOR, single_synapse, train_xor

__all__ = [
    "DiehlCook2015",
    "assign_labels",
    "vote_all_activity",
    "vote_proportion_weighting",
    "DelayTask",
    "DistalRewardNetwork",
    "FlorianXOR",
    "run_distal_reward",
    "single_synapse",
    "train_delay_task",
    "train_xor",
]
