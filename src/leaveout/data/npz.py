"""npz arrays: `images` (N, H, W, 3) uint8 with optional `labels` and `classes`, never pickled."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .. import files
from ..errors import CorruptFileError, DatasetNotFoundError, ShapeError
from .imageset import ImageSet


def load_npz(path: str | Path, name: str | None = None) -> ImageSet:
    """Read an npz with `images` (N, H, W, 3) uint8 and optional `labels` and `classes`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"expected the npz file {path}, which is missing")
    try:
        arrays = np.load(path, allow_pickle=False)
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            raise CorruptFileError(f"{path}: a single .npy array, not an npz archive")
        with arrays:
            if "images" not in arrays:
                raise CorruptFileError(f"{path}: no 'images' array (has {sorted(arrays.files)})")
            images = arrays["images"]
            labels = arrays["labels"].astype(np.int64) if "labels" in arrays else None
            classes = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays else ()
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CorruptFileError(f"{path}: not a readable npz archive ({exc})") from exc
    if labels is not None and not classes and len(labels):
        classes = tuple(str(i) for i in range(int(labels.max()) + 1))
    try:
        return ImageSet(images, labels, classes, name or path.stem)
    except ShapeError as exc:
        raise ShapeError(f"{path}: {exc}") from exc


def npz_image_count(path: str | Path) -> int:
    """The number of images in an npz, read from the array header without decompressing it."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("images.npy") as stream:
            major, _ = np.lib.format.read_magic(stream)
            read_header = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            shape, _, _ = read_header(stream)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(f"{path}: not a readable npz archive ({exc})") from exc
    return int(shape[0])


def npz_checksums(path: str | Path) -> tuple[tuple[str, int, int], ...]:
    """(array name, CRC-32, size) of every array in an npz, read from the zip directory without
    decompressing anything: which content the file holds."""
    try:
        with zipfile.ZipFile(path) as archive:
            return tuple((i.filename, i.CRC, i.file_size) for i in archive.infolist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(f"{path}: not a readable npz archive ({exc})") from exc


def save_npz(data: ImageSet, path: str | Path) -> None:
    """Write `data` atomically in the npz format that `load_npz` reads."""
    arrays: dict[str, np.ndarray] = {"images": data.images}
    if data.labels is not None:
        arrays["labels"] = data.labels
        arrays["classes"] = np.array(data.classes, dtype=str)
    with files.atomic_open(path, "wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
