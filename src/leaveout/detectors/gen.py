"""GEN, generalized entropy (Liu et al., CVPR 2023), from the softmax of each member's logits.

G_gamma(p) = sum over the M largest probabilities p_j of p_j^gamma (1 - p_j)^gamma, with M capped
at the member's number of classes; score = -G_gamma (peaked softmaxes score higher).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..ensemble import LeaveOutEnsemble
from ..errors import ConfigError
from .base import Detector, Point, SearchSpace
from .registry import register_detector


def generalized_entropy(logits: torch.Tensor, gamma: float, top_classes: int) -> torch.Tensor:
    """G_gamma over the top-M softmax probabilities, in float64: (N, C) -> (N,)."""
    if gamma <= 0 or top_classes < 1:
        raise ConfigError(f"gen: gamma must be > 0 and M >= 1; got {gamma} and {top_classes}")
    probs = F.softmax(logits.double(), dim=1)
    top = probs.topk(min(top_classes, probs.shape[1]), dim=1).values
    return (top**gamma * (1 - top) ** gamma).sum(1)


@register_detector
class GEN(Detector):
    name = "gen"
    summary = "GEN (Liu et al.): -sum over the top-M softmax p of p^gamma (1 - p)^gamma"
    default_search_space: ClassVar[SearchSpace] = {
        "gamma": (0.01, 0.03, 0.1, 0.3, 0.5),
        "top_classes": (2, 5, 100),
    }

    def __init__(
        self,
        ensemble: LeaveOutEnsemble,
        gamma: float = 0.1,
        top_classes: int = 100,
        **options: Any,
    ) -> None:
        super().__init__(ensemble, **options)
        self.gamma, self.top_classes = gamma, top_classes

    def score_outputs(self, member_index: int, logits: torch.Tensor, point: Point) -> torch.Tensor:
        return -generalized_entropy(logits, point["gamma"], int(point["top_classes"]))
