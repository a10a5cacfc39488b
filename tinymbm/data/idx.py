"""Read and write IDX files, the format MNIST and Fashion-MNIST ship in.

An IDX file is a 4-byte magic number, one big-endian int32 per dimension, then
the elements in row-major (C) order, big-endian:

    byte 0-1   0x00 0x00
    byte 2     element type: 0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32,
               0x0D float32, 0x0E float64
    byte 3     number of dimensions D
    4 * D      the dimensions d_1 ... d_D (big-endian int32)
    rest       d_1 * ... * d_D elements

MNIST images have magic 0x00000803 (ubyte, 3 dimensions: count x rows x columns)
and labels 0x00000801 (ubyte, 1 dimension: count). Files may be gzip-compressed;
the reader detects that from the gzip magic bytes 0x1f 0x8b, not from the name.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "IDXError",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "write_idx",
]

GZIP_MAGIC = b"\x1f\x8b"

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
MAGIC_NAMES = {IMAGES_MAGIC: "an image file", LABELS_MAGIC: "a label file"}

# Element type byte -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IDXError(ValueError):
    """An IDX file is corrupt or is not the kind of IDX file expected.

    The message starts with the file name and names the fault.
    """


def _read_bytes(path: Path) -> bytes:
    """Return the file's contents, decompressed when it starts with the gzip magic."""
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)

        if head != GZIP_MAGIC:
            return f.read()

        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                return gz.read()
        except (OSError, EOFError, zlib.error) as error:
            # gzip raises BadGzipFile (an OSError) for a bad header or CRC and
            # EOFError when the compressed stream ends early.
            raise IDXError(f"{path}: corrupt gzip stream: {error}") from error


def _format_dims(dims: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in dims)


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a NumPy array.

    Args:
        path: the file to read.
        expected_magic: when given, the magic number the file must have, for
            example ``IMAGES_MAGIC`` (0x00000803) or ``LABELS_MAGIC`` (0x00000801).

    Returns:
        An array of shape (d_1, ..., d_D) in native byte order (uint8 for ubyte
        files), writable and owning its memory.

    Raises:
        IDXError: a bad magic number, an unknown element type, a header or data
            shorter than the header states, or trailing bytes after the data.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    content = _read_bytes(path)

    # Magic number: two zero bytes, the element type, the number of dimensions.
    if len(content) < 4:
        raise IDXError(
            f"{path}: truncated: the 4-byte magic number is missing "
            f"(the file has {len(content)} bytes)"
        )
    magic = struct.unpack(">I", content[:4])[0]
    if expected_magic is not None and magic != expected_magic:
        hint = f" ({MAGIC_NAMES[magic]})" if magic in MAGIC_NAMES else ""
        raise IDXError(
            f"{path}: bad magic number 0x{magic:08x}{hint}, "
            f"expected 0x{expected_magic:08x} ({MAGIC_NAMES.get(expected_magic, 'IDX')})"
        )
    if content[0] != 0 or content[1] != 0:
        raise IDXError(
            f"{path}: bad magic number 0x{magic:08x}: an IDX file starts with two zero bytes"
        )
    type_code, ndim = content[2], content[3]
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02x}" for code in IDX_DTYPES)
        raise IDXError(f"{path}: unknown element type 0x{type_code:02x}, expected one of {known}")
    if ndim == 0:
        raise IDXError(f"{path}: bad magic number 0x{magic:08x}: zero dimensions")

    # Dimensions: one big-endian int32 each.
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise IDXError(
            f"{path}: truncated: the header of {ndim} dimensions needs {header_size} bytes "
            f"but the file has {len(content)}"
        )
    dims = struct.unpack(f">{ndim}i", content[4:header_size])
    if any(d < 0 for d in dims):
        raise IDXError(f"{path}: negative dimension in header {_format_dims(dims)}")

    # Data: exactly prod(dims) elements, no more and no less.
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(content) - header_size
    if actual < expected:
        raise IDXError(
            f"{path}: truncated: header says {_format_dims(dims)} = {expected} bytes of data "
            f"but the file has {actual}"
        )
    if actual > expected:
        raise IDXError(
            f"{path}: {actual - expected} trailing bytes: header says {_format_dims(dims)} "
            f"= {expected} bytes of data but the file has {actual}"
        )

    array = np.frombuffer(content, dtype=dtype, offset=header_size).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Read an MNIST-style image file (magic 0x00000803).

    Returns:
        uint8 array of shape (N, rows, columns).
    """
    return read_idx(path, expected_magic=IMAGES_MAGIC)


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """Read an MNIST-style label file (magic 0x00000801).

    Returns:
        uint8 array of shape (N,).
    """
    return read_idx(path, expected_magic=LABELS_MAGIC)


def _idx_type_code(dtype: np.dtype) -> int:
    for code, idx_dtype in IDX_DTYPES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    known = ", ".join(str(d.newbyteorder("=")) for d in IDX_DTYPES.values())
    raise IDXError(f"write_idx: dtype {dtype} has no IDX element type; use one of {known}")


def write_idx(
    path: str | os.PathLike, array: np.ndarray, compress: bool | None = None
) -> Path:
    """Write an array as an IDX file, atomically.

    The bytes go to a temporary file in the same folder, which then replaces
    ``path`` (``os.replace``), so a reader never sees a half-written file.

    Args:
        path: the file to write.
        array: uint8, int8, int16, int32, float32 or float64, of 1 to 255 dimensions.
        compress: gzip the file. ``None`` compresses when ``path`` ends in ``.gz``.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    array = np.asarray(array)
    if compress is None:
        compress = path.suffix == ".gz"
    if not 1 <= array.ndim <= 255:
        raise IDXError(f"write_idx: an IDX array needs 1 to 255 dimensions, got {array.ndim}")

    type_code = _idx_type_code(array.dtype)
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[type_code]).tobytes()

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if compress:
                # mtime=0 makes the output identical for identical arrays.
                with gzip.GzipFile(filename=path.stem, fileobj=f, mode="wb", mtime=0) as gz:
                    gz.write(header)
                    gz.write(body)
            else:
                f.write(header)
                f.write(body)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise

    return path
