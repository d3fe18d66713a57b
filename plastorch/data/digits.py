"""scikit-learn's bundled 8x8 handwritten digits (no download)."""

from __future__ import annotations

import functools
from numbers import Integral

import numpy as np
import torch

from plastorch.data.dataset import LabeledImages, _check_split

__all__ = ["load_digits", "DIGITS_SIZE"]

#: Number of images in scikit-learn's digits dataset.
DIGITS_SIZE = 1797


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digits(split: str = "train", *, n_train: int = 1000, seed: int = 0) -> LabeledImages:
    """Load scikit-learn's 8x8 digits (1797 images, 10 classes) as a seeded split.

    Pixels (0..16 in the source) are divided by 16, so intensities lie in [0, 1]. The
    split permutes the 1797 images with ``numpy.random.default_rng(seed).permutation``;
    the first ``n_train`` are the training split and the remaining ``1797 - n_train``
    (797 by default) the test split, so the two are disjoint and the same ``seed`` always
    gives the same split.

    Parameters
    ----------
    split : {"train", "test"}
        Which part to return.
    n_train : int
        Size of the training split, 1 <= n_train <= 1796.
    seed : int
        Seed of the permutation.

    Returns
    -------
    LabeledImages
        ``images`` float32 ``[N, 8, 8]`` in [0, 1], ``labels`` int64 ``[N]`` in 0..9.

    Examples
    --------
    >>> train = load_digits("train")
    >>> train.images.shape, train.labels.dtype
    (torch.Size([1000, 8, 8]), torch.int64)
    >>> len(load_digits("test"))
    797
    """
    split = _check_split(split)
    if isinstance(n_train, bool) or not isinstance(n_train, Integral):
        raise TypeError(f"n_train must be an int, got {n_train!r}")
    if not 1 <= n_train < DIGITS_SIZE:
        raise ValueError(f"n_train must be in [1, {DIGITS_SIZE - 1}], got {n_train!r}")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    images, labels = _digits_arrays()
    order = np.random.default_rng(int(seed)).permutation(DIGITS_SIZE)
    index = order[:n_train] if split == "train" else order[n_train:]
    return LabeledImages(torch.from_numpy(images[index]), torch.from_numpy(labels[index]))
