"""ODIN (Liang, Li and Srikant, ICLR 2018): max-softmax at T of an input stepped against the
gradient of the cross-entropy at T with the predicted label."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ..ensemble import LeaveOutEnsemble
from .base import PAPER_EPSILONS, PAPER_TEMPERATURES, Detector, Point, SearchSpace
from .msp import msp
from .perturb import Objective, odin_objective
from .registry import register_detector


@register_detector
class ODIN(Detector):
    """Defaults: T = 1000 and eps = 0.0014, ODIN's CIFAR-10 DenseNet values."""

    name = "odin"
    summary = "ODIN (Liang et al.): max-softmax at T after a cross-entropy input step"
    default_search_space: ClassVar[SearchSpace] = {
        "temperature": PAPER_TEMPERATURES,
        "epsilon": PAPER_EPSILONS,
    }

    def __init__(
        self,
        ensemble: LeaveOutEnsemble,
        temperature: float = 1000.0,
        epsilon: float = 0.0014,
        **options: Any,
    ) -> None:
        super().__init__(ensemble, **options)
        self.temperature, self.epsilon = temperature, epsilon

    def step_objective(self) -> Callable[[float], Objective]:
        return odin_objective

    def score_outputs(self, member_index: int, logits: torch.Tensor, point: Point) -> torch.Tensor:
        return msp(logits, point["temperature"])
