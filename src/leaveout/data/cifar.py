"""CIFAR-10/100 in the official python format, read through a restricted unpickler.

A pickle can run code when loaded; these files are read by an unpickler that resolves only the
numpy array constructors a CIFAR batch needs and refuses anything else.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ConfigError, CorruptFileError, DatasetNotFoundError, UnsafePickleError
from .imageset import ImageSet


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol-2 pickles store bytes as codecs.encode(str, "latin1"); allow only that call.
    if encoding.lower().replace("-", "") != "latin1":
        raise UnsafePickleError(f"pickle asked for codec {encoding!r}; only latin1 is allowed")
    return codecs.encode(text, "latin1", errors)


_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): np.zeros(1).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.zeros(1).__reduce__()[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the numpy array constructors a CIFAR batch needs; anything else is refused."""

    source = "<pickle>"

    def find_class(self, module: str, name: str) -> object:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: the pickle refers to {module}.{name}, which a CIFAR batch never "
                "contains; refusing to load it (it could run code)"
            ) from None

    def persistent_load(self, pid: object) -> object:
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed in a CIFAR batch")


def restricted_unpickle(data: bytes, source: str) -> object:
    """Unpickle `data` allowing only plain containers, numbers, bytes and numpy arrays."""
    unpickler = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes")
    unpickler.source = source
    try:
        return unpickler.load()
    except UnsafePickleError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{source}: not a readable pickle ({exc})") from exc


CIFAR_LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "names_key": b"label_names",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "names_key": b"fine_label_names",
    },
}


def _file_reader(source: Path, folder: str) -> Callable[[str], bytes]:
    """A reader of the files of a CIFAR folder, from the extracted folder or the .tar.gz."""
    if source.is_dir():
        base = source / folder if (source / folder).is_dir() else source

        def read_file(name: str) -> bytes:
            path = base / name
            if not path.is_file():
                raise DatasetNotFoundError(f"expected the CIFAR file {path}, which is missing")
            return path.read_bytes()

        return read_file
    try:
        with tarfile.open(source, "r:*") as tar:
            members = {
                m.name.split("/", 1)[-1]: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.isfile() and m.name.startswith(folder + "/")
            }
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CorruptFileError(f"{source}: not a readable tar archive ({exc})") from exc

    def read_member(name: str) -> bytes:
        if name not in members:
            raise CorruptFileError(f"{source}: the archive has no member {folder}/{name}")
        return members[name]

    return read_member


def load_cifar(
    source: str | Path, dataset: str = "cifar10", split: str = "train", labels: str = "fine"
) -> ImageSet:
    """Read CIFAR-10 or CIFAR-100 in the official python format.

    source: the extracted folder (or its parent) or the official .tar.gz.
    labels: for CIFAR-100, "fine" (100 classes) or "coarse" (20 superclasses).
    """
    if dataset not in CIFAR_LAYOUT:
        raise ConfigError(f"dataset must be one of {sorted(CIFAR_LAYOUT)}, got {dataset!r}")
    if split not in ("train", "test"):
        raise ConfigError(f"{dataset} has the splits train and test, not {split!r}")
    if labels not in ("fine", "coarse"):
        raise ConfigError(f"labels must be 'fine' or 'coarse', got {labels!r}")
    layout = CIFAR_LAYOUT[dataset]
    source = Path(source)
    if not source.exists():
        raise DatasetNotFoundError(f"{source} does not exist")
    read = _file_reader(source, layout["folder"])
    label_key = b"labels" if dataset == "cifar10" else f"{labels}_labels".encode()
    names_key = layout["names_key"]
    if dataset == "cifar100" and labels == "coarse":
        names_key = b"coarse_label_names"

    meta = _cifar_dict(read, layout["meta"], source)
    classes = tuple(_as_text(n) for n in meta.get(names_key, []))
    images, label_parts = [], []
    for name in layout[split]:
        batch = _cifar_dict(read, name, source)
        data = np.asarray(batch.get(b"data"))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise CorruptFileError(
                f"{source}:{name}: b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}"
            )
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        label_parts.append(np.asarray(batch.get(label_key, []), dtype=np.int64))
    all_images = np.ascontiguousarray(np.concatenate(images))
    all_labels = np.concatenate(label_parts)
    if len(all_labels) != len(all_images):
        raise CorruptFileError(f"{source}: {len(all_images)} images but {len(all_labels)} labels")
    return ImageSet(all_images, all_labels, classes, f"{dataset}-{split}")


def _cifar_dict(read: Callable[[str], bytes], name: str, source: Path) -> dict:
    obj = restricted_unpickle(read(name), f"{source}:{name}")
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{source}:{name}: expected a dict, got {type(obj).__name__}")
    return obj


def _as_text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
