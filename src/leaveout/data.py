"""In-memory image sets and the readers of every on-disk format.

Every source becomes one `ImageSet`: uint8 images (N, H, W, 3) RGB, int64 labels (N,) or None for
an unlabelled (OOD) set, class names, and a name. Readers: CIFAR-10/100 python pickles (through a
restricted unpickler), npz arrays, image folders and tar/zip archives, ODIN noise, and the
embedded scikit-learn digits.
"""

from __future__ import annotations

import codecs
import io
import json
import pickle
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from . import _io
from .errors import CorruptFileError, DatasetNotFoundError, ShapeError, UnsafePickleError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A dataset held in memory.

    images: (N, H, W, 3) uint8 RGB. labels: (N,) int64 in [0, len(classes)) or None (unlabelled).
    skipped: names of unreadable files that were skipped on request (empty by default).
    """

    images: np.ndarray
    labels: np.ndarray | None
    classes: tuple[str, ...]
    name: str
    skipped: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        images = self.images
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ShapeError(
                f"{self.name}: images must be uint8 of shape (N, H, W, 3); "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        if self.labels is None:
            return
        labels = self.labels
        if labels.shape != (len(images),):
            raise ShapeError(
                f"{self.name}: {len(images)} images but labels of shape {tuple(labels.shape)}"
            )
        if labels.dtype != np.int64:
            raise ShapeError(f"{self.name}: labels must be int64, got {labels.dtype}")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ShapeError(
                f"{self.name}: labels span [{labels.min()}, {labels.max()}] "
                f"but there are {len(self.classes)} class names"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def subset(self, indices: np.ndarray, name: str | None = None) -> ImageSet:
        """The images at `indices` (a copy), with labels and class names kept."""
        indices = np.asarray(indices, dtype=np.int64)
        labels = None if self.labels is None else self.labels[indices]
        return ImageSet(self.images[indices], labels, self.classes, name or self.name)

    def describe(self) -> str:
        """A few lines for a person: size, shape, classes and counts."""
        h, w = self.image_size
        lines = [f"{self.name}: {len(self)} images, {h}x{w} RGB"]
        if self.labels is None:
            lines.append("unlabelled")
        else:
            counts = np.bincount(self.labels, minlength=self.num_classes)
            per_class = ", ".join(f"{c} {n}" for c, n in zip(self.classes, counts))
            lines.append(f"{self.num_classes} classes: {per_class}")
        if len(self):
            mean = self.images.reshape(-1, 3).mean(axis=0)
            lines.append("mean pixel (R, G, B): " + ", ".join(f"{m:.1f}" for m in mean))
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable files")
        return "\n".join(lines)


# --- CIFAR python pickles ------------------------------------------------------------------------


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


_CIFAR_LAYOUT = {
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


def _cifar_entries(source: Path, folder: str) -> Callable[[str], bytes]:
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
    if dataset not in _CIFAR_LAYOUT:
        raise ValueError(f"dataset must be one of {sorted(_CIFAR_LAYOUT)}, got {dataset!r}")
    layout = _CIFAR_LAYOUT[dataset]
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    source = Path(source)
    if not source.exists():
        raise DatasetNotFoundError(f"{source} does not exist")
    read = _cifar_entries(source, layout["folder"])
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


# --- npz arrays ----------------------------------------------------------------------------------


def load_npz(path: str | Path, name: str | None = None) -> ImageSet:
    """Read an npz with `images` (N, H, W, 3) uint8 and optional `labels` and `classes`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"expected the npz file {path}, which is missing")
    try:
        with np.load(path, allow_pickle=False) as arrays:
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
    with zipfile.ZipFile(path) as archive, archive.open("images.npy") as stream:
        major, _ = np.lib.format.read_magic(stream)
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, _, _ = read_header(stream)
    return int(shape[0])


def save_npz(data: ImageSet, path: str | Path) -> None:
    """Write `data` atomically in the npz format that `load_npz` reads."""
    arrays: dict[str, np.ndarray] = {"images": data.images}
    if data.labels is not None:
        arrays["labels"] = data.labels
        arrays["classes"] = np.array(data.classes, dtype=str)
    with _io.atomic_open(path, "wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]


# --- image files, folders and archives ----------------------------------------------------------


def fit_to_size(image: Image.Image, size: int) -> Image.Image:
    """The one size rule: center-crop when at least `size` in both dimensions, else resize.

    Resizing (bilinear, anti-aliased) does not keep the aspect ratio.
    """
    width, height = image.size
    if width >= size and height >= size:
        left, top = (width - size) // 2, (height - size) // 2
        return image.crop((left, top, left + size, top + size))
    return image.resize((size, size), Image.Resampling.BILINEAR)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        scale = 257.0 if values.max(initial=0) > 255 else 1.0
        image = Image.fromarray(np.clip(values / scale, 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def decode_image(data: bytes, source: str, size: int = 32) -> np.ndarray:
    """Decode one image file's bytes to (size, size, 3) uint8 RGB by the rule of `fit_to_size`.

    Raises CorruptFileError naming `source` when the bytes are not a readable image.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                rgb = fit_to_size(_to_rgb(image), size)
    except Exception as exc:
        raise CorruptFileError(
            f"{source}: cannot decode image ({type(exc).__name__}: {exc})"
        ) from exc
    return np.asarray(rgb, dtype=np.uint8)


def is_image_name(name: str) -> bool:
    base = PurePosixPath(name).name
    return not base.startswith(".") and PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def _folder_entries(root: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and is_image_name(rel):
            yield rel, path.read_bytes


def _archive_entries(path: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and is_image_name(info.filename):
                    data = archive.read(info)
                    yield info.filename, lambda data=data: data
        return
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.isfile() and is_image_name(member.name):
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                yield member.name, lambda data=data: data


def _strip_wrappers(paths: list[str]) -> list[str]:
    """Drop leading folders that every path shares while files stay below them (archives)."""
    parts = [PurePosixPath(p).parts for p in paths]
    while parts and all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]
    if parts and all(len(p) == 2 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]  # one wrapper folder around a flat set
    return ["/".join(p) for p in parts]


def _labels_from_layout(
    paths: list[str], layout: str, source: Path
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    depths = {len(PurePosixPath(p).parts) for p in paths}
    if layout == "auto":
        if depths == {1}:
            layout = "flat"
        elif 1 not in depths:
            layout = "classes"
        else:
            top = next(p for p in paths if "/" not in p)
            deep = next(p for p in paths if "/" in p)
            raise CorruptFileError(
                f"{source}: mixed layout, images both at the top ({top}) and in sub-folders "
                f"({deep}); pass layout='flat' or layout='classes'"
            )
    if layout == "flat":
        return None, ()
    if layout != "classes":
        raise ValueError(f"layout must be 'auto', 'classes' or 'flat', got {layout!r}")
    if 1 in depths:
        top = next(p for p in paths if "/" not in p)
        raise CorruptFileError(f"{source}: layout 'classes' but {top} is in no class folder")
    class_of = [PurePosixPath(p).parts[0] for p in paths]
    classes = tuple(sorted(set(class_of)))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[c] for c in class_of], dtype=np.int64), classes


def load_images(
    path: str | Path,
    size: int = 32,
    layout: str = "auto",
    skip_corrupt: bool = False,
    name: str | None = None,
) -> ImageSet:
    """Read a folder or a .tar/.tar.gz/.tgz/.zip archive of images.

    layout: "classes" (one sub-folder per class, ImageFolder style), "flat" (unlabelled, every
    image at any depth), or "auto" (flat when all images sit at the top, else classes).
    Archives ignore wrapper folders that hold everything. Images are sorted by path.
    skip_corrupt: skip unreadable images (listed in `ImageSet.skipped`) instead of raising.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"{path} does not exist")
    is_archive = path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)
    if path.is_file() and not is_archive:
        raise CorruptFileError(f"{path}: not a folder nor a {'/'.join(ARCHIVE_SUFFIXES)} archive")
    entries = _archive_entries(path) if is_archive else _folder_entries(path)
    decoded, skipped = _decode_all(entries, path, size, skip_corrupt)
    if not decoded:
        raise DatasetNotFoundError(
            f"{path}: no readable image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    decoded.sort(key=lambda item: item[0])
    paths = [p for p, _ in decoded]
    if is_archive:
        paths = _strip_wrappers(paths)
    labels, classes = _labels_from_layout(paths, layout, path)
    images = np.stack([image for _, image in decoded])
    if skipped:
        warnings.warn(
            f"{path}: skipped {len(skipped)} unreadable images, e.g. {skipped[0]}", stacklevel=2
        )
    set_name = name or path.name.split(".")[0]
    return ImageSet(images, labels, classes, set_name, skipped=tuple(skipped))


def read_named_images(
    paths: Iterable[str | Path], size: int = 32, skip_corrupt: bool = False
) -> tuple[list[str], np.ndarray]:
    """Decode image files, folders (recursively) and archives, keeping a name per image.

    Returns (names, images (N, size, size, 3) uint8); names are file paths, `archive:member`
    inside archives. Unreadable images raise CorruptFileError, or are skipped with a warning.
    """
    names: list[str] = []
    arrays: list[np.ndarray] = []
    skipped: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DatasetNotFoundError(f"{path} does not exist")
        if path.is_dir() or path.name.lower().endswith(ARCHIVE_SUFFIXES):
            entries = _archive_entries(path) if path.is_file() else _folder_entries(path)
        else:
            entries = iter([("", path.read_bytes)])
        decoded, missed = _decode_all(entries, path, size, skip_corrupt)
        skipped += missed
        for rel, image in decoded:
            names.append(
                str(path) if not rel else (f"{path}:{rel}" if path.is_file() else str(path / rel))
            )
            arrays.append(image)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable images, e.g. {skipped[0]}", stacklevel=2)
    if not arrays:
        raise DatasetNotFoundError("no readable images in " + ", ".join(map(str, paths)))
    return names, np.stack(arrays)


def _decode_all(
    entries: Iterable[tuple[str, Callable[[], bytes]]], source: Path, size: int, skip: bool
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    decoded, skipped = [], []
    try:
        for rel, read in entries:
            where = (
                str(source / rel)
                if source.is_dir()
                else (f"{source}:{rel}" if rel else str(source))
            )
            try:
                decoded.append((rel, decode_image(read(), where, size)))
            except CorruptFileError:
                if not skip:
                    raise
                skipped.append(where)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise CorruptFileError(f"{source}: not a readable archive ({exc})") from exc
    return decoded, skipped


# --- noise (ODIN) ---------------------------------------------------------------------------------

NOISE_KINDS = ("uniform", "gaussian")


def noise_image(kind: str, index: int, seed: int = 0, size: int = 32) -> np.ndarray:
    """Image `index` of a noise set: a pure function of (kind, seed, index). (size, size, 3) uint8.

    uniform: U[0, 1] per pixel; gaussian: N(0.5, 1) clipped to [0, 1]; quantised to 1/255.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    rng = np.random.default_rng([seed, NOISE_KINDS.index(kind), index])
    shape = (size, size, 3)
    values = rng.random(shape) if kind == "uniform" else rng.normal(0.5, 1.0, shape).clip(0, 1)
    return np.rint(values * 255).astype(np.uint8)


def noise_images(kind: str, n: int = 10_000, seed: int = 0, size: int = 32) -> ImageSet:
    """`n` noise images, built one at a time into a preallocated uint8 array."""
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = noise_image(kind, i, seed, size)
    return ImageSet(out, None, (), kind)


# --- the embedded default: scikit-learn digits -------------------------------------------------


def load_digits(size: int = 16) -> ImageSet:
    """scikit-learn's 1,797 real 8x8 digits, scaled bilinearly to (size, size) grey RGB."""
    import torch
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    grey = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    grey = torch.nn.functional.interpolate(grey, size=(size, size), mode="bilinear", antialias=True)
    pixels = grey.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    images = np.ascontiguousarray(np.repeat(pixels[..., None], 3, axis=-1))
    classes = tuple(str(d) for d in range(10))
    return ImageSet(images, bunch.target.astype(np.int64), classes, "digits")


# --- splits ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Named, disjoint parts of one set, as index arrays; saved to and loaded from JSON."""

    parts: dict[str, np.ndarray]
    rule: str

    def apply(self, data: ImageSet) -> dict[str, ImageSet]:
        """{part name: subset of `data`}."""
        top = max((int(ix.max()) for ix in self.parts.values() if len(ix)), default=-1)
        if top >= len(data):
            raise ShapeError(
                f"split ({self.rule}) indexes {top + 1} images; {data.name} has {len(data)}"
            )
        return {part: data.subset(ix, f"{data.name}-{part}") for part, ix in self.parts.items()}

    def save(self, path: str | Path) -> None:
        _io.write_json(
            path, {"rule": self.rule, "parts": {k: v.tolist() for k, v in self.parts.items()}}
        )

    @classmethod
    def load(cls, path: str | Path) -> Split:
        try:
            obj = json.loads(Path(path).read_text())
            parts = {k: np.asarray(v, dtype=np.int64) for k, v in obj["parts"].items()}
            return cls(parts, str(obj["rule"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptFileError(f"{path}: not a saved split ({exc})") from exc


def odin_split(n: int, tune: int = 1000) -> Split:
    """ODIN's protocol: the first `tune` images for tuning, the rest for reporting."""
    if n <= tune:
        raise ShapeError(f"a set of {n} images has nothing left after the {tune}-image tuning part")
    return Split({"tune": np.arange(tune), "report": np.arange(tune, n)}, f"odin(tune={tune})")


def random_split(
    n: int, fraction: float, seed: int, names: tuple[str, str] = ("train", "val")
) -> Split:
    """A seeded random split; the second part gets round(fraction * n) images."""
    order = np.random.default_rng(seed).permutation(n)
    cut = n - round(fraction * n)
    return Split(
        {names[0]: np.sort(order[:cut]), names[1]: np.sort(order[cut:])},
        f"random(fraction={fraction}, seed={seed})",
    )


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int, names: tuple[str, str] = ("train", "val")
) -> Split:
    """A seeded split that puts round(fraction * count) of every class into the second part."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        cut = len(members) - round(fraction * len(members))
        first.append(members[:cut])
        second.append(members[cut:])
    return Split(
        {names[0]: np.sort(np.concatenate(first)), names[1]: np.sort(np.concatenate(second))},
        f"stratified(fraction={fraction}, seed={seed})",
    )
