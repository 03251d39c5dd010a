"""What the detectors and the ensemble accept as images, turned into normalised batches.

Accepted: uint8 images (N, H, W, 3) (numpy array or tensor; one image (H, W, 3) too), an
`ImageSet` (in memory or packed: read a batch at a time), float tensors or arrays (N, 3, H, W) already normalised, a Pillow image or a list of
them (resized by the "shorter-side" rule), and any iterable of batches of those (a torch
`DataLoader` yielding `x` or `(x, y)`), which is scored as a stream without loading it all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ShapeError
from .images import pil_to_array
from .imageset import ImageSet
from .npyfile import PackedImages
from .transforms import Normalization

Images = ImageSet | np.ndarray | PackedImages | torch.Tensor | Image.Image | Iterable[Any]


def input_batches(
    x: Images,
    normalization: Normalization,
    image_size: tuple[int, int],
    device: torch.device,
    batch_size: int = 256,
) -> Iterator[torch.Tensor]:
    """Normalised float32 batches (B, 3, H, W) on `device`, checked against `image_size`."""
    arrays = _as_array(x, image_size)
    if arrays is not None:
        for start in range(0, len(arrays), batch_size):
            yield _normalised(arrays[start : start + batch_size], normalization, image_size, device)
        return
    for item in x:  # type: ignore[union-attr]
        pair = isinstance(item, (tuple, list)) and item and not isinstance(item[0], Image.Image)
        batch = item[0] if pair else item  # (x, y) pairs; a list of Pillow images is a batch
        array = _as_array(batch, image_size)
        if array is None:
            raise ShapeError(
                "an iterable must yield batches (arrays or tensors, or (x, y) pairs); "
                f"got {type(batch).__name__}"
            )
        yield _normalised(array, normalization, image_size, device)


def input_length(x: Images) -> int | None:
    """The number of images, when it is known without reading a stream."""
    if isinstance(x, (ImageSet, np.ndarray, PackedImages, torch.Tensor, list, tuple)):
        return 1 if _is_single_image(x) else len(x)
    return 1 if isinstance(x, Image.Image) else None


def _is_single_image(x: object) -> bool:
    return isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 3 and x.shape[-1] == 3


def _as_array(
    x: object, image_size: tuple[int, int]
) -> np.ndarray | PackedImages | torch.Tensor | None:
    """An indexable array of images, or None for a stream of batches."""
    if isinstance(x, (str, Path)):
        raise ShapeError(
            f"got the path {x}: read images first (leaveout.load_images, leaveout.load_dataset)"
        )
    if isinstance(x, ImageSet):
        return x.images
    if isinstance(x, PackedImages):
        return x
    if isinstance(x, Image.Image):
        x = [x]
    if isinstance(x, (list, tuple)) and x and all(isinstance(i, Image.Image) for i in x):
        if image_size[0] != image_size[1]:
            raise ShapeError(f"Pillow images need a square network input, not {image_size}")
        return np.stack([pil_to_array(image, image_size[0]) for image in x])
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return x[None] if _is_single_image(x) else x
    if isinstance(x, (list, tuple)):
        raise ShapeError("a list must hold Pillow images; pass arrays as one (N, H, W, 3) array")
    if not isinstance(x, Iterable):
        raise ShapeError(
            f"cannot score a {type(x).__name__}: pass uint8 images (N, H, W, 3), normalised "
            "floats (N, 3, H, W), an ImageSet, Pillow images or an iterable of batches"
        )
    return None


def _normalised(
    images: np.ndarray | torch.Tensor,
    normalization: Normalization,
    image_size: tuple[int, int],
    device: torch.device,
) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if images.dtype == torch.uint8:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ShapeError(f"uint8 images must be (N, H, W, 3) RGB; got {tuple(images.shape)}")
        _check_size(tuple(images.shape[1:3]), image_size)
        return normalization(images.to(device))
    if not images.is_floating_point():
        raise ShapeError(
            f"images must be uint8 (N, H, W, 3) or normalised floats (N, 3, H, W); got {images.dtype}"
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise ShapeError(
            "float inputs must be normalised (N, 3, H, W) tensors or arrays; got shape "
            f"{tuple(images.shape)} (pass uint8 (N, H, W, 3) for raw images)"
        )
    _check_size(tuple(images.shape[2:]), image_size)
    if not torch.isfinite(images).all():
        raise ShapeError("inputs contain NaN or infinite values")
    return images.to(device, torch.float32)


def _check_size(got: tuple[int, ...], expected: tuple[int, int]) -> None:
    if tuple(got) != tuple(expected):
        raise ShapeError(
            f"images are {got[0]}x{got[1]} but the network was trained on "
            f"{expected[0]}x{expected[1]}"
        )
