"""Helpers that write small IDX files byte by byte (independently of the loader)."""

import gzip
import struct

import numpy as np
import pytest


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    """Magic 0x00 0x00 <dtype_code> <ndim>, big-endian uint32 dims, then the raw values."""
    header = struct.pack(">BBBB", 0, 0, dtype_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@pytest.fixture(name="idx_bytes")
def idx_bytes_fixture():
    """The :func:`idx_bytes` encoder, for tests that tamper with the bytes."""
    return idx_bytes


@pytest.fixture
def write_idx():
    def write(path, data, *, gz=False):
        raw = data if isinstance(data, bytes) else idx_bytes(data)
        if gz:
            path = path.with_name(path.name + ".gz")
            path.write_bytes(gzip.compress(raw))
        else:
            path.write_bytes(raw)
        return path

    return write


@pytest.fixture
def tiny_mnist():
    """Five 3x4 images with every byte value class represented, and their labels."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    return images, labels
