import numpy as np
import pytest

from leaveout import ConfigError, Detector, create_detector, list_detectors, register_detector


def test_every_detector_is_registered_and_the_paper_comes_first():
    names = list_detectors()
    assert names[0] == "leaveout"
    assert set(names) >= {"leaveout", "msp", "odin", "energy", "mahalanobis", "knn", "vim"}
    assert set(names) >= {"react", "ash", "gen"}


def test_unknown_detector_lists_the_known_ones(ensemble):
    with pytest.raises(ConfigError, match="known: leaveout"):
        create_detector("no-such-detector", ensemble)


def test_a_detector_without_an_input_step_refuses_epsilon(ensemble, sets):
    detector = create_detector("msp", ensemble)
    with pytest.raises(ConfigError, match="no input step"):
        detector.score_grid(sets["test"].images[:4], [{"temperature": 1.0, "epsilon": 0.002}])


def test_a_new_detector_is_one_class(ensemble, sets):
    """A plug-in registered from outside the package works with the whole API."""
    import torch

    from leaveout.detectors.base import PAPER_TEMPERATURES

    @register_detector
    class MaxLogit(Detector):
        name = "test-maxlogit"
        summary = "max logit / T"
        default_search_space = {"temperature": PAPER_TEMPERATURES}  # noqa: RUF012

        def __init__(self, ensemble, temperature=1.0, **options):
            super().__init__(ensemble, **options)
            self.temperature = temperature

        def member_scores(self, member_index, member, batch, points):
            with torch.no_grad():
                logits = member(batch).double()
            return torch.stack([logits.amax(1) / p["temperature"] for p in points])

    try:
        detector = create_detector("test-maxlogit", ensemble).fit_left_out(
            sets["val"], max_images=50
        )
        assert detector.temperature_ in PAPER_TEMPERATURES and len(detector.grid_) == 5
        assert set(np.unique(detector.predict(sets["test"].images[:10]))) <= {-1, 1}
    finally:
        from leaveout.detectors import registry

        registry.DETECTORS.pop("test-maxlogit")


def test_the_architecture_pages_detector_example_is_one_working_file(ensemble, sets):
    """docs/architecture.md shows a whole detector file; it must work as written."""
    import re
    import types

    import torch

    from leaveout.detectors import registry

    from ..conftest import REPO

    text = (REPO / "docs" / "architecture.md").read_text()
    (source,) = [
        b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "register_detector" in b
    ]
    assert len(source.strip().splitlines()) <= 30
    module = types.ModuleType("leaveout.detectors.maxlogit")
    module.__package__ = "leaveout.detectors"
    try:
        exec(compile(source, "docs/architecture.md", "exec"), module.__dict__)
        detector = create_detector("maxlogit", ensemble, temperature=2.0)
        images = sets["test"].images[:20]
        with torch.no_grad():
            x = next(ensemble.batches(images))
            expected = sum(m(x).double().amax(1).numpy() / 2.0 for m in ensemble.networks())
        np.testing.assert_allclose(detector.score_samples(images), expected, rtol=1e-12)
        assert "maxlogit" in list_detectors()
    finally:
        registry.DETECTORS.pop("maxlogit", None)


@pytest.mark.parametrize("name", ["knn", "vim", "react", "ash", "gen"])
def test_the_feature_and_softmax_detectors_calibrate_on_left_out_classes(ensemble, sets, name):
    detector = create_detector(name, ensemble)
    detector.fit_left_out(sets["val"], train=sets["train"], max_images=60)
    assert len(detector.grid_) == len(detector.grid_points())
    assert all(np.isfinite(row["AUROC"]) for row in detector.grid_)
    chosen = detector.hyperparameters()
    assert all(chosen[key] in values for key, values in detector.searched().items())
    labels = detector.predict(sets["test"].images[:10])
    assert set(np.unique(labels)) <= {-1, 1}
