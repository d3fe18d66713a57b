"""Accuracy of BindsNET's Diehl & Cook network under plastorch's evaluation protocol.

``python -m plastorch.bench.peer_accuracy --seed 0 --norm 30 --intensity 63.75``
trains BindsNET's ``DiehlAndCook2015`` (64 inputs, 100 neurons, 250 ms per
sample, batch 1, one epoch, no retries) on the split of ``plastorch train
diehl-cook`` (scikit-learn's digits, 1000 training / 797 test images, the
training order of ``DiehlCookTrainer`` for the seed), then, with learning off,
records every neuron's spike count for each training and test image and applies
plastorch's own :func:`~plastorch.models.diehl_cook.assign_labels` and votes. So
the two libraries differ only in their networks, not in how they are scored.
Prints one JSON line. BindsNET is an optional extra (``.[bench]``); about 6-8
minutes per run on one core.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch import Tensor

from ..data import load_digits
from ..data.dataset import LabeledImages
from ..models.diehl_cook import (
    _epoch_order,
    assign_labels,
    vote_all_activity,
    vote_proportion_weighting,
)
from .peer_cases import bindsnet_diehl_cook_presenter
from .peers import load_peer

__all__ = ["main", "score"]

N_CLASSES = 10


def score(
    present: Callable[[Tensor, bool], Tensor],
    train: LabeledImages,
    test: LabeledImages,
    *,
    seed: int,
) -> dict[str, float]:
    """Train one epoch, then assign labels and vote as ``plastorch train diehl-cook`` does.

    ``present(image, learn)`` shows one image to the network and returns its spike
    count per neuron (learning when ``learn``). Training visits the images in the
    trainer's order for ``seed`` (epoch 0).
    """
    start = time.perf_counter()
    for index in _epoch_order(len(train.labels), seed, 0).tolist():
        present(train.images[index], True)
    train_seconds = time.perf_counter() - start
    responses = torch.stack([present(image, False) for image in train.images])
    assignment = assign_labels(responses, train.labels, N_CLASSES)
    test_responses = torch.stack([present(image, False) for image in test.images])
    return {
        "accuracy_all_activity": (vote_all_activity(test_responses, assignment) == test.labels)
        .double()
        .mean()
        .item(),
        "accuracy_proportion_weighting": (
            vote_proportion_weighting(test_responses, assignment) == test.labels
        )
        .double()
        .mean()
        .item(),
        "silent_neurons": int((responses.sum(0) == 0).sum()),
        "train_samples_per_second": len(train.labels) / train_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plastorch.bench.peer_accuracy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--norm", type=float, default=30.0, help="input weight sum per neuron")
    parser.add_argument("--intensity", type=float, default=63.75, help="Hz at pixel value 1")
    parser.add_argument("--theta-plus", type=float, default=0.05, help="threshold increment, mV")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    peer = load_peer("bindsnet")
    if not peer.available:
        raise SystemExit(f"BindsNET is needed here: {peer.status}")
    present = bindsnet_diehl_cook_presenter(
        norm=args.norm, intensity=args.intensity, theta_plus=args.theta_plus, record=True
    )
    result = score(present, load_digits("train"), load_digits("test"), seed=args.seed)
    print(json.dumps({**vars(args), **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
