"""Deep nearest neighbours (Sun et al., ICML 2022) on each member's penultimate features.

score = -||z - z_(k)||_2 with z = f / ||f||_2 and z_(k) the k-th nearest of the L2-normalised
training features of the member's kept classes (the bank). The bank is kept as float32: N x D x 4
bytes, 23 MB (22 MiB) for CIFAR-10's 45,000 x 128. The search is exact, in float64, comparing
each batch with the bank chunk by chunk and keeping a running top-k, so memory is
O(batch x (k + chunk)), never N x N. The paper's code (faiss) returns squared distances; the
distance itself is used here, which orders one member's scores the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..ensemble import LeaveOutEnsemble
from ..errors import ConfigError, ShapeError
from .base import Point, SearchSpace
from .features import FeatureBatches, FeatureDetector, Statistics
from .registry import register_detector

BANK_CHUNK = 8192  # bank rows compared with a batch at once


def unit_rows(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm in float64 (a zero row stays zero)."""
    return F.normalize(features.double(), dim=1)


def kth_neighbour_distances(
    queries: torch.Tensor, bank: torch.Tensor, ks: Sequence[int], chunk: int = BANK_CHUNK
) -> torch.Tensor:
    """Euclidean distance (len(ks), B) float64 of each query row to its k-th nearest bank row,
    for every k in ks; exact, over the bank in chunks of `chunk` rows with a running top-k."""
    largest = max(ks)
    if min(ks) < 1 or largest > len(bank):
        raise ConfigError(f"k must lie in [1, {len(bank)}] (the training features); got {ks}")
    q = queries.double()
    q_squared = (q * q).sum(1, keepdim=True)
    nearest = q.new_empty((len(q), 0))
    for start in range(0, len(bank), chunk):
        rows = bank[start : start + chunk].to(q.device).double()
        squared = (q_squared + (rows * rows).sum(1) - 2 * q @ rows.T).clamp_(min=0)
        candidates = torch.cat([nearest, squared], dim=1)
        width = min(largest, candidates.shape[1])
        nearest = candidates.topk(width, dim=1, largest=False).values  # ascending
    return torch.stack([nearest[:, k - 1] for k in ks]).sqrt()


@register_detector
class KNN(FeatureDetector):
    """Needs the training images: `fit(..., train=...)` or `fit_statistics(train)` first."""

    name = "knn"
    summary = (
        "deep nearest neighbours (Sun et al.): -distance to the k-th nearest normalised feature"
    )
    default_search_space: ClassVar[SearchSpace] = {"k": (1, 5, 10, 20, 50, 100, 200)}
    needs_training_data = True
    statistic_names = ("bank",)

    def __init__(self, ensemble: LeaveOutEnsemble, k: int = 50, **options: Any) -> None:
        super().__init__(ensemble, **options)
        self.k = k

    def fitted_statistics(self, batches: FeatureBatches) -> list[Statistics]:
        parts: list[list[torch.Tensor]] = [[] for _ in range(self.ensemble.k)]
        for m, features in batches():
            parts[m].append(unit_rows(features).float())
        if not all(parts):
            missing = [m for m, p in enumerate(parts) if not p]
            raise ShapeError(f"knn: no training features for members {missing}")
        return [{"bank": torch.cat(p)} for p in parts]

    def feature_scores(
        self, member_index: int, features: torch.Tensor, points: Sequence[Point]
    ) -> torch.Tensor:
        bank = self.member_statistics(member_index)["bank"]
        ks = [int(p["k"]) for p in points]
        return -kth_neighbour_distances(unit_rows(features), bank, ks)

    def score_outputs(
        self, member_index: int, features: torch.Tensor, point: Point
    ) -> torch.Tensor:
        return self.feature_scores(member_index, features, [point])[0]
