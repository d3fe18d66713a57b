"""``plastorch train diehl-cook`` under ``torchrun --nproc-per-node 2`` (gloo, 127.0.0.1)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plastorch.models.diehl_cook import DiehlCook2015

from .harness import free_port, loopback_interface

# Runs the command line, then saves this rank's final model state next to the outputs,
# so the test can compare the ranks (only rank 0 writes anything itself).
WRAPPER = """
import os, sys, torch
from plastorch import cli
from plastorch.models import diehl_cook

run, present = diehl_cook.DiehlCookTrainer.run, diehl_cook.DiehlCook2015.present
trained_on = []  # training samples this rank presented

def present_and_count(self, images, generator=None):
    if self.training:
        trained_on.append(images.shape[0])
    return present(self, images, generator)

def run_and_save(self):
    metrics = run(self)
    state = dict(self.model.state_dict(), trained_on=torch.tensor(trained_on))
    torch.save(state, os.path.join(sys.argv[1], "rank" + os.environ["RANK"] + ".pt"))
    return metrics

diehl_cook.DiehlCook2015.present = present_and_count
diehl_cook.DiehlCookTrainer.run = run_and_save
sys.exit(cli.main(sys.argv[2:]))
"""

ARGS = ["--n-train", "40", "--neurons", "8", "--epochs", "1", "--time-ms", "40"]
ARGS += ["--batch-size", "4", "--eval-batch-size", "64", "--no-progress", "--dist-timeout", "60"]


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory):
    out = tmp_path_factory.mktemp("diehl-cook-2-ranks")
    wrapper = out / "wrapper.py"
    wrapper.write_text(WRAPPER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    if loopback_interface() is not None:
        env.setdefault("GLOO_SOCKET_IFNAME", loopback_interface())
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"]
    command += ["--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    command += ["--master-port", str(free_port()), str(wrapper), str(out)]
    command += ["train", "diehl-cook", *ARGS, "--out", str(out)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and the workers it started
        process.communicate()
        pytest.fail("torchrun did not finish within 300 s")
    assert process.returncode == 0, output
    return out, output


def test_both_ranks_end_with_identical_weights_and_thresholds(torchrun):
    out, _ = torchrun
    rank0 = torch.load(out / "rank0.pt")
    rank1 = torch.load(out / "rank1.pt")
    # The data was split: each of the 10 batches of 4 gave each rank 2 samples.
    assert rank0.pop("trained_on").tolist() == [2] * 10
    assert rank1.pop("trained_on").tolist() == [2] * 10
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # ...and they learned: the weights moved from the seeded start, thresholds rose.
    start = DiehlCook2015(64, 8, time_steps=40, weight_sum=30.0, max_rate=127.5, seed=0)
    weight = rank0["input_layer.weight"]
    assert (weight - start.input_layer.weight).abs().max() > 1e-3
    assert rank0["excitatory.neuron.theta"].sum() > 0


def test_rank_zero_alone_writes_metrics_checkpoint_and_figures(torchrun):
    out, output = torchrun
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["ranks_identical"] is True
    assert metrics["finished"] is True and metrics["train"]["batch_size"] == 4
    assert 0.0 <= metrics["accuracy_all_activity"] <= 1.0
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    assert checkpoint["position"] == {"epoch": 1, "index": 0}
    assert torch.equal(
        checkpoint["model"]["input_layer.weight"],
        torch.load(out / "rank0.pt")["input_layer.weight"],
    )
    for name in ("receptive_fields.png", "accuracy.png", "assignments.png"):
        assert (out / name).stat().st_size > 0
    assert output.count("Diehl & Cook 2015 on digits") == 1  # one rank speaks
