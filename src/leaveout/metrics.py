"""OOD metrics from exact curves over all distinct scores (method.md section 7).

Convention: scores are higher = more in-distribution; ID is the positive class unless
`ood_positive=True` (the convention of pytorch-ood and OpenOOD). Every function returns a
fraction in [0, 1]; reports (tables, plots) show percent.
"""

from __future__ import annotations

import numpy as np

from .errors import ShapeError


def _labels_and_scores(
    id_scores: np.ndarray, ood_scores: np.ndarray, ood_positive: bool
) -> tuple[np.ndarray, np.ndarray]:
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    if not len(id_scores) or not len(ood_scores):
        raise ShapeError("metrics need at least one ID and one OOD score")
    if not (np.isfinite(id_scores).all() and np.isfinite(ood_scores).all()):
        raise ShapeError("scores contain NaN or infinite values")
    scores = np.concatenate([id_scores, ood_scores])
    positive = np.concatenate([np.ones(len(id_scores), bool), np.zeros(len(ood_scores), bool)])
    if ood_positive:
        return -scores, ~positive
    return scores, positive


def roc_curve(
    id_scores: np.ndarray, ood_scores: np.ndarray, ood_positive: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): one point per distinct score, from (0, 0) to (1, 1).

    A sample is called positive when its (convention-adjusted) score >= threshold.
    """
    scores, positive = _labels_and_scores(id_scores, ood_scores, ood_positive)
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tp = np.cumsum(positive)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    tpr = np.r_[0.0, tp / positive.sum()]
    fpr = np.r_[0.0, fp / (~positive).sum()]
    return fpr, tpr, np.r_[np.inf, scores[last_of_tie]]


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray, ood_positive: bool = False) -> float:
    """Area under the ROC curve (trapezoid over all distinct scores; ties count one half)."""
    fpr, tpr, _ = roc_curve(id_scores, ood_scores, ood_positive)
    return float(np.trapezoid(tpr, fpr))


def fpr_at_tpr(
    id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95, ood_positive: bool = False
) -> float:
    """FPR at the first threshold whose TPR reaches `tpr` (fraction, not percent).

    ID positive: the fraction of OOD accepted when `tpr` of ID is accepted.
    """
    fprs, tprs, _ = roc_curve(id_scores, ood_scores, ood_positive)
    return float(fprs[np.searchsorted(tprs, tpr - 1e-12, side="left")])


def detection_error(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """min over thresholds of 0.5 (1 - TPR) + 0.5 FPR (the same under either convention)."""
    fprs, tprs, _ = roc_curve(id_scores, ood_scores)
    return float(np.min(0.5 * (1 - tprs) + 0.5 * fprs))


def average_precision(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """Step-wise area under precision/recall (scikit-learn's average precision), positive = high."""
    fprs, tprs, _ = roc_curve(positive_scores, negative_scores)
    tp, fp = tprs * len(positive_scores), fprs * len(negative_scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    return float(np.sum(np.diff(tprs) * precision[1:]))


def aupr_in(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under precision/recall with ID as the positive class, on the score."""
    return average_precision(np.asarray(id_scores), np.asarray(ood_scores))


def aupr_out(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under precision/recall with OOD as the positive class, on the negated score."""
    return average_precision(-np.asarray(ood_scores), -np.asarray(id_scores))


METRIC_NAMES = ("FPR95", "DetErr", "AUROC", "AUPR-In", "AUPR-Out")


def ood_metrics(
    id_scores: np.ndarray, ood_scores: np.ndarray, ood_positive: bool = False
) -> dict[str, float]:
    """The five metrics as fractions. Scores: higher = more ID.

    ood_positive switches FPR95 to the pytorch-ood/OpenOOD convention (the fraction of ID
    rejected when 95% of OOD is rejected); the other four do not depend on the convention.
    """
    return {
        "FPR95": fpr_at_tpr(id_scores, ood_scores, 0.95, ood_positive),
        "DetErr": detection_error(id_scores, ood_scores),
        "AUROC": auroc(id_scores, ood_scores),
        "AUPR-In": aupr_in(id_scores, ood_scores),
        "AUPR-Out": aupr_out(id_scores, ood_scores),
    }


def threshold_at_tpr(id_scores: np.ndarray, tpr: float = 0.95) -> float:
    """The largest threshold that accepts (score >= threshold) at least `tpr` of `id_scores`.

    An input is called in-distribution when its score is >= the threshold: the decision point
    of `Detector.predict` and of `leaveout score`.
    """
    if not 0 < tpr <= 1:
        raise ShapeError(f"tpr must lie in (0, 1], got {tpr}")
    ordered = np.sort(np.asarray(id_scores, dtype=np.float64).ravel())
    if not len(ordered):
        raise ShapeError("a threshold needs at least one ID score")
    return float(ordered[int(np.floor((1 - tpr) * len(ordered) + 1e-9))])
