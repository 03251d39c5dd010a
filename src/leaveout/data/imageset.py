"""`ImageSet`: one data set, the unit every reader returns: its images in memory, or packed on
disk and read on demand (`npyfile.PackedImages`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import ShapeError
from .npyfile import PackedImages, iter_chunks


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images with optional labels.

    images: (N, H, W, 3) uint8 RGB, a numpy array or `PackedImages` (a packed set on disk). labels: (N,) int64 in [0, len(classes)) or None (unlabelled).
    skipped: names of unreadable files that were skipped on request (empty by default).
    """

    images: np.ndarray | PackedImages
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

    def __repr__(self) -> str:
        h, w = self.image_size
        labels = "unlabelled" if self.labels is None else f"{self.num_classes} classes"
        return f"ImageSet({self.name!r}: {len(self)} images, {h}x{w} RGB, {labels})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def is_packed(self) -> bool:
        """Whether the images stay on disk (a packed set), read batch by batch."""
        return isinstance(self.images, PackedImages)

    def subset(self, indices: np.ndarray, name: str | None = None) -> ImageSet:
        """The images at `indices` (a copy in memory; a view for a packed set), with labels and
        class names kept."""
        indices = np.asarray(indices, dtype=np.int64)
        labels = None if self.labels is None else self.labels[indices]
        images = self.images
        chosen = images.take(indices) if isinstance(images, PackedImages) else images[indices]
        return ImageSet(chosen, labels, self.classes, name or self.name)

    def chunks(self) -> Iterator[np.ndarray]:
        """The images in order, a few tens of megabytes at a time."""
        return iter_chunks(self.images)

    def fingerprint(self) -> str:
        """A short digest of the pixels (cache keys: the same images give the same key, packed
        or in memory)."""
        known = self.__dict__.get("packed_fingerprint")
        if known is not None:  # a packed set's file does not change under it: read it once
            return known
        digest = hashlib.sha1()
        for chunk in self.chunks():
            digest.update(np.ascontiguousarray(chunk).data)
        if self.is_packed:
            self.__dict__["packed_fingerprint"] = digest.hexdigest()[:12]
        return digest.hexdigest()[:12]

    def class_counts(self) -> np.ndarray:
        """Images per class, (num_classes,); empty for an unlabelled set."""
        if self.labels is None:
            return np.zeros(0, dtype=np.int64)
        return np.bincount(self.labels, minlength=self.num_classes)

    def describe(self) -> str:
        """A few lines for a person: size, shape, classes and counts."""
        h, w = self.image_size
        lines = [f"{self.name}: {len(self)} images, {h}x{w} RGB"]
        if self.labels is None:
            lines.append("unlabelled")
        else:
            per_class = ", ".join(f"{c} {n}" for c, n in zip(self.classes, self.class_counts()))
            lines.append(f"{self.num_classes} classes: {per_class}")
        if len(self):
            total = sum(
                chunk.reshape(-1, 3).sum(axis=0, dtype=np.float64) for chunk in self.chunks()
            )
            mean = total / (len(self) * self.image_size[0] * self.image_size[1])
            lines.append("mean pixel (R, G, B): " + ", ".join(f"{m:.1f}" for m in mean))
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable files")
        return "\n".join(lines)
