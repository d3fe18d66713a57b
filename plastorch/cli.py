"""The ``plastorch`` command (also ``python -m plastorch``).

::

    plastorch train diehl-cook [--dataset digits|mnist] [--data-dir D] [--neurons N]
                               [--epochs E] [--batch-size B] [--time-ms T] [--seed S]
                               [--out DIR] [--resume] ...
    plastorch evaluate --checkpoint FILE
    plastorch run --list
    plastorch run NAME [options of NAME]

``train`` writes ``metrics.json``, ``checkpoint.pt`` and PNG figures into ``--out``;
Ctrl-C saves a checkpoint first, and ``--resume`` continues from it to the same weights
an uninterrupted run would reach. ``run`` dispatches to the experiments registered in
:mod:`plastorch.experiments`.

``torchrun --nproc-per-node N -m plastorch train diehl-cook ...`` trains data-parallel:
each batch is split across the ranks and only rank 0 writes (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]

#: Per-data-set defaults of ``train diehl-cook`` (tuned on digits; MNIST as the paper).
PRESETS: dict[str, dict[str, Any]] = {
    "digits": {
        "neurons": 400,
        "epochs": 3,
        "batch_size": 16,
        "time_ms": 250,
        "weight_sum": 15.0,
        "max_rate": 127.5,
        "theta_plus": 0.5,
        "n_train": 1000,
    },
    "mnist": {
        "neurons": 100,
        "epochs": 1,
        "batch_size": 1,
        "time_ms": 350,
        "weight_sum": 78.4,
        "max_rate": 63.75,
        "theta_plus": 0.05,
        "n_train": None,
    },
}

# Options that define the run; on --resume they must match the checkpoint if given.
_RUN_DEFINING = (
    "dataset",
    "neurons",
    "batch_size",
    "time_ms",
    "seed",
    "n_train",
    "n_test",
    "split_seed",
    "weight_sum",
    "max_rate",
    "inhibition",
    "theta_plus",
    "lr_post",
    "lr_pre",
    "weight_dependence",
)

EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A user error: printed as ``plastorch: error: ...`` with exit status 2."""


# -- parser -------------------------------------------------------------------------------
class _HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default when it has a real one (not None, not a False flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.option_strings
            and "%(default)" not in text
            and action.default not in (None, False, argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train a reference model",
        description="Train a reference model, evaluating it after each epoch.",
        formatter_class=_HelpFormatter,
    )
    train.add_argument("model", choices=["diehl-cook"], help="which model")
    data = train.add_argument_group("data")
    data.add_argument("--dataset", choices=sorted(PRESETS), default=None,
                      help="data set (default: digits, bundled with scikit-learn)")  # fmt: skip
    data.add_argument("--data-dir", default=None,
                      help="directory of the MNIST IDX files (.gz or plain)")  # fmt: skip
    data.add_argument("--n-train", type=_positive_int, default=None,
                      help="digits: size of the training split (default 1000, the rest is the "
                           "test split); mnist: use the first N training images")  # fmt: skip
    data.add_argument("--n-test", type=_positive_int, default=None,
                      help="mnist: use the first N test images")  # fmt: skip
    data.add_argument("--split-seed", type=_nonnegative_int, default=None,
                      help="digits: seed of the train/test permutation (default 0)")  # fmt: skip
    run = train.add_argument_group("training")
    run.add_argument("--neurons", type=_positive_int, default=None,
                     help="excitatory neurons (default: 400 on digits, 100 on mnist)")  # fmt: skip
    run.add_argument("--epochs", type=_nonnegative_int, default=None,
                     help="epochs (default: 3 on digits, 1 on mnist)")  # fmt: skip
    run.add_argument("--batch-size", type=_positive_int, default=None,
                     help="samples presented side by side, one summed STDP update per "
                          "batch (default: 16 on digits, 1 on mnist)")  # fmt: skip
    run.add_argument("--time-ms", type=_positive_int, default=None,
                     help="presentation time per sample in ms, dt = 1 ms "
                          "(default: 250 on digits, 350 on mnist)")  # fmt: skip
    run.add_argument("--seed", type=_nonnegative_int, default=None,
                     help="seed of the weights, spikes and sample order (default 0)")  # fmt: skip
    run.add_argument("--out", default=None,
                     help="output directory (default: runs/diehl-cook-DATASET)")  # fmt: skip
    run.add_argument("--resume", action="store_true",
                     help="continue from OUT/checkpoint.pt (--epochs may be raised)")  # fmt: skip
    run.add_argument("--checkpoint-every", type=_positive_int, default=None,
                     help="samples between checkpoints within an epoch (default 250)")  # fmt: skip
    run.add_argument("--eval-batch-size", type=_positive_int, default=None,
                     help="batch size of label assignment and testing (default 256; the "
                          "spikes drawn, so the accuracy, depend on it slightly)")  # fmt: skip
    model = train.add_argument_group("model (defaults: the preset of the data set)")
    model.add_argument("--weight-sum", type=_positive_float, default=None,
                       help="each neuron's input weights are normalised to this sum "
                            "(digits 15, mnist 78.4)")  # fmt: skip
    model.add_argument("--max-rate", type=_positive_float, default=None,
                       help="input rate in Hz of a full-intensity pixel "
                            "(digits 127.5, mnist 63.75)")  # fmt: skip
    model.add_argument("--inhibition", type=float, default=None,
                       help="lateral inhibition per spike in mV (17.5)")  # fmt: skip
    model.add_argument("--theta-plus", type=float, default=None,
                       help="adaptive-threshold increment per spike in mV "
                            "(digits 0.5, mnist 0.05)")  # fmt: skip
    model.add_argument("--lr-post", type=float, default=None,
                       help="STDP potentiation rate (1e-2)")  # fmt: skip
    model.add_argument("--lr-pre", type=float, default=None,
                       help="STDP depression rate, negative (-1e-4)")  # fmt: skip
    model.add_argument("--weight-dependence", default=None,
                       choices=["hard", "soft", "power-law", "exponential"],
                       help="weight dependence of STDP (hard)")  # fmt: skip
    _add_machine_options(train)
    train.add_argument("--no-plots", action="store_true", help="do not write PNG figures")
    train.add_argument("--dist-timeout", type=_positive_float, default=300.0,
                       help="under torchrun: seconds a rank waits for the others before "
                            "failing (docs/distributed.md)")  # fmt: skip


def _add_machine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("machine")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    group.add_argument("--threads", type=_positive_int, default=1,
                       help="torch CPU threads; the per-step tensors are small, so one "
                            "thread is fastest unless batches are large")  # fmt: skip
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="test a trained checkpoint",
        description="Assign labels on the training split and report the test accuracy of a "
        "checkpoint written by 'plastorch train'.",
        formatter_class=_HelpFormatter,
    )
    evaluate.add_argument("--checkpoint", required=True, help="checkpoint.pt of a training run")
    evaluate.add_argument("--data-dir", default=None,
                          help="MNIST directory, if not where the run read it")  # fmt: skip
    evaluate.add_argument("--batch-size", type=_positive_int, default=None,
                          help="evaluation batch size (default: the run's)")  # fmt: skip
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_machine_options(evaluate)


def _add_run_parser(commands: argparse._SubParsersAction, experiments: dict | None) -> None:
    names = sorted(experiments or {})
    listing = ", ".join(names) if names else "none registered"
    run = commands.add_parser(
        "run",
        help="run a registered experiment (--list shows them)",
        description=f"Run a reference experiment and write OUT/metrics.json. Experiments: "
        f"{listing}.",
    )
    run.add_argument("--list", action="store_true", help="list the experiments and exit")
    if experiments is None:
        return
    sub = run.add_subparsers(dest="experiment", metavar="NAME")
    for name in names:
        experiment = experiments[name]
        parser = sub.add_parser(
            name,
            help=experiment.help,
            description=experiment.help,
            conflict_handler="resolve",
            formatter_class=_HelpFormatter,
        )
        parser.add_argument("--out", default=f"runs/{name}", help="output directory")
        experiment.add_arguments(parser)


def build_parser(experiments: dict | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``experiments`` (name -> Experiment) adds ``run NAME`` commands."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="plastorch",
        description="Synaptic plasticity for spiking neural networks: train the reference "
        "models and run the reference experiments.",
        epilog="Start with: plastorch train diehl-cook",
    )
    parser.add_argument("--version", action="version", version=f"plastorch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train_parser(commands)
    _add_evaluate_parser(commands)
    _add_run_parser(commands, experiments)
    return parser


# -- helpers ------------------------------------------------------------------------------
def peak_memory_mib() -> float:
    """Peak resident memory of this process in MiB (``resource.getrusage``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def write_json(data: Any, path: Path) -> Path:
    """Write ``data`` as indented JSON, atomically (temporary file + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(temporary, path)
    return path


def _progress_factory(enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    def factory(**kwargs):
        return tqdm(dynamic_ncols=True, leave=False, **kwargs)

    return factory


def _setup_machine(args: argparse.Namespace):
    import torch

    torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:
        raise CommandError(f"device {args.device!r} is not available: {error}") from error
    return device


def _load_data(info: dict[str, Any]):
    """Training and test splits as described by a run's ``info``."""
    from .data import load_digits, load_mnist
    from .data.dataset import LabeledImages

    if info["dataset"] == "digits":
        n_train, seed = info["n_train"], info["split_seed"]
        try:
            return load_digits("train", n_train=n_train, seed=seed), load_digits(
                "test", n_train=n_train, seed=seed
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
    if info.get("data_dir") is None:
        raise CommandError("--dataset mnist reads the IDX files in --data-dir; pass --data-dir")
    try:
        train = load_mnist(info["data_dir"], "train")
        test = load_mnist(info["data_dir"], "test")
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error

    def first(data, n):
        return data if n is None else LabeledImages(data.images[:n], data.labels[:n])

    return first(train, info.get("n_train")), first(test, info.get("n_test"))


# -- train --------------------------------------------------------------------------------
def _train_settings(args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """Model config, trainer settings and data info from the arguments and the preset."""
    dataset = args.dataset or "digits"
    preset = PRESETS[dataset]

    def pick(name):
        value = getattr(args, name)
        return preset.get(name) if value is None else value

    info = {
        "dataset": dataset,
        "data_dir": None if args.data_dir is None else str(Path(args.data_dir).expanduser()),
        "n_train": pick("n_train"),
        "n_test": args.n_test,
        "split_seed": 0 if args.split_seed is None else args.split_seed,
    }
    config = {
        "n_neurons": pick("neurons"),
        "time_steps": pick("time_ms"),
        "weight_sum": pick("weight_sum"),
        "max_rate": pick("max_rate"),
        "theta_plus": pick("theta_plus"),
        "seed": 0 if args.seed is None else args.seed,
    }
    for name in ("inhibition", "lr_post", "lr_pre", "weight_dependence"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    trainer = {
        "epochs": pick("epochs"),
        "batch_size": pick("batch_size"),
        "seed": config["seed"],
        "eval_batch_size": args.eval_batch_size or 256,
        "checkpoint_every": args.checkpoint_every or 250,
    }
    return config, trainer, info


def _check_resume_arguments(args: argparse.Namespace, checkpoint: dict[str, Any]) -> None:
    """Refuse options that contradict the checkpoint being resumed."""
    info = checkpoint["trainer"]["info"]
    config = checkpoint["config"]
    recorded = {
        "dataset": info["dataset"],
        "neurons": config["n_neurons"],
        "batch_size": checkpoint["trainer"]["batch_size"],
        "time_ms": config["time_steps"],
        "seed": config["seed"],
        "n_train": info.get("n_train"),
        "n_test": info.get("n_test"),
        "split_seed": info.get("split_seed"),
        "weight_sum": config["weight_sum"],
        "max_rate": config["max_rate"],
        "inhibition": config["inhibition"],
        "theta_plus": config["theta_plus"],
        "lr_post": config["lr_post"],
        "lr_pre": config["lr_pre"],
        "weight_dependence": config["weight_dependence"],
    }
    clashes = [
        f"--{name.replace('_', '-')} {getattr(args, name)} (checkpoint: {recorded[name]})"
        for name in _RUN_DEFINING
        if getattr(args, name) is not None and getattr(args, name) != recorded[name]
    ]
    if clashes:
        raise CommandError(
            "--resume continues the run in the checkpoint, which was made with other "
            "settings: " + "; ".join(clashes) + ". Drop these options or use another --out."
        )


def _write_figures(trainer, out: Path) -> list[Path]:
    from . import plots

    model = trainer.model
    side = int(round(model.n_input**0.5))
    shape = (side, side) if side * side == model.n_input else (1, model.n_input)
    written = [
        plots.plot_receptive_fields(model.input_layer.weight, shape, out / "receptive_fields.png"),
        plots.plot_accuracy(trainer.metrics, out / "accuracy.png"),
    ]
    if trainer.assignment is not None:
        written.append(
            plots.plot_assignments(trainer.assignment, trainer.n_classes, out / "assignments.png")
        )
    return written


def _train(args: argparse.Namespace) -> int:
    import torch

    from .models.diehl_cook import DiehlCook2015, DiehlCookTrainer, load_checkpoint

    device = _setup_machine(args)
    config, settings, info = _train_settings(args)
    out = Path(args.out or f"runs/diehl-cook-{info['dataset']}").expanduser()
    checkpoint_path = out / "checkpoint.pt"
    progress = _progress_factory(not args.no_progress)
    common = dict(
        checkpoint_path=checkpoint_path,
        progress=progress,
        log=lambda line: print(line, flush=True),
    )
    if not _rank_zero():  # under torchrun only rank 0 writes checkpoints and shows progress
        common.update(checkpoint_path=None, progress=None)
    for name in ("checkpoint_every", "eval_batch_size"):  # on --resume: the run's unless given
        if getattr(args, name) is not None:
            common[name] = getattr(args, name)
    if args.resume:
        try:
            checkpoint = load_checkpoint(checkpoint_path)
        except (FileNotFoundError, ValueError) as error:
            raise CommandError(f"cannot resume: {error}") from error
        _check_resume_arguments(args, checkpoint)
        info = dict(checkpoint["trainer"]["info"])
        if args.data_dir is not None:
            info["data_dir"] = str(Path(args.data_dir).expanduser())
        train, test = _load_data(info)
        trainer = DiehlCookTrainer.from_checkpoint(
            checkpoint, train, test, epochs=args.epochs, **common, info=info
        )
        position = checkpoint["position"]
        print(
            f"resuming {checkpoint_path} at epoch {position['epoch'] + 1}, sample "
            f"{position['index']} (of {len(train)}), up to {trainer.epochs} epochs",
            flush=True,
        )
    else:
        train, test = _load_data(info)
        if checkpoint_path.exists():
            print(
                f"note: starting a new run; overwriting {checkpoint_path} (--resume continues it)"
            )
        model = DiehlCook2015(train.images[0].numel(), **config)
        epochs = settings.pop("epochs")
        trainer = DiehlCookTrainer(
            model, train, test, epochs=epochs, **{**settings, **common}, info=info
        )
        print(
            f"Diehl & Cook 2015 on {info['dataset']}: {config['n_neurons']} neurons, "
            f"{len(train)} training / {len(test)} test samples, {epochs} epochs, batch "
            f"{trainer.batch_size}, {config['time_steps']} ms per sample, seed "
            f"{config['seed']} -> {out}",
            flush=True,
        )
    trainer.model.to(device)
    trainer.model.synchronize()  # a no-op outside torch.distributed
    start = time.perf_counter()
    status = 0
    try:
        metrics = trainer.run()
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
        metrics = trainer.metrics
        print(
            f"\ninterrupted: checkpoint saved to {checkpoint_path}; continue with "
            f"plastorch train diehl-cook --out {out} --resume",
            file=sys.stderr,
            flush=True,
        )
    metrics["session_seconds"] = time.perf_counter() - start
    metrics["peak_memory_mib"] = peak_memory_mib()
    metrics["torch_threads"] = torch.get_num_threads()
    metrics["device"] = str(device)
    from . import distributed

    if not status and distributed.world_size() > 1:
        metrics["world_size"] = distributed.world_size()
        metrics["ranks_identical"] = distributed.same_on_all_ranks(trainer.model)
    if not _rank_zero():
        return status
    write_json(metrics, out / "metrics.json")
    if status:
        return status
    figures = [] if args.no_plots else _write_figures(trainer, out)
    if metrics["epochs"]:
        last = metrics["epochs"][-1]
        print(
            f"test accuracy {last['accuracy_all_activity']:.2%} (all-activity vote), "
            f"{last['accuracy_proportion_weighting']:.2%} (proportion weighting) after "
            f"{last['epoch']} epoch(s); peak memory {metrics['peak_memory_mib']:.0f} MiB"
        )
    print(f"wrote {out / 'metrics.json'}, {checkpoint_path}" + "".join(f", {p}" for p in figures))
    return 0


def _rank_zero() -> bool:
    from . import distributed

    return distributed.rank() == 0


def _train_ranks(args: argparse.Namespace) -> int:
    """``train`` in one process, or as one rank of ``torchrun --nproc-per-node N``.

    Under torchrun each global batch (``--batch-size``: the preset's, or one sample per
    rank if that is more) is split across the ranks, STDP updates and thresholds are reduced over them, and only
    rank 0 prints, writes checkpoints, metrics.json and figures (docs/distributed.md).
    """
    from . import distributed

    cuda = args.device.startswith("cuda")
    if not distributed.initialize("nccl" if cuda else "gloo", timeout=args.dist_timeout):
        return _train(args)
    try:
        world = distributed.world_size()
        if cuda:
            args.device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        preset = PRESETS[args.dataset or "digits"]["batch_size"]
        if args.batch_size is None and not args.resume and preset < world:
            args.batch_size = world  # at least one sample per rank
        elif args.batch_size is not None and args.batch_size < world:
            raise CommandError(
                f"--batch-size {args.batch_size} is the global batch, split across the "
                f"{world} ranks; give at least {world}"
            )
        if distributed.rank() == 0:
            return _train(args)
        with contextlib.redirect_stdout(io.StringIO()):
            return _train(args)
    finally:
        distributed.shutdown()


# -- evaluate -----------------------------------------------------------------------------
def _evaluate(args: argparse.Namespace) -> int:
    from .models.diehl_cook import DiehlCook2015, evaluate, load_checkpoint

    device = _setup_machine(args)
    try:
        checkpoint = load_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    info = dict(checkpoint["trainer"]["info"])
    if args.data_dir is not None:
        info["data_dir"] = str(Path(args.data_dir).expanduser())
    train, test = _load_data(info)
    model = DiehlCook2015(**checkpoint["config"])
    model.load_state_dict(checkpoint["model"])
    model.to(device)
    settings = checkpoint["trainer"]
    result = evaluate(
        model,
        train,
        test,
        n_classes=settings["n_classes"],
        batch_size=args.batch_size or settings["eval_batch_size"],
        seed=settings["seed"] + 1,
        progress=_progress_factory(not args.no_progress),
    )
    position = checkpoint["position"]
    summary = {
        "checkpoint": str(args.checkpoint),
        "epochs_trained": position["epoch"],
        "samples_into_epoch": position["index"],
        "dataset": info["dataset"],
        "n_test": len(test),
        **{k: v for k, v in result.items() if k not in ("assignment", "labels")},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.checkpoint} ({position['epoch']} epochs + {position['index']} samples) on "
            f"{len(test)} {info['dataset']} test samples: "
            f"{summary['accuracy_all_activity']:.2%} (all-activity vote), "
            f"{summary['accuracy_proportion_weighting']:.2%} (proportion weighting)"
        )
    return 0


# -- run ----------------------------------------------------------------------------------
def _list_experiments(experiments: dict) -> None:
    if not experiments:
        print("no experiments are registered (see plastorch.experiments)")
        return
    width = max(len(name) for name in experiments)
    for name in sorted(experiments):
        print(f"{name:<{width}}  {experiments[name].help}")


def _run(args: argparse.Namespace, experiments: dict) -> int:
    name = getattr(args, "experiment", None)
    if args.list or name is None:
        _list_experiments(experiments)
        if name is None and not args.list:
            print("usage: plastorch run NAME [options]  (plastorch run NAME --help for options)")
            return 2
        return 0
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    metrics = experiments[name].run(args, out)
    if not isinstance(metrics, dict):
        raise CommandError(f"experiment {name!r} returned {type(metrics).__name__}, not a dict")
    metrics = dict(metrics)
    metrics.setdefault("experiment", name)
    metrics.setdefault("seconds", time.perf_counter() - start)
    path = write_json(metrics, out / "metrics.json")
    print(f"wrote {path}")
    return 0


def _experiments() -> dict:
    from .experiments import load_all

    return dict(load_all())


# -- entry point --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    experiments = _experiments() if argv[:1] == ["run"] else None
    parser = build_parser(experiments)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train_ranks(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "run":
            return _run(args, experiments or {})
    except CommandError as error:
        parser.exit(2, f"plastorch: error: {error}\n")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
