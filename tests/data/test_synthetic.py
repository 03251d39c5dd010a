import numpy as np
import pytest
from PIL import Image

from leaveout import (
    load_digits,
    noise_image,
    noise_images,
)


@pytest.mark.parametrize("kind", ["uniform", "gaussian"])
def test_noise_image_is_a_pure_function_of_seed_and_index(kind):
    data = noise_images(kind, n=50, seed=7)
    assert data.images.shape == (50, 32, 32, 3) and data.labels is None
    np.testing.assert_array_equal(data.images[37], noise_image(kind, 37, seed=7))
    np.testing.assert_array_equal(noise_images(kind, n=50, seed=7).images, data.images)
    assert not np.array_equal(noise_image(kind, 37, seed=8), data.images[37])
    assert not np.array_equal(data.images[0], data.images[1])


def test_noise_distributions_match_odin():
    uniform = noise_images("uniform", n=200, seed=0).images / 255.0
    assert abs(uniform.mean() - 0.5) < 0.01 and abs(uniform.var() - 1 / 12) < 0.005
    gaussian = noise_images("gaussian", n=200, seed=0).images
    # N(0.5, 1) clipped to [0, 1]: P(x <= 0) = P(x >= 1) = Phi(-0.5) = 0.3085
    assert abs((gaussian == 0).mean() - 0.3085) < 0.01
    assert abs((gaussian == 255).mean() - 0.3085) < 0.01


def test_digits_are_the_scikit_learn_images_scaled_up():
    from sklearn.datasets import load_digits as sk_digits

    data = load_digits(size=16)
    ref = sk_digits()
    assert data.images.shape == (1797, 16, 16, 3) and data.num_classes == 10
    np.testing.assert_array_equal(data.labels, ref.target)
    assert (data.images[..., 0] == data.images[..., 2]).all()
    # an independent bilinear upscaling (Pillow, float32) of a few images
    for i in (0, 500, 1796):
        grey = Image.fromarray((ref.images[i] * 255 / 16).astype(np.float32), mode="F")
        expected = np.asarray(grey.resize((16, 16), Image.Resampling.BILINEAR))
        assert np.abs(data.images[i, ..., 0] - expected).max() <= 1.0
