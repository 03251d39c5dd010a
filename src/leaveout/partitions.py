"""Leave-out partitions: K disjoint groups of classes; member i leaves group i out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import files
from .errors import ConfigError, CorruptFileError


@dataclass(frozen=True, init=False)
class LeaveOutPartition:
    """K disjoint groups covering classes 0..num_classes-1.

    Default rule (method.md section 1): numpy.random.RandomState(seed).permutation(num_classes)
    cut into K consecutive slices (sizes differ by at most one when K does not divide N).
    Seed 3 on CIFAR-10 gives the published pairs (dog, deer), (automobile, bird), ...
    Member labels: the kept classes of member i in increasing dataset order, numbered 0..M-1.
    """

    num_classes: int
    groups: tuple[tuple[int, ...], ...]
    seed: int | None

    def __init__(
        self,
        num_classes: int,
        k: int | None = None,
        seed: int | None = 3,
        groups: list[list[int]] | tuple[tuple[int, ...], ...] | None = None,
    ) -> None:
        if groups is None:
            if k is None or not 2 <= k <= num_classes:
                raise ConfigError(
                    f"k must be in [2, {num_classes}] for {num_classes} classes, got {k}"
                )
            order = np.random.RandomState(seed).permutation(num_classes)
            groups = [part.tolist() for part in np.array_split(order, k)]
        else:
            seed = None
        clean = tuple(tuple(int(c) for c in g) for g in groups)
        _check_groups(clean, num_classes, k)
        object.__setattr__(self, "num_classes", int(num_classes))
        object.__setattr__(self, "groups", clean)
        object.__setattr__(self, "seed", seed)

    @property
    def k(self) -> int:
        return len(self.groups)

    def left_out(self, member: int) -> tuple[int, ...]:
        """Dataset labels that member `member` never learns."""
        return self.groups[member]

    def kept(self, member: int) -> tuple[int, ...]:
        """Dataset labels that member `member` classifies, in increasing order."""
        out = set(self.groups[member])
        return tuple(c for c in range(self.num_classes) if c not in out)

    def member_num_classes(self, member: int) -> int:
        return self.num_classes - len(self.groups[member])

    def to_member_labels(self, member: int, labels: np.ndarray) -> np.ndarray:
        """Dataset labels (N,) -> member labels (N,) int64; left-out classes map to -1."""
        table = np.full(self.num_classes, -1, dtype=np.int64)
        table[list(self.kept(member))] = np.arange(self.member_num_classes(member))
        return table[np.asarray(labels, dtype=np.int64)]

    def to_dataset_labels(self, member: int, member_labels: np.ndarray) -> np.ndarray:
        """Member labels (N,) in [0, M) -> dataset labels (N,) int64."""
        return np.asarray(self.kept(member), dtype=np.int64)[np.asarray(member_labels)]

    def describe(self, class_names: tuple[str, ...] | None = None) -> str:
        def name(c: int) -> str:
            return class_names[c] if class_names else str(c)

        return "\n".join(
            f"member {i}: leaves out {', '.join(name(c) for c in g)}"
            for i, g in enumerate(self.groups)
        )

    def to_dict(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "seed": self.seed,
            "groups": [list(g) for g in self.groups],
        }

    def save(self, path: str | Path) -> None:
        files.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> LeaveOutPartition:
        obj = files.read_json(path)
        try:
            part = cls(int(obj["num_classes"]), groups=obj["groups"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptFileError(f"{path}: not a saved partition ({exc})") from exc
        object.__setattr__(part, "seed", obj.get("seed"))
        return part


def _check_groups(groups: tuple[tuple[int, ...], ...], num_classes: int, k: int | None) -> None:
    flat = [c for g in groups for c in g]
    if k is not None and len(groups) != k:
        raise ConfigError(f"{len(groups)} groups given but k={k}")
    if len(groups) < 2 or any(not g for g in groups):
        raise ConfigError(f"a partition needs at least 2 non-empty groups, got {groups}")
    if sorted(flat) != list(range(num_classes)):
        raise ConfigError(
            f"groups must cover classes 0..{num_classes - 1} exactly once each, got {groups}"
        )
