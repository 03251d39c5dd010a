"""OOD metrics from exact curves over all distinct scores (method.md section 7).

Convention: scores are higher = more in-distribution; ID is the positive class unless
`ood_positive=True` (the convention of pytorch-ood and OpenOOD).
"""

from __future__ import annotations

import numpy as np


def _labels_and_scores(
    id_scores: np.ndarray, ood_scores: np.ndarray, ood_positive: bool
) -> tuple[np.ndarray, np.ndarray]:
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    if not len(id_scores) or not len(ood_scores):
        raise ValueError("metrics need at least one ID and one OOD score")
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
