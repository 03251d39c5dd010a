"""ASH, activation shaping (Djurisic et al., ICLR 2023), on each member's penultimate features.

Per sample, all but the largest n - round(n p / 100) of the n activations are set to zero
(pruning percentile p); the kept ones are then, by `variant`:
- "s" (ASH-S, the default): scaled by exp(s1 / s2), s1 and s2 the sums before and after pruning;
- "b" (ASH-B): all set to s1 / (number kept), so the sum is preserved;
- "p" (ASH-P): left as they are.
score = logsumexp(classifier(shaped features)), the energy at T = 1. No training data needed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..ensemble import LeaveOutEnsemble
from ..errors import ConfigError
from .base import Point, SearchSpace
from .energy import energy
from .features import FeatureDetector, head_logits
from .registry import register_detector

VARIANTS = ("s", "b", "p")


def kept_count(dim: int, percentile: float) -> int:
    kept = dim - round(dim * percentile / 100)
    if not 0 <= percentile < 100 or kept < 1:
        raise ConfigError(
            f"ash: pruning percentile {percentile} keeps no activation of {dim}; it must be in "
            "[0, 100) and keep at least one"
        )
    return kept


def shaped(features: torch.Tensor, percentile: float, variant: str = "s") -> torch.Tensor:
    """(B, n) features shaped by ASH-`variant` at pruning percentile p, in float64."""
    if variant not in VARIANTS:
        raise ConfigError(f"ash: variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    f = features.double()
    kept = kept_count(f.shape[1], percentile)
    values, index = f.topk(kept, dim=1)
    before = f.sum(1)
    if variant == "b":
        values = (before / kept)[:, None].expand_as(values)
    pruned = torch.zeros_like(f).scatter(1, index, values)
    if variant != "s":
        return pruned
    after = pruned.sum(1)
    # an all-zero row stays zero instead of 0 x exp(0 / 0)
    ratio = torch.where(after != 0, before / after, torch.zeros_like(after))
    return pruned * torch.exp(ratio)[:, None]


@register_detector
class ASH(FeatureDetector):
    name = "ash"
    summary = "ASH (Djurisic et al.): energy of the classifier on pruned and rescaled features"
    default_search_space: ClassVar[SearchSpace] = {"percentile": (65, 75, 85, 90, 95)}
    settings = ("variant",)

    def __init__(
        self,
        ensemble: LeaveOutEnsemble,
        percentile: float = 90,
        variant: str = "s",
        **options: Any,
    ) -> None:
        super().__init__(ensemble, **options)
        self.percentile = percentile
        self.variant = variant

    def check_settings(self) -> None:
        super().check_settings()
        if self.variant not in VARIANTS:
            raise ConfigError(
                f"ash: variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}"
            )

    def score_outputs(
        self, member_index: int, features: torch.Tensor, point: Point
    ) -> torch.Tensor:
        member = self.ensemble.members[member_index]
        return energy(head_logits(member, shaped(features, point["percentile"], self.variant)))
