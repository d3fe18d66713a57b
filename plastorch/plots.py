"""Figures of a trained Diehl & Cook network, written as PNG files.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global
backend switch), so it works on headless machines and inside other programs.

- :func:`plot_receptive_fields`: every neuron's input weights as an image, in a grid;
- :func:`plot_assignments`: the class each neuron was assigned, in the same grid, and
  how many neurons each class has;
- :func:`plot_accuracy`: running training accuracy and test accuracy per epoch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["grid_shape", "plot_accuracy", "plot_assignments", "plot_receptive_fields"]


def grid_shape(n: int) -> tuple[int, int]:
    """Rows and columns of the most square grid holding ``n`` tiles.

    Examples
    --------
    >>> grid_shape(400), grid_shape(10)
    ((20, 20), (3, 4))
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)
    return path


def plot_receptive_fields(
    weights: Tensor,
    image_shape: tuple[int, int],
    path: str | os.PathLike[str],
    *,
    title: str = "Input weights of each excitatory neuron",
) -> Path:
    """Draw each row of ``weights`` ``[N, H * W]`` as an ``H x W`` tile of one mosaic.

    Tiles are separated by a one-pixel gap and share one colour scale (0 to the largest
    weight), so strong and weak receptive fields can be compared.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "fields.png"
    >>> plot_receptive_fields(torch.rand(10, 64), (8, 8), path).exists()
    True
    """
    weights = weights.detach().cpu().double()
    height, width = image_shape
    if weights.dim() != 2 or weights.shape[1] != height * width:
        raise ValueError(
            f"weights must be [N, {height * width}] for images {image_shape}, got "
            f"{tuple(weights.shape)}"
        )
    n = weights.shape[0]
    rows, cols = grid_shape(n)
    mosaic = np.full((rows * (height + 1) - 1, cols * (width + 1) - 1), np.nan)
    tiles = weights.reshape(n, height, width).numpy()
    for index in range(n):
        r, c = divmod(index, cols)
        mosaic[r * (height + 1) : r * (height + 1) + height, c * (width + 1) :][:, :width] = tiles[
            index
        ]
    side = min(14.0, max(6.0, 0.5 * cols + 3.0))
    figure = Figure(figsize=(side + 0.8, side))
    axes = figure.add_subplot()
    image = axes.imshow(mosaic, cmap="hot_r", vmin=0.0, vmax=float(weights.max()) or 1.0)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(f"{title} ({n} neurons, {height}x{width})")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.02, label="weight")
    figure.tight_layout()
    return _save(figure, path)


def plot_assignments(
    labels: Sequence[int] | Tensor,
    n_classes: int,
    path: str | os.PathLike[str],
) -> Path:
    """Draw the class assigned to each neuron (same grid as the receptive fields) and counts.

    Neurons with label ``-1`` (never fired) are drawn grey and marked ``-``.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "assignments.png"
    >>> plot_assignments([0, 1, 1, -1], 10, path).exists()
    True
    """
    labels = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)
    n = labels.shape[0]
    rows, cols = grid_shape(n)
    grid = np.full((rows, cols), np.nan)
    grid.flat[:n] = np.where(labels >= 0, labels, np.nan)
    figure = Figure(figsize=(12.0, 5.6))
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1.0]})
    cmap = _class_colormap(n_classes)
    left.imshow(grid, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5)
    left.set_facecolor("0.85")
    size = max(4.0, min(11.0, 220.0 / cols))
    for index, label in enumerate(labels):
        r, c = divmod(index, cols)
        left.text(c, r, "-" if label < 0 else str(label), ha="center", va="center", fontsize=size)
    left.set_xticks([])
    left.set_yticks([])
    left.set_title(f"Class assigned to each neuron ({n} neurons)")
    counts = np.bincount(labels[labels >= 0], minlength=n_classes)
    right.bar(np.arange(n_classes), counts, color=[cmap(k) for k in range(n_classes)])
    right.set_xticks(np.arange(n_classes))
    right.set_xlabel("class")
    right.set_ylabel("neurons")
    silent = int((labels < 0).sum())
    right.set_title(f"Neurons per class ({silent} never fired)")
    figure.tight_layout()
    return _save(figure, path)


def _class_colormap(n_classes: int):
    from matplotlib import colormaps

    name = "tab10" if n_classes <= 10 else "tab20"
    return colormaps[name].resampled(max(n_classes, 1))


def plot_accuracy(metrics: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Running training accuracy (per interval) and test accuracy after each epoch.

    ``metrics`` is the dictionary of :class:`~plastorch.models.diehl_cook.DiehlCookTrainer`
    (``online_accuracy``: ``[[samples, accuracy], ...]``; ``epochs``: rows with
    ``accuracy_all_activity`` and ``accuracy_proportion_weighting``;
    ``train.n_train``).

    Examples
    --------
    >>> import tempfile
    >>> metrics = {"online_accuracy": [[200, 0.5], [400, 0.7]], "train": {"n_train": 400},
    ...            "epochs": [{"epoch": 1, "accuracy_all_activity": 0.8,
    ...                        "accuracy_proportion_weighting": 0.82}]}
    >>> plot_accuracy(metrics, Path(tempfile.mkdtemp()) / "accuracy.png").exists()
    True
    """
    figure = Figure(figsize=(7.5, 4.5))
    axes = figure.add_subplot()
    online = np.asarray(metrics.get("online_accuracy") or [], dtype=float).reshape(-1, 2)
    if len(online):
        axes.plot(online[:, 0], 100 * online[:, 1], color="0.55", marker=".", lw=1.2,
                  label="running (training samples, previous interval's labels)")  # fmt: skip
    n_train = metrics.get("train", {}).get("n_train", 1)
    epochs = metrics.get("epochs") or []
    seen = [row["epoch"] * n_train for row in epochs]
    for key, label, marker in (
        ("accuracy_all_activity", "test, all-activity vote", "o"),
        ("accuracy_proportion_weighting", "test, proportion-weighting vote", "s"),
    ):
        values = [100 * row[key] for row in epochs]
        if values:
            axes.plot(
                seen, values, marker=marker, lw=1.8, label=f"{label} (last {values[-1]:.1f}%)"
            )
    axes.set_xlabel("training samples presented")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 100)
    axes.set_xlim(left=0)
    axes.grid(alpha=0.3)
    axes.set_title("Accuracy over training")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return _save(figure, path)
