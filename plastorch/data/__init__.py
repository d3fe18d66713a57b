"""Data sets as image tensors in [0, 1]: scikit-learn's digits (bundled) and MNIST (IDX)."""

from plastorch.data.dataset import LabeledImages
from plastorch.data.digits import DIGITS_SIZE, load_digits
from plastorch.data.load import DATASETS, load_dataset
from plastorch.data.mnist import MNIST_FILES, load_mnist, read_idx

__all__ = [
    "LabeledImages",
    "load_digits",
    "load_mnist",
    "read_idx",
    "load_dataset",
    "DATASETS",
    "DIGITS_SIZE",
    "MNIST_FILES",
]
