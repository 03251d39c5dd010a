import numpy as np
import pytest

from leaveout import (
    CorruptFileError,
    ImageSet,
    ShapeError,
    load_npz,
    save_npz,
)
from leaveout.data import npz_image_count

from ..helpers import (
    CIFAR10_CLASSES,
    random_images,
)


def test_npz_roundtrip_and_header_count(tmp_path):
    data = ImageSet(random_images(5), np.array([0, 1, 2, 1, 0]), ("a", "b", "c"), "s")
    save_npz(data, tmp_path / "s.npz")
    again = load_npz(tmp_path / "s.npz")
    np.testing.assert_array_equal(again.images, data.images)
    np.testing.assert_array_equal(again.labels, data.labels)
    assert again.classes == ("a", "b", "c") and again.name == "s"
    assert npz_image_count(tmp_path / "s.npz") == 5


def test_npz_with_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.array([object()], dtype=object))
    with pytest.raises(CorruptFileError, match=r"bad\.npz"):
        load_npz(path)


def test_npz_with_wrong_shape_names_the_file(tmp_path):
    path = tmp_path / "gray.npz"
    np.savez(path, images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ShapeError, match=r"gray\.npz"):
        load_npz(path)


def test_shared_cifar10_npz(shared_data):
    train = load_npz(shared_data / "cifar10" / "train.npz")
    assert train.images.shape == (50_000, 32, 32, 3)
    assert np.bincount(train.labels).tolist() == [5000] * 10
    assert train.classes == CIFAR10_CLASSES
    assert abs(train.images.mean() - 120.69) < 0.05


def test_an_npy_file_named_npz_is_a_clear_error(tmp_path):
    path = tmp_path / "plain.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(CorruptFileError, match="single .npy array"):
        load_npz(path)
