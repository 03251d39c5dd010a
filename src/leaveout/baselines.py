"""Post-hoc baselines on trained classifiers: max-softmax, ODIN, energy and Mahalanobis.

Each works on a `LeaveOutEnsemble` (a standard run is an ensemble of one) and sums its score
over the members. Every score is (N,) float64, higher = more in-distribution.
- msp (Hendrycks and Gimpel): max_j softmax(z / T)_j.
- odin (Liang et al.): msp at T of the input x - eps * sign(grad_x CE(z / T, argmax)) / std.
- energy (Liu et al.): T * logsumexp(z / T).
- mahalanobis (Lee et al.): -min_c (f - mu_c)^T P (f - mu_c) on penultimate features f, with class
  means mu_c and the precision P of one covariance shared by all classes (fitted by streaming
  over the training set); optional input step that lowers that distance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageSet
from .errors import ConfigError, ShapeError
from .scoring import LeaveOutEnsemble

METHODS = ("leaveout", "msp", "odin", "energy", "mahalanobis")
# the settings each baseline takes
BASELINE_SETTINGS = {
    "msp": ("temperature",),
    "odin": ("temperature", "epsilon"),
    "energy": ("temperature",),
    "mahalanobis": ("epsilon",),
}


def msp(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Max softmax probability at temperature T: (N, C) -> (N,)."""
    return F.softmax(logits.double() / temperature, dim=1).amax(dim=1)


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Negative free energy T * logsumexp(z / T): (N, C) -> (N,)."""
    return temperature * torch.logsumexp(logits.double() / temperature, dim=1)


# --- Mahalanobis -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GaussianFit:
    """Class means (C, D) and the shared precision matrix (D, D), float64."""

    means: torch.Tensor
    precision: torch.Tensor

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of (B, D) features to every class mean: (B, C).

        Expanded as f'Pf - 2 f'P mu + mu'P mu, so memory is O(B C + D^2), never (B, B).
        """
        f = features.double()
        fp = f @ self.precision
        mp = self.means @ self.precision
        return (fp * f).sum(1, keepdim=True) - 2 * fp @ self.means.T + (mp * self.means).sum(1)


@torch.no_grad()
def fit_gaussian(
    member: nn.Module,
    ensemble: LeaveOutEnsemble,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    batch_size: int = 256,
) -> GaussianFit:
    """Stream over (images, member labels in [0, C)) accumulating per-class sums and f f'.

    Sigma = (sum f f' - sum_c n_c mu_c mu_c') / N; P = pinv(Sigma).
    """
    if len(images) != len(labels):
        raise ShapeError(f"{len(images)} images but {len(labels)} labels")
    label_tensor = torch.as_tensor(labels, dtype=torch.int64)
    sums = counts = outer = None
    for start, batch in zip(
        range(0, len(images), batch_size), ensemble.batches(images, batch_size)
    ):
        f = member.forward_features(batch).double().cpu()
        y = label_tensor[start : start + len(f)]
        if sums is None:
            sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64)
            counts = torch.zeros(num_classes, dtype=torch.float64)
            outer = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64)
        sums.index_add_(0, y, f)
        counts += torch.bincount(y, minlength=num_classes).double()
        outer += f.T @ f
    if sums is None or counts is None or outer is None or (counts == 0).any():
        raise ShapeError("Mahalanobis needs training images of every class")
    means = sums / counts[:, None]
    covariance = (outer - (means.T * counts) @ means) / counts.sum()
    precision = torch.linalg.pinv(covariance, hermitian=True)
    device = ensemble.device
    return GaussianFit(means.to(device), precision.to(device))


def fit_member_gaussians(
    ensemble: LeaveOutEnsemble, train: ImageSet, batch_size: int = 256, max_per_class: int = 0
) -> list[GaussianFit]:
    """One Gaussian fit per member on the training images of its kept classes."""
    if train.labels is None:
        raise ConfigError("Mahalanobis needs a labelled training set")
    fits = []
    for m, member in enumerate(ensemble.members):
        if ensemble.partition is None:
            labels, num = train.labels, len(ensemble.classes)
        else:
            labels, num = (
                ensemble.partition.to_member_labels(m, train.labels),
                ensemble.partition.member_num_classes(m),
            )
        keep = np.flatnonzero(labels >= 0)
        if max_per_class:
            keep = np.concatenate([keep[labels[keep] == c][:max_per_class] for c in range(num)])
        fits.append(
            fit_gaussian(member, ensemble, train.images[keep], labels[keep], num, batch_size)
        )
    return fits


def baseline_grid(
    name: str,
    ensemble: LeaveOutEnsemble,
    x: ImageSet | np.ndarray | torch.Tensor,
    points: Sequence[dict[str, float]],
    fits: Sequence[GaussianFit] | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Scores of baseline `name` at every settings point ({"temperature", "epsilon"}): (P, N),
    summed over members. Per member and batch: one forward pass, one backward per distinct T
    (ODIN) or one backward (Mahalanobis) when some eps > 0, and one forward per (T, eps > 0)."""
    if name not in BASELINE_SETTINGS:
        raise ConfigError(f"unknown baseline {name!r}; known: {', '.join(BASELINE_SETTINGS)}")
    if name == "mahalanobis" and (fits is None or len(fits) != ensemble.k):
        raise ShapeError(f"mahalanobis needs one Gaussian fit per member ({ensemble.k})")
    temps = sorted({p.get("temperature", 1.0) for p in points})
    out = []
    for batch in ensemble.batches(x, batch_size):
        total = torch.zeros(len(points), len(batch), dtype=torch.float64, device=batch.device)
        for m, member in enumerate(ensemble.members):
            if name == "mahalanobis":
                assert fits is not None
                total += _mahalanobis_points(member, fits[m], batch, points, ensemble._std())
            else:
                total += _logit_points(name, ensemble, member, batch, points, temps)
        out.append(total.cpu().numpy())
    return np.concatenate(out, axis=1)


def _logit_points(
    name: str,
    ensemble: LeaveOutEnsemble,
    member: nn.Module,
    batch: torch.Tensor,
    points: Sequence[dict[str, float]],
    temps: list[float],
) -> torch.Tensor:
    fn = energy if name == "energy" else msp
    stepped = name == "odin" and any(p.get("epsilon", 0.0) > 0 for p in points)
    if stepped:
        logits, directions = ensemble._directions(member, batch, temps, "odin")
    else:
        with torch.no_grad():
            logits, directions = member(batch), []
    rows = []
    with torch.no_grad():
        for p in points:
            t, e = p.get("temperature", 1.0), p.get("epsilon", 0.0)
            z = logits if e == 0 else member(batch - e * directions[temps.index(t)])
            rows.append(fn(z, t))
    return torch.stack(rows)


def _mahalanobis_points(
    member: nn.Module,
    fit: GaussianFit,
    batch: torch.Tensor,
    points: Sequence[dict[str, float]],
    std: torch.Tensor,
) -> torch.Tensor:
    direction = None
    if any(p.get("epsilon", 0.0) > 0 for p in points):
        xg = batch.detach().requires_grad_(True)
        with torch.enable_grad():
            closest = fit.distances(member.forward_features(xg)).amin(1).sum()
            (grad,) = torch.autograd.grad(closest, xg)
        direction = grad.sign() / std
    rows = []
    with torch.no_grad():
        for p in points:
            e = p.get("epsilon", 0.0)
            x = batch if e == 0 or direction is None else batch - e * direction
            rows.append(-fit.distances(member.forward_features(x)).amin(1))
    return torch.stack(rows)


def score_baseline(
    name: str,
    ensemble: LeaveOutEnsemble,
    x: ImageSet | np.ndarray | torch.Tensor,
    settings: dict[str, float],
    fits: Sequence[GaussianFit] | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Baseline `name` at one settings point: (N,), higher = more in-distribution."""
    return baseline_grid(name, ensemble, x, [settings], fits, batch_size)[0]


def logit_scores(
    ensemble: LeaveOutEnsemble,
    x: ImageSet | np.ndarray | torch.Tensor,
    kind: str,
    temperature: float = 1.0,
    batch_size: int = 256,
) -> np.ndarray:
    """msp or energy of unperturbed inputs, summed over members: (N,)."""
    return score_baseline(kind, ensemble, x, {"temperature": temperature}, None, batch_size)


def odin_scores(
    ensemble: LeaveOutEnsemble,
    x: ImageSet | np.ndarray | torch.Tensor,
    temperature: float,
    epsilon: float,
    batch_size: int = 256,
) -> np.ndarray:
    """ODIN's score, summed over members: (N,). eps in [0, 1] pixel units."""
    settings = {"temperature": temperature, "epsilon": epsilon}
    return score_baseline("odin", ensemble, x, settings, None, batch_size)


def mahalanobis_scores(
    ensemble: LeaveOutEnsemble,
    fits: Sequence[GaussianFit],
    x: ImageSet | np.ndarray | torch.Tensor,
    epsilon: float = 0.0,
    batch_size: int = 256,
) -> np.ndarray:
    """-min_c distance, summed over members: (N,); with eps > 0 the input first takes a step of
    eps (pixel units) against the gradient of that minimum distance."""
    return score_baseline("mahalanobis", ensemble, x, {"epsilon": epsilon}, fits, batch_size)
