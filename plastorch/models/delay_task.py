r"""Delay learning: a coincidence detector learns the delays that align a spike pattern.

The task
--------
``n_inputs`` neurons each fire once within ``span`` ms, at fixed times :math:`t_i` (the
*pattern*, drawn once) give or take ``jitter`` ms on each presentation. Distractor
trials have the same spike count, one spike per input at a uniform random time in the
same span, so only the timing tells them apart. A detector sums its inputs through a
:class:`~plastorch.layers.DelayedLinear` (input :math:`i` arrives :math:`d_i` ms after
it is sent) into a leaky membrane with a short time constant,

.. math:: v(t) = e^{-\Delta t/\tau_m} v(t - \Delta t) + \sum_i w_i\, s_i(t - d_i),

and reports the peak of :math:`v` over the trial. The right answer is a set of delays:
:math:`d_i + t_i` equal for every input, so that all arrivals coincide and :math:`v`
peaks at :math:`\sum_i w_i` on the pattern, while a distractor's arrivals stay spread.

Learning
--------
During training only the pattern is shown and the detector is taught to fire at
``target_ms`` (its postsynaptic spike is imposed, as in supervised delay learning).

- *Delays* (:class:`~plastorch.rules.DelayAdjustedSTDPD`, anti-Hebbian:
  ``lr_neg > 0``, ``lr_pos < 0``): an input that arrived before the target spike has
  its delay lengthened, one that arrived after it shortened, each by
  :math:`\eta\, e^{-|t_\Delta|/\tau}` with
  :math:`t_\Delta = t_\text{post} - t_i - d_i`, so every :math:`d_i` moves toward
  ``target_ms`` :math:`- t_i`.
- *Weights only* (the baseline, :class:`~plastorch.rules.DelayAdjustedSTDP`, Hebbian)
  with the delays frozen at their random initial values: inputs that happen to arrive
  shortly before the target spike are strengthened, the others weakened.

Both learn through a :class:`~plastorch.Learner` in multi-step mode whose spike
source is the teacher. Results are the *delay error*, the mean absolute deviation of
the arrival times :math:`t_i + d_i` from their median (0 when all coincide; the
delays are rounded to whole steps when spikes are delivered, so jitter-free alignment
gives at most 0.5 ms), and the *detection accuracy*: the balanced accuracy of the rule
"pattern if peak :math:`v \ge \theta`" on held-out trials, with :math:`\theta` the best
threshold on a separate set of fitting trials (the best any threshold can do, for each
detector).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..bounds import Hard
from ..experiments import Experiment, register
from ..functional.checks import check_nonnegative, check_positive
from ..functional.traces import trace_window
from ..layers import DelayedLinear
from ..learner import Learner
from ..rules import DelayAdjustedSTDP, DelayAdjustedSTDPD

__all__ = [
    "DelayTask",
    "DelayTaskResult",
    "best_threshold_accuracy",
    "train_delay_task",
]


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class DelayTask:
    r"""A fixed spatio-temporal pattern and the trials that show it or a distractor.

    Parameters
    ----------
    n_inputs : int
        Number of input neurons; each fires once per trial.
    span : int
        The pattern's spikes are at steps :math:`t_i \in [0, \text{span})`.
    steps : int
        Steps per trial (1 ms each); must leave room for the longest delay.
    jitter : int
        Each spike of a pattern trial moves by a uniform integer in
        ``[-jitter, jitter]`` steps (clipped to the trial).
    seed : int
        Seed of the pattern.

    Examples
    --------
    >>> task = DelayTask(4, span=10, steps=30, seed=0)
    >>> spikes = task.trials(True, 2, torch.Generator().manual_seed(0))
    >>> spikes.shape, spikes.sum(0).tolist()  # [T, B, inputs]: one spike per input
    (torch.Size([30, 2, 4]), [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    """

    def __init__(
        self, n_inputs: int = 20, span: int = 20, steps: int = 70, *, jitter: int = 1, seed: int = 0
    ):
        self.n_inputs = _check_int("n_inputs", n_inputs, 1)
        self.span = _check_int("span", span, 1)
        self.steps = _check_int("steps", steps, span + jitter + 1)
        self.jitter = _check_int("jitter", jitter, 0)
        generator = torch.Generator().manual_seed(int(seed))
        self.pattern = torch.randint(0, span, (n_inputs,), generator=generator)

    def trials(self, pattern: bool, batch: int, generator: torch.Generator) -> Tensor:
        """``[steps, batch, n_inputs]`` spikes: the jittered pattern, or distractors."""
        shape = (batch, self.n_inputs)
        if pattern:
            shift = torch.randint(-self.jitter, self.jitter + 1, shape, generator=generator)
            times = (self.pattern + shift).clamp(0, self.steps - 1)
        else:
            times = torch.randint(0, self.span, shape, generator=generator)
        spikes = torch.zeros(self.steps, batch, self.n_inputs)
        spikes.scatter_(0, times.unsqueeze(0), 1.0)
        return spikes


def peak_potential(layer: DelayedLinear, spikes: Tensor, tau_mem: float) -> Tensor:
    r"""Peak over the trial of :math:`v(t) = e^{-\Delta t/\tau_m} v(t-\Delta t) + I(t)`, per trial.

    ``spikes`` is ``[T, B, in]``; returns ``[B]``. The layer's spikes in flight are
    cleared first, so trials are independent.
    """
    layer.reset()
    with torch.no_grad():
        current = layer(spikes)[..., 0]  # [T, B]
    decay = math.exp(-layer.dt / check_positive("tau_mem", tau_mem))
    return trace_window(torch.zeros_like(current[0]), current, decay).amax(0)


def best_threshold_accuracy(
    fit_pos: Tensor, fit_neg: Tensor, test_pos: Tensor, test_neg: Tensor
) -> tuple[float, float]:
    r"""Balanced accuracy on the test scores of the threshold that is best on the fit scores.

    "Pattern" is predicted where the score is :math:`\ge \theta`. Returns
    ``(accuracy, theta)``.

    Examples
    --------
    >>> pos, neg = torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])
    >>> best_threshold_accuracy(pos, neg, pos, torch.tensor([1.0, 3.5]))
    (0.75, 3.0)
    """
    candidates = torch.cat((fit_pos, fit_neg)).unique()
    hit = (fit_pos[None, :] >= candidates[:, None]).double().mean(1)
    reject = (fit_neg[None, :] < candidates[:, None]).double().mean(1)
    theta = float(candidates[torch.argmax(hit + reject)])
    accuracy = 0.5 * (
        float((test_pos >= theta).double().mean()) + float((test_neg < theta).double().mean())
    )
    return accuracy, theta


class _Teacher(nn.Module):
    """The detector's imposed spikes: the learner's spike source during training."""

    def forward(self, spikes: Tensor) -> Tensor:
        return spikes


class DelayTaskResult(NamedTuple):
    """What :func:`train_delay_task` measured.

    Attributes
    ----------
    delay_error : Tensor
        ``[epochs + 1]`` delay error (ms) before training and after each epoch.
    accuracy_before, accuracy_after : float
        Detection accuracy (balanced, best threshold) before and after training.
    arrivals_before, arrivals_after : Tensor
        ``[n_inputs]`` pattern arrival times :math:`t_i + d_i` (ms).
    weights : Tensor
        ``[n_inputs]`` final weights.
    peaks_pattern, peaks_distractor : Tensor
        Peak potentials of the held-out trials after training.
    """

    delay_error: Tensor
    accuracy_before: float
    accuracy_after: float
    arrivals_before: Tensor
    arrivals_after: Tensor
    weights: Tensor
    peaks_pattern: Tensor
    peaks_distractor: Tensor


def delay_error(layer: DelayedLinear, pattern: Tensor) -> float:
    """Mean absolute deviation (ms) of the arrival times ``pattern + delay`` from their median.

    Examples
    --------
    >>> layer = DelayedLinear(3, 1, max_delay=10.0, bias=False, delay_init=0.0)
    >>> with torch.no_grad():
    ...     _ = layer.delay.copy_(torch.tensor([[5.0, 3.0, 0.0]]))
    >>> delay_error(layer, torch.tensor([0, 2, 8]))  # arrivals 5, 5, 8
    1.0
    """
    arrivals = layer.delay.detach()[0].clamp(0.0, layer.max_delay) + pattern.to(layer.delay.dtype)
    return float((arrivals - arrivals.median()).abs().mean())


def train_delay_task(
    learn: str = "delays",
    *,
    task: DelayTask | None = None,
    epochs: int = 100,
    batch: int = 8,
    target_ms: int = 30,
    max_delay: float = 30.0,
    tau_mem: float = 3.0,
    lr: float | None = None,
    tau_window: float = 20.0,
    eval_trials: int = 200,
    seed: int = 0,
) -> DelayTaskResult:
    r"""Train the detector's delays (or, as the baseline, its weights) on the pattern.

    Each epoch shows ``batch`` jittered pattern trials with the detector's spike
    imposed at ``target_ms`` and applies one update (``scale = 1 / batch``: the mean
    over the trials). Delays start uniform in ``[0, max_delay]`` and weights at 1; the
    delays are kept in ``[0, max_delay]`` and the weights in ``[0, 2]`` by hard bounds.

    Parameters
    ----------
    learn : {"delays", "weights"}
        :class:`~plastorch.rules.DelayAdjustedSTDPD` on the delays (weights fixed at 1),
        or :class:`~plastorch.rules.DelayAdjustedSTDP` on the weights (delays fixed).
    task : DelayTask, optional
        The pattern (``DelayTask(seed=seed)`` by default).
    lr : float, optional
        Learning rate: ms of delay change (default 1) or weight change (default 0.05)
        per unit of :math:`e^{-|t_\Delta|/\tau}`.
    tau_window : float
        :math:`\tau` of both sides of the window, in ms.
    tau_mem : float
        Membrane time constant of the readout in ms.
    eval_trials : int
        Pattern and distractor trials in each of the fitting and the held-out sets.

    Examples
    --------
    >>> result = train_delay_task("delays", epochs=3, eval_trials=20)
    >>> result.delay_error.shape
    torch.Size([4])
    """
    if learn not in ("delays", "weights"):
        raise ValueError(f"learn must be 'delays' or 'weights', got {learn!r}")
    task = DelayTask(seed=seed) if task is None else task
    if not target_ms < task.steps:
        raise ValueError(f"target_ms must be < task.steps={task.steps}, got {target_ms!r}")
    check_nonnegative("max_delay", max_delay)
    generator = torch.Generator().manual_seed(int(seed) + 1)
    layer = DelayedLinear(task.n_inputs, 1, max_delay=max_delay, bias=False, delay_init=0.0)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.delay.uniform_(0.0, max_delay, generator=generator)
    if learn == "delays":
        rate = 1.0 if lr is None else check_positive("lr", lr)
        rule = DelayAdjustedSTDPD(rate, -rate, tau_window, tau_window)  # anti-Hebbian
        bound = Hard(0.0, max_delay)
    else:
        rate = 0.05 if lr is None else check_positive("lr", lr)
        rule = DelayAdjustedSTDP(rate, -rate, tau_window, tau_window)  # Hebbian
        bound = Hard(0.0, 2.0)

    def evaluate() -> tuple[float, Tensor, Tensor]:
        scores = [
            peak_potential(layer, task.trials(kind, eval_trials, generator), tau_mem)
            for kind in (True, False, True, False)
        ]
        accuracy, _ = best_threshold_accuracy(*scores)
        return accuracy, scores[2], scores[3]

    accuracy_before, _, _ = evaluate()
    arrivals_before = layer.delay.detach()[0].clone() + task.pattern
    errors = [delay_error(layer, task.pattern)]
    teacher = _Teacher()
    learner = Learner(layer, teacher, rule, bound=bound, step_mode="multi", apply=True)
    target = torch.zeros(task.steps, batch, 1)
    target[target_ms] = 1.0
    for _ in range(epochs):
        layer.reset()
        learner.reset()
        layer(task.trials(True, batch, generator))
        teacher(target)
        learner.step(scale=1.0 / batch)
        errors.append(delay_error(layer, task.pattern))
    learner.remove()
    accuracy_after, peaks_pattern, peaks_distractor = evaluate()
    return DelayTaskResult(
        delay_error=torch.tensor(errors),
        accuracy_before=accuracy_before,
        accuracy_after=accuracy_after,
        arrivals_before=arrivals_before,
        arrivals_after=layer.delay.detach()[0].clone() + task.pattern,
        weights=layer.weight.detach()[0].clone(),
        peaks_pattern=peaks_pattern,
        peaks_distractor=peaks_distractor,
    )


def plot_delay_task(task: DelayTask, delays: DelayTaskResult, weights: DelayTaskResult, path):
    """Arrival times before and after delay learning, the error curve, and the peak potentials."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11.0, 7.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2)
    inputs = torch.arange(task.n_inputs)
    ax = axes[0, 0]
    ax.scatter(task.pattern, inputs, marker="|", s=120, color="k", label="pattern spike t_i")
    ax.scatter(delays.arrivals_before, inputs, s=14, color="0.6", label="arrival, random delays")
    ax.scatter(delays.arrivals_after, inputs, s=14, color="tab:red", label="arrival, learned")
    ax.set_xlabel("time in trial (ms)")
    ax.set_ylabel("input")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Delay learning aligns the arrivals t_i + d_i")
    ax = axes[0, 1]
    ax.plot(delays.delay_error, color="tab:red")
    ax.set_xlabel("epoch")
    ax.set_ylabel("delay error (ms)")
    ax.set_title("mean |arrival - median arrival|")
    for column, (name, result) in enumerate(
        (("delays learned", delays), ("weights only", weights))
    ):
        ax = axes[1, column]
        high = float(torch.cat((result.peaks_pattern, result.peaks_distractor)).max())
        bins = torch.linspace(0.0, high * 1.02, 40).numpy()
        ax.hist(result.peaks_pattern.numpy(), bins=bins, alpha=0.6, color="tab:blue",
                label="pattern")  # fmt: skip
        ax.hist(result.peaks_distractor.numpy(), bins=bins, alpha=0.6, color="tab:orange",
                label="distractor")  # fmt: skip
        ax.set_xlabel("peak membrane potential")
        ax.set_title(f"{name}: accuracy {result.accuracy_after:.3f}")
        ax.legend(fontsize=8)
    figure.savefig(path, dpi=110)


def _arguments(parser) -> None:
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. SEEDS-1")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--jitter", type=int, default=1, help="ms of jitter per spike")


def _run(args, out_dir) -> dict:
    from tqdm import tqdm

    rows = {"delays": [], "weights": []}
    for seed in tqdm(range(args.seeds), desc="delay-task", unit="seed"):
        task = DelayTask(args.inputs, jitter=args.jitter, seed=seed)
        for learn in rows:
            rows[learn].append(train_delay_task(learn, task=task, epochs=args.epochs, seed=seed))
        if seed == 0:
            plot_delay_task(task, rows["delays"][0], rows["weights"][0], out_dir / "delays.png")
    metrics = {"epochs": args.epochs, "inputs": args.inputs, "jitter_ms": args.jitter}
    for learn, runs in rows.items():
        metrics[learn] = {
            "delay_error_before_ms": [float(r.delay_error[0]) for r in runs],
            "delay_error_after_ms": [float(r.delay_error[-1]) for r in runs],
            "accuracy_before": [r.accuracy_before for r in runs],
            "accuracy_after": [r.accuracy_after for r in runs],
            "mean_accuracy_after": sum(r.accuracy_after for r in runs) / len(runs),
        }
    return metrics


register(
    Experiment(
        name="delay-task",
        help="delay learning (DelayAdjustedSTDPD) aligns a spike pattern; weights-only baseline",
        add_arguments=_arguments,
        run=_run,
    )
)
