"""Image files, folders and archives: one walker over the files, one decoder with a resize rule.

Resize rules (the `data.resize` setting) bring any image to the network's square side:
- "shorter-side" (default for your own images): scale the shorter side to the target, keeping the
  aspect ratio, then take the central square. The whole scene stays in view.
- "stretch": scale both sides to the target, ignoring the aspect ratio.
- "center-crop": ODIN's rule for its crop sets: the central square when the image is at least the
  target in both dimensions, else "stretch". The named ODIN sets always use it.
Scaling is Pillow's bilinear filter (anti-aliased when shrinking).
"""

from __future__ import annotations

import io
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..config import RESIZE_RULES
from ..errors import (
    ConfigError,
    CorruptFileError,
    DatasetNotFoundError,
    LeaveoutWarning,
    ShapeError,
)
from .imageset import ImageSet
from .npyfile import PackedImages

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
SKIP_HINT = "pass --skip-corrupt (skip_corrupt=True) to skip unreadable images"


def check_resize_rule(rule: str) -> str:
    if rule not in RESIZE_RULES:
        raise ConfigError(f"resize rule must be one of {', '.join(RESIZE_RULES)}; got {rule!r}")
    return rule


Size = int | tuple[int, int]  # a square side, or (height, width)


def resize_image(image: Image.Image, size: Size, rule: str = "shorter-side") -> Image.Image:
    """`image` brought to (size, size), or (height, width), by `rule` (module docstring; for a
    non-square target "shorter-side" scales the image to cover it, then takes the centre)."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    width, height = image.size
    if (width, height) == (out_w, out_h):
        return image
    if rule == "center-crop" and width >= out_w and height >= out_h:
        return _central_crop(image, out_h, out_w)
    if rule == "shorter-side":
        scale = max(out_w / width, out_h / height)
        scaled = (max(out_w, round(width * scale)), max(out_h, round(height * scale)))
        return _central_crop(image.resize(scaled, Image.Resampling.BILINEAR), out_h, out_w)
    return image.resize((out_w, out_h), Image.Resampling.BILINEAR)


def _central_crop(image: Image.Image, height: int, width: int) -> Image.Image:
    left, top = (image.size[0] - width) // 2, (image.size[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB of any Pillow mode: grey and palette expanded, alpha composited on black, 16-bit scaled."""
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


def pil_to_array(image: Image.Image, size: Size, rule: str = "shorter-side") -> np.ndarray:
    """(size, size, 3), or (height, width, 3), uint8 RGB of a Pillow image."""
    return np.asarray(resize_image(to_rgb(image), size, rule), dtype=np.uint8)


def decode_image(
    data: bytes, source: str, size: Size = 32, resize: str = "shorter-side"
) -> np.ndarray:
    """Decode one image file's bytes to (size, size, 3) (or (height, width, 3)) uint8 RGB by the
    rule `resize`.

    Raises CorruptFileError naming `source` when the bytes are not a readable image.
    """
    check_resize_rule(resize)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return pil_to_array(image, size, resize)
    except Exception as exc:
        reason = (
            "not an image Pillow can read"
            if isinstance(exc, UnidentifiedImageError)
            else f"{type(exc).__name__}: {exc}"
        )
        raise CorruptFileError(f"{source}: cannot decode image ({reason}); {SKIP_HINT}") from exc


# --- the file walker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFile:
    """One image file found under a source: `name` relative to it, `where` for messages."""

    name: str
    where: str
    read: Callable[[], bytes]


def is_image_name(name: str) -> bool:
    base = PurePosixPath(name).name
    return not base.startswith(".") and PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def walk_image_files(path: str | Path) -> Iterator[ImageFile]:
    """Every image file of a folder (recursively, sorted), an archive, or one image file."""
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"{path} does not exist")
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            rel = file.relative_to(path).as_posix()
            if file.is_file() and is_image_name(rel):
                yield ImageFile(rel, str(file), file.read_bytes)
    elif is_archive(path):
        yield from _archive_files(path)
    else:
        yield ImageFile("", str(path), path.read_bytes)


def _archive_files(path: Path) -> Iterator[ImageFile]:
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir() and is_image_name(info.filename):
                        data = archive.read(info)
                        yield ImageFile(info.filename, f"{path}:{info.filename}", lambda d=data: d)
            return
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile() and is_image_name(member.name):
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    yield ImageFile(member.name, f"{path}:{member.name}", lambda d=data: d)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CorruptFileError(f"{path}: not a readable archive ({exc})") from exc


def count_image_files(path: str | Path) -> int:
    """How many image files a folder or archive holds, without decoding any image."""
    return len(list_image_files(path))


def list_image_files(path: str | Path) -> list[tuple[str, int]]:
    """(name, size in bytes) of every image file of a folder or archive, named as
    `walk_image_files` names them, without reading any image."""
    path = Path(path)
    if path.is_dir():
        return [
            (p.relative_to(path).as_posix(), p.stat().st_size)
            for p in sorted(path.rglob("*"))
            if p.is_file() and is_image_name(p.relative_to(path).as_posix())
        ]
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                return [
                    (i.filename, i.file_size)
                    for i in archive.infolist()
                    if not i.is_dir() and is_image_name(i.filename)
                ]
        with tarfile.open(path, "r:*") as tar:
            return [(m.name, m.size) for m in tar if m.isfile() and is_image_name(m.name)]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CorruptFileError(f"{path}: not a readable archive ({exc})") from exc


def read_image_file(file: ImageFile) -> bytes:
    """The file's bytes; an unreadable file is a CorruptFileError naming it."""
    try:
        return file.read()
    except OSError as exc:
        raise CorruptFileError(f"{file.where}: cannot read ({exc.strerror or exc})") from exc


def decode_files(
    found: Iterable[ImageFile], size: int, resize: str, skip_corrupt: bool
) -> tuple[list[tuple[ImageFile, np.ndarray]], list[str]]:
    """Decode every file; unreadable ones raise, or are skipped and named in the second list."""
    decoded, skipped = [], []
    for file in found:
        try:
            decoded.append((file, decode_image(read_image_file(file), file.where, size, resize)))
        except CorruptFileError:
            if not skip_corrupt:
                raise
            skipped.append(file.where)
    return decoded, skipped


def warn_skipped(source: str, skipped: list[str]) -> None:
    if skipped:
        message = f"{source}: skipped {len(skipped)} unreadable images, e.g. {skipped[0]}"
        warnings.warn(LeaveoutWarning(message), stacklevel=3)


# --- labelled sets from folders and archives -----------------------------------------------------


def strip_wrappers(paths: list[str]) -> list[str]:
    """Drop leading folders that every path shares while files stay below them (archives)."""
    parts = [PurePosixPath(p).parts for p in paths]
    while parts and all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]
    if parts and all(len(p) == 2 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]  # one wrapper folder around a flat set
    return ["/".join(p) for p in parts]


def labels_from_layout(
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
        raise ConfigError(f"layout must be 'auto', 'classes' or 'flat', got {layout!r}")
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
    resize: str = "shorter-side",
) -> ImageSet:
    """Read a folder or a .tar/.tar.gz/.tgz/.zip archive of images.

    layout: "classes" (one sub-folder per class, ImageFolder style), "flat" (unlabelled, every
    image at any depth), or "auto" (flat when all images sit at the top, else classes).
    Archives ignore wrapper folders that hold everything. Images are sorted by path.
    resize: how images of another size reach (size, size) (module docstring).
    skip_corrupt: skip unreadable images (listed in `ImageSet.skipped`) instead of raising.
    """
    path = Path(path)
    if path.is_file() and not is_archive(path):
        raise CorruptFileError(f"{path}: not a folder nor a {'/'.join(ARCHIVE_SUFFIXES)} archive")
    decoded, skipped = decode_files(walk_image_files(path), size, resize, skip_corrupt)
    if not decoded:
        raise DatasetNotFoundError(
            f"{path}: no readable image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    decoded.sort(key=lambda item: item[0].name)
    names = [file.name for file, _ in decoded]
    if is_archive(path):
        names = strip_wrappers(names)
    labels, classes = labels_from_layout(names, layout, path)
    warn_skipped(str(path), skipped)
    images = np.stack([image for _, image in decoded])
    set_name = name or path.name.split(".")[0]
    return ImageSet(images, labels, classes, set_name, skipped=tuple(skipped))


def check_packed_size(path: str | Path, got: tuple[int, int], side: int) -> None:
    if got != (side, side):
        raise ShapeError(
            f"{path} holds {got[0]}x{got[1]} images; the network takes {side}x{side}: pack it "
            f"again with --size {side} {side}"
        )


@dataclass(frozen=True)
class NamedImages:
    """Images decoded from files, with the file each came from (`archive:member` in archives)."""

    names: list[str]
    images: np.ndarray | PackedImages
    skipped: list[str]


def read_named_images(
    paths: Iterable[str | Path],
    size: int = 32,
    skip_corrupt: bool = False,
    resize: str = "shorter-side",
) -> NamedImages:
    """Decode image files, folders (recursively), archives, npz arrays and packed sets, with a
    name per image.

    Names are file paths, `archive:member` inside archives, `file.npz[i]` for npz rows and
    `folder:name` for packed sets. One packed set alone stays on disk (read batch by batch).
    """
    from .npz import load_npz
    from .packed import is_packed, load_packed, packed_names

    paths = list(paths)
    if len(paths) == 1 and is_packed(paths[0]):
        data = load_packed(paths[0])
        check_packed_size(paths[0], data.image_size, size)
        return NamedImages(packed_names(paths[0]), data.images, [])
    names: list[str] = []
    arrays: list[np.ndarray] = []
    skipped: list[str] = []
    for path in paths:
        if is_packed(path):
            data = load_packed(path)
            check_packed_size(path, data.image_size, size)
            names += packed_names(path)
            arrays += list(np.asarray(data.images))
            continue
        if str(path).lower().endswith(".npz"):
            data = load_npz(path)
            if data.image_size != (size, size):
                raise ShapeError(
                    f"{path} holds {data.image_size[0]}x{data.image_size[1]} images; "
                    f"the network takes {size}x{size}"
                )
            names += [f"{path}[{i}]" for i in range(len(data))]
            arrays += list(data.images)
            continue
        decoded, missed = decode_files(walk_image_files(path), size, resize, skip_corrupt)
        skipped += missed
        names += [file.where for file, _ in decoded]
        arrays += [image for _, image in decoded]
    if not arrays:
        raise DatasetNotFoundError("no readable images in " + ", ".join(map(str, paths)))
    warn_skipped(", ".join(map(str, paths)), skipped)
    return NamedImages(names, np.stack(arrays), skipped)
