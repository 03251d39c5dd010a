"""The leave-out training loss (method.md section 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Softmax entropy in nats of logits (B, C) -> (B,), from log_softmax (stable for large logits)."""
    log_p = F.log_softmax(_at_least_float32(logits), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def margin_entropy_loss(
    id_logits: torch.Tensor,
    id_labels: torch.Tensor,
    ood_logits: torch.Tensor,
    beta: float,
    margin: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """CE(ID) + beta * relu(margin + mean H(ID) - mean H(left-out)), a scalar.

    id_logits (B, C) with id_labels (B,) in [0, C); ood_logits (B', C) of left-out images.
    The hinge acts on the difference of the two batch-mean entropies, not per sample.
    With label_smoothing s the CE target is (1 - s) on the label plus s / C on every class (the
    paper uses s = 0). Computed in float32 (or float64 when given) with no branching on tensor
    values (safe under autocast and compile).
    """
    ce = F.cross_entropy(_at_least_float32(id_logits), id_labels, label_smoothing=label_smoothing)
    gap = margin + entropy(id_logits).mean() - entropy(ood_logits).mean()
    return ce + beta * F.relu(gap)
