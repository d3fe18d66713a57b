"""plastorch.distributed in one process: sharding, argument checks, and no-op behaviour."""

import re
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from plastorch import Learner, Update, distributed
from plastorch.rules import STDP


@given(count=st.integers(0, 200), size=st.integers(1, 9))
def test_shards_are_contiguous_blocks_that_partition_the_items(count, size):
    blocks = [distributed.shard(count, rank=r, world_size=size) for r in range(size)]
    assert [i for block in blocks for i in block] == list(range(count))
    lengths = [len(block) for block in blocks]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == sorted(lengths, reverse=True)  # the larger blocks come first


def test_shard_of_a_sequence_and_a_tensor():
    assert distributed.shard(["a", "b", "c", "d", "e"], rank=0, world_size=2) == ["a", "b", "c"]
    assert distributed.shard(("a", "b", "c", "d", "e"), rank=1, world_size=2) == ("d", "e")
    rows = torch.arange(14).reshape(7, 2)
    assert distributed.shard(rows, rank=2, world_size=3).tolist() == [[10, 11], [12, 13]]
    # One process: the whole thing.
    assert distributed.shard(4) == range(0, 4)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"rank": 2, "world_size": 2}, ValueError, "0 <= rank < world_size, got rank=2"),
        ({"rank": 0, "world_size": 0}, ValueError, "world_size=0"),
        ({"rank": 0.0, "world_size": 2}, TypeError, "rank must be an int, got float 0.0"),
        ({"rank": 0, "world_size": True}, TypeError, "world_size must be an int"),
    ],
)
def test_shard_rejects_bad_ranks(kwargs, error, match):
    with pytest.raises(error, match=match):
        distributed.shard(5, **kwargs)


def test_shard_rejects_bad_items():
    with pytest.raises(ValueError, match="items must be >= 0, got -1"):
        distributed.shard(-1, rank=0, world_size=1)
    with pytest.raises(TypeError, match="items must be a length, a sequence or a tensor"):
        distributed.shard(2.5, rank=0, world_size=1)


def test_one_process_has_rank_zero_of_one():
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size()) == (0, 1)


def test_all_reduce_in_one_process_returns_a_copy_and_keeps_the_input():
    value = torch.tensor([1.0, -2.0])
    for op in ("sum", "mean", "max", "min"):
        out = distributed.all_reduce_tensor(value, op)
        assert out.tolist() == [1.0, -2.0] and out.data_ptr() != value.data_ptr()
    with pytest.raises(ValueError, match=r"op must be one of \('sum', 'mean', 'max', 'min'\)"):
        distributed.all_reduce_tensor(value, "avg")
    with pytest.raises(TypeError, match="op='mean' needs a floating tensor, got dtype torch.int64"):
        distributed.all_reduce_tensor(torch.tensor([1, 2]), "mean")
    with pytest.raises(TypeError, match="tensor must be a Tensor, got list"):
        distributed.all_reduce_tensor([1.0], "sum")


def test_sum_increments_in_one_process_and_shape_check():
    out = distributed.sum_increments(torch.tensor([2.5, 1.0]), torch.tensor([2.0, 1.0]))
    assert out.tolist() == [2.5, 1.0]
    with pytest.raises(ValueError, match=r"tensor \(2,\) and baseline \(3,\) differ in shape"):
        distributed.sum_increments(torch.zeros(2), torch.zeros(3))


def test_update_reduction_is_a_no_op_in_one_process():
    update = Update(torch.tensor([0.5]), None)
    # Even a reduction with no global form: nothing is reduced outside torch.distributed.
    custom = distributed.reduce_update(update, torch.zeros(1), batch_reduction=torch.sqrt)
    assert custom is update


def test_synchronized_learner_in_one_process_equals_a_plain_one():
    torch.manual_seed(3)
    spikes = (torch.rand(5, 2, 4) < 0.5).double()
    deltas = []
    for wrap in (lambda learner: learner, distributed.data_parallel):
        layer, neuron = nn.Linear(4, 3, bias=False).double(), nn.Identity()
        nn.init.constant_(layer.weight, 0.3)
        learner = wrap(Learner(layer, neuron, STDP(0.1, -0.2), step_mode="multi"))
        neuron((layer(spikes) > 0.5).double())
        deltas.append(learner.step())
    assert torch.equal(deltas[0], deltas[1])


def test_data_parallel_and_synchronize_update_check_their_arguments():
    with pytest.raises(TypeError, match="learner must be a plastorch Learner, got Linear"):
        distributed.data_parallel(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="has no known reduction across ranks"):
        distributed.SynchronizeUpdate(batch_reduction="median")
    # A custom reduction can be declared with its global form.
    sync = distributed.SynchronizeUpdate(batch_reduction="max")
    assert sync.batch_reduction == "max"


def test_initialize_without_torchrun_environment_does_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.initialize() is False
    assert not distributed.is_distributed()
    distributed.shutdown()  # a no-op too
    with pytest.raises(ValueError, match="timeout must be > 0, got 0.0"):
        distributed.initialize(timeout=0.0)


def test_broadcast_module_in_one_process_leaves_the_module():
    layer = nn.Linear(2, 2)
    before = layer.weight.detach().clone()
    assert distributed.broadcast_module(layer) is layer
    assert torch.equal(layer.weight, before)


def test_the_script_in_docs_distributed_md_runs_in_one_process(tmp_path, monkeypatch):
    text = (Path(__file__).parents[2] / "docs" / "distributed.md").read_text()
    script = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    namespace = {}
    exec(compile(script, "docs/distributed.md", "exec"), namespace)
    saved = torch.load(tmp_path / "weights.pt")["weight"]
    torch.manual_seed(0)
    initial = nn.Linear(64, 100, bias=False).weight.detach()
    assert saved.shape == (100, 64) and not torch.equal(saved, initial)  # it learned
    assert bool(((saved >= 0) & (saved <= 1)).all())  # inside the soft bound's range


def test_all_gather_rows_in_one_process_and_argument_check():
    rows = torch.tensor([[1.0, 2.0]])
    out = distributed.all_gather_rows(rows)
    assert out.tolist() == [[1.0, 2.0]] and out.data_ptr() != rows.data_ptr()
    with pytest.raises(ValueError, match="at least one dimension"):
        distributed.all_gather_rows(torch.tensor(1.0))
