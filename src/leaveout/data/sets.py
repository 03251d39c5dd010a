"""Named data sets: where each is looked for under a data root, how to download it, a catalogue.

Data root: the `--data-root` option, else the LEAVEOUT_DATA environment variable, else
~/.cache/leaveout. Under it, a set is found in the first of these that exists: its packed form
(`leaveout pack`: packed/<name> or packed/<name>-<split>), its extracted official folder, its
official archive (read without extracting), or an npz copy.
"""

from __future__ import annotations

import os
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import files
from ..errors import ConfigError, CorruptFileError, DatasetNotFoundError
from .cifar import load_cifar
from .images import count_image_files, load_images, pil_to_array
from .imageset import ImageSet
from .npz import load_npz, npz_checksums, npz_image_count
from .packed import Source, file_source, is_packed, load_packed, pack, pack_info, set_source
from .synthetic import load_digits, noise_images

ODIN_README = "https://github.com/facebookresearch/odin"
NOISE_COUNT = 10_000


@dataclass(frozen=True)
class DatasetInfo:
    """Where a named set comes from and where it is looked for (paths relative to the root).

    npz may contain "{split}". kind: "id" (labelled), "ood", "noise" or "embedded".
    """

    name: str
    kind: str
    description: str
    splits: tuple[str, ...] = ("all",)
    archive: str | None = None
    url: str | None = None
    md5: str | None = None
    folder: str | None = None
    npz: str | None = None
    npz_sha256: dict[str, str] | None = None
    counts: dict[str, int] | None = None


def _odin(
    name: str,
    title: str,
    archive: str,
    key: str,
    folder: str,
    md5: str | None,
    npz_sha256: str | None = None,
) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        kind="ood",
        description=f"{title} (ODIN's release)",
        archive=archive,
        url=f"https://www.dropbox.com/s/{key}/{archive}?dl=1",
        md5=md5,
        folder=folder,
        npz=f"ood/{name}.npz",
        npz_sha256={"all": npz_sha256} if npz_sha256 else None,
    )


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo(
            "cifar10",
            "id",
            "CIFAR-10, 10 classes, 32x32",
            splits=("train", "test"),
            archive="cifar-10-python.tar.gz",
            url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            md5="c58f30108f718f92721af3b95e74349a",
            folder="cifar-10-batches-py",
            npz="cifar10/{split}.npz",
            npz_sha256={
                "train": "128c847b67290a8c69cd5d0c1b5dafeb5a8dd79fd248a088f8ec587a12edeb63",
                "test": "331d25c1c88e45f74c9fc96d061645662d6fb1478151b854ba91f15068357eb9",
            },
            counts={"train": 50_000, "test": 10_000},
        ),
        DatasetInfo(
            "cifar100",
            "id",
            "CIFAR-100, 100 fine classes, 32x32",
            splits=("train", "test"),
            archive="cifar-100-python.tar.gz",
            url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            md5="eb9058c3a382ffc7106e4002c42a8d85",
            folder="cifar-100-python",
            npz="cifar100/{split}.npz",
            counts={"train": 50_000, "test": 10_000},
        ),
        _odin(
            "tiny_imagenet_crop",
            "TinyImageNet, 32x32 crops",
            "Imagenet.tar.gz",
            "avgm2u562itwpkl",
            "Imagenet/test",
            "7c0827e4246c3718a5ee076e999e52e5",
            "71db68f741f9352d24a16a89eaa96ae0102826e6cf41a0b421b8a8d42414a3af",
        ),
        _odin(
            "tiny_imagenet_resize",
            "TinyImageNet, resized to 32x32",
            "Imagenet_resize.tar.gz",
            "kp3my3412u5k9rl",
            "Imagenet_resize/Imagenet_resize",
            "0f9ff11d45babf2eff5fe12281d1ac31",
            "d34c593340717edd9997582127be3f698101520f82c23ee2a6ad7c6fd9c403fd",
        ),
        _odin(
            "lsun_crop",
            "LSUN, 32x32 crops",
            "LSUN.tar.gz",
            "fhtsw1m3qxlwj6h",
            "LSUN/test",
            "458a0a0ab8e5f1cb4516d7400568e460",
        ),
        _odin(
            "lsun_resize",
            "LSUN, resized to 32x32",
            "LSUN_resize.tar.gz",
            "moqh2wh8696c3yl",
            "LSUN_resize/LSUN_resize",
            "278b7b31c8cb7e804a1465a8ce03a2dc",
        ),
        _odin(
            "isun",
            "iSUN, 8,925 patches",
            "iSUN.tar.gz",
            "ssz7qxfqae0cca5",
            "iSUN/iSUN_patches",
            None,
        ),
        DatasetInfo("uniform", "noise", "uniform noise U[0,1], 10,000 images, generated"),
        DatasetInfo(
            "gaussian", "noise", "Gaussian noise N(0.5,1) clipped, 10,000 images, generated"
        ),
        DatasetInfo(
            "digits", "embedded", "scikit-learn's 1,797 8x8 digits, shipped with scikit-learn"
        ),
    ]
}


def default_data_root() -> Path:
    """LEAVEOUT_DATA if set, else ~/.cache/leaveout."""
    return Path(os.environ.get("LEAVEOUT_DATA") or Path.home() / ".cache" / "leaveout")


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetNotFoundError(
            f"unknown dataset {name!r}; known: {', '.join(DATASETS)} "
            "(or pass a path to a folder, archive or .npz)"
        ) from None


def is_path(name: str) -> bool:
    """Whether `name` means a file or folder rather than a named set."""
    return name not in DATASETS and (os.sep in name or "/" in name or Path(name).exists())


@dataclass(frozen=True)
class Located:
    """Where a set was found: `form` is "packed", "folder", "archive", "npz", "noise" or
    "embedded"."""

    path: Path | None
    form: str


def candidates(info: DatasetInfo, root: Path, split: str) -> list[Located]:
    """Every place `info` is looked for under `root`, in order of preference."""
    out = [Located(packed_location(info, root, split), "packed")]
    if info.folder:
        out.append(Located(root / info.folder, "folder"))
    if info.archive:
        out.append(Located(root / info.archive, "archive"))
    if info.npz:
        out.append(Located(root / info.npz.format(split=split), "npz"))
    return out


def locate(name: str, root: str | Path | None = None, split: str | None = None) -> Located:
    """Find `name` under `root`, or raise DatasetNotFoundError saying where to put what."""
    info = dataset_info(name)
    if info.kind in ("noise", "embedded"):
        return Located(None, info.kind)
    root = Path(root) if root is not None else default_data_root()
    split = check_split(info, split)
    places = candidates(info, root, split)
    for place in places:
        assert place.path is not None
        found = {"folder": place.path.is_dir, "packed": lambda p=place.path: is_packed(p)}
        if found.get(place.form, place.path.is_file)():
            return place
    tried = "\n".join(f"  {p.path}  ({p.form})" for p in places)
    how = (
        f"Download {info.archive} from {info.url}"
        f"{f' (md5 {info.md5})' if info.md5 else ''} and put it in {root}, "
        f"or run `leaveout download {name} --data-root {root}`."
    )
    if info.kind == "ood":
        how += f" The link comes from {ODIN_README}."
    raise DatasetNotFoundError(f"{name} ({split}) was not found. Looked for:\n{tried}\n{how}")


def packed_location(info: DatasetInfo, root: Path, split: str) -> Path:
    """Where `leaveout pack NAME` puts a named set under the data root, and where it is found."""
    return root / "packed" / (info.name if info.splits == ("all",) else f"{info.name}-{split}")


def check_split(info: DatasetInfo, split: str | None) -> str:
    split = split or info.splits[-1]
    if split not in info.splits:
        raise ConfigError(f"{info.name} has the splits {', '.join(info.splits)}; not {split!r}")
    return split


def load_dataset(
    name: str,
    split: str | None = None,
    root: str | Path | None = None,
    size: int | None = None,
    seed: int = 0,
    resize: str = "shorter-side",
) -> ImageSet:
    """Load a named set (see DATASETS) or, when `name` is a path, that folder/archive/npz/packed
    set (a folder holding pack.json).

    split: "train" or "test" for CIFAR (default "test"); ignored by OOD sets.
    size: the image side. Files are decoded at it (32 when None); sets stored as arrays (CIFAR,
    npz, digits) are resized to it by `resize` when they differ; a packed set must already have
    it. seed: the noise sets' seed.
    resize: the resize rule of images read from a path (the named ODIN sets keep their own).
    """
    if is_path(name):
        path = Path(name)
        if is_packed(path):
            return checked_packed(load_packed(path), size)
        if path.suffix.lower() == ".npz":
            return resized(recent_npz(path), size, resize)
        return load_images(path, size=size or 32, resize=resize)
    info = dataset_info(name)
    if info.kind == "noise":
        key = ("noise", name, NOISE_COUNT, seed, size or 32)
        return RECENT.get(key, lambda: noise_images(name, NOISE_COUNT, seed=seed, size=size or 32))
    if info.kind == "embedded":
        return load_digits(size or 16)
    split = check_split(info, split)
    where = locate(name, root, split)
    assert where.path is not None
    set_name = f"{name}-{split}" if info.kind == "id" else name
    if where.form == "packed":
        return checked_packed(load_packed(where.path, set_name), size)
    if where.form == "npz":
        data = recent_npz(where.path, set_name)
    elif info.kind == "id":
        data = load_cifar(where.path, name, split)
    else:
        rule = "center-crop"
        data = load_images(where.path, size=size or 32, layout="flat", name=name, resize=rule)
    return resized(data, size, "center-crop" if info.kind == "ood" else resize)


class RecentSets:
    """Sets this process decoded lately (npz archives, noise), up to `max_bytes` of images: a
    script that evaluates several methods decodes each file once. Every caller gets a copy."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self.sets: OrderedDict[tuple, ImageSet] = OrderedDict()

    def get(self, key: tuple, load: Callable[[], ImageSet]) -> ImageSet:
        if key in self.sets:
            self.sets.move_to_end(key)
        else:
            self.sets[key] = load()
            while len(self.sets) > 1 and self.nbytes() > self.max_bytes:
                self.sets.popitem(last=False)
        return copied(self.sets[key])

    def nbytes(self) -> int:
        return sum(data.images.nbytes for data in self.sets.values())


RECENT = RecentSets()


def recent_npz(path: Path, name: str | None = None) -> ImageSet:
    """load_npz(path, name), decoded once per content of the file (its arrays' checksums)."""
    if not path.is_file():
        return load_npz(path, name)  # its error names the missing file
    key = ("npz", str(path.resolve()), npz_checksums(path), name)
    return RECENT.get(key, lambda: load_npz(path, name))


def copied(data: ImageSet) -> ImageSet:
    labels = None if data.labels is None else data.labels.copy()
    return ImageSet(data.images.copy(), labels, data.classes, data.name, data.skipped)


def resized(data: ImageSet, size: int | None, rule: str) -> ImageSet:
    """`data` with its images brought to (size, size) by `rule` (unchanged when size is None)."""
    if size is None or data.image_size == (size, size):
        return data
    images = np.stack(
        [pil_to_array(Image.fromarray(np.asarray(image)), size, rule) for image in data.images]
    )
    return ImageSet(images, data.labels, data.classes, data.name, data.skipped)


def checked_packed(data: ImageSet, size: int | None) -> ImageSet:
    if size is not None and data.image_size != (size, size):
        h, w = data.image_size
        raise ConfigError(
            f"the packed set {data.name} holds {h}x{w} images, not {size}x{size}: pack it again "
            f"with --size {size} {size}"
        )
    return data


def pack_dataset(
    name: str,
    out_dir: str | Path | None = None,
    split: str | None = None,
    root: str | Path | None = None,
    size: tuple[int, int] | None = None,
    resize: str = "shorter-side",
    layout: str = "auto",
    skip_corrupt: bool = False,
    progress: bool = True,
) -> Path:
    """`leaveout pack`: a named set, or a folder/archive/npz path, packed into `out_dir` (for a
    named set, by default where it is then found: packed/<name>[-<split>] under the root).

    size: (height, width); files are decoded at it (32x32 when None), arrays resized to it.
    """
    root = Path(root) if root is not None else default_data_root()
    if is_path(name):
        if out_dir is None:
            raise ConfigError(
                f"say where to write the packed copy of {name}: leaveout pack {name} OUT_DIR"
            )
        source = path_source(Path(name), size, resize, layout, skip_corrupt)
    else:
        info = dataset_info(name)
        split = check_split(info, split)
        out_dir = out_dir or packed_location(info, root, split)
        source = named_source(info, split, root, size, resize)
    return pack(source, out_dir, progress)


def path_source(
    path: Path, size: tuple[int, int] | None, resize: str, layout: str, skip_corrupt: bool
) -> Source:
    if is_packed(path):
        raise ConfigError(f"{path} is already a packed set")
    if path.suffix.lower() == ".npz":
        return set_source(load_npz(path), size, resize, str(path))
    if not path.exists():
        raise DatasetNotFoundError(f"{path} does not exist")
    return file_source(path, size or (32, 32), resize, layout, skip_corrupt)


def named_source(
    info: DatasetInfo, split: str, root: Path, size: tuple[int, int] | None, resize: str
) -> Source:
    """A named set as `pack` reads it: files one at a time, arrays as `load_dataset` gives them
    (so a packed copy holds exactly the images the in-memory path reads)."""
    rule = "center-crop" if info.kind == "ood" else resize
    if info.kind not in ("noise", "embedded"):
        where = locate(info.name, root, split)
        assert where.path is not None
        if where.form == "packed":
            raise ConfigError(f"{info.name} ({split}) is already packed in {where.path}")
        if info.kind == "ood" and where.form in ("folder", "archive"):
            return file_source(where.path, size or (32, 32), rule, "flat", name=info.name)
        origin = f"{where.path} ({where.form})"
    else:
        origin = info.name
    square = size[0] if size and size[0] == size[1] else None
    data = load_dataset(info.name, split, root, size=square, resize=rule)
    return set_source(data, size, rule, origin)


# --- downloads and checksums -----------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """A downloaded (or already present) archive, and how its checksum went."""

    path: Path
    checksum: str  # "md5 ok" or "no published checksum: not verified"


def download(
    name: str, root: str | Path | None = None, source: str | None = None, force: bool = False
) -> Download:
    """Fetch the official archive of `name` into `root` and check its MD5.

    source: another URL (a mirror) or a local file to copy instead of the official URL.
    The file appears under its final name only once complete and checked.
    """
    from tqdm.auto import tqdm

    info = dataset_info(name)
    if not info.archive or not info.url:
        raise DatasetNotFoundError(f"{name} is {info.kind}: there is nothing to download")
    root = Path(root) if root is not None else default_data_root()
    target = root / info.archive
    if source and "://" not in source and not Path(source).is_file():
        raise DatasetNotFoundError(f"--source {source} does not exist")
    if target.is_file() and not force:
        return Download(target, _check_md5(target, info))
    source = source or info.url
    is_url = "://" in source
    if not is_url and not Path(source).is_file():
        raise DatasetNotFoundError(f"--source {source} does not exist")
    try:
        with (
            urllib.request.urlopen(source, timeout=60) if is_url else open(source, "rb") as stream,
            files.atomic_open(target, "wb") as out,
        ):
            total = int(getattr(stream, "headers", {}).get("Content-Length", 0) or 0)
            with tqdm(total=total or None, unit="B", unit_scale=True, desc=info.archive) as bar:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except OSError as exc:
        raise DatasetNotFoundError(
            f"could not download {name} from {source} ({exc}). Put {info.archive} in {root} by "
            f"hand, or pass a mirror or a local copy: leaveout download {name} --source URL_OR_FILE"
        ) from exc
    try:
        return Download(target, _check_md5(target, info))
    except CorruptFileError:
        target.unlink()
        raise


def _check_md5(path: Path, info: DatasetInfo) -> str:
    if not info.md5:
        return "no published checksum: not verified"
    actual = files.file_digest(path, "md5")
    if actual != info.md5:
        raise CorruptFileError(
            f"{path}: md5 {actual} differs from the published {info.md5}; "
            "the file is damaged or not the official one"
        )
    return "md5 ok"


# --- the catalogue -----------------------------------------------------------------------------------


def catalog(root: str | Path | None = None, verify: bool = False) -> list[dict[str, str]]:
    """One row per (set, split): name, split, kind, status, images, location, checksum, source."""
    root = Path(root) if root is not None else default_data_root()
    return [
        _catalog_row(info, root, split, verify)
        for info in DATASETS.values()
        for split in info.splits
    ]


def _catalog_row(info: DatasetInfo, root: Path, split: str, verify: bool) -> dict[str, str]:
    row = {"name": info.name, "split": split, "kind": info.kind, "checksum": "", "source": ""}
    if info.kind == "noise":
        return row | {"status": "generated", "images": str(NOISE_COUNT), "location": "(generated)"}
    if info.kind == "embedded":
        return row | {"status": "embedded", "images": "1797", "location": "(scikit-learn)"}
    try:
        where = locate(info.name, root, split)
    except DatasetNotFoundError:
        expected = root / (info.archive or "")
        return row | {
            "status": "missing",
            "images": "-",
            "location": str(expected),
            "source": info.url or "",
        }
    row |= {"status": "present", "location": f"{where.path} ({where.form})"}
    try:
        row["images"] = str(_count(info, where, split))
    except CorruptFileError as exc:
        return row | {"status": "unreadable", "images": "-", "checksum": str(exc)[:60]}
    if verify:
        row["checksum"] = _verify(info, where, split)
    return row


def _count(info: DatasetInfo, where: Located, split: str) -> int:
    assert where.path is not None
    if where.form == "packed":
        return int(pack_info(where.path)["count"])
    if where.form == "npz":
        return npz_image_count(where.path)
    if info.counts:
        return info.counts[split]
    return count_image_files(where.path)


def _verify(info: DatasetInfo, where: Located, split: str) -> str:
    assert where.path is not None
    if where.form == "archive":
        if not info.md5:
            return "no published md5"
        ok = files.file_digest(where.path, "md5") == info.md5
        return "md5 ok" if ok else "MD5 MISMATCH"
    if where.form == "packed":
        return "packed (sha256 in pack.json)"
    if where.form == "npz":
        expected = (info.npz_sha256 or {}).get(split)
        if not expected:
            return "no known sha256"
        ok = files.file_digest(where.path, "sha256") == expected
        return "sha256 ok" if ok else "SHA256 MISMATCH"
    return "folder (not checkable)"
