"""load_dataset dispatches by name."""

import numpy as np
import pytest
import torch

from plastorch.data import load_dataset, load_digits


def test_digits_by_name_passes_keywords():
    expected = load_digits("test", n_train=1200, seed=2)
    data = load_dataset("Digits", "test", n_train=1200, seed=2)
    assert torch.equal(data.images, expected.images)
    assert torch.equal(data.labels, expected.labels)


def test_mnist_by_name(tmp_path, write_idx):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.full((2, 2, 2), 255, dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([4, 2], dtype=np.uint8), gz=True)
    data = load_dataset("mnist", "test", data_dir=tmp_path)
    assert torch.equal(data.images, torch.ones(2, 2, 2))
    assert data.labels.tolist() == [4, 2]


def test_mnist_needs_a_directory():
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("mnist", "train")


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown data set 'cifar10'; known: digits, mnist"):
        load_dataset("cifar10", "train")
