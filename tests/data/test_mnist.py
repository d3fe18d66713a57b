"""IDX reader and MNIST loader on tiny files written by the tests."""

import numpy as np
import pytest
import torch

from plastorch.data import load_mnist, read_idx


def write_split(write_idx, directory, images, labels, split="train", gz=False):
    prefix = "train" if split == "train" else "t10k"
    write_idx(directory / f"{prefix}-images-idx3-ubyte", images, gz=gz)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels, gz=gz)


def assert_round_trip(data, images, labels):
    assert data.images.shape == (5, 3, 4) and data.images.dtype == torch.float32
    assert data.labels.shape == (5,) and data.labels.dtype == torch.int64
    assert torch.equal(data.images, torch.from_numpy(images).float() / 255)
    assert torch.equal((data.images * 255).round().to(torch.uint8), torch.from_numpy(images))
    assert data.labels.tolist() == [3, 1, 4, 1, 5]
    assert data.images.min() == 0.0 and data.images.max() == 1.0


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split", ["train", "test"])
def test_round_trip(tmp_path, write_idx, tiny_mnist, split, gz):
    images, labels = tiny_mnist
    write_split(write_idx, tmp_path, images, labels, split=split, gz=gz)
    assert_round_trip(load_mnist(tmp_path, split), images, labels)


def test_plain_and_gzipped_files_can_be_mixed(tmp_path, write_idx, tiny_mnist):
    images, labels = tiny_mnist
    write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    assert_round_trip(load_mnist(str(tmp_path)), images, labels)


def test_plain_file_wins_over_gz(tmp_path, write_idx, tiny_mnist):
    images, labels = tiny_mnist
    write_split(write_idx, tmp_path, images, labels)
    write_idx(tmp_path / "train-images-idx3-ubyte", 255 - images, gz=True)
    assert_round_trip(load_mnist(tmp_path), images, labels)


def test_image_shape_comes_from_the_header(tmp_path, write_idx):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([7, 2], dtype=np.uint8))
    assert load_mnist(tmp_path, "test").images.shape == (2, 28, 28)


def test_read_idx_header_dims(tmp_path, write_idx):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 1, 4)
    path = write_idx(tmp_path / "four-d", array)
    assert (path.read_bytes()[:8]).hex() == "0000080400000002"
    result = read_idx(path)
    assert result.dtype == np.uint8 and result.shape == (2, 3, 1, 4)
    assert np.array_equal(result, array)
    result[0, 0, 0, 0] = 9  # a writable copy


def test_missing_directory_names_directory_and_files(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        load_mnist(missing, "test")
    message = str(error.value)
    assert str(missing) in message and "does not exist" in message
    assert "t10k-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message


def test_missing_labels_file(tmp_path, write_idx, tiny_mnist):
    write_idx(tmp_path / "train-images-idx3-ubyte", tiny_mnist[0])
    with pytest.raises(FileNotFoundError, match=r"missing train-labels-idx1-ubyte \(each"):
        load_mnist(tmp_path)


def test_bad_magic_number(tmp_path, write_idx, tiny_mnist):
    images, labels = tiny_mnist
    write_split(write_idx, tmp_path, images, labels)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x01\x02" + path.read_bytes()[2:])
    with pytest.raises(
        ValueError, match=r"train-labels-idx1-ubyte: bad IDX magic number 0x01020801"
    ):
        load_mnist(tmp_path)


def test_not_an_idx_file(tmp_path, write_idx):
    path = write_idx(tmp_path / "notes", b"PK\x03\x04 a zip file")
    with pytest.raises(ValueError, match="notes: bad IDX magic number"):
        read_idx(path)


def test_wrong_dtype_code(tmp_path, write_idx, idx_bytes):
    path = write_idx(tmp_path / "floats", idx_bytes(np.zeros(4, dtype=np.uint8), dtype_code=0x0D))
    with pytest.raises(ValueError, match="floats: IDX dtype code 0x0d"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path, write_idx, idx_bytes, tiny_mnist, gz):
    images, labels = tiny_mnist
    write_idx(tmp_path / "train-images-idx3-ubyte", idx_bytes(images)[:-3], gz=gz)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels, gz=gz)
    with pytest.raises(
        ValueError, match=r"train-images-idx3-ubyte.*truncated IDX payload.*60 bytes, found 57"
    ):
        load_mnist(tmp_path)


def test_truncated_header(tmp_path, write_idx, idx_bytes, tiny_mnist):
    path = write_idx(tmp_path / "short", idx_bytes(tiny_mnist[0])[:10])
    with pytest.raises(ValueError, match="short: truncated IDX header"):
        read_idx(path)
    path = write_idx(tmp_path / "tiny", b"\x00\x00")
    with pytest.raises(ValueError, match="tiny: truncated IDX header"):
        read_idx(path)


def test_trailing_bytes(tmp_path, write_idx, idx_bytes, tiny_mnist):
    path = write_idx(tmp_path / "long", idx_bytes(tiny_mnist[1]) + b"\x00\x00")
    with pytest.raises(ValueError, match="long: 2 unexpected trailing bytes"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: not a valid gzip file"):
        read_idx(path)


def test_count_mismatch(tmp_path, write_idx, tiny_mnist):
    images, labels = tiny_mnist
    write_split(write_idx, tmp_path, images, labels[:4])
    with pytest.raises(ValueError, match="holds 5 images but .*labels-idx1-ubyte holds 4 labels"):
        load_mnist(tmp_path)


def test_images_must_be_3d_and_labels_1d(tmp_path, write_idx, tiny_mnist):
    images, labels = tiny_mnist
    write_split(write_idx, tmp_path, images.reshape(5, 12), labels)
    with pytest.raises(ValueError, match=r"images-idx3-ubyte: expected a 3-D.*\(5, 12\)"):
        load_mnist(tmp_path)
    write_split(write_idx, tmp_path, images, labels.reshape(5, 1))
    with pytest.raises(ValueError, match=r"labels-idx1-ubyte: expected a 1-D.*\(5, 1\)"):
        load_mnist(tmp_path)


def test_bad_split(tmp_path):
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'validation'"):
        load_mnist(tmp_path, "validation")
