"""Sets made on the spot: ODIN's noise images and the embedded scikit-learn digits."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .imageset import ImageSet

NOISE_KINDS = ("uniform", "gaussian")


def noise_image(kind: str, index: int, seed: int = 0, size: int = 32) -> np.ndarray:
    """Image `index` of a noise set: a pure function of (kind, seed, index). (size, size, 3) uint8.

    uniform: U[0, 1] per pixel; gaussian: N(0.5, 1) clipped to [0, 1]; quantised to 1/255.
    """
    if kind not in NOISE_KINDS:
        raise ConfigError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    rng = np.random.default_rng([seed, NOISE_KINDS.index(kind), index])
    shape = (size, size, 3)
    values = rng.random(shape) if kind == "uniform" else rng.normal(0.5, 1.0, shape).clip(0, 1)
    return np.rint(values * 255).astype(np.uint8)


def noise_images(kind: str, n: int = 10_000, seed: int = 0, size: int = 32) -> ImageSet:
    """`n` noise images, built one at a time into a preallocated uint8 array."""
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = noise_image(kind, i, seed, size)
    return ImageSet(out, None, (), kind)


def load_digits(size: int = 16) -> ImageSet:
    """scikit-learn's 1,797 real 8x8 digits, scaled bilinearly to (size, size) grey RGB."""
    import torch
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    grey = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    grey = torch.nn.functional.interpolate(grey, size=(size, size), mode="bilinear", antialias=True)
    pixels = grey.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    images = np.ascontiguousarray(np.repeat(pixels[..., None], 3, axis=-1))
    classes = tuple(str(d) for d in range(10))
    return ImageSet(images, bunch.target.astype(np.int64), classes, "digits")
