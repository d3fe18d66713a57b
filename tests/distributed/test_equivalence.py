"""Two gloo ranks with half the batch each end where one process with the whole batch ends.

One spawn of 2 ranks runs every scenario of :mod:`tests.distributed.scenarios`;
the reference is the same code run here, undistributed, on the whole batch.
"""

import pytest
import torch

from . import scenarios
from .harness import run_ranks

TIGHT = {"rtol": 1e-11, "atol": 1e-13}


@pytest.fixture(scope="module")
def ranks():
    outcomes = run_ranks(scenarios.run_all, world_size=2)
    for rank, outcome in enumerate(outcomes):
        assert outcome.status == "ok", f"rank {rank}: {outcome.value}: {outcome.message}"
    return [outcome.value for outcome in outcomes]


@pytest.fixture(scope="module")
def reference():
    return scenarios.run_all()


@pytest.mark.parametrize(
    "name",
    [
        "stdp_sum",
        "stdp_mean_uneven_accumulated",
        "stdp_amax",
        "mstdp_per_sample_reward",
        "mstdp_one_half_per_rank",
        "mstdpet_per_sample_reward",
        "mstdpet_global_reward",
        "homeostasis",
        "ddp_plasticity_and_backprop",
    ],
)
def test_two_ranks_equal_one_process_with_the_whole_batch(ranks, reference, name):
    expected = reference[name]
    for key in expected:
        if key == "present":
            continue
        # Both ranks apply the same reduced update: bit-identical to each other.
        assert torch.equal(ranks[0][name][key], ranks[1][name][key]), key
        torch.testing.assert_close(ranks[0][name][key], expected[key], **TIGHT)


def test_the_runs_actually_learn(reference):
    # Guard against a vacuous comparison: the weights moved, none saturated at a bound.
    torch.manual_seed(100)
    start = torch.nn.init.uniform_(torch.empty(scenarios.OUT, scenarios.IN), 0.0, 0.3).double()
    for name in (
        "stdp_sum",
        "stdp_amax",
        "mstdp_per_sample_reward",
        "mstdpet_global_reward",
        "homeostasis",
    ):
        weight = reference[name]["weight"]
        assert (weight - start).abs().mean() > 1e-3, name
        assert bool(((weight > -1.0) & (weight < 1.0)).all()), name


def test_a_half_missing_on_one_rank_reduces_as_zeros(ranks, reference):
    # Rank 0 (rewards +1, potentiative-only rates) has no depression half, rank 1
    # (rewards -1) no potentiation half; the reduction still gives both halves.
    assert ranks[0]["mstdp_one_half_per_rank"]["present"].tolist() == [True, False, False, False]
    assert ranks[1]["mstdp_one_half_per_rank"]["present"].tolist() == [False, True, False, False]
    whole = reference["mstdp_one_half_per_rank"]
    assert whole["present"].tolist() == [True, True, False, False]
    assert bool((whole["potentiation"] > 0).any()) and bool((whole["depression"] > 0).any())


def test_reductions_without_a_global_form_fail_alike_on_every_rank(ranks, reference):
    assert reference["refusals"] == {}  # one process: nothing to reduce, no error
    for rank in ranks:
        messages = rank["refusals"]
        assert "has no known reduction across ranks" in messages["custom"]
        assert "call step() after every window" in messages["amax_accumulated"]


def test_generic_collectives_on_two_ranks(ranks):
    # Rank 0 holds [1, -2], rank 1 holds [2, -4].
    for rank, out in enumerate(ranks):
        got = out["collectives"]
        assert got["sum"].tolist() == [3.0, -6.0]
        assert got["mean"].tolist() == [1.5, -3.0]
        assert got["max"].tolist() == [2.0, -2.0]
        assert got["min"].tolist() == [1.0, -4.0]
        assert got["int_sum"].tolist() == [3] and got["int_sum"].dtype == torch.int64
        assert got["local"].tolist() == [rank + 1.0, -2.0 * (rank + 1)]  # inputs untouched
        assert got["increments"].tolist() == [1.0 + 0.5 + 1.0]  # baseline + both increments
        assert got["gathered"].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
        assert got["same_on_all_ranks"].tolist() == [True, False]
    assert ranks[0]["collectives"]["shard"].tolist() == [0, 1, 2]
    assert ranks[1]["collectives"]["shard"].tolist() == [3, 4]
