"""Fault tolerance of the command: SIGKILL at a random point, then --resume.

Real subprocesses: the killed-and-resumed run must end with bit-identical weights
to an uninterrupted run with the same seed, the checkpoint left by the kill must
load (writes are atomic), and a corrupt or mismatched checkpoint must give a
clear error.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from plastorch.models.diehl_cook import load_checkpoint

ARGS = [
    "--n-train", "48", "--neurons", "8", "--epochs", "2", "--batch-size", "4",
    "--time-ms", "30", "--checkpoint-every", "8", "--no-plots", "--no-progress",
    "--threads", "1",
]  # fmt: skip
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def command(out, *extra):
    return [sys.executable, "-m", "plastorch", "train", "diehl-cook", *ARGS, "--out", str(out),
            *extra]  # fmt: skip


def run(out, *extra):
    return subprocess.run(command(out, *extra), capture_output=True, text=True, env=ENV,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = run(out)
    assert result.returncode == 0, result.stderr
    return load_checkpoint(out / "checkpoint.pt")


def test_sigkill_then_resume_ends_with_the_same_weights(tmp_path, uninterrupted):
    rng = random.Random(int(os.environ.get("PLASTORCH_KILL_SEED", "7")))
    process = subprocess.Popen(command(tmp_path), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=ENV)  # fmt: skip
    checkpoint = tmp_path / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.0))  # a random point after the first checkpoint
    killed = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert killed, "the run finished before it could be killed; make it longer"

    saved = load_checkpoint(checkpoint)  # atomic writes: whatever the kill hit, this loads
    position = saved["position"]
    assert (position["epoch"], position["index"]) > (0, 0)  # work up to it is kept

    resumed = run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"at epoch {position['epoch'] + 1}, sample {position['index']}" in resumed.stdout
    final = load_checkpoint(checkpoint)
    for name, value in uninterrupted["model"].items():
        assert torch.equal(final["model"][name], value), name
    assert final["position"] == uninterrupted["position"]


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    result = run(tmp_path, "--resume")
    assert result.returncode != 0
    assert "not a readable checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_mismatched_resume_arguments_give_a_clear_error(tmp_path, uninterrupted):
    torch.save(uninterrupted, tmp_path / "checkpoint.pt")
    result = run(tmp_path, "--resume", "--neurons", "9")
    assert result.returncode != 0
    assert "--neurons 9 (checkpoint: 8)" in result.stderr


def test_missing_checkpoint_on_resume(tmp_path):
    result = run(tmp_path / "nowhere", "--resume")
    assert result.returncode != 0
    assert "does not exist" in result.stderr
