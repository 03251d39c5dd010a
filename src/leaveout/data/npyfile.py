"""Rows of a `.npy` file read and written in place, by positioned reads and writes.

A packed set's pixels are one standard `.npy` file (numpy.load(path, mmap_mode="r") opens it);
leaveout reads only the rows a batch needs with `os.pread`, sorted by position so that
neighbouring rows come in one read. Nothing is memory-mapped: the process's address space and
resident memory grow with the batch, not with the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, ShapeError

CHUNK_BYTES = 16 << 20  # rows per streamed chunk: about this many bytes


def read_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, offset of the first byte of data) of a C-ordered `.npy` file."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except (ValueError, OSError) as exc:
        raise CorruptFileError(f"{path}: not a readable .npy file ({exc})") from exc
    if fortran or dtype.hasobject:
        raise CorruptFileError(f"{path}: expected a C-ordered array of plain values")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if os.path.getsize(path) < expected:
        raise CorruptFileError(
            f"{path}: the file is shorter than its header says ({os.path.getsize(path)} of "
            f"{expected} bytes); it was not written completely"
        )
    return tuple(shape), dtype, offset


def write_header(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Create `path` as a `.npy` file of `shape` (zero-filled, sparse) and return the data offset."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    header["shape"] = tuple(int(s) for s in shape)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        offset = f.tell()
        f.truncate(offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
    return offset


class PackedImages:
    """The (N, H, W, 3) uint8 images of a packed `.npy` file, read on demand.

    Behaves like a read-only array for what leaveout does with images: `len`, `shape`, `dtype`,
    `ndim`, indexing by an integer, a slice, an integer array or a boolean mask (returning a numpy
    array), and `take(indices)`, a view of some rows that reads nothing.
    """

    def __init__(self, path: str | Path, rows: np.ndarray | None = None) -> None:
        self.path = Path(path)
        shape, dtype, self.offset = read_header(self.path)
        if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
            raise ShapeError(
                f"{self.path}: expected uint8 (N, H, W, 3) images, got {dtype} {shape}"
            )
        self.file_rows = shape[0]
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.row_shape: tuple[int, ...] = tuple(shape[1:])
        self.row_bytes = int(np.prod(self.row_shape))
        self.fd: int | None = None

    # --- the array-like surface ---

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.row_shape)

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __len__(self) -> int:
        return self.file_rows if self.rows is None else len(self.rows)

    def __repr__(self) -> str:
        return f"PackedImages({str(self.path)!r}, {len(self)} of {self.file_rows} rows)"

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.gather(np.array([int(key)]))[0]
        if isinstance(key, slice):
            return self.gather(np.arange(len(self))[key])
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (len(self),):
                raise ShapeError(f"a mask of {key.shape} for {len(self)} images")
            key = np.flatnonzero(key)
        return self.gather(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.gather(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def take(self, indices: np.ndarray) -> PackedImages:
        """A view of the rows at `indices` (nothing is read)."""
        view = object.__new__(PackedImages)
        view.__dict__.update(self.__dict__, fd=None)
        view.rows = self.positions(np.asarray(indices, dtype=np.int64))
        return view

    # --- reading ---

    def positions(self, indices: np.ndarray) -> np.ndarray:
        """Row numbers in the file of this view's `indices`."""
        n = len(self)
        if len(indices) and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"index out of range for {n} images")
        indices = np.where(indices < 0, indices + n, indices)
        return indices if self.rows is None else self.rows[indices]

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """The images at `indices` (B, H, W, 3), read in file order (one read per run of
        consecutive rows, straight into the result) and returned in the given order."""
        where = self.positions(np.asarray(indices, dtype=np.int64).reshape(-1))
        order = np.argsort(where, kind="stable")
        ordered = where[order]
        rows = np.empty((len(where), *self.row_shape), dtype=np.uint8)
        if not len(where):
            return rows
        starts = np.flatnonzero(np.diff(ordered, prepend=ordered[0] - 2) != 1)
        ends = np.append(starts[1:], len(ordered))
        buffer, size, fd = memoryview(rows).cast("B"), self.row_bytes, self.descriptor()
        for start, end, first in zip(starts.tolist(), ends.tolist(), ordered[starts].tolist()):
            read_into(fd, buffer[start * size : end * size], self.offset + first * size)
        out = np.empty_like(rows)
        out[order] = rows
        return out

    def descriptor(self) -> int:
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDONLY)
        return self.fd

    def __getstate__(self) -> dict[str, Any]:  # worker processes open their own descriptor
        return self.__dict__ | {"fd": None}

    def __del__(self) -> None:
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)  # type: ignore[arg-type]


def iter_chunks(images: np.ndarray | PackedImages) -> Iterator[np.ndarray]:
    """Consecutive rows of an array or a packed file, about CHUNK_BYTES at a time."""
    rows = max(1, CHUNK_BYTES // max(1, int(np.prod(images.shape[1:]))))
    for start in range(0, len(images), rows):
        yield np.asarray(images[start : start + rows])


def read_into(fd: int, buffer: memoryview, offset: int) -> None:
    """Fill `buffer` from the file at `offset`; a short read (a truncated file) is an error."""
    done = 0
    while done < len(buffer):
        got = os.preadv(fd, [buffer[done:]], offset + done)
        if not got:
            raise CorruptFileError(f"unexpected end of file at byte {offset + done}")
        done += got
