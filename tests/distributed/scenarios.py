"""Training runs written once, run on one process (whole batch) or on each rank (its shard).

Every function builds the same float64 network from fixed seeds, draws the same
global input from a seeded generator, keeps this rank's block of every batch
(``plastorch.distributed.shard``) and trains for a few windows. Outside
``torch.distributed`` the shard is the whole batch, so the same code is the
single-process reference. Spikes feed back into the weights (the next
window's spikes depend on the updated weights), so any difference in an update
would grow over the run.
"""

from __future__ import annotations

import torch
from torch import nn

from plastorch import Learner, distributed
from plastorch.bounds import Hard, Normalize, Soft
from plastorch.neurons import LIF
from plastorch.rules import MSTDP, MSTDPET, STDP, LinearHomeostasis

IN, OUT, STEPS = 12, 6, 20
LR_POST, LR_PRE = 4e-3, -3e-3


def _network(step_mode: str = "multi") -> tuple[nn.Linear, LIF]:
    # Rank-dependent initial weights, then broadcast: every rank starts from rank 0's.
    torch.manual_seed(100 + distributed.rank())
    layer = nn.Linear(IN, OUT, bias=False).double()
    nn.init.uniform_(layer.weight, 0.0, 0.3)
    distributed.broadcast_module(layer)
    neuron = LIF(
        OUT, tau_mem=10.0, v_rest=0.0, v_reset=0.0, v_threshold=1.0, refractory=2.0,
        step_mode=step_mode,
    )  # fmt: skip
    return layer, neuron


def _inputs(batch: int, windows: int, seed: int = 7) -> torch.Tensor:
    """The global input ``[windows, T, B, IN]``, then this rank's block of the batch."""
    generator = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(windows, STEPS, batch, IN, generator=generator) < 0.1).double()
    block = distributed.shard(batch)
    return spikes[:, :, block.start : block.stop]


def _batch_block(values: torch.Tensor) -> torch.Tensor:
    block = distributed.shard(values.shape[0])
    return values[block.start : block.stop]


def _train_multi(rule, bound, inputs, reward=None, **learner_kw) -> dict[str, torch.Tensor]:
    layer, neuron = _network()
    learner = distributed.data_parallel(
        Learner(layer, neuron, rule, bound, step_mode="multi", apply=True, **learner_kw)
    )
    deltas = []
    for window in inputs:
        post = neuron(layer(window))
        signal = None if reward is None else reward(post)
        deltas.append(learner.step(signal) if rule.modulated else learner.step())
    return {"weight": layer.weight.detach().clone(), "deltas": torch.stack(deltas)}


def stdp_sum() -> dict[str, torch.Tensor]:
    """STDP, sum over the batch, soft bounds and per-neuron normalisation."""
    rule = STDP(LR_POST, LR_PRE, tau_post=10.0, tau_pre=15.0)
    return _train_multi(rule, Soft(0.0, 1.0), _inputs(6, 4), constraints=[Normalize(3.0)])


def stdp_mean_uneven_accumulated() -> dict[str, torch.Tensor]:
    """STDP, mean over a batch of 5 split 3/2, single steps, step() every 5 forward passes."""
    layer, neuron = _network("single")
    rule = STDP(LR_POST, LR_PRE, tau_post=10.0, tau_pre=15.0, batch_reduction="mean")
    learner = distributed.data_parallel(Learner(layer, neuron, rule, Hard(0.0, 1.0), apply=True))
    for window in _inputs(5, 2):
        for t, step_input in enumerate(window):
            neuron(layer(step_input))
            if t % 5 == 4:
                learner.step()
    return {"weight": layer.weight.detach().clone()}


def stdp_amax() -> dict[str, torch.Tensor]:
    """STDP with ``torch.amax`` over the batch (all-reduce MAX), one step() per window."""
    rule = STDP(LR_POST, LR_PRE, tau_post=10.0, tau_pre=15.0, batch_reduction=torch.amax)
    return _train_multi(rule, Hard(0.0, 1.0), _inputs(6, 4))


def _count_reward(post: torch.Tensor) -> torch.Tensor:
    """Per-sample reward ``[B]``: (spike count of the window - 13) / 10, signs vary over the batch."""
    return (post.sum(dim=(0, 2)) - 13.0) / 10.0


def mstdp_per_sample_reward() -> dict[str, torch.Tensor]:
    """MSTDP with a per-sample reward computed from each sample's own spikes."""
    rule = MSTDP(LR_POST, LR_PRE, tau_post=10.0, tau_pre=15.0)
    return _train_multi(rule, Hard(-1.0, 1.0), _inputs(6, 4), reward=_count_reward)


def mstdp_one_half_per_rank() -> dict[str, torch.Tensor]:
    """Potentiative-only MSTDP, reward +1 on the first half of the batch and -1 on the rest.

    With 2 ranks, rank 0's update has only a potentiation half and rank 1's only
    a depression half: each reduces a half that is ``None`` locally. A second
    step with zero reward has no half on any rank: both stay ``None``.
    """
    rule = MSTDP(LR_POST, 0.0, tau_post=10.0, tau_pre=15.0)
    signs = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0], dtype=torch.float64)
    calls = []

    def spy(update, learner_):
        synced = distributed.SynchronizeUpdate()(update, learner_)
        calls.append((update, synced))
        return synced

    layer, neuron = _network()
    learner = Learner(layer, neuron, rule, step_mode="multi", synchronize=spy)
    windows = _inputs(6, 2)
    neuron(layer(windows[0]))
    delta = learner.step(_batch_block(signs))
    neuron(layer(windows[1]))
    learner.step(0.0)
    (local, synced), (_, silent) = calls
    present = [h is not None for h in (local.potentiation, local.depression)]
    present += [h is not None for h in (silent.potentiation, silent.depression)]
    return {
        "delta": delta,
        "potentiation": synced.potentiation,
        "depression": synced.depression,
        "present": torch.tensor(present),
    }


def refusals() -> dict[str, str]:
    """Reductions with no global form raise the same error on every rank (no hang)."""
    messages = {}
    cases = {
        "custom": (lambda half, dim: half.sum(dim).sqrt(), "multi", 1),
        "amax_accumulated": (torch.amax, "multi", 2),
    }
    for name, (reduction, step_mode, windows) in cases.items():
        layer, neuron = _network(step_mode)
        rule = STDP(LR_POST, LR_PRE, batch_reduction=reduction)
        learner = distributed.data_parallel(Learner(layer, neuron, rule, step_mode=step_mode))
        for window in _inputs(6, windows):
            neuron(layer(window))
        try:
            learner.step()
        except ValueError as error:
            messages[name] = str(error)
    return messages


def mstdpet_per_sample_reward() -> dict[str, torch.Tensor]:
    """MSTDP-ET with per-sample eligibility carried across windows and a per-sample reward."""
    rule = MSTDPET(
        10 * LR_POST, 10 * LR_PRE, 10.0, 15.0, tau_eligibility=25.0, per_sample_signal=True
    )
    return _train_multi(rule, Hard(-1.0, 1.0), _inputs(6, 4), reward=_count_reward)


def mstdpet_global_reward() -> dict[str, torch.Tensor]:
    """MSTDP-ET (batch-summed eligibility) with one scalar reward for the whole global batch.

    The reward is the global mean spike count, reduced with ``all_reduce_tensor``
    from each rank's sum and sample count.
    """
    rule = MSTDPET(
        10 * LR_POST, 10 * LR_PRE, 10.0, 15.0, tau_eligibility=25.0, batch_reduction="mean"
    )

    def reward(post):
        totals = torch.stack([post.sum(), torch.tensor(float(post.shape[1]), dtype=post.dtype)])
        spikes, samples = distributed.all_reduce_tensor(totals, "sum")
        return (float(spikes / samples) - 12.0) / 10.0

    return _train_multi(rule, Hard(-1.0, 1.0), _inputs(6, 4), reward=reward)


def homeostasis() -> dict[str, torch.Tensor]:
    """LinearHomeostasis of weights (mean over a batch of 5 split 3/2, per-output targets)
    and of the bias (sum over the batch, target passed at every step), on one layer."""
    layer, neuron = _network()
    torch.manual_seed(11)
    layer.bias = nn.Parameter(torch.zeros(OUT, dtype=torch.float64))
    targets = torch.tensor([40.0, 60.0, 80.0, 100.0, 120.0, 140.0], dtype=torch.float64)
    weights = distributed.data_parallel(
        Learner(
            layer, neuron, LinearHomeostasis(2e-3, targets, tau_rate=10.0), Hard(0.0, 1.0),
            step_mode="multi", apply=True,
        )
    )  # fmt: skip
    rule = LinearHomeostasis(1e-3, None, "bias", tau_rate=10.0, batch_reduction="sum")
    bias = distributed.data_parallel(Learner(layer, neuron, rule, step_mode="multi", apply=True))
    for window in _inputs(5, 4):
        neuron(layer(window))
        weights.step()
        bias.step(targets * 0.8)
    return {"weight": layer.weight.detach().clone(), "bias": layer.bias.detach().clone()}


def ddp_plasticity_and_backprop() -> dict[str, torch.Tensor]:
    """STDP on the first layer, cross-entropy by backprop on a readout, under DDP.

    The readout's gradients are averaged by DistributedDataParallel (equal shards
    of a mean loss give the whole-batch mean); the plastic layer is frozen for
    autograd and updated by the Learner's synchronised step.
    """
    layer, neuron = _network()
    layer.weight.requires_grad_(False)
    torch.manual_seed(5)
    readout = nn.Linear(OUT, 3).double()
    model = nn.ModuleDict({"layer": layer, "neuron": neuron, "readout": readout})
    learner = distributed.data_parallel(
        Learner(layer, neuron, STDP(LR_POST, LR_PRE, 10.0, 15.0), Hard(0.0, 1.0), step_mode="multi")
    )

    class Net(nn.Module):
        def __init__(self, parts):
            super().__init__()
            self.parts = parts

        def forward(self, x):
            rates = self.parts["neuron"](self.parts["layer"](x)).mean(0)
            return self.parts["readout"](rates)

    net = Net(model)
    if distributed.is_distributed():
        # broadcast_buffers=False: neuron state is per sample and must stay on its rank.
        net = nn.parallel.DistributedDataParallel(net, broadcast_buffers=False)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    for window in _inputs(6, 4):
        logits = net(window)
        loss = nn.functional.cross_entropy(logits, _batch_block(labels))
        readout.zero_grad()
        loss.backward()  # DDP averages the readout's gradients over the ranks here
        learner.step()  # writes -dw into layer.weight.grad
        with torch.no_grad():  # plain SGD (torch.optim would import torch._dynamo: slow)
            for parameter, lr in ((readout.weight, 0.5), (readout.bias, 0.5), (layer.weight, 1.0)):
                parameter -= lr * parameter.grad
        layer.weight.grad = None
    return {
        "plastic": layer.weight.detach().clone(),
        "readout": readout.weight.detach().clone(),
        "bias": readout.bias.detach().clone(),
    }


def collectives() -> dict[str, torch.Tensor]:
    """The generic helpers on rank-dependent values (rank r holds r + 1)."""
    value = distributed.rank() + 1.0
    local = torch.tensor([value, -2.0 * value], dtype=torch.float64)
    out = {op: distributed.all_reduce_tensor(local, op) for op in ("sum", "mean", "max", "min")}
    out["int_sum"] = distributed.all_reduce_tensor(torch.tensor([distributed.rank() + 1]))
    baseline = torch.tensor([1.0], dtype=torch.float64)
    out["increments"] = distributed.sum_increments(baseline + 0.5 * value, baseline)
    out["shard"] = torch.tensor(list(distributed.shard(5)))
    # Blocks of 3 and 2 rows (as a shard of 5): the gather is the whole batch again.
    block = distributed.shard(5)
    out["gathered"] = distributed.all_gather_rows(
        torch.arange(10).reshape(5, 2)[block.start : block.stop]
    )
    out["local"] = local
    same = nn.Linear(2, 2)
    nn.init.constant_(same.weight, 0.5)
    differs = nn.Linear(2, 2)
    nn.init.constant_(differs.weight, 0.5 + distributed.rank())
    for module in (same, differs):
        nn.init.zeros_(module.bias)
    out["same_on_all_ranks"] = torch.tensor(
        [distributed.same_on_all_ranks(same), distributed.same_on_all_ranks(differs)]
    )
    return out


SCENARIOS = {
    name: globals()[name]
    for name in (
        "stdp_sum",
        "stdp_mean_uneven_accumulated",
        "stdp_amax",
        "mstdp_per_sample_reward",
        "mstdp_one_half_per_rank",
        "refusals",
        "collectives",
        "mstdpet_per_sample_reward",
        "mstdpet_global_reward",
        "homeostasis",
        "ddp_plasticity_and_backprop",
    )
}


def run_all() -> dict[str, dict[str, torch.Tensor]]:
    return {name: scenario() for name, scenario in SCENARIOS.items()}
