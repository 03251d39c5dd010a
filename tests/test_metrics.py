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
