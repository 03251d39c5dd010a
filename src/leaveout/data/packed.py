"""Packed sets: any source decoded once into a folder that later commands read batch by batch.

A packed set is a folder holding
- `images.npy`: the (N, H, W, 3) uint8 pixels, a standard `.npy` file (never pickled; numpy's
  `load(path, mmap_mode="r")` opens it), read by leaveout a batch at a time (`npyfile`);
- `pack.json`: the set's name, labels, class names, the source name of every image, the resize
  rule and size, and two checksums of the pixels (sha256, and the `ImageSet.fingerprint`).

`pack` works in `OUT_DIR.partial/` and renames it to OUT_DIR when complete, so OUT_DIR is either
absent or whole. An interrupted `pack` continues where it stopped when run again with the same
source and settings (progress.json records the images done); other settings start afresh.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import files
from ..errors import ConfigError, CorruptFileError, DatasetNotFoundError
from .images import (
    decode_image,
    is_archive,
    labels_from_layout,
    list_image_files,
    read_image_file,
    resize_image,
    strip_wrappers,
    walk_image_files,
)
from .imageset import ImageSet
from .npyfile import PackedImages, iter_chunks, read_header, write_header

PACK_FILE = "pack.json"
IMAGES_FILE = "images.npy"
PROGRESS_FILE = "progress.json"
FORMAT = 1
CHECKPOINT_EVERY = 2048  # images between two saved progress records


def is_packed(path: str | Path) -> bool:
    return (Path(path) / PACK_FILE).is_file()


def load_packed(path: str | Path, name: str | None = None) -> ImageSet:
    """The packed set in folder `path`; its pixels stay on disk (`ImageSet.is_packed`)."""
    path = Path(path)
    if not is_packed(path):
        raise DatasetNotFoundError(
            f"{path} is not a packed set (no {PACK_FILE}); make one with `leaveout pack SOURCE {path}`"
        )
    meta = files.read_json(path / PACK_FILE)
    missing = [
        k
        for k in ("format", "name", "count", "shape", "classes", "labels", "names")
        if k not in meta
    ]
    if missing:
        raise CorruptFileError(f"{path / PACK_FILE} lacks {', '.join(missing)}")
    if meta["format"] != FORMAT:
        raise CorruptFileError(f"{path / PACK_FILE}: format {meta['format']}, expected {FORMAT}")
    images = PackedImages(path / IMAGES_FILE)
    if len(images) != meta["count"] or list(images.row_shape) != meta["shape"][1:]:
        raise CorruptFileError(
            f"{path / IMAGES_FILE} holds {images.shape} images but {PACK_FILE} says "
            f"{meta['count']} of {meta['shape'][1:]}"
        )
    listed = [len(meta["names"])] + ([] if meta["labels"] is None else [len(meta["labels"])])
    if any(n != meta["count"] for n in listed):
        raise CorruptFileError(f"{path / PACK_FILE}: {meta['count']} images but lists of {listed}")
    labels = None if meta["labels"] is None else np.asarray(meta["labels"], dtype=np.int64)
    return ImageSet(images, labels, tuple(meta["classes"]), name or meta["name"])


def packed_names(path: str | Path) -> list[str]:
    """`folder:name` for every image of a packed set (its source file, or `source[i]`)."""
    return [f"{path}:{name}" for name in files.read_json(Path(path) / PACK_FILE)["names"]]


def pack_info(path: str | Path) -> dict[str, Any]:
    """pack.json of a packed set, without the per-image lists."""
    meta = files.read_json(Path(path) / PACK_FILE)
    return {k: v for k, v in meta.items() if k not in ("labels", "names")}


# --- sources ------------------------------------------------------------------------------------


@dataclass
class Source:
    """What `pack` reads: `names` in the packed order, and `rows()` yielding (position, image)
    in the order the source is read (which for archives need not be the packed order)."""

    name: str
    description: str
    names: list[str]
    labels: np.ndarray | None
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    signature: dict[str, Any]
    rows: Any  # Callable[[int, list[str]], Iterator[tuple[int, np.ndarray | None]]]


def set_source(data: ImageSet, size: tuple[int, int] | None, rule: str, origin: str) -> Source:
    """An ImageSet already read (CIFAR pickles, npz, the generated sets), optionally resized."""
    height, width = size or data.image_size

    def rows(start: int, skipped: list[int]) -> Iterator[tuple[int, np.ndarray | None]]:
        for i in range(start, len(data)):
            image = np.asarray(data.images[i])
            if image.shape[:2] != (height, width):
                image = np.asarray(resize_image(Image.fromarray(image), (height, width), rule))
            yield i, image

    return Source(
        name=data.name,
        description=origin,
        names=[f"{origin}[{i}]" for i in range(len(data))],
        labels=data.labels,
        classes=data.classes,
        image_shape=(height, width, 3),
        signature={
            "source": origin,
            "count": len(data),
            "fingerprint": data.fingerprint(),
            "resize": rule,
        },
        rows=rows,
    )


def file_source(
    path: Path,
    size: tuple[int, int],
    rule: str,
    layout: str = "auto",
    skip_corrupt: bool = False,
    name: str | None = None,
) -> Source:
    """A folder or archive of image files, decoded one at a time."""
    listed = list_image_files(path)
    if not listed:
        raise DatasetNotFoundError(f"{path}: no image files")
    order = sorted(range(len(listed)), key=lambda i: listed[i][0])  # stable: like load_images
    names = [listed[i][0] for i in order]
    position = np.empty(len(order), dtype=np.int64)  # of the i-th file read, in the packed order
    position[order] = np.arange(len(order))
    shown = strip_wrappers(names) if is_archive(path) else names
    labels, classes = labels_from_layout(shown, layout, path)

    def rows(start: int, skipped: list[int]) -> Iterator[tuple[int, np.ndarray | None]]:
        for index, file in enumerate(walk_image_files(path)):
            if index < start:
                continue
            if index >= len(position) or file.name != names[position[index]]:
                raise CorruptFileError(f"{path} changed while it was packed (at {file.where})")
            try:
                image = decode_image(read_image_file(file), file.where, size, rule)
            except CorruptFileError:
                if not skip_corrupt:
                    raise
                skipped.append(int(position[index]))
                image = None
            yield int(position[index]), image

    listing = hashlib.sha256("\n".join(f"{n}\t{s}" for n, s in sorted(listed)).encode())
    return Source(
        name=name or path.name.split(".")[0],
        description=str(path),
        names=names,
        labels=labels,
        classes=classes,
        image_shape=(size[0], size[1], 3),
        signature={
            "source": str(path.resolve()),
            "listing": listing.hexdigest()[:16],
            "resize": rule,
            "layout": layout,
            "skip_corrupt": skip_corrupt,
        },
        rows=rows,
    )


# --- writing --------------------------------------------------------------------------------------


def pack(source: Source, out_dir: str | Path, progress: bool = True) -> Path:
    """Write `source` as a packed set in `out_dir` (see the module docstring); returns out_dir.

    A complete out_dir is refused (remove it first); an interrupted pack of the same source and
    settings resumes."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ConfigError(f"{out_dir} exists; remove it to pack again")
    work = out_dir.with_name(out_dir.name + ".partial")
    signature = source.signature | {"shape": [len(source.names), *source.image_shape]}
    state = resume_state(work, signature)
    partial = work / IMAGES_FILE
    if state["done"] == 0:
        write_header(partial, (len(source.names), *source.image_shape), np.uint8)
        files.write_json(work / PROGRESS_FILE, state)
    offset = read_header(partial)[2]
    row_bytes = int(np.prod(source.image_shape))
    skipped: list[int] = list(state["skipped"])
    done = state["done"]
    with (
        open(partial, "r+b") as out,
        tqdm(
            total=len(source.names),
            initial=done,
            unit="img",
            desc=f"pack {source.name}",
            disable=not progress,
        ) as bar,
    ):
        for position, image in source.rows(done, skipped):
            if image is not None:
                if image.shape != source.image_shape:
                    raise CorruptFileError(f"{source.names[position]}: decoded to {image.shape}")
                os.pwrite(
                    out.fileno(), np.ascontiguousarray(image).data, offset + position * row_bytes
                )
            done += 1
            bar.update()
            if done % CHECKPOINT_EVERY == 0:
                out.flush()
                os.fsync(out.fileno())
                files.write_json(
                    work / PROGRESS_FILE, signature | {"done": done, "skipped": skipped}
                )
        out.flush()
        os.fsync(out.fileno())
    if done != len(source.names):
        raise CorruptFileError(
            f"{source.description}: {done} images read but {len(source.names)} listed; it changed "
            f"while it was packed. Remove {work} and pack again"
        )
    files.write_json(work / PROGRESS_FILE, signature | {"done": done, "skipped": skipped})
    finish(source, work, sorted(skipped))
    os.replace(work, out_dir)
    return out_dir


def resume_state(work: Path, signature: dict[str, Any]) -> dict[str, Any]:
    """The progress of an interrupted pack of the same source, else a fresh start in `work`."""
    record = work / PROGRESS_FILE
    if record.is_file():
        state = files.read_json(record)
        if {k: state.get(k) for k in signature} == signature:
            return state
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return signature | {"done": 0, "skipped": []}


def finish(source: Source, work: Path, skipped: list[int]) -> None:
    """Drop the rows of skipped files (once: a resumed finish finds them dropped), then write
    pack.json with the checksums."""
    keep = np.setdiff1d(np.arange(len(source.names)), skipped)
    names = [source.names[i] for i in keep]
    labels = None if source.labels is None else source.labels[keep]
    if len(PackedImages(work / IMAGES_FILE)) != len(keep):
        compact(work / IMAGES_FILE, keep)
    images = PackedImages(work / IMAGES_FILE)
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    for chunk in iter_chunks(images):
        sha256.update(chunk.data)
        sha1.update(chunk.data)
    meta = {
        "format": FORMAT,
        "name": source.name,
        "source": source.description,
        "count": len(names),
        "shape": list(images.shape),
        "classes": list(source.classes),
        "labels": None if labels is None else labels.tolist(),
        "names": names,
        "skipped": [source.names[i] for i in skipped],
        "pixels_sha256": sha256.hexdigest(),
        "fingerprint": sha1.hexdigest()[:12],
    }
    files.write_json(work / PACK_FILE, meta)
    (work / PROGRESS_FILE).unlink(missing_ok=True)


def compact(path: Path, keep: np.ndarray) -> None:
    """Rewrite the .npy at `path` with only the rows `keep` (in order)."""
    images = PackedImages(path)
    tmp = path.with_suffix(".compact")
    offset = write_header(tmp, (len(keep), *images.row_shape), np.uint8)
    with open(tmp, "r+b") as out:
        out.seek(offset)
        for start in range(0, len(keep), 4096):
            out.write(images[keep[start : start + 4096]].data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
