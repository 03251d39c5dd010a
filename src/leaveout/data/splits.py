"""Splits: named, disjoint index parts of a set, and the train/val/test/unseen parts of a run."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import files
from ..config import DataSettings
from ..errors import ConfigError, CorruptFileError, LeaveoutWarning, ShapeError
from .imageset import ImageSet
from .sets import DATASETS, load_dataset

# Below this many images a class is too small to split into train/val/test parts reliably.
MIN_IMAGES_PER_CLASS = 10


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
        files.write_json(
            path, {"rule": self.rule, "parts": {k: v.tolist() for k, v in self.parts.items()}}
        )

    @classmethod
    def load(cls, path: str | Path) -> Split:
        obj = files.read_json(path)
        try:
            parts = {k: np.asarray(v, dtype=np.int64) for k, v in obj["parts"].items()}
            return cls(parts, str(obj["rule"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptFileError(f"{path}: not a saved split ({exc})") from exc


def odin_split(n: int, tune: int = 1000) -> Split:
    """ODIN's protocol: the first `tune` images for tuning, the rest for reporting."""
    if n <= tune:
        raise ShapeError(f"a set of {n} images has nothing left after the {tune}-image tuning part")
    return Split({"tune": np.arange(tune), "report": np.arange(tune, n)}, f"odin(tune={tune})")


SPLIT_RULES = ("seeded", "odin-first")


def tuning_size(n: int) -> int:
    """ODIN's 1000 tuning images; a fifth of a set of under 2000 images."""
    return 1000 if n >= 2000 else max(1, n // 5)


def content_keys(data: ImageSet, seed: int = 0) -> np.ndarray:
    """A seeded 64-bit key per image, from its pixels only: an image gets the same key wherever
    it sits in the set, so orders drawn from these keys do not depend on the order of the rows."""
    salt = int(seed).to_bytes(8, "little", signed=True)
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(image.tobytes(), digest_size=8, salt=salt).digest(), "little"
            )
            for chunk in data.chunks()
            for image in chunk
        ],
        dtype=np.uint64,
    )


def report_split(data: ImageSet, rule: str = "seeded", seed: int = 0) -> Split:
    """The tuning/reporting split of an evaluation set (ODIN's protocol, method.md section 6).

    "seeded" (default): `tuning_size` images chosen by the seeded content keys, stratified by
    class for a labelled set (every class with two or more images in both parts), at random for
    an unlabelled one; the same images whatever the order of the rows. "odin-first": the first
    images tune, as ODIN did on the interleaved official CIFAR order; refused for a labelled set
    whose first images lack classes (a set sorted by class).
    """
    n = len(data)
    if n < 2:
        raise ShapeError(f"{data.name} has {n} images; a tuning/reporting split needs at least 2")
    if rule not in SPLIT_RULES:
        raise ConfigError(f"split rule must be one of {', '.join(SPLIT_RULES)}; got {rule!r}")
    tune = tuning_size(n)
    if rule == "odin-first":
        split = odin_split(n, tune)
        check_classes_in_both(split, data)
        return split
    keys = content_keys(data, seed)
    if data.labels is None:
        chosen = np.lexsort((np.arange(n), keys))[:tune]
    else:
        chosen = _stratified_by_keys(data.labels, keys, tune, data.num_classes)
    report = np.setdiff1d(np.arange(n), chosen)
    return Split(
        {"tune": np.sort(chosen), "report": report}, f"seeded(seed={seed}, tune={len(chosen)})"
    )


def _stratified_by_keys(
    labels: np.ndarray, keys: np.ndarray, tune: int, classes: int
) -> np.ndarray:
    counts = np.bincount(labels, minlength=classes)
    exact = tune * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    for c in np.argsort(-(exact - quota), kind="stable")[: tune - quota.sum()]:
        quota[c] += 1  # largest remainders
    quota = np.where(counts >= 2, np.clip(quota, 1, counts - 1), 0)
    chosen = []
    for c in np.flatnonzero(quota):
        rows = np.flatnonzero(labels == c)
        chosen.append(rows[np.lexsort((rows, keys[rows]))][: quota[c]])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def check_classes_in_both(split: Split, data: ImageSet) -> None:
    """Refuse a split of a labelled set whose tuning or reporting part lacks classes."""
    if data.labels is None:
        return
    present = set(np.unique(data.labels).tolist())
    for part, index in split.parts.items():
        missing = sorted(present - set(np.unique(data.labels[index]).tolist()))
        if missing:
            names = ", ".join(data.classes[c] for c in missing[:5])
            raise ConfigError(
                f"{data.name}: the {split.rule} {part} part has no images of {len(missing)} "
                f"classes ({names}): the set is not in the interleaved official order (a set sorted "
                "by class loses whole classes to tuning); use the default seeded split"
            )


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


# --- the parts of a run ------------------------------------------------------------------------


def load_run_sets(
    settings: DataSettings, seed: int, root: str | Path | None = None
) -> dict[str, ImageSet]:
    """train / val / test parts of the configured set, restricted to `settings.id_classes`.

    Adds "unseen": test images of the classes outside `id_classes` (an OOD set), when there are.
    val is a stratified part of the training split (seed `seed`); sets without a test split
    (digits, image folders) give a stratified test part first.
    """
    full_train, test = _train_and_test(settings, seed, root)
    _warn_small_classes(full_train)
    split = stratified_split(full_train.labels, settings.val_fraction, seed)
    if settings.max_per_class:
        split = _cap_per_class(split, full_train.labels, settings.max_per_class)
    out = split.apply(full_train)
    out["test"] = test
    for part in ("train", "val", "test"):
        if not len(out[part]):
            raise ConfigError(
                f"{settings.dataset}: the {part} part is empty ({len(full_train) + len(test)} "
                "images); use a larger set or larger data.val_fraction / data.test_fraction"
            )
    if settings.id_classes is not None:
        out = _restrict_classes(out, settings.id_classes)
    return out


def _train_and_test(
    settings: DataSettings, seed: int, root: str | Path | None
) -> tuple[ImageSet, ImageSet]:
    name = settings.dataset
    info = DATASETS.get(name)
    size = settings.image_size or None
    if info is not None and "test" in info.splits:
        train = load_dataset(name, "train", root, size=size, resize=settings.resize)
        test = load_dataset(name, "test", root, size=size, resize=settings.resize)
    else:
        whole = load_dataset(name, root=root, size=size, resize=settings.resize)
        if whole.labels is None:
            raise ConfigError(
                f"data.dataset {name!r} has no labels: training needs one sub-folder per class"
            )
        parts = stratified_split(whole.labels, settings.test_fraction, seed, ("train", "test"))
        train, test = parts.apply(whole).values()
    if train.labels is None:
        raise ConfigError(f"data.dataset {name!r} has no labels; training needs classes")
    return train, test


def _warn_small_classes(data: ImageSet) -> None:
    counts = data.class_counts()
    small = [f"{data.classes[c]} ({n})" for c, n in enumerate(counts) if n < MIN_IMAGES_PER_CLASS]
    if small:
        warnings.warn(
            LeaveoutWarning(
                f"{data.name}: {len(small)} classes have fewer than {MIN_IMAGES_PER_CLASS} "
                f"images: {', '.join(small[:5])}; their validation and test parts may be empty"
            ),
            stacklevel=3,
        )


def _cap_per_class(split: Split, labels: np.ndarray, cap: int) -> Split:
    train = split.parts["train"]
    keep = np.concatenate([train[labels[train] == c][:cap] for c in np.unique(labels)])
    return Split({"train": np.sort(keep), "val": split.parts["val"]}, f"{split.rule}, cap {cap}")


def _restrict_classes(parts: dict[str, ImageSet], id_classes: list[int]) -> dict[str, ImageSet]:
    first = parts["train"]
    if len(set(id_classes)) != len(id_classes) or not set(id_classes) <= set(
        range(first.num_classes)
    ):
        raise ConfigError(
            f"data.id_classes {id_classes} must be distinct classes of 0..{first.num_classes - 1}"
        )
    relabel = np.full(first.num_classes, -1, dtype=np.int64)
    relabel[id_classes] = np.arange(len(id_classes))
    classes = tuple(first.classes[c] for c in id_classes)
    out = {}
    for name, data in parts.items():
        assert data.labels is not None
        kept = data.subset(np.flatnonzero(relabel[data.labels] >= 0))
        assert kept.labels is not None
        out[name] = ImageSet(kept.images, relabel[kept.labels], classes, data.name)
    test = parts["test"]
    assert test.labels is not None
    unseen = np.flatnonzero(relabel[test.labels] < 0)
    if len(unseen):
        seen_not = test.subset(unseen, f"{test.name}-unseen-classes")
        out["unseen"] = ImageSet(seen_not.images, None, (), seen_not.name)
    return out
