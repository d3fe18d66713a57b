"""The plastorch command: train / evaluate / resume / Ctrl-C / run, on tiny runs."""

import gzip
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

import plastorch.experiments as experiments
from plastorch import cli
from plastorch.models.diehl_cook import DiehlCookTrainer, load_checkpoint

TINY = [
    "train", "diehl-cook", "--n-train", "60", "--neurons", "8", "--time-ms", "30",
    "--batch-size", "6", "--checkpoint-every", "12", "--no-progress",
    "--eval-batch-size", "512",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the command sets --threads (1 by default)


def weights(out):
    state = load_checkpoint(out / "checkpoint.pt")["model"]
    return state["input_layer.weight"], state["excitatory.neuron.theta"]


def test_train_writes_metrics_checkpoint_and_figures_and_evaluate_agrees(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*TINY, "--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finished"] is True
    assert metrics["train"]["n_train"] == 60
    assert metrics["train"]["n_test"] == 1737  # the rest of the 1797 digits
    assert 0.0 <= metrics["accuracy_all_activity"] <= 1.0
    assert metrics["peak_memory_mib"] > 0
    for name in ("receptive_fields.png", "assignments.png", "accuracy.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--json",
                     "--no-progress"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    # evaluation draws its spikes from a fresh generator seeded by the run: same numbers
    assert result["accuracy_all_activity"] == metrics["accuracy_all_activity"]
    assert result["accuracy_proportion_weighting"] == metrics["accuracy_proportion_weighting"]


def test_resume_continues_to_the_same_weights(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli.main([*TINY, "--epochs", "2", "--out", str(straight), "--no-plots"]) == 0
    assert cli.main([*TINY, "--epochs", "1", "--out", str(split), "--no-plots"]) == 0
    assert cli.main(["train", "diehl-cook", "--resume", "--epochs", "2", "--out", str(split),
                     "--no-progress", "--no-plots"]) == 0  # fmt: skip
    for a, b in zip(weights(straight), weights(split)):
        assert torch.equal(a, b)
    m1 = json.loads((straight / "metrics.json").read_text())
    m2 = json.loads((split / "metrics.json").read_text())
    assert [r["accuracy_all_activity"] for r in m1["epochs"]] == [
        r["accuracy_all_activity"] for r in m2["epochs"]
    ]


def test_ctrl_c_saves_a_checkpoint_and_resume_matches(tmp_path, monkeypatch, capsys):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert cli.main([*TINY, "--epochs", "1", "--out", str(straight), "--no-plots"]) == 0
    original = DiehlCookTrainer._train_batch
    calls = []

    def interrupt_on_the_fourth_batch(self, index):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # what SIGINT raises in the main thread
        return original(self, index)

    monkeypatch.setattr(DiehlCookTrainer, "_train_batch", interrupt_on_the_fourth_batch)
    assert cli.main([*TINY, "--epochs", "1", "--out", str(cut), "--no-plots"]) == 130
    assert "--resume" in capsys.readouterr().err
    checkpoint = load_checkpoint(cut / "checkpoint.pt")
    assert checkpoint["position"] == {"epoch": 0, "index": 18}  # three batches of 6 done
    assert json.loads((cut / "metrics.json").read_text())["finished"] is False
    monkeypatch.setattr(DiehlCookTrainer, "_train_batch", original)
    assert cli.main(["train", "diehl-cook", "--resume", "--out", str(cut), "--no-progress",
                     "--no-plots"]) == 0  # fmt: skip
    for a, b in zip(weights(straight), weights(cut)):
        assert torch.equal(a, b)


def test_resume_refuses_conflicting_options(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*TINY, "--epochs", "0", "--out", str(out), "--no-plots"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "diehl-cook", "--resume", "--neurons", "9", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "--neurons 9 (checkpoint: 8)" in capsys.readouterr().err


def test_resume_without_checkpoint_and_missing_mnist_files_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "diehl-cook", "--resume", "--out", str(tmp_path / "none")])
    assert exit_info.value.code == 2
    assert "cannot resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "diehl-cook", "--dataset", "mnist", "--data-dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in error and "missing" in error
    with pytest.raises(SystemExit):
        cli.main(["train", "diehl-cook", "--dataset", "mnist"])
    assert "--data-dir" in capsys.readouterr().err


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_mnist_from_idx_files_with_the_papers_input_size(tmp_path, capsys):
    # 24 training / 12 test "images" of 28 x 28 as gzipped IDX files, written here.
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 24), ("t10k", 12)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    out = tmp_path / "run"
    argv = ["train", "diehl-cook", "--dataset", "mnist", "--data-dir", str(tmp_path),
            "--neurons", "5", "--time-ms", "20", "--n-test", "10", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["train"]["n_train"], metrics["train"]["n_test"]) == (24, 10)
    assert metrics["config"]["n_input"] == 784 and metrics["config"]["weight_sum"] == 78.4
    assert (out / "receptive_fields.png").exists()
    assert "mnist" in capsys.readouterr().out


def fake_experiment(name):
    def add_arguments(parser):
        parser.add_argument("--size", type=int, default=3)

    def run(args, out_dir):
        (out_dir / "figure.txt").write_text("drawn")
        return {"size": args.size, "square": args.size**2}

    return experiments.Experiment(name, f"{name}: squares a number", add_arguments, run)


def test_run_lists_and_dispatches_registered_experiments(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(experiments, "_MODULES", [])
    monkeypatch.setattr(experiments, "EXPERIMENTS", {})
    assert cli.main(["run", "--list"]) == 0
    assert "no experiments are registered" in capsys.readouterr().out
    for name in ("beta", "alpha"):
        experiments.register(fake_experiment(name))
    assert cli.main(["run", "--list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing] == ["alpha", "beta"]
    assert cli.main(["run"]) == 2  # no name: the list and a usage line
    out = tmp_path / "alpha"
    assert cli.main(["run", "alpha", "--size", "4", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["square"] == 16 and metrics["experiment"] == "alpha"
    assert (out / "figure.txt").read_text() == "drawn"
    with pytest.raises(SystemExit):
        cli.main(["run", "gamma"])
    assert "invalid choice" in capsys.readouterr().err


def test_python_dash_m_plastorch_shows_the_commands():
    done = subprocess.run(
        [sys.executable, "-m", "plastorch", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("train", "evaluate", "run"):
        assert command in done.stdout
