"""Benchmark suite: plastorch side by side with the bare-arithmetic limit and the peers.

Run ``python -m plastorch.bench`` (``--quick`` for the CI smoke run, ``--json
PATH`` for machine-readable output, ``--device cuda`` where CUDA exists). Each
case builds the same inputs for every contender, checks plastorch's update
against a bare-arithmetic reference, then times the contenders round-robin and
reports medians and the ratios plastorch/limit and peer/plastorch. Peers
(SpikingJelly, BindsNET, inferno) are optional: ``pip install --no-deps
spikingjelly bindsnet inferno-ai`` next to torch; missing ones get a status row.
Results and their discussion are in ``docs/performance.md``. Two tools beside it:
``python -m plastorch.bench.before_after --old DIR`` times ``Learner.step()`` of an
older copy of the package against this one, and ``python -m
plastorch.bench.rules_matrix`` every rule against STDP on the same spikes.

Examples
--------
>>> from plastorch.bench import CASES
>>> [case.name for case in CASES][:3]
['dense_step', 'dense_window', 'conv2d_2_32']
"""

from .cases import CASES, case_names
from .common import Config
from .suite import run_case, run_suite

__all__ = ["CASES", "Config", "case_names", "run_case", "run_suite"]
