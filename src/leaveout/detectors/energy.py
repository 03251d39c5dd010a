"""The energy score (Liu et al., NeurIPS 2020): T * logsumexp(z / T), the negative free energy."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..ensemble import LeaveOutEnsemble
from .base import PAPER_TEMPERATURES, Detector, Point, SearchSpace
from .registry import register_detector


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T * logsumexp(z / T) in float64: (N, C) -> (N,)."""
    return temperature * torch.logsumexp(logits.double() / temperature, dim=1)


@register_detector
class Energy(Detector):
    name = "energy"
    summary = "energy (Liu et al.): T logsumexp(z / T)"
    default_search_space: ClassVar[SearchSpace] = {"temperature": PAPER_TEMPERATURES}

    def __init__(
        self, ensemble: LeaveOutEnsemble, temperature: float = 1.0, **options: Any
    ) -> None:
        super().__init__(ensemble, **options)
        self.temperature = temperature

    def score_outputs(self, member_index: int, logits: torch.Tensor, point: Point) -> torch.Tensor:
        return energy(logits, point["temperature"])
