"""Mahalanobis distance (Lee et al., NeurIPS 2018) on each member's penultimate features.

score = -min_c (f - mu_c)' P (f - mu_c), with class means mu_c and the precision P of one
covariance shared by all classes, fitted by streaming over the training images of the member's
kept classes (memory O(batch x classes + D^2), never N x N). Optional input step of eps (pixel
units) against the gradient of that minimum distance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.imageset import ImageSet
from ..data.inputs import Images
from ..ensemble import LeaveOutEnsemble
from ..errors import ShapeError
from .base import PAPER_EPSILONS, Detector, Point, SearchSpace
from .features import member_label_map, member_training_features
from .perturb import step_directions
from .registry import register_detector


@dataclass(frozen=True)
class GaussianFit:
    """Class means (C, D) and the shared precision matrix (D, D), float64."""

    means: torch.Tensor
    precision: torch.Tensor

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of (B, D) features to every class mean: (B, C).

        Expanded as f'Pf - 2 f'P mu + mu'P mu, so memory is O(B C + D^2), never (B, B).
        """
        f = features.double()
        fp = f @ self.precision
        mp = self.means @ self.precision
        return (fp * f).sum(1, keepdim=True) - 2 * fp @ self.means.T + (mp * self.means).sum(1)

    def to(self, device: torch.device) -> GaussianFit:
        return GaussianFit(self.means.to(device), self.precision.to(device))


class GaussianAccumulator:
    """Per-class sums and the sum of f f' of streamed (features, labels), in float64.

    fit(): class means, Sigma = (sum f f' - sum_c n_c mu_c mu_c') / N, and P = pinv(Sigma).
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.sums: torch.Tensor | None = None
        self.counts = torch.zeros(num_classes, dtype=torch.float64)
        self.outer: torch.Tensor | None = None

    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        f, y = features.detach().double().cpu(), labels.cpu().long()
        if self.sums is None or self.outer is None:
            self.sums = torch.zeros(self.num_classes, f.shape[1], dtype=torch.float64)
            self.outer = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64)
        if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
            raise ShapeError(
                f"labels must lie in [0, {self.num_classes}), got [{y.min()}, {y.max()}]"
            )
        self.sums.index_add_(0, y, f)
        self.counts += torch.bincount(y, minlength=self.num_classes).double()
        self.outer += f.T @ f

    def fit(self, device: torch.device | str = "cpu") -> GaussianFit:
        if self.sums is None or self.outer is None or (self.counts == 0).any():
            missing = (self.counts == 0).nonzero().flatten().tolist()
            raise ShapeError(f"Mahalanobis needs training images of every class; none of {missing}")
        means = self.sums / self.counts[:, None]
        covariance = (self.outer - (means.T * self.counts) @ means) / self.counts.sum()
        precision = torch.linalg.pinv(covariance, hermitian=True)
        return GaussianFit(means, precision).to(torch.device(device))


@register_detector
class Mahalanobis(Detector):
    """Needs the training images: `fit(..., train=...)` or `fit_statistics(train)` first."""

    name = "mahalanobis"
    summary = (
        "Mahalanobis (Lee et al.): -min_c distance of features to class means, tied covariance"
    )
    default_search_space: ClassVar[SearchSpace] = {"epsilon": PAPER_EPSILONS}
    needs_training_data = True
    representation = "features"

    def __init__(self, ensemble: LeaveOutEnsemble, epsilon: float = 0.0, **options: Any) -> None:
        super().__init__(ensemble, **options)
        self.epsilon = epsilon

    @torch.no_grad()
    def fit_statistics(
        self, train: ImageSet | Iterable[tuple[Images, torch.Tensor]]
    ) -> Mahalanobis:
        """One Gaussian fit per member on the training images of its kept classes.

        train: a labelled ImageSet, or batches (x, y) with dataset labels y (a DataLoader).
        """
        ensemble = self.ensemble
        accumulators = [
            GaussianAccumulator(len(ensemble.kept_classes(m))) for m in range(ensemble.k)
        ]
        for m, features, member_labels in member_training_features(
            ensemble, train, self.batch_size, self.networks()
        ):
            accumulators[m].add(features, member_labels)
        self.fits_ = [acc.fit(ensemble.device) for acc in accumulators]
        return self

    def fit_features(self, features: Sequence[torch.Tensor], labels: torch.Tensor) -> Mahalanobis:
        """Fit from precomputed penultimate features, one (N, D_i) tensor per member, with the
        dataset labels (N,) (left-out classes are skipped per member)."""
        ensemble = self.ensemble
        if len(features) != ensemble.k:
            raise ShapeError(f"{len(features)} feature tensors for {ensemble.k} members")
        fits = []
        for m, f in enumerate(features):
            member_labels = member_label_map(ensemble, m)[labels.cpu().long()]
            keep = member_labels >= 0
            accumulator = GaussianAccumulator(len(ensemble.kept_classes(m)))
            accumulator.add(f[keep.to(f.device)], member_labels[keep])
            fits.append(accumulator.fit(ensemble.device))
        self.fits_ = fits
        return self

    def has_statistics(self) -> bool:
        fits = getattr(self, "fits_", None)
        return fits is not None and len(fits) == self.ensemble.k

    def state_dict(self) -> dict[str, torch.Tensor]:
        self.check_ready()
        assert self.fits_ is not None
        out = {}
        for m, fit in enumerate(self.fits_):
            out[f"means.{m}"], out[f"precision.{m}"] = fit.means, fit.precision
        return out

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> Mahalanobis:
        try:
            self.fits_ = [
                GaussianFit(tensors[f"means.{m}"], tensors[f"precision.{m}"]).to(
                    self.ensemble.device
                )
                for m in range(self.ensemble.k)
            ]
        except KeyError as exc:
            raise ShapeError(
                f"Mahalanobis statistics lack {exc} for {self.ensemble.k} members"
            ) from exc
        return self

    def member_view(self, member: int) -> Mahalanobis:
        view = super().member_view(member)
        assert isinstance(view, Mahalanobis)
        self.check_ready()
        view.fits_ = [self.fits_[member]]
        return view

    def to(self, device: torch.device | str) -> Mahalanobis:
        super().to(device)
        if self.has_statistics():
            self.fits_ = [fit.to(self.ensemble.device) for fit in self.fits_]
        return self

    def member_scores(
        self, member_index: int, member: nn.Module, batch: torch.Tensor, points: Sequence[Point]
    ) -> torch.Tensor:
        assert self.fits_ is not None
        fit = self.fits_[member_index]
        if any(p.get("epsilon", 0.0) > 0 for p in points):
            std = self.ensemble.normalization.std_tensor(batch.device)

            def closest(features: torch.Tensor) -> torch.Tensor:
                return fit.distances(features).amin(1).sum()

            _, (direction,) = step_directions(member.forward_features, batch, [closest], std)
        rows = []
        with torch.no_grad():
            for point in points:
                eps = point.get("epsilon", 0.0)
                x = batch if eps == 0 else batch - eps * direction
                rows.append(self.score_outputs(member_index, member.forward_features(x), point))
        return torch.stack(rows)

    def score_outputs(
        self, member_index: int, features: torch.Tensor, point: Point
    ) -> torch.Tensor:
        assert self.fits_ is not None
        return -self.fits_[member_index].distances(features).amin(1)
