import numpy as np
import pytest

from leaveout import (
    PAPER_EPSILONS,
    PAPER_TEMPERATURES,
    ConfigError,
    NotFittedError,
    create_detector,
    threshold_at_tpr,
)
from leaveout.data import noise_images
from leaveout.metrics import fpr_at_tpr


def test_the_searched_grid_is_the_one_method_md_gives(ensemble):
    """The grid of method.md section 5, parsed from the spec itself, is what fit searches."""
    import re

    from ..conftest import SHARED_DATA

    spec = SHARED_DATA.parent / "docs" / "method.md"
    if not spec.is_file():
        pytest.skip(f"{spec} not found")
    line = re.search(
        r"Grid T in \{([^}]*)\} x eps in \{([^}]*)\}", spec.read_text().replace("\n", " ")
    )
    temperatures, epsilons = ([float(v) for v in group.split(",")] for group in line.groups())
    assert list(PAPER_TEMPERATURES) == temperatures and list(PAPER_EPSILONS) == epsilons
    points = create_detector("leaveout", ensemble).grid_points()
    assert [(p["temperature"], p["epsilon"]) for p in points] == [
        (t, e) for t in temperatures for e in epsilons
    ]
    assert [
        p["temperature"] for p in create_detector("energy", ensemble).grid_points()
    ] == temperatures


def test_threshold_keeps_the_asked_fraction():
    scores = np.arange(100.0)
    assert threshold_at_tpr(scores) == 5.0 and (scores >= 5.0).mean() == 0.95
    assert threshold_at_tpr(scores, 0.9) == 10.0
    for n in range(1, 40):
        ids = np.random.default_rng(n).normal(size=n)
        for tpr in (0.5, 0.9, 0.95, 1.0):
            t = threshold_at_tpr(ids, tpr)
            assert (ids >= t).mean() >= tpr - 1e-12  # keeps at least the fraction
            assert (ids > t).mean() < tpr  # the largest such threshold


def test_the_scikit_learn_outlier_api(ensemble, sets):
    detector = create_detector("msp", ensemble, temperature=1.0)
    with pytest.raises(NotFittedError, match="fit"):
        detector.predict(sets["test"].images[:3])
    assert detector.fit(sets["val"]) is detector  # ID only: threshold, settings unchanged
    assert detector.temperature_ == 1.0 and detector.threshold_ is not None
    x = sets["test"].images[:50]
    scores = detector.score_samples(x)
    np.testing.assert_allclose(detector.decision_function(x), scores - detector.threshold_)
    labels = detector.predict(x)
    assert set(np.unique(labels)) <= {-1, 1} and labels.dtype == np.int64
    assert ((labels == 1) == (scores >= detector.threshold_)).all()
    assert (detector.predict(sets["val"]) == 1).mean() >= 0.95
    assert detector.get_params()["temperature"] == 1.0
    assert detector.set_params(temperature=10.0).temperature == 10.0
    with pytest.raises(ConfigError, match="no setting 'epsilon'"):
        detector.set_params(epsilon=0.1)


def test_fit_on_a_pair_picks_the_best_grid_point_and_its_threshold(ensemble, sets):
    ids, noise = sets["test"].images[:100], noise_images("uniform", n=100, size=16)
    space = {"temperature": (1.0, 100.0), "epsilon": (0.0, 0.001)}
    detector = create_detector("leaveout", ensemble, search_space=space).fit(ids, noise)
    assert len(detector.grid_) == 4 and [r["temperature"] for r in detector.grid_] == [
        1,
        1,
        100,
        100,
    ]
    best = min(detector.grid_, key=lambda r: (r["FPR95"], -r["AUROC"]))
    assert (detector.temperature_, detector.epsilon_) == (best["temperature"], best["epsilon"])
    scores = create_detector(
        "leaveout", ensemble, temperature=best["temperature"], epsilon=best["epsilon"]
    ).score_samples(ids)
    assert detector.threshold_ == threshold_at_tpr(scores, 0.95)
    assert best["FPR95"] == fpr_at_tpr(scores, detector.score_samples(noise))


def test_left_out_fit_averages_each_members_own_pair(ensemble, sets):
    val = sets["val"]
    space = {"temperature": (1.0, 1000.0), "epsilon": (0.0, 0.002)}
    detector = create_detector("leaveout", ensemble, search_space=space)
    detector.fit_left_out(val, max_images=200)
    assert len(detector.grid_) == 4
    best = min(detector.grid_, key=lambda r: (r["FPR95"], -r["AUROC"]))
    assert (detector.temperature_, detector.epsilon_) == (best["temperature"], best["epsilon"])
    # one grid point recomputed independently: each member alone on its kept vs left-out classes
    fprs = []
    for m in range(ensemble.k):
        single = create_detector("leaveout", ensemble.single(m), temperature=1000.0, epsilon=0.002)
        out = np.isin(val.labels, ensemble.partition.left_out(m))
        ids, oods = np.flatnonzero(~out), np.flatnonzero(out)
        assert len(oods) <= 200  # the left-out side is not subsampled here
        if len(ids) > 200:
            ids = ids[np.sort(np.random.default_rng(m).choice(len(ids), 200, replace=False))]
        fprs.append(
            fpr_at_tpr(
                single.score_samples(val.images[ids]), single.score_samples(val.images[oods])
            )
        )
    row = next(r for r in detector.grid_ if (r["temperature"], r["epsilon"]) == (1000.0, 0.002))
    assert row["FPR95"] == pytest.approx(np.mean(fprs), abs=1e-15)
    assert (detector.score_samples(val) >= detector.threshold_).mean() >= 0.9


def test_member_views_score_at_the_fitted_settings(ensemble, sets):
    space = {"temperature": (1.0, 10.0), "epsilon": (0.001, 0.002)}  # the defaults are not in it
    detector = create_detector("leaveout", ensemble, search_space=space)
    detector.fit_left_out(sets["val"], max_images=200)
    assert detector.temperature_ != detector.temperature
    images = sets["test"].images[:12]
    views = [detector.member_view(m).score_samples(images) for m in range(ensemble.k)]
    np.testing.assert_allclose(np.sum(views, axis=0), detector.score_samples(images), rtol=1e-12)


def test_a_standard_classifier_has_no_left_out_pairs(ensemble, sets):
    single = create_detector("msp", ensemble.single(0))
    with pytest.raises(ConfigError, match="left-out"):
        single.fit_left_out(sets["val"])


def test_bad_settings_are_named(ensemble, sets):
    with pytest.raises(ConfigError, match="criterion"):
        create_detector("msp", ensemble, criterion="accuracy").fit(sets["val"], sets["val"])
    with pytest.raises(ConfigError, match="cannot search 'epsilon'"):
        create_detector("msp", ensemble, search_space={"epsilon": (0.0,)}).fit(
            sets["val"], sets["val"]
        )
    with pytest.raises(ConfigError, match="tpr"):
        create_detector("msp", ensemble, tpr=1.5).fit(sets["val"])
    with pytest.raises(ConfigError, match="unexpected keyword"):
        create_detector("msp", ensemble, epsilon=0.1)


def test_calibration_records_round_trip(ensemble, sets):
    space = {"temperature": (1.0, 10.0)}
    fitted = create_detector("energy", ensemble, search_space=space, tpr=0.9).fit_left_out(
        sets["val"], max_images=100
    )
    record = fitted.calibration_record()
    assert record["weights"] == ensemble.weights_id and len(record["grid"]) == 2
    again = create_detector("energy", ensemble).apply_calibration(record)
    assert again.hyperparameters() == fitted.hyperparameters()
    assert (again.threshold_, again.tpr) == (fitted.threshold_, 0.9)
    x = sets["test"].images[:20]
    np.testing.assert_array_equal(again.predict(x), fitted.predict(x))


def test_selection_shares_count_how_often_each_point_wins_a_resample():
    from leaveout.detectors.base import selection_shares

    rng = np.random.default_rng(0)
    ids, oods = rng.normal(1.0, 1.0, (3, 400)), rng.normal(0.0, 1.0, (3, 400))
    ids[0], oods[0] = rng.uniform(2, 3, 400), rng.uniform(0, 1, 400)  # separates perfectly
    shares = selection_shares([(ids, oods)], "fpr95", resamples=50)
    assert shares == [1.0, 0.0, 0.0]
    # two copies of one point: a tie, which best_row gives to the earlier point every time
    same = selection_shares([(ids[[1, 1]], oods[[1, 1]])], "auroc", resamples=20)
    assert same == [1.0, 0.0]
    # two points of equal quality on different images: each wins part of the resamples
    a = (rng.normal(1.0, 1.0, (1, 400)), rng.normal(0.0, 1.0, (1, 400)))
    b = (rng.normal(1.0, 1.0, (1, 400)), rng.normal(0.0, 1.0, (1, 400)))
    pair = (np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]))
    split = selection_shares([pair], "auroc", resamples=200)
    assert sum(split) == pytest.approx(1.0) and min(split) > 0.05
    assert selection_shares([pair], "auroc", resamples=200) == split  # seeded


def test_calibration_records_how_stable_the_choice_is(ensemble, sets):
    space = {"temperature": (1.0, 1000.0), "epsilon": (0.0, 0.002)}
    detector = create_detector("leaveout", ensemble, search_space=space)
    detector.fit_left_out(sets["val"], max_images=200)
    shares = [row["chosen_share"] for row in detector.grid_]
    assert sum(shares) == pytest.approx(1.0)
    chosen = next(
        r
        for r in detector.grid_
        if r["temperature"] == detector.temperature_ and r["epsilon"] == detector.epsilon_
    )
    assert chosen["chosen_share"] > 0  # the full-sample winner also wins some resamples
    assert detector.calibration_record()["grid"] == detector.grid_
