import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from leaveout.metrics import auroc, roc_curve


def test_auroc_hand_worked_with_ties():
    # ID scores 3, 2; OOD scores 2, 1: pairs (3>2) (3>1) (2=2 -> 1/2) (2>1) -> 3.5 / 4
    assert auroc(np.array([3.0, 2.0]), np.array([2.0, 1.0])) == pytest.approx(0.875)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    id_s = rng.normal(1, 1, 300).round(1)  # rounding makes ties
    ood_s = rng.normal(0, 1, 200).round(1)
    labels = np.r_[np.ones(300), np.zeros(200)]
    expected = roc_auc_score(labels, np.r_[id_s, ood_s])
    assert auroc(id_s, ood_s) == pytest.approx(expected, abs=1e-12)
    assert auroc(id_s, ood_s, ood_positive=True) == pytest.approx(expected, abs=1e-12)


def test_roc_curve_runs_from_origin_to_one():
    fpr, tpr, thr = roc_curve(np.array([1.0, 2.0]), np.array([0.0, 1.0]))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert len(thr) == 4  # inf + three distinct scores


from sklearn.metrics import average_precision_score  # noqa: E402
from sklearn.metrics import roc_curve as sk_roc_curve  # noqa: E402

from leaveout.metrics import (  # noqa: E402
    aupr_in,
    aupr_out,
    detection_error,
    fpr_at_tpr,
    ood_metrics,
)


def test_hand_worked_example():
    # ID 0.9 0.8 0.7 0.6 | OOD 0.75 0.5 0.4 0.1 (ID positive)
    ids, oods = np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.75, 0.5, 0.4, 0.1])
    # accepting 95% of ID needs threshold 0.6, which accepts OOD 0.75: FPR = 1/4
    assert fpr_at_tpr(ids, oods) == pytest.approx(0.25)
    # best threshold 0.6: TPR 1, FPR 1/4 -> 0.125; threshold 0.8: TPR 0.5, FPR 0 -> 0.25
    assert detection_error(ids, oods) == pytest.approx(0.125)
    # 14 of 16 (ID, OOD) pairs are ordered correctly: 0.7 and 0.6 lose to 0.75
    assert auroc(ids, oods) == pytest.approx(14 / 16)
    # precision at each ID hit: 1, 1, 3/4 (0.75 OOD before 0.7), 4/5
    assert aupr_in(ids, oods) == pytest.approx((1 + 1 + 0.75 + 0.8) / 4)


def test_fpr95_with_ties_counts_the_whole_tie():
    ids = np.array([1.0] * 19 + [0.0])
    oods = np.array([0.0, 0.0, -1.0, -1.0])
    # 95% of ID = 19/20 accepted at threshold 1.0: no OOD accepted
    assert fpr_at_tpr(ids, oods) == 0.0
    ids = np.array([1.0] * 18 + [0.0, 0.0])
    # now 95% needs threshold 0.0, which accepts the tied OOD scores 0.0 too
    assert fpr_at_tpr(ids, oods) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(4))
def test_all_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    ids = rng.normal(1, 1, 400).round(1)
    oods = rng.normal(0, 1.5, 250).round(1)
    y = np.r_[np.ones(400), np.zeros(250)]
    s = np.r_[ids, oods]
    fpr, tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    assert fpr_at_tpr(ids, oods) == pytest.approx(fpr[np.searchsorted(tpr, 0.95)])
    assert detection_error(ids, oods) == pytest.approx(np.min(0.5 * (1 - tpr) + 0.5 * fpr))
    assert aupr_in(ids, oods) == pytest.approx(average_precision_score(y, s))
    assert aupr_out(ids, oods) == pytest.approx(average_precision_score(1 - y, -s))
    # the OOD-positive convention: FPR95 = ID rejected when 95% of OOD is rejected
    fpr_o, tpr_o, _ = sk_roc_curve(1 - y, -s, drop_intermediate=False)
    assert fpr_at_tpr(ids, oods, ood_positive=True) == pytest.approx(
        fpr_o[np.searchsorted(tpr_o, 0.95)]
    )


def test_ood_metrics_are_fractions_like_every_metric_and_swap_only_fpr95():
    rng = np.random.default_rng(0)
    ids, oods = rng.normal(1, 1, 300), rng.normal(0, 1, 300)
    a, b = ood_metrics(ids, oods), ood_metrics(ids, oods, ood_positive=True)
    assert set(a) == {"FPR95", "DetErr", "AUROC", "AUPR-In", "AUPR-Out"}
    assert a["AUROC"] == auroc(ids, oods) and a["FPR95"] == fpr_at_tpr(ids, oods)
    assert all(0 <= v <= 1 for v in a.values())
    assert {k: v for k, v in a.items() if k != "FPR95"} == {
        k: v for k, v in b.items() if k != "FPR95"
    }
    assert a["FPR95"] != b["FPR95"]


def test_perfect_separation():
    m = ood_metrics(np.array([2.0, 3.0]), np.array([0.0, 1.0]))
    assert m == {"FPR95": 0.0, "DetErr": 0.0, "AUROC": 1.0, "AUPR-In": 1.0, "AUPR-Out": 1.0}


def test_bootstrap_equals_a_slow_loop_over_the_same_resamples():
    from leaveout.metrics import bootstrap_metrics

    rng = np.random.default_rng(1)
    ids, oods = rng.normal(1, 1, 120).round(1), rng.normal(0, 1, 80).round(1)  # with ties
    fast = bootstrap_metrics(ids, oods, resamples=50, seed=7, chunk=16)
    shuffled = bootstrap_metrics(ids[::-1], np.roll(oods, 5), resamples=50, seed=7, chunk=50)
    assert all(np.array_equal(fast[k], shuffled[k]) for k in fast)  # row order does not matter
    ids, oods = np.sort(ids), np.sort(oods)  # what the bootstrap resamples
    id_draws, ood_draws = (np.random.default_rng(s) for s in np.random.SeedSequence(7).spawn(2))
    id_rows = id_draws.integers(0, len(ids), (50, len(ids)), dtype=np.int32)
    ood_rows = ood_draws.integers(0, len(oods), (50, len(oods)), dtype=np.int32)
    slow = {k: [] for k in fast}
    for i, o in zip(id_rows, ood_rows):
        for k, v in ood_metrics(ids[i], oods[o]).items():
            slow[k].append(v)
    for k in fast:
        np.testing.assert_allclose(fast[k], slow[k], rtol=0, atol=1e-12)


def test_bootstrap_intervals_cover_the_true_auroc_about_95_percent_of_the_time():
    from math import erf, sqrt

    from leaveout.metrics import metric_intervals

    d = 1.0
    true_auroc = 0.5 * (1 + erf(d / sqrt(2) / sqrt(2)))  # Phi(d / sqrt(2))
    rng = np.random.default_rng(2026)
    covered = 0
    for repetition in range(200):
        ids, oods = rng.normal(d, 1, 200), rng.normal(0, 1, 200)
        low, high = metric_intervals(ids, oods, resamples=1000, seed=repetition)["AUROC"]
        covered += low <= true_auroc <= high
    assert 0.90 <= covered / 200 <= 0.99


def test_paired_differences():
    from leaveout.metrics import paired_differences

    rng = np.random.default_rng(3)
    ids, oods = rng.normal(1, 1, 500), rng.normal(0, 1, 500)
    same = paired_differences((ids, ids), (oods, oods), resamples=200)
    assert all(v == {"difference": 0.0, "low": 0.0, "high": 0.0} for v in same.values())
    noisy_ids, noisy_oods = ids + rng.normal(0, 2, 500), oods + rng.normal(0, 2, 500)
    better = paired_differences((ids, noisy_ids), (oods, noisy_oods), resamples=300)
    a, b = auroc(ids, oods), auroc(noisy_ids, noisy_oods)
    assert better["AUROC"]["difference"] == pytest.approx(a - b)
    assert 0 < better["AUROC"]["low"] < a - b < better["AUROC"]["high"]
