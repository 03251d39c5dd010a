"""ReAct, rectified activations (Sun et al., NeurIPS 2021), on each member's penultimate features.

score = logsumexp(classifier(min(f, c))) (the energy at T = 1), with c the p-th percentile of all
the values of the member's penultimate activations over the training images of its kept classes.
The percentile is exact: the activations are gathered (45,000 x 128 float32 values, 23 MB, for
a CIFAR-10 member), sorted once, and interpolated linearly between order statistics as numpy's
default does. The thresholds for every percentile on a 0.01 grid are kept (10,001 values per
member), so the cached statistics serve any p on that grid.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ..ensemble import LeaveOutEnsemble
from ..errors import ConfigError, ShapeError
from .base import Point, SearchSpace
from .energy import energy
from .features import FeatureBatches, FeatureDetector, Statistics, head_logits
from .registry import register_detector

STEPS_PER_PERCENT = 100  # thresholds kept every 0.01 percentile


def percentile_thresholds(activations: torch.Tensor) -> torch.Tensor:
    """The percentiles 0, 0.01, ..., 100 of all values of `activations`: (10001,) float64.

    One sort, then linear interpolation between the order statistics at (n - 1) q / 100."""
    values = np.sort(activations.detach().cpu().double().flatten().numpy())
    if len(values) == 0:
        raise ShapeError("react: no activations to take percentiles of")
    grid = np.arange(100 * STEPS_PER_PERCENT + 1) / STEPS_PER_PERCENT
    position = grid / 100 * (len(values) - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, len(values) - 1)
    weight = position - below
    return torch.from_numpy(values[below] + weight * (values[above] - values[below]))


def threshold_at(thresholds: torch.Tensor, percentile: float) -> torch.Tensor:
    step = percentile * STEPS_PER_PERCENT
    if not 0 <= percentile <= 100 or abs(step - round(step)) > 1e-6:
        raise ConfigError(
            f"react: the percentile must lie in [0, 100] on a 0.01 grid, got {percentile}"
        )
    return thresholds[round(step)]


@register_detector
class ReAct(FeatureDetector):
    """Needs the training images: `fit(..., train=...)` or `fit_statistics(train)` first."""

    name = "react"
    summary = "ReAct (Sun et al.): energy of the classifier on features clipped at a percentile"
    default_search_space: ClassVar[SearchSpace] = {"percentile": (80, 85, 90, 95, 99)}
    needs_training_data = True
    statistic_names = ("thresholds",)

    def __init__(self, ensemble: LeaveOutEnsemble, percentile: float = 90, **options: Any) -> None:
        super().__init__(ensemble, **options)
        self.percentile = percentile

    def fitted_statistics(self, batches: FeatureBatches) -> list[Statistics]:
        parts: list[list[torch.Tensor]] = [[] for _ in range(self.ensemble.k)]
        for m, features in batches():
            parts[m].append(features.detach().float().flatten().cpu())
        if not all(parts):
            missing = [m for m, p in enumerate(parts) if not p]
            raise ShapeError(f"react: no training features for members {missing}")
        device = self.ensemble.device
        return [{"thresholds": percentile_thresholds(torch.cat(p)).to(device)} for p in parts]

    def score_outputs(
        self, member_index: int, features: torch.Tensor, point: Point
    ) -> torch.Tensor:
        thresholds = self.member_statistics(member_index)["thresholds"]
        clip = threshold_at(thresholds, point["percentile"])
        clipped = features.double().to(clip.device).clamp(max=clip)
        return energy(head_logits(self.ensemble.members[member_index], clipped))
