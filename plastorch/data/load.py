"""Load a data set by name."""

from __future__ import annotations

import os
from typing import Any

from plastorch.data.dataset import LabeledImages
from plastorch.data.digits import load_digits
from plastorch.data.mnist import load_mnist

__all__ = ["load_dataset", "DATASETS"]

#: Names :func:`load_dataset` knows.
DATASETS = ("digits", "mnist")


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> LabeledImages:
    """Load the ``split`` of the data set called ``name``.

    - ``"digits"``: :func:`~plastorch.data.load_digits` (bundled with scikit-learn;
      ``data_dir`` is not used; ``n_train`` and ``seed`` pass through ``kwargs``).
    - ``"mnist"``: :func:`~plastorch.data.load_mnist` reading the IDX files in
      ``data_dir`` (required).

    Parameters
    ----------
    name : {"digits", "mnist"}
        Data set name (case-insensitive).
    split : {"train", "test"}
        Which split.
    data_dir : str or os.PathLike, optional
        Directory of the files, for data sets read from disk.
    **kwargs
        Passed to the loader.

    Returns
    -------
    LabeledImages
        ``images`` float32 ``[N, H, W]`` in [0, 1] and ``labels`` int64 ``[N]``.

    Examples
    --------
    >>> load_dataset("digits", "test", seed=1).images.shape
    torch.Size([797, 8, 8])
    """
    key = name.lower() if isinstance(name, str) else name
    if key == "digits":
        return load_digits(split, **kwargs)
    if key == "mnist":
        if data_dir is None:
            raise ValueError("data set 'mnist' is read from IDX files: pass data_dir")
        return load_mnist(data_dir, split, **kwargs)
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
