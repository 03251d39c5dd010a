"""The paper's score (Vyas et al., ECCV 2018; method.md section 4).

For member i at temperature T, after the input step x~ = x - eps sign(grad_x H(softmax(z_i(x)/T)))
/ std (it lowers the member's softmax entropy):
    s_i = max_j softmax(z_i(x~) / T)_j - H(softmax(z_i(x~) / T))
    S(x) = sum_i s_i      (higher = more in-distribution)
Member scores are computed in float64 from the logits: at large T the part that separates ID from
OOD is about 1e-3 wide, where float32 would create ties.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..ensemble import LeaveOutEnsemble
from ..errors import ConfigError
from ..losses import entropy
from .base import PAPER_EPSILONS, PAPER_TEMPERATURES, Detector, Point, SearchSpace
from .perturb import OBJECTIVES, Objective
from .registry import register_detector

MEMBER_SCORES = ("msp-entropy", "msp")


def member_score(
    logits: torch.Tensor, temperature: float, kind: str = "msp-entropy"
) -> torch.Tensor:
    """max softmax - entropy (the paper) or max softmax alone ("msp") at T: (B, C) -> (B,)."""
    scaled = logits / temperature
    top = F.softmax(scaled, dim=1).amax(dim=1)
    return top if kind == "msp" else top - entropy(scaled)


@register_detector
class LeaveOut(Detector):
    """The leave-out ensemble's score. gradient: "entropy" (the paper) or "odin" (cross-entropy
    against the predicted label); member_score: "msp-entropy" (the paper) or "msp" (ablation)."""

    name = "leaveout"
    summary = "the paper's: sum over members of max-softmax minus entropy at T, after an input step"
    default_search_space: ClassVar[SearchSpace] = {
        "temperature": PAPER_TEMPERATURES,
        "epsilon": PAPER_EPSILONS,
    }
    settings = ("gradient", "member_score")

    def __init__(
        self,
        ensemble: LeaveOutEnsemble,
        temperature: float = 1000.0,
        epsilon: float = 0.0,
        gradient: str = "entropy",
        member_score: str = "msp-entropy",
        **options: Any,
    ) -> None:
        super().__init__(ensemble, **options)
        self.temperature, self.epsilon = temperature, epsilon
        self.gradient, self.member_score = gradient, member_score

    def check_settings(self) -> None:
        super().check_settings()
        if self.gradient not in OBJECTIVES:
            raise ConfigError(
                f"gradient must be one of {', '.join(OBJECTIVES)}, got {self.gradient!r}"
            )
        if self.member_score not in MEMBER_SCORES:
            raise ConfigError(
                f"member_score must be one of {', '.join(MEMBER_SCORES)}, got {self.member_score!r}"
            )

    def step_objective(self) -> Callable[[float], Objective]:
        return OBJECTIVES[self.gradient]

    def score_outputs(self, member_index: int, logits: torch.Tensor, point: Point) -> torch.Tensor:
        return member_score(logits.double(), point["temperature"], self.member_score)
