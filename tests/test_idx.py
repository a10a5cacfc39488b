"""IDX reader and writer: round trips, gzip detection, and every kind of corrupt file."""

import gzip
import struct

import numpy as np
import pytest

from tinymbm.data.idx import (
    IDXError,
    read_idx,
    read_idx_images,
    read_idx_labels,
    write_idx,
)


def idx_bytes(type_code: int, dims: tuple[int, ...], body: bytes) -> bytes:
    """Build IDX bytes by hand, independently of write_idx."""
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}i", *dims) + body


def write_bytes(path, content: bytes, compress: bool):
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


DTYPE_CASES = [
    (np.uint8, (5, 3, 4)),
    (np.int8, (7,)),
    (np.int16, (2, 3)),
    (np.int32, (4, 2)),
    (np.float32, (3, 3)),
    (np.float64, (2, 2, 2)),
]


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype, shape", DTYPE_CASES)
def test_idx_round_trip(tmp_path, rng, dtype, shape, compress):
    array = (rng.uniform(-100, 100, size=shape)).astype(dtype)
    if dtype == np.uint8:
        array = rng.integers(0, 256, size=shape).astype(np.uint8)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")

    write_idx(path, array, compress=compress)
    loaded = read_idx(path)

    assert loaded.dtype == np.dtype(dtype), f"{dtype} {shape} compress={compress}"
    assert loaded.shape == shape, f"{dtype} {shape} compress={compress}"
    np.testing.assert_array_equal(loaded, array)


def test_idx_reads_hand_made_images(tmp_path):
    body = bytes(range(24))
    path = write_bytes(tmp_path / "images", idx_bytes(0x08, (2, 3, 4), body), compress=False)

    images = read_idx_images(path)

    assert images.shape == (2, 3, 4)
    assert images.dtype == np.uint8
    assert images.flags.writeable
    np.testing.assert_array_equal(images.reshape(-1), np.arange(24))


def test_idx_big_endian_int32(tmp_path):
    body = struct.pack(">3i", 1, -2, 70000)
    path = write_bytes(tmp_path / "ints", idx_bytes(0x0C, (3,), body), compress=False)

    np.testing.assert_array_equal(read_idx(path), [1, -2, 70000])


@pytest.mark.parametrize(
    "name, compress",
    [("labels.gz", False), ("labels", True), ("labels.idx", True), ("labels.gz", True)],
)
def test_idx_gzip_detected_by_magic(tmp_path, name, compress):
    content = idx_bytes(0x08, (4,), bytes([3, 1, 4, 1]))
    path = write_bytes(tmp_path / name, content, compress)

    np.testing.assert_array_equal(read_idx_labels(path), [3, 1, 4, 1])


def test_write_idx_compress_from_suffix(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros(3, dtype=np.uint8))

    assert path.read_bytes()[:2] == b"\x1f\x8b"


def test_write_idx_deterministic_gzip(tmp_path):
    array = np.arange(10, dtype=np.uint8)

    first = write_idx(tmp_path / "a" / "x.gz", array).read_bytes()
    second = write_idx(tmp_path / "b" / "x.gz", array).read_bytes()

    assert first == second


def test_write_idx_replaces_atomically(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, np.zeros(5, dtype=np.uint8))

    write_idx(path, np.ones(3, dtype=np.uint8))

    np.testing.assert_array_equal(read_idx(path), [1, 1, 1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.gz"]


def test_write_idx_rejects_int64(tmp_path):
    with pytest.raises(IDXError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
class TestCorrupt:
    """Each corrupt file raises IDXError whose message names the file and the fault."""

    def check(self, tmp_path, content, compress, match, reader=read_idx):
        path = write_bytes(tmp_path / "train-images-idx3-ubyte", content, compress)
        with pytest.raises(IDXError, match=match) as info:
            reader(path)
        assert str(path) in str(info.value), str(info.value)

    def test_empty(self, tmp_path, compress):
        self.check(tmp_path, b"", compress, "truncated: the 4-byte magic number is missing")

    def test_nonzero_magic(self, tmp_path, compress):
        self.check(tmp_path, b"\x12\x34\x08\x01" + bytes(8), compress, "bad magic number 0x12340801")

    def test_wrong_magic_for_images(self, tmp_path, compress):
        content = idx_bytes(0x08, (2,), bytes(2))
        self.check(
            tmp_path, content, compress, r"0x00000801 \(a label file\), expected 0x00000803",
            reader=read_idx_images,
        )

    def test_wrong_magic_for_labels(self, tmp_path, compress):
        content = idx_bytes(0x08, (1, 2, 2), bytes(4))
        self.check(tmp_path, content, compress, "expected 0x00000801", reader=read_idx_labels)

    def test_unknown_type(self, tmp_path, compress):
        self.check(tmp_path, idx_bytes(0x0A, (2,), bytes(2)), compress, "unknown element type 0x0a")

    def test_zero_dimensions(self, tmp_path, compress):
        self.check(tmp_path, bytes([0, 0, 8, 0]), compress, "zero dimensions")

    def test_truncated_header(self, tmp_path, compress):
        content = bytes([0, 0, 8, 3]) + struct.pack(">i", 60000)
        self.check(tmp_path, content, compress, "truncated: the header of 3 dimensions needs 16 bytes")

    def test_truncated_data(self, tmp_path, compress):
        content = idx_bytes(0x08, (60000, 28, 28), bytes(1000))
        self.check(
            tmp_path, content, compress,
            "truncated: header says 60000x28x28 = 47040000 bytes of data but the file has 1000",
        )

    def test_trailing_bytes(self, tmp_path, compress):
        content = idx_bytes(0x08, (2, 2, 2), bytes(10))
        self.check(tmp_path, content, compress, "2 trailing bytes")

    def test_negative_dimension(self, tmp_path, compress):
        self.check(tmp_path, idx_bytes(0x08, (-1, 2), b""), compress, "negative dimension")


def test_idx_truncated_gzip_stream(tmp_path):
    content = gzip.compress(idx_bytes(0x08, (100, 28, 28), bytes(range(256)) * 306 + bytes(64)))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(content[: len(content) // 2])

    with pytest.raises(IDXError, match="corrupt gzip stream") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_idx_error_is_value_error():
    assert issubclass(IDXError, ValueError)
