"""ViM, virtual-logit matching (Wang et al., CVPR 2022), on each member's penultimate features.

With the member's last layer z = W f + b: origin u = -pinv(W) b (u = 0 without a bias);
principal subspace = the top D eigenvectors of the second moment of the training features about
u, (1/N) sum (f - u)(f - u)' (the paper's covariance "assumed centred" at u); residual
r(f) = ||(f - u) projected on the orthogonal complement||; alpha = sum of max logits / sum of
residual norms over the training features of the member's kept classes. The score is the
energy-minus-residual form, logsumexp(z) - alpha r(f) (the paper's -log of the virtual logit's
softmax probability, up to that monotone map).

The hyperparameter is D as a fraction of the feature dimension (D = round(fraction x dim)), so
one search space fits any width. Fitting streams twice over the training images: the first pass
accumulates the moments (float64, memory O(dim^2)), the second the residual norms for every
possible D at once, so the cached statistics serve every fraction.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..ensemble import LeaveOutEnsemble
from ..errors import ConfigError, ShapeError
from .base import Point, SearchSpace
from .features import FeatureBatches, FeatureDetector, Statistics, head_logits, linear_head
from .registry import register_detector


class SecondMoment:
    """Count, sum and sum of outer products of streamed features, in float64."""

    def __init__(self) -> None:
        self.count = 0
        self.total: torch.Tensor | float = 0.0
        self.outer: torch.Tensor | float = 0.0

    def add(self, features: torch.Tensor) -> None:
        f = features.double()
        self.count += len(f)
        self.total = self.total + f.sum(0)
        self.outer = self.outer + f.T @ f

    def about(self, origin: torch.Tensor) -> torch.Tensor:
        """(1/N) sum (f - u)(f - u)' for the origin u."""
        if self.count == 0 or not isinstance(self.total, torch.Tensor):
            raise ShapeError("vim: no training features")
        mean = self.total / self.count
        shift = torch.outer(mean, origin)
        return self.outer / self.count - shift - shift.T + torch.outer(origin, origin)


def vim_origin(member: torch.nn.Module) -> torch.Tensor:
    """u = -pinv(W) b, the point the last layer maps to zero logits (0 without a bias)."""
    weight, bias = linear_head(member)
    return -torch.linalg.pinv(weight) @ bias


def descending_basis(moment: torch.Tensor) -> torch.Tensor:
    """Eigenvectors (dim, dim) as columns, by decreasing eigenvalue."""
    _, vectors = torch.linalg.eigh(moment)
    return vectors.flip(1)


def residual_norms(coordinates: torch.Tensor) -> torch.Tensor:
    """(B, dim) coordinates in the descending basis -> (B, dim): column D is the norm of the part
    outside the top-D subspace, for every D at once."""
    return (coordinates**2).flip(1).cumsum(1).flip(1).sqrt()


def principal_dimension(fraction: float, dim: int) -> int:
    dimension = round(fraction * dim)
    if not 0 <= dimension < dim:
        raise ConfigError(
            f"vim: principal_fraction {fraction} gives D = {dimension} of {dim} features; "
            "D must leave a residual (0 <= D < dim)"
        )
    return dimension


@register_detector
class ViM(FeatureDetector):
    """Needs the training images: `fit(..., train=...)` or `fit_statistics(train)` first."""

    name = "vim"
    summary = (
        "ViM (Wang et al.): logsumexp(z) - alpha x residual norm outside the principal subspace"
    )
    default_search_space: ClassVar[SearchSpace] = {
        "principal_fraction": (0.1, 0.25, 0.5, 0.75, 0.9)
    }
    needs_training_data = True
    statistic_names = ("origin", "basis", "residual_sums", "max_logit_sum")
    training_passes = 2

    def __init__(
        self, ensemble: LeaveOutEnsemble, principal_fraction: float = 0.5, **options: Any
    ) -> None:
        super().__init__(ensemble, **options)
        self.principal_fraction = principal_fraction

    def fitted_statistics(self, batches: FeatureBatches) -> list[Statistics]:
        members = self.ensemble.members
        moments = [SecondMoment() for _ in members]
        for m, features in batches():
            moments[m].add(features)
        origins = [vim_origin(member) for member in members]
        bases = [descending_basis(mo.about(u)) for mo, u in zip(moments, origins)]
        residual_sums = [torch.zeros(len(u), dtype=torch.float64, device=u.device) for u in origins]
        max_logit_sums = [torch.zeros((), dtype=torch.float64, device=u.device) for u in origins]
        for m, features in batches():
            coordinates = (features.double() - origins[m]) @ bases[m]
            residual_sums[m] += residual_norms(coordinates).sum(0)
            max_logit_sums[m] += head_logits(members[m], features).amax(1).sum()
        return [
            {"origin": u, "basis": basis, "residual_sums": sums, "max_logit_sum": top}
            for u, basis, sums, top in zip(origins, bases, residual_sums, max_logit_sums)
        ]

    def score_outputs(
        self, member_index: int, features: torch.Tensor, point: Point
    ) -> torch.Tensor:
        statistics = self.member_statistics(member_index)
        origin, basis = statistics["origin"], statistics["basis"]
        dimension = principal_dimension(point["principal_fraction"], len(origin))
        coordinates = (features.double().to(origin.device) - origin) @ basis[:, dimension:]
        alpha = statistics["max_logit_sum"] / statistics["residual_sums"][dimension]
        logits = head_logits(self.ensemble.members[member_index], features)
        return torch.logsumexp(logits, dim=1) - alpha * coordinates.norm(dim=1)
