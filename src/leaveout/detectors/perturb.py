"""The input step, written once for every detector that perturbs its input (method.md section 4).

x~ = x - eps * sign(grad_x objective(x)) / std: a step of eps in [0, 1] pixel units (divided by
the normalisation std) against the gradient of an objective. Only the input gradient is taken
(`torch.autograd.grad`); the weights never collect gradients. One forward pass serves every
objective (one backward each); the step's sign does not depend on eps, so each eps costs one
more forward pass only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..losses import entropy

Objective = Callable[[torch.Tensor], torch.Tensor]


def step_directions(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    objectives: Sequence[Objective],
    std: torch.Tensor,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """forward(x) (detached) and sign(grad_x objective(forward(x))) / std for every objective."""
    x = x.detach().requires_grad_(True)
    directions = []
    with torch.enable_grad():
        output = forward(x)
        for i, objective in enumerate(objectives):
            (grad,) = torch.autograd.grad(
                objective(output), x, retain_graph=i < len(objectives) - 1
            )
            directions.append(grad.sign() / std)
    return output.detach(), directions


def entropy_objective(temperature: float) -> Objective:
    """The paper's: the softmax entropy at T, summed over the batch (the step lowers it)."""
    return lambda logits: entropy(logits / temperature).sum()


def odin_objective(temperature: float) -> Objective:
    """ODIN's: cross-entropy at T against the predicted label, summed over the batch."""

    def objective(logits: torch.Tensor) -> torch.Tensor:
        scaled = (logits / temperature).float()
        return F.cross_entropy(scaled, scaled.argmax(dim=1), reduction="sum")

    return objective


OBJECTIVES: dict[str, Callable[[float], Objective]] = {
    "entropy": entropy_objective,
    "odin": odin_objective,
}


def stepped_logit_scores(
    member: nn.Module,
    batch: torch.Tensor,
    points: Sequence[dict[str, Any]],
    std: torch.Tensor,
    score: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor],
    objective: Callable[[float], Objective] | None = None,
) -> torch.Tensor:
    """score(logits, point) at every point {"temperature", "epsilon"}: (P, B) float64.

    With an objective and some eps > 0: one forward and one backward per distinct T for the
    step directions, then one forward per point with eps > 0.
    """
    temperatures = sorted({p.get("temperature", 1.0) for p in points if p.get("epsilon", 0.0) > 0})
    if objective is None and temperatures:
        raise ConfigError("this detector has no input step: epsilon must be 0")
    if objective is not None and temperatures:
        objectives = [objective(t) for t in temperatures]
        logits, found = step_directions(member, batch, objectives, std)
        directions = dict(zip(temperatures, found))
    else:
        with torch.no_grad():
            logits, directions = member(batch), {}
    rows = []
    with torch.no_grad():
        for point in points:
            t, eps = point.get("temperature", 1.0), point.get("epsilon", 0.0)
            z = logits if eps == 0 else member(batch - eps * directions[t])
            rows.append(score(z, point))
    return torch.stack(rows)
