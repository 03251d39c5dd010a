"""Mahalanobis distance (Lee et al., NeurIPS 2018) on each member's penultimate features.

score = -min_c (f - mu_c)' P (f - mu_c), with class means mu_c and the precision P of one
covariance shared by all classes, fitted by streaming over the training images of the member's
kept classes (memory O(batch x classes + D^2), never N x N). Optional input step of eps (pixel
units) against the gradient of that minimum distance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data.imageset import ImageSet
from ..ensemble import LeaveOutEnsemble
from ..errors import ConfigError, ShapeError
from .base import PAPER_EPSILONS, Detector, Point, SearchSpace
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


@torch.no_grad()
def fit_gaussian(
    member: nn.Module,
    ensemble: LeaveOutEnsemble,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    batch_size: int = 256,
) -> GaussianFit:
    """Stream over (images, labels in [0, C)) accumulating per-class sums and f f'.

    Sigma = (sum f f' - sum_c n_c mu_c mu_c') / N; P = pinv(Sigma).
    """
    if len(images) != len(labels):
        raise ShapeError(f"{len(images)} images but {len(labels)} labels")
    label_tensor = torch.as_tensor(labels, dtype=torch.int64)
    sums = counts = outer = None
    starts = range(0, len(images), batch_size)
    for start, batch in zip(starts, ensemble.batches(images, batch_size)):
        f = member.forward_features(batch).double().cpu()
        y = label_tensor[start : start + len(f)]
        if sums is None or counts is None or outer is None:
            sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64)
            counts = torch.zeros(num_classes, dtype=torch.float64)
            outer = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64)
        sums.index_add_(0, y, f)
        counts += torch.bincount(y, minlength=num_classes).double()
        outer += f.T @ f
    if sums is None or counts is None or outer is None or (counts == 0).any():
        raise ShapeError("Mahalanobis needs training images of every class")
    means = sums / counts[:, None]
    covariance = (outer - (means.T * counts) @ means) / counts.sum()
    precision = torch.linalg.pinv(covariance, hermitian=True)
    return GaussianFit(means, precision).to(ensemble.device)


@register_detector
class Mahalanobis(Detector):
    """Needs the training images: `fit(..., train=...)` or `fit_statistics(train)` first."""

    name = "mahalanobis"
    summary = (
        "Mahalanobis (Lee et al.): -min_c distance of features to class means, tied covariance"
    )
    default_search_space: ClassVar[SearchSpace] = {"epsilon": PAPER_EPSILONS}
    needs_training_data = True

    def __init__(self, ensemble: LeaveOutEnsemble, epsilon: float = 0.0, **options: Any) -> None:
        super().__init__(ensemble, **options)
        self.epsilon = epsilon
        self.fits_: list[GaussianFit] | None = None

    def fit_statistics(self, train: ImageSet, max_per_class: int = 0) -> Mahalanobis:
        """One Gaussian fit per member, on the training images of its kept classes."""
        if train.labels is None:
            raise ConfigError("Mahalanobis needs a labelled training set")
        partition, fits = self.ensemble.partition, []
        for m, member in enumerate(self.ensemble.members):
            if partition is None:
                labels, num = train.labels, self.ensemble.num_classes
            else:
                labels = partition.to_member_labels(m, train.labels)
                num = partition.member_num_classes(m)
            keep = np.flatnonzero(labels >= 0)
            if max_per_class:
                keep = np.concatenate([keep[labels[keep] == c][:max_per_class] for c in range(num)])
            images, kept = train.images[keep], labels[keep]
            fits.append(fit_gaussian(member, self.ensemble, images, kept, num, self.batch_size))
        self.fits_ = fits
        return self

    def has_statistics(self) -> bool:
        return self.fits_ is not None and len(self.fits_) == self.ensemble.k

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
        assert isinstance(view, Mahalanobis) and self.fits_ is not None
        view.fits_ = [self.fits_[member]]
        return view

    def to(self, device: torch.device | str) -> Mahalanobis:
        super().to(device)
        if self.fits_ is not None:
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
                rows.append(-fit.distances(member.forward_features(x)).amin(1))
        return torch.stack(rows)
