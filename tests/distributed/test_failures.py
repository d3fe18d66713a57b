"""A rank that fails makes the others stop with a clear error instead of hanging."""

import time

import torch
from torch import nn

from plastorch import Learner, distributed
from plastorch.rules import STDP

from .harness import run_ranks

PG_TIMEOUT = 2.0  # seconds a collective waits for a missing rank


def _learner_with_one_window():
    layer, neuron = nn.Linear(4, 2, bias=False).double(), nn.Identity()
    learner = distributed.data_parallel(Learner(layer, neuron, STDP(0.1, -0.1)))
    neuron(layer(torch.ones(3, 4, dtype=torch.float64)))
    return learner


def _rank_one_raises():
    learner = _learner_with_one_window()
    if distributed.rank() == 1:
        raise RuntimeError("rank 1 failed on purpose")  # the process exits
    learner.step()


def _rank_one_stalls():
    learner = _learner_with_one_window()
    if distributed.rank() == 1:
        time.sleep(PG_TIMEOUT + 3.0)  # alive, but never reaches the collective
        return "woke up"
    learner.step()


def test_a_rank_that_raises_and_exits_stops_the_other():
    survivor, failed = run_ranks(_rank_one_raises, pg_timeout=PG_TIMEOUT, deadline=60.0)
    assert (failed.status, failed.value, failed.message) == (
        "error",
        "RuntimeError",
        "rank 1 failed on purpose",
    )
    assert (survivor.status, survivor.value) == ("error", "DistributedError")
    assert survivor.message.startswith("rank 0 of 2: all_reduce(sum) of a (5,) tensor failed")
    assert "another rank exited, raised, or did not reach the same call" in survivor.message


def test_a_rank_that_never_arrives_times_the_other_out():
    survivor, stalled = run_ranks(_rank_one_stalls, pg_timeout=PG_TIMEOUT, deadline=60.0)
    assert (stalled.status, stalled.value) == ("ok", "woke up")
    assert (survivor.status, survivor.value) == ("error", "DistributedError")
    assert survivor.message.startswith("rank 0 of 2: all_reduce(sum) of a (5,) tensor failed")
