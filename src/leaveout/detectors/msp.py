"""Maximum softmax probability (Hendrycks and Gimpel, ICLR 2017), optionally at a temperature."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..ensemble import LeaveOutEnsemble
from .base import PAPER_TEMPERATURES, Detector, Point, SearchSpace
from .registry import register_detector


def msp(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """max_j softmax(z / T)_j in float64: (N, C) -> (N,)."""
    return F.softmax(logits.double() / temperature, dim=1).amax(dim=1)


@register_detector
class MaxSoftmax(Detector):
    name = "msp"
    summary = "max-softmax (Hendrycks and Gimpel): max_j softmax(z / T)_j"
    default_search_space: ClassVar[SearchSpace] = {"temperature": PAPER_TEMPERATURES}

    def __init__(
        self, ensemble: LeaveOutEnsemble, temperature: float = 1.0, **options: Any
    ) -> None:
        super().__init__(ensemble, **options)
        self.temperature = temperature

    def score_outputs(self, member_index: int, logits: torch.Tensor, point: Point) -> torch.Tensor:
        return msp(logits, point["temperature"])
