import numpy as np
import pytest

from leaveout import (
    ImageSet,
    ShapeError,
    Split,
    odin_split,
    random_split,
    stratified_split,
)

from ..helpers import (
    random_images,
)


def test_odin_split_and_too_small_set():
    split = odin_split(1500)
    assert split.parts["tune"].tolist() == list(range(1000))
    assert split.parts["report"][0] == 1000 and len(split.parts["report"]) == 500
    with pytest.raises(ShapeError, match="1000"):
        odin_split(1000)


def test_stratified_split_is_seeded_disjoint_and_saved(tmp_path):
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    split = stratified_split(labels, 0.1, seed=5)
    train, val = split.parts["train"], split.parts["val"]
    assert np.bincount(labels[val]).tolist() == [1, 2, 3, 4]
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 100
    assert np.array_equal(stratified_split(labels, 0.1, seed=5).parts["val"], val)
    assert not np.array_equal(stratified_split(labels, 0.1, seed=6).parts["val"], val)
    split.save(tmp_path / "split.json")
    again = Split.load(tmp_path / "split.json")
    assert again.rule == split.rule and np.array_equal(again.parts["val"], val)
    data = ImageSet(random_images(100, size=4), labels, ("a", "b", "c", "d"), "x")
    parts = split.apply(data)
    np.testing.assert_array_equal(parts["val"].images, data.images[val])


def test_random_split_sizes():
    split = random_split(10, 0.3, seed=0)
    assert len(split.parts["val"]) == 3 and len(split.parts["train"]) == 7
    with pytest.raises(ShapeError):
        split.apply(ImageSet(random_images(5, size=4), None, (), "x"))


def test_small_classes_warn_and_an_empty_part_is_refused(tmp_path):
    from leaveout import ConfigError, LeaveoutWarning, load_run_sets
    from leaveout.config import DataSettings

    from ..helpers import write_image_files

    for c, count in enumerate((30, 30, 6)):
        write_image_files(tmp_path / "data" / f"class_{c}", random_images(count, size=8, seed=c))
    settings = DataSettings(dataset=str(tmp_path / "data"))
    with pytest.warns(LeaveoutWarning, match=r"1 classes have fewer than 10 images: class_2 \(5\)"):
        load_run_sets(settings, seed=0)
    tiny = DataSettings(dataset=str(tmp_path / "data"), val_fraction=0.01)
    with pytest.raises(ConfigError, match="the val part is empty"), pytest.warns(LeaveoutWarning):
        load_run_sets(tiny, seed=0)


def _sorted_labelled(n_per_class=(900, 750, 1500, 80, 3), size=4):
    images = random_images(sum(n_per_class), size=size, seed=11)
    labels = np.repeat(np.arange(len(n_per_class)), n_per_class)
    return ImageSet(images, labels, tuple("abcde"), "sorted")


def test_the_seeded_split_keeps_every_class_in_both_parts_and_ignores_row_order():
    from leaveout.data import report_split

    data = _sorted_labelled()  # grouped by class, like an ImageFolder or the shared CIFAR copy
    split = report_split(data)
    tune, report = split.parts["tune"], split.parts["report"]
    assert len(tune) == 1000 and len(np.intersect1d(tune, report)) == 0
    assert len(tune) + len(report) == len(data)
    for c in range(5):  # every class with two or more images is in both parts
        assert (data.labels[tune] == c).any() and (data.labels[report] == c).any()
    counts = np.bincount(data.labels[tune], minlength=5)
    np.testing.assert_allclose(counts[:3], 1000 * np.array([900, 750, 1500]) / 3233, atol=2)

    order = np.random.default_rng(3).permutation(len(data))
    shuffled = data.subset(order)
    again = report_split(shuffled)
    picked = {data.images[i].tobytes() for i in tune}
    assert {shuffled.images[i].tobytes() for i in again.parts["tune"]} == picked
    assert report_split(data, seed=1).parts["tune"].tolist() != tune.tolist()


def test_the_unlabelled_split_is_random_by_content():
    from leaveout.data import report_split

    data = ImageSet(random_images(3000, size=4, seed=5), None, (), "ood")
    split = report_split(data)
    assert len(split.parts["tune"]) == 1000
    assert split.parts["tune"].max() > 2000  # not the first 1000 rows
    reversed_rows = data.subset(np.arange(len(data))[::-1])
    tune = {data.images[i].tobytes() for i in split.parts["tune"]}
    assert {
        reversed_rows.images[i].tobytes() for i in report_split(reversed_rows).parts["tune"]
    } == tune


def test_odin_first_is_refused_on_a_set_sorted_by_class():
    from leaveout import ConfigError
    from leaveout.data import report_split

    with pytest.raises(ConfigError, match=r"tune part has no images of 3 classes \(c, d, e\)"):
        report_split(_sorted_labelled(), "odin-first")
    interleaved = ImageSet(random_images(2500, size=4), np.arange(2500) % 5, tuple("abcde"), "x")
    split = report_split(interleaved, "odin-first")
    assert split.parts["tune"].tolist() == list(range(1000))
