"""What the detectors on penultimate features share: `FeatureDetector` (features computed once
per batch, per-member statistics of the training images with caching, member views), the
training features of each member's kept classes streamed batch by batch, and a member's linear
classifier applied in float64."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.imageset import ImageSet
from ..ensemble import LeaveOutEnsemble
from ..errors import ConfigError, ShapeError
from .base import Detector, Point

Statistics = dict[str, torch.Tensor]
FeatureBatches = Callable[[], Iterator[tuple[int, torch.Tensor]]]


class FeatureDetector(Detector):
    """A detector on each member's penultimate features (`member.forward_features`).

    Subclasses implement `score_outputs(member_index, features, point)` (or `feature_scores` for
    every point at once) and, when `needs_training_data`, `fitted_statistics`: one dict of
    tensors per member (`statistic_names`) from the training features of its kept classes.
    """

    representation = "features"
    statistic_names: ClassVar[tuple[str, ...]] = ()
    training_passes: ClassVar[int] = 1  # passes `fitted_statistics` makes over the batches

    def member_scores(
        self, member_index: int, member: nn.Module, batch: torch.Tensor, points: Sequence[Point]
    ) -> torch.Tensor:
        if any(p.get("epsilon", 0.0) > 0 for p in points):
            raise ConfigError(f"{self.name} has no input step: epsilon must be 0")
        with torch.no_grad():
            features = member.forward_features(batch)
        return self.feature_scores(member_index, features, points)

    def feature_scores(
        self, member_index: int, features: torch.Tensor, points: Sequence[Point]
    ) -> torch.Tensor:
        """Scores (P, B) float64 of one member's features at every point."""
        return torch.stack([self.score_outputs(member_index, features, p) for p in points])

    def fitted_statistics(self, batches: FeatureBatches) -> list[Statistics]:
        """Per-member statistics from `batches()`: (member index, features) of the kept classes'
        training images; called `training_passes` times when the statistics need more passes."""
        raise NotImplementedError

    def fit_statistics(self, train: ImageSet | Iterable[Any]) -> FeatureDetector:
        """Per-member statistics streamed over labelled training images (an ImageSet, or (x, y)
        batches with dataset labels such as a DataLoader); each member sees its kept classes."""
        if not self.needs_training_data:
            return self
        if self.training_passes > 1:
            reiterable(train, self.name)

        def batches() -> Iterator[tuple[int, torch.Tensor]]:
            for m, features, _ in member_training_features(
                self.ensemble, train, self.batch_size, self.networks()
            ):
                yield m, features

        self.statistics_ = self.fitted_statistics(batches)
        return self

    def fit_features(
        self, features: Sequence[torch.Tensor], labels: torch.Tensor
    ) -> FeatureDetector:
        """Fit from precomputed penultimate features, one (N, D_i) tensor per member, with the
        dataset labels (N,) (left-out classes are skipped per member)."""
        if not self.needs_training_data:
            return self
        kept = kept_features(self.ensemble, features, labels)

        def batches() -> Iterator[tuple[int, torch.Tensor]]:
            for m, f in enumerate(kept):
                for start in range(0, len(f), self.batch_size):
                    yield m, f[start : start + self.batch_size].to(self.ensemble.device)

        self.statistics_ = self.fitted_statistics(batches)
        return self

    def has_statistics(self) -> bool:
        if not self.needs_training_data:
            return True
        statistics = getattr(self, "statistics_", None)
        return statistics is not None and len(statistics) == self.ensemble.k

    def member_statistics(self, member_index: int) -> Statistics:
        self.check_ready()
        return self.statistics_[member_index]

    def state_dict(self) -> dict[str, torch.Tensor]:
        if not self.needs_training_data:
            return {}
        self.check_ready()
        return {
            f"{key}.{m}": value
            for m, statistics in enumerate(self.statistics_)
            for key, value in statistics.items()
        }

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> FeatureDetector:
        if not self.needs_training_data:
            return self
        device = self.ensemble.device
        try:
            self.statistics_ = [
                {key: tensors[f"{key}.{m}"].to(device) for key in self.statistic_names}
                for m in range(self.ensemble.k)
            ]
        except KeyError as exc:
            raise ShapeError(
                f"{self.name} statistics lack {exc} for {self.ensemble.k} members"
            ) from exc
        return self

    def member_view(self, member: int) -> FeatureDetector:
        view = super().member_view(member)
        assert isinstance(view, FeatureDetector)
        if self.needs_training_data:
            view.statistics_ = [self.member_statistics(member)]
        return view

    def to(self, device: torch.device | str) -> FeatureDetector:
        super().to(device)
        if self.needs_training_data and self.has_statistics():
            self.statistics_ = [
                {key: value.to(self.ensemble.device) for key, value in statistics.items()}
                for statistics in self.statistics_
            ]
        return self


def member_label_map(ensemble: LeaveOutEnsemble, member: int) -> torch.Tensor:
    """Dataset label -> the member's label, -1 for its left-out classes: (num_classes,)."""
    table = torch.full((ensemble.num_classes,), -1, dtype=torch.int64)
    kept = list(ensemble.kept_classes(member))
    table[kept] = torch.arange(len(kept))
    return table


def labelled_batches(
    ensemble: LeaveOutEnsemble, train: ImageSet | Iterable[Any], batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(normalised x, dataset labels y on the CPU) batches of an ImageSet or of (x, y) pairs."""
    if isinstance(train, ImageSet):
        if train.labels is None:
            raise ConfigError("training statistics need a labelled training set")
        labels = torch.from_numpy(train.labels)
        starts = range(0, len(train), batch_size)
        for start, x in zip(starts, ensemble.batches(train.images, batch_size)):
            yield x, labels[start : start + len(x)]
        return
    for item in train:
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ShapeError("training batches must be (x, y) pairs with class labels")
        (x,) = ensemble.batches(item[0], batch_size=len(item[0]))
        yield x, torch.as_tensor(item[1]).cpu().long()


@torch.no_grad()
def member_training_features(
    ensemble: LeaveOutEnsemble,
    train: ImageSet | Iterable[Any],
    batch_size: int,
    networks: Sequence[nn.Module] | None = None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(member index, penultimate features, member labels) for the training images of each
    member's kept classes, one batch at a time (nothing of the whole set is held). networks: the
    members as the detector runs them (`Detector.networks()`, e.g. in autocast); default
    `ensemble.networks()`."""
    for x, y in labelled_batches(ensemble, train, batch_size):
        for m, member in enumerate(networks or ensemble.networks()):
            member_labels = member_label_map(ensemble, m)[y]
            keep = member_labels >= 0
            if keep.any():
                yield m, member.forward_features(x[keep.to(x.device)]), member_labels[keep]


def kept_features(
    ensemble: LeaveOutEnsemble, features: Sequence[torch.Tensor], labels: torch.Tensor
) -> list[torch.Tensor]:
    """Precomputed features, one (N, D_i) tensor per member, restricted to each member's kept
    classes by the dataset labels (N,)."""
    if len(features) != ensemble.k:
        raise ShapeError(f"{len(features)} feature tensors for {ensemble.k} members")
    kept = []
    for m, f in enumerate(features):
        keep = member_label_map(ensemble, m)[labels.cpu().long()] >= 0
        kept.append(f[keep.to(f.device)])
    return kept


def reiterable(train: ImageSet | Iterable[Any], name: str) -> None:
    """Refuse a one-shot iterator where a detector passes over the training images twice."""
    if not isinstance(train, ImageSet) and iter(train) is train:
        raise ConfigError(
            f"{name} passes over the training images twice: give an ImageSet or a DataLoader, "
            "not an iterator"
        )


def linear_head(member: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The member's last layer as float64 (W (C, D), b (C,)); b is zero for a layer without bias."""
    classifier = getattr(member, "classifier", None)
    if not isinstance(classifier, nn.Linear):
        raise ConfigError(
            f"{type(member).__name__} has no linear `classifier`: detectors that reshape the "
            "penultimate features need one"
        )
    weight = classifier.weight.detach().double()
    bias = classifier.bias
    if bias is None:
        return weight, torch.zeros(len(weight), dtype=torch.float64, device=weight.device)
    return weight, bias.detach().double()


def head_logits(member: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The member's classifier on (B, D) features, in float64: (B, C)."""
    weight, bias = linear_head(member)
    return features.double().to(weight.device) @ weight.T + bias
