import numpy as np
import pytest

from leaveout import (
    ImageSet,
    ShapeError,
)

from ..helpers import (
    random_images,
)


def test_imageset_validates_shapes_and_labels():
    images = random_images(4)
    with pytest.raises(ShapeError, match="uint8"):
        ImageSet(images.astype(np.float32), None, (), "x")
    with pytest.raises(ShapeError, match=r"\(N, H, W, 3\)"):
        ImageSet(images[..., :1], None, (), "x")
    with pytest.raises(ShapeError, match="4 images but labels"):
        ImageSet(images, np.zeros(3, np.int64), ("a",), "x")
    with pytest.raises(ShapeError, match="class names"):
        ImageSet(images, np.array([0, 1, 2, 3]), ("a", "b"), "x")
    data = ImageSet(images, np.array([0, 1, 1, 0]), ("a", "b"), "x")
    sub = data.subset(np.array([1, 2]))
    assert len(sub) == 2 and sub.labels.tolist() == [1, 1] and sub.classes == ("a", "b")
    assert "2 classes: a 2, b 2" in data.describe()


def test_a_one_line_repr_not_the_pixels():
    data = ImageSet(random_images(1000), np.zeros(1000, np.int64), ("a", "b"), "big")
    assert repr(data) == "ImageSet('big': 1000 images, 32x32 RGB, 2 classes)"
    assert (
        repr(ImageSet(random_images(2, size=8), None, (), "ood"))
        == "ImageSet('ood': 2 images, 8x8 RGB, unlabelled)"
    )
