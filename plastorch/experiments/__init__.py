"""Registry of reference experiments run by ``plastorch run NAME``.

An experiment module registers itself with :func:`register`; the CLI lists
``EXPERIMENTS`` and calls the chosen entry. Each entry adds its own command-line
options and returns a JSON-serialisable dict of metrics (the CLI writes it to
``metrics.json`` in the output directory).

Examples
--------
>>> sorted(EXPERIMENTS) == sorted(set(EXPERIMENTS))
True
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EXPERIMENTS", "Experiment", "load_all", "register"]


@dataclass(frozen=True)
class Experiment:
    """One runnable experiment.

    Attributes
    ----------
    name : str
        Sub-command name, e.g. ``"florian-xor"``.
    help : str
        One line for ``plastorch run --help``.
    add_arguments : callable
        ``add_arguments(parser)`` adds the experiment's options.
    run : callable
        ``run(args, out_dir: Path) -> dict`` runs it, writes figures into
        ``out_dir`` and returns the metrics.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Path], dict]


EXPERIMENTS: dict[str, Experiment] = {}

# Modules (under plastorch.models) that register experiments when imported.
_MODULES: list[str] = [
    "plastorch.models.florian",
    "plastorch.models.distal_reward",
    "plastorch.models.delay_task",
]


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to :data:`EXPERIMENTS`; a name may be registered once."""
    if experiment.name in EXPERIMENTS and EXPERIMENTS[experiment.name] is not experiment:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def load_all() -> dict[str, Experiment]:
    """Import every experiment module so that all experiments are registered."""
    for module in _MODULES:
        importlib.import_module(module)
    return EXPERIMENTS
