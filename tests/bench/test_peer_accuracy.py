"""The scoring protocol that BindsNET's Diehl & Cook network is measured with."""

import torch

from plastorch.bench.peer_accuracy import score
from plastorch.data.dataset import LabeledImages
from plastorch.models.diehl_cook import _epoch_order


def _data(n, seed, classes=10):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    images = torch.rand(n, 8, 8, generator=g)
    images[:, 0, 0] = labels.float()  # the fake network reads the class here
    return LabeledImages(images, labels)


def _presenter(shift_in_test=0, log=None):
    """Neurons j with j % 10 == class fire 5 times; test images answer as class + shift."""
    seen_test = [False]

    def present(image, learn):
        if log is not None:
            log.append((image, learn))
        cls = int(image[0, 0])
        if not learn and seen_test[0]:
            cls = (cls + shift_in_test) % 10
        counts = torch.zeros(30)
        counts[torch.arange(30) % 10 == cls] = 5.0
        return counts

    present.seen_test = seen_test
    return present


def test_score_trains_in_the_trainer_order_then_assigns_and_votes():
    train, test = _data(40, 0, classes=7), _data(25, 1, classes=7)
    log = []
    result = score(_presenter(log=log), train, test, seed=3)
    learned = [image for image, learn in log if learn]
    order = _epoch_order(40, 3, 0)
    assert len(learned) == 40 and all(
        torch.equal(a, train.images[i]) for a, i in zip(learned, order.tolist())
    )
    assert sum(not learn for _, learn in log) == 40 + 25  # assignment pass, then test
    assert result["accuracy_all_activity"] == 1.0
    assert result["accuracy_proportion_weighting"] == 1.0
    # neuron j answers class j % 10 only: the classes missing from training leave 3 silent each
    assert result["silent_neurons"] == 30 - 3 * len(set(train.labels.tolist()))


def test_score_counts_wrong_votes():
    train, test = _data(50, 2), _data(20, 3)
    present = _presenter(shift_in_test=1)
    calls = [0]

    def wrapped(image, learn):
        calls[0] += 1
        if calls[0] > 50 + 50:  # training and assignment passes are over: test answers shifted
            present.seen_test[0] = True
        return present(image, learn)

    result = score(wrapped, train, test, seed=0)
    # every test image answers as the next class, so the vote is always wrong
    # (classes absent from training get no neuron and cannot win either)
    assert result["accuracy_all_activity"] == 0.0
