"""Batches straight from in-memory uint8 tensors: augmentation and normalisation for a whole batch.

Images stay (N, H, W, 3) uint8 on the model's device; a batch is gathered by index, randomly
cropped (zero padding) and flipped in one vectorised step, then normalised to float
(B, 3, H, W) in channels_last layout. Every random draw comes from a generator seeded by
(seed, epoch), so an epoch is reproducible on its own: resuming at epoch e needs no saved state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .distributed import ALONE, World, shard

# ODIN's CIFAR normalisation, in [0, 1] pixel units (method.md section 3).
CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std in [0, 1] pixel units: x_model = (x / 255 - mean) / std."""

    mean: tuple[float, float, float] = CIFAR_MEAN
    std: tuple[float, float, float] = CIFAR_STD

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> normalised float (B, 3, H, W), channels_last."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images (B, H, W, 3), got {tuple(images.shape)}")
        std = torch.tensor(self.std, dtype=dtype, device=images.device)
        mean = torch.tensor(self.mean, dtype=dtype, device=images.device)
        scale, shift = 1.0 / (255.0 * std), -mean / std
        x = images.to(dtype) * scale + shift  # stays (B, H, W, 3) contiguous
        return x.permute(0, 3, 1, 2)  # a channels_last view of (B, 3, H, W)

    @classmethod
    def fit(cls, images: np.ndarray) -> Normalization:
        """Mean and std per channel of uint8 images (N, H, W, 3)."""
        flat = images.reshape(-1, 3).astype(np.float64) / 255.0
        std = np.maximum(flat.std(axis=0), 1e-3)
        return cls(tuple(flat.mean(axis=0).tolist()), tuple(std.tolist()))  # type: ignore[arg-type]


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. seed, member, epoch, stream)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def crop_and_flip(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, padding: int
) -> torch.Tensor:
    """Crop every image of (B, H, W, C) from its zero-padded version at (top[b], left[b]) in
    [0, 2 * padding], then mirror the rows where flip[b]. Returns (B, H, W, C), same dtype."""
    b, h, w, _ = images.shape
    if padding:
        padded = F.pad(images, (0, 0, padding, padding, padding, padding))
        rows = (top[:, None] + torch.arange(h, device=images.device))[:, :, None]
        cols = (left[:, None] + torch.arange(w, device=images.device))[:, None, :]
        images = padded[torch.arange(b, device=images.device)[:, None, None], rows, cols]
    return torch.where(flip[:, None, None, None], images.flip(2), images)


@dataclass(frozen=True)
class Augment:
    """Random crop with `padding` pixels of zero padding and (optionally) horizontal flips."""

    padding: int = 4
    hflip: bool = True

    def draw(self, b: int, generator: torch.Generator) -> torch.Tensor:
        """Random parameters for `b` images: (b, 3) int64 rows of (top, left, flip)."""
        top, left = torch.randint(0, 2 * self.padding + 1, (2, b), generator=generator)
        if self.hflip:
            flip = torch.rand(b, generator=generator) < 0.5
        else:
            flip = torch.zeros(b, dtype=torch.bool)
        return torch.stack([top, left, flip.long()], dim=1)

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Crop and flip (B, H, W, C) images with parameters (B, 3) from `draw`."""
        p = params.to(images.device)
        return crop_and_flip(images, p[:, 0], p[:, 1], p[:, 2].bool(), self.padding)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.draw(images.shape[0], generator))


class BatchStream:
    """Shuffled (and optionally augmented) batches of one in-memory set.

    images: (N, H, W, 3) uint8 tensor; labels: (N,) int64 tensor or None. Both on the device the
    batches are wanted on. An epoch yields (x, y): x float (B, 3, H, W) channels_last, y (B,).
    With drop_last, an epoch has N // batch_size batches (at least one).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None,
        batch_size: int,
        normalization: Normalization,
        augment: Augment | None = None,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        world: World = ALONE,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"images must be uint8 (N, H, W, 3), got {images.dtype} {tuple(images.shape)}"
            )
        if len(images) == 0:
            raise ValueError("cannot draw batches from an empty set")
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.normalization, self.augment = normalization, augment
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.world = world  # under torchrun: batches are global, each process takes its shard

    def __len__(self) -> int:
        n = len(self.images)
        if self.drop_last:
            return max(1, n // self.batch_size)
        return -(-n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The index order of `epoch` (a pure function of seed and epoch)."""
        n = len(self.images)
        if not self.shuffle:
            return torch.arange(n)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0))
        return torch.randperm(n, generator=gen)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        order = self.order(epoch).to(self.images.device)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 1))
        for step in range(len(self)):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            params = None if self.augment is None else self.augment.draw(len(index), gen)
            index = shard(index, self.world)
            x = _gather(self.images, index, self.augment, params, self.world, self.normalization)
            yield x, None if self.labels is None else self.labels[index]


class CycledStream:
    """Batches of a second set that cycles: a fresh shuffle each time it is used up.

    Draw number i (0, 1, 2, ... counted from the start of training) is a pure function of
    (seed, i), so a stream restarted at any step continues identically.
    """

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int,
        normalization: Normalization,
        augment: Augment | None = None,
        seed: int = 0,
        world: World = ALONE,
    ) -> None:
        if len(images) == 0:
            raise ValueError("cannot cycle over an empty set")
        self.images, self.batch_size = images, batch_size
        self.normalization, self.augment, self.seed = normalization, augment, seed
        self.world = world
        self._cycle: tuple[int, torch.Tensor] | None = None

    def _permutation(self, cycle: int) -> torch.Tensor:
        if self._cycle is None or self._cycle[0] != cycle:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, cycle, 2))
            self._cycle = (cycle, torch.randperm(len(self.images), generator=gen))
        return self._cycle[1]

    def indices(self, draw: int) -> torch.Tensor:
        """Dataset indices of draw number `draw`."""
        n = len(self.images)
        positions = torch.arange(draw * self.batch_size, (draw + 1) * self.batch_size)
        cycles = positions // n
        out = torch.empty_like(positions)
        for cycle in torch.unique(cycles).tolist():  # one or two cycles unless batch > set
            here = cycles == cycle
            out[here] = self._permutation(cycle)[positions[here] % n]
        return out

    def batch(self, draw: int) -> torch.Tensor:
        index = self.indices(draw).to(self.images.device)
        params = None
        if self.augment is not None:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, draw, 3))
            params = self.augment.draw(len(index), gen)
        index = shard(index, self.world)
        return _gather(self.images, index, self.augment, params, self.world, self.normalization)


def _gather(
    images: torch.Tensor,
    index: torch.Tensor,
    augment: Augment | None,
    params: torch.Tensor | None,
    world: World,
    normalization: Normalization,
) -> torch.Tensor:
    """The images at `index`, augmented with this process's share of the global `params`."""
    batch = images[index]
    if augment is not None and params is not None:
        batch = augment.apply(batch, shard(params, world))
    return normalization(batch)


class PairedStream:
    """One member's training stream: ID batches drive the epoch, left-out batches cycle.

    An epoch yields (x_id, y_id, x_out): ID images and member labels, and as many left-out
    images as `out.batch_size`.
    """

    def __init__(self, id_stream: BatchStream, out_stream: CycledStream) -> None:
        self.id_stream, self.out_stream = id_stream, out_stream

    def __len__(self) -> int:
        return len(self.id_stream)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        first_draw = epoch * len(self)
        for step, (x, y) in enumerate(self.id_stream.epoch(epoch)):
            assert y is not None
            yield x, y, self.out_stream.batch(first_draw + step)
