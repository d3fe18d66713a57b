"""scikit-learn digits: seeded, disjoint 1000/797 split of [0, 1] images."""

from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_load_digits

from plastorch.data import LabeledImages, load_digits


def rows(data: LabeledImages) -> Counter:
    """Multiset of (pixels * 16, label) rows."""
    pixels = (data.images.reshape(len(data), -1) * 16).round().to(torch.int64)
    table = torch.cat([pixels, data.labels[:, None]], dim=1)
    return Counter(map(tuple, table.tolist()))


def test_default_split_sizes_shapes_and_types():
    train, test = load_digits("train"), load_digits("test")
    assert len(train) == 1000 and len(test) == 797
    assert train.images.shape == (1000, 8, 8) and test.images.shape == (797, 8, 8)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert load_digits().labels.shape == (1000,)


def test_pixels_are_sixteenths_in_unit_interval():
    images = load_digits("train").images
    assert images.min() == 0.0 and images.max() == 1.0
    assert torch.equal(images * 16, (images * 16).round())


def test_train_and_test_partition_the_whole_data_set():
    bunch = sklearn_load_digits()
    everything = LabeledImages(
        torch.from_numpy(bunch.images / 16).float(), torch.from_numpy(bunch.target)
    )
    train, test = load_digits("train"), load_digits("test")
    # As multisets of rows: train + test == all 1797 images, so the split is a partition.
    assert rows(train) + rows(test) == rows(everything)
    assert sum(rows(everything).values()) == 1797


def test_split_follows_the_seeded_permutation():
    order = np.random.default_rng(5).permutation(1797)
    bunch = sklearn_load_digits()
    test = load_digits("test", seed=5)
    assert test.labels.tolist() == bunch.target[order[1000:]].tolist()
    assert torch.equal(test.images, torch.from_numpy(bunch.images[order[1000:]] / 16).float())


def test_same_seed_same_split_other_seed_other_split():
    first, again = load_digits(seed=3), load_digits(seed=3)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    other = load_digits(seed=4)
    assert not torch.equal(first.labels, other.labels)
    assert rows(load_digits("test", seed=3)) != rows(load_digits("test", seed=4))


def test_every_class_in_both_splits():
    assert set(load_digits("train").labels.tolist()) == set(range(10))
    assert set(load_digits("test").labels.tolist()) == set(range(10))


def test_custom_n_train():
    assert len(load_digits("train", n_train=1500)) == 1500
    assert len(load_digits("test", n_train=1500)) == 297


def test_returned_tensors_are_independent_copies():
    first = load_digits()
    first.images.zero_()
    assert load_digits().images.max() == 1.0


def test_is_a_map_style_dataset():
    data = load_digits("test")
    image, label = data[3]
    assert torch.equal(image, data.images[3]) and label == data.labels[3]
    batch_images, batch_labels = next(iter(torch.utils.data.DataLoader(data, batch_size=16)))
    assert batch_images.shape == (16, 8, 8) and batch_labels.dtype == torch.int64


@pytest.mark.parametrize("n_train", [0, -1, 1797, 5000])
def test_bad_n_train(n_train):
    with pytest.raises(ValueError, match=rf"n_train must be in \[1, 1796\], got {n_train}"):
        load_digits(n_train=n_train)


def test_bad_split_and_types():
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        load_digits("val")
    with pytest.raises(TypeError, match="n_train"):
        load_digits(n_train=10.5)
    with pytest.raises(TypeError, match="seed"):
        load_digits(seed="0")


def test_labeled_images_checks_lengths():
    with pytest.raises(ValueError, match=r"\(3, 8, 8\).*\(2,\)"):
        LabeledImages(torch.zeros(3, 8, 8), torch.zeros(2, dtype=torch.int64))
