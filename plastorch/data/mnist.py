"""MNIST (and any MNIST-format data set) from the standard IDX files on disk."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from plastorch.data.dataset import LabeledImages, _check_split

__all__ = ["read_idx", "load_mnist", "MNIST_FILES"]

#: IDX file names of each split (each may also be present gzipped, with ``.gz``).
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_UNSIGNED_BYTE = 0x08


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: not a valid gzip file ({error})") from error


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file of unsigned bytes (``.gz`` is decompressed) into a numpy array.

    The IDX format is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then
    ``ndim`` big-endian uint32 dimension sizes, then the ``prod(dims)`` values in C order.
    Only dtype code ``0x08`` (unsigned byte), used by every MNIST-format file, is
    accepted.

    Parameters
    ----------
    path : str or os.PathLike
        The file; a name ending in ``.gz`` is read through gzip.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``dims``.

    Raises
    ------
    ValueError
        Naming the file, for a bad magic number, a dtype code other than ``0x08``, a
        header or payload shorter than the header says (truncated), or trailing bytes.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny-idx1-ubyte"
    >>> _ = path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(path)
    array([7, 8, 9], dtype=uint8)
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need at least 4)")
    if raw[0] != 0 or raw[1] != 0 or raw[3] == 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000TTNN with a "
            "dtype code TT and NN >= 1 dimensions); is this an IDX file?"
        )
    if raw[2] != _UNSIGNED_BYTE:
        raise ValueError(
            f"{path}: IDX dtype code 0x{raw[2]:02x} is not supported (expected 0x08, unsigned byte)"
        )
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(
            f"{path}: truncated IDX header ({len(raw)} bytes, need {header_size} for "
            f"{ndim} dimensions)"
        )
    dims = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims)
    found = len(raw) - header_size
    if found < expected:
        raise ValueError(
            f"{path}: truncated IDX payload: dims {dims} need {expected} bytes, found {found}"
        )
    if found > expected:
        raise ValueError(
            f"{path}: {found - expected} unexpected trailing bytes after the IDX payload "
            f"of dims {dims}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims).copy()


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_mnist(data_dir: str | os.PathLike[str], split: str = "train") -> LabeledImages:
    """Load an MNIST split from the four standard IDX files in ``data_dir``.

    Looks for ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (``split="train"``)
    or ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte`` (``split="test"``), each
    plain or gzipped (``.gz``; the plain file wins when both exist). Nothing is
    downloaded. Pixels are divided by 255. Any data set in the same format (e.g.
    Fashion-MNIST) loads the same way.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Directory holding the files.
    split : {"train", "test"}
        Which split to read.

    Returns
    -------
    LabeledImages
        ``images`` float32 ``[N, rows, cols]`` in [0, 1] (``[60000, 28, 28]`` for MNIST's
        training split), ``labels`` int64 ``[N]``.

    Raises
    ------
    FileNotFoundError
        Naming the directory and the expected file names, if a file is missing.
    ValueError
        Naming the file, for a malformed IDX file (see :func:`read_idx`), an images file
        that is not 3-D or a labels file that is not 1-D, or different image and label
        counts.

    Examples
    --------
    >>> train = load_mnist("~/data/mnist", "train")  # doctest: +SKIP
    >>> train.images.shape  # doctest: +SKIP
    torch.Size([60000, 28, 28])
    """
    split = _check_split(split)
    directory = Path(data_dir).expanduser()
    images_name, labels_name = MNIST_FILES[split]
    images_path, labels_path = _find(directory, images_name), _find(directory, labels_name)
    if images_path is None or labels_path is None:
        missing = [
            name
            for name, path in ((images_name, images_path), (labels_name, labels_path))
            if path is None
        ]
        where = "" if directory.is_dir() else " (the directory does not exist)"
        raise FileNotFoundError(
            f"MNIST {split} split not found in {directory}{where}: missing "
            f"{' and '.join(missing)} (each may also be gzipped, with .gz); expected the "
            f"files {images_name} and {labels_name}"
        )
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise ValueError(
            f"{images_path}: expected a 3-D IDX array [N, rows, cols] of images, got dims "
            f"{images.shape}"
        )
    if labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected a 1-D IDX array [N] of labels, got dims {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    return LabeledImages(
        torch.from_numpy(images).to(torch.float32).div_(255.0),
        torch.from_numpy(labels).to(torch.int64),
    )
