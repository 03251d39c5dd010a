"""OOD metrics from exact curves over all distinct scores (method.md section 7).

Convention: scores are higher = more in-distribution; ID is the positive class unless
`ood_positive=True` (the convention of pytorch-ood and OpenOOD). Every function returns a
fraction in [0, 1]; reports (tables, plots) show percent.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """Area under the ROC curve (over all distinct scores; ties count one half). The same under
    either convention."""
    return float(_point(id_scores, ood_scores)["AUROC"][0])


def fpr_at_tpr(
    id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95, ood_positive: bool = False
) -> float:
    """FPR at the first threshold whose TPR reaches `tpr` (fraction, not percent).

    ID positive: the fraction of OOD accepted when `tpr` of ID is accepted.
    """
    return float(_point(id_scores, ood_scores, tpr, ood_positive)["FPR95"][0])


def detection_error(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """min over thresholds of 0.5 (1 - TPR) + 0.5 FPR (the same under either convention)."""
    return float(_point(id_scores, ood_scores)["DetErr"][0])


def aupr_in(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under precision/recall with ID as the positive class, on the score (scikit-learn's
    step-wise average precision)."""
    return float(_point(id_scores, ood_scores)["AUPR-In"][0])


def aupr_out(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under precision/recall with OOD as the positive class, on the negated score."""
    return float(_point(id_scores, ood_scores)["AUPR-Out"][0])


METRIC_NAMES = ("FPR95", "DetErr", "AUROC", "AUPR-In", "AUPR-Out")


def ood_metrics(
    id_scores: np.ndarray, ood_scores: np.ndarray, ood_positive: bool = False
) -> dict[str, float]:
    """The five metrics as fractions. Scores: higher = more ID.

    ood_positive switches FPR95 to the pytorch-ood/OpenOOD convention (the fraction of ID
    rejected when 95% of OOD is rejected); the other four do not depend on the convention.
    """
    return {k: float(v[0]) for k, v in _point(id_scores, ood_scores, 0.95, ood_positive).items()}


# --- one implementation of every metric, on counts per distinct score -----------------------------


@dataclass(frozen=True)
class DistinctScores:
    """The distinct scores of an ID/OOD pair, highest first, and where every score falls."""

    id_index: np.ndarray  # (n_id,) position of each ID score among the distinct scores
    ood_index: np.ndarray  # (n_ood,)
    size: int  # number of distinct scores

    @classmethod
    def of(cls, id_scores: np.ndarray, ood_scores: np.ndarray) -> DistinctScores:
        scores, _ = _labels_and_scores(id_scores, ood_scores, False)
        _, index = np.unique(-scores, return_inverse=True)
        n_id = len(np.ravel(id_scores))
        return cls(index[:n_id], index[n_id:], int(index.max()) + 1)

    def counts(self, id_rows: np.ndarray, ood_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts (R, size) per distinct score of R samples given as rows of indices."""
        return _row_counts(self.id_index[id_rows], self.size), _row_counts(
            self.ood_index[ood_rows], self.size
        )


def _row_counts(positions: np.ndarray, size: int) -> np.ndarray:
    rows = positions.shape[0]
    flat = positions + size * np.arange(rows)[:, None]
    return np.bincount(flat.ravel(), minlength=rows * size).reshape(rows, size)


def curve_metrics(
    id_counts: np.ndarray, ood_counts: np.ndarray, tpr: float = 0.95, ood_positive: bool = False
) -> dict[str, np.ndarray]:
    """Every metric for R samples at once, from their counts (R, m) of ID and OOD scores at each
    distinct score (highest first): each threshold is a distinct score, so ties count as one.
    Returns {metric: (R,) fractions}. One pass over the counts per metric, no copies reversed:
    with OOD positive (the negated score), the counts at or below a score are the totals minus
    those above it."""
    n_id, n_ood = id_counts.sum(1, keepdims=True), ood_counts.sum(1, keepdims=True)
    tp, fp = np.cumsum(id_counts, axis=1), np.cumsum(ood_counts, axis=1)  # at or above each score
    tp_out, fp_out = n_ood - fp + ood_counts, n_id - tp + id_counts  # at or below each score
    rows = np.arange(len(tp))
    if ood_positive:  # going up from the lowest score: the first that keeps `tpr` of OOD
        reached = (tp_out >= tpr * n_ood - 1e-9)[:, ::-1]
        first = tp.shape[1] - 1 - np.argmax(reached, axis=1)
        fpr95 = fp_out[rows, first] / n_id[:, 0]
    else:
        first = np.argmax(tp >= tpr * n_id - 1e-9, axis=1)
        fpr95 = fp[rows, first] / n_ood[:, 0]
    return {
        "FPR95": fpr95,
        "DetErr": np.minimum(0.5, np.min(0.5 * (1 - tp / n_id) + 0.5 * fp / n_ood, axis=1)),
        # the Mann-Whitney statistic: ID above OOD, ties one half (the trapezoid area)
        "AUROC": np.sum(id_counts * (n_ood - fp + 0.5 * ood_counts), axis=1) / (n_id * n_ood)[:, 0],
        "AUPR-In": np.sum(id_counts * (tp / np.maximum(tp + fp, 1)), axis=1) / n_id[:, 0],
        "AUPR-Out": np.sum(ood_counts * (tp_out / np.maximum(tp_out + fp_out, 1)), axis=1)
        / n_ood[:, 0],
    }


def _point(
    id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95, ood_positive: bool = False
) -> dict[str, np.ndarray]:
    distinct = DistinctScores.of(id_scores, ood_scores)
    id_counts, ood_counts = distinct.counts(
        np.arange(len(distinct.id_index))[None], np.arange(len(distinct.ood_index))[None]
    )
    return curve_metrics(id_counts, ood_counts, tpr, ood_positive)


def bootstrap_metrics(
    id_scores: np.ndarray,
    ood_scores: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
    ood_positive: bool = False,
    chunk: int = 32,
) -> dict[str, np.ndarray]:
    """Every metric on `resamples` bootstrap samples: ID and OOD resampled independently, with
    replacement, from a generator seeded by `seed`. Vectorised: one pass per chunk of samples.

    id_scores (n_id,) and ood_scores (n_ood,) for one method, or (M, n_id) and (M, n_ood): the
    scores of M methods on the same images, resampled together (a paired bootstrap).
    Returns {metric: (resamples,)} for one method, {metric: (resamples, M)} for M.
    """
    ids, oods = (
        np.atleast_2d(np.asarray(id_scores, np.float64)),
        np.atleast_2d(np.asarray(ood_scores, np.float64)),
    )
    if len(ids) != len(oods):
        raise ShapeError(f"{len(ids)} sets of ID scores but {len(oods)} sets of OOD scores")
    # resample sorted scores: the intervals then depend on the scores, not on the order of rows
    ids, oods = ids[:, np.lexsort(ids[::-1])], oods[:, np.lexsort(oods[::-1])]
    if resamples < 1:
        raise ShapeError(f"resamples must be at least 1, got {resamples}")
    distinct = [DistinctScores.of(i, o) for i, o in zip(ids, oods)]
    # one generator per side: the same resamples whatever the chunk size
    id_rng, ood_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in METRIC_NAMES}
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        id_rows = id_rng.integers(0, ids.shape[1], (rows, ids.shape[1]), dtype=np.int32)
        ood_rows = ood_rng.integers(0, oods.shape[1], (rows, oods.shape[1]), dtype=np.int32)
        per_method = [
            curve_metrics(*d.counts(id_rows, ood_rows), ood_positive=ood_positive) for d in distinct
        ]
        for name in METRIC_NAMES:
            parts[name].append(np.stack([m[name] for m in per_method], axis=1))
    samples = {name: np.concatenate(values) for name, values in parts.items()}
    if np.ndim(id_scores) == 1:
        samples = {name: values[:, 0] for name, values in samples.items()}
    return samples


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` interval of bootstrap samples (the percentile method)."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def metric_intervals(
    id_scores: np.ndarray,
    ood_scores: np.ndarray,
    level: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    ood_positive: bool = False,
) -> dict[str, tuple[float, float]]:
    """A `level` percentile bootstrap interval for each of the five metrics (fractions)."""
    samples = bootstrap_metrics(id_scores, ood_scores, resamples, seed, ood_positive)
    return {name: percentile_interval(values, level) for name, values in samples.items()}


def paired_differences(
    id_scores: tuple[np.ndarray, np.ndarray],
    ood_scores: tuple[np.ndarray, np.ndarray],
    level: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    ood_positive: bool = False,
) -> dict[str, dict[str, float]]:
    """Method A minus method B on the same images: the difference of every metric and its
    paired bootstrap interval (both methods resampled with the same indices).

    id_scores = (A's ID scores, B's ID scores) on the same ID images, likewise ood_scores.
    """
    ids, oods = np.stack(id_scores), np.stack(ood_scores)
    samples = bootstrap_metrics(ids, oods, resamples, seed, ood_positive)
    a, b = (ood_metrics(i, o, ood_positive) for i, o in zip(ids, oods))
    out = {}
    for name in METRIC_NAMES:
        low, high = percentile_interval(samples[name][:, 0] - samples[name][:, 1], level)
        out[name] = {"difference": a[name] - b[name], "low": low, "high": high}
    return out


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
