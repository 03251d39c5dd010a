"""Training batches straight from in-memory uint8 tensors.

Images stay (N, H, W, 3) uint8 on the model's device; a batch is gathered by index, randomly
cropped and flipped in one vectorised step, then normalised to float (B, 3, H, W) channels_last.
Every random draw comes from a generator seeded by (seed, epoch), so an epoch is reproducible on
its own: resuming at epoch e needs no saved state. Under data parallelism a stream is told its
`rank` among `world_size` processes: batches stay global, and each process takes its slice.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import ShapeError
from .transforms import Augment, Normalization, derive_seed


def shard(global_part: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process `rank`'s contiguous slice of a global batch's rows."""
    if world_size == 1:
        return global_part
    return torch.tensor_split(global_part, world_size)[rank]


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
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ShapeError(
                f"images must be uint8 (N, H, W, 3), got {images.dtype} {tuple(images.shape)}"
            )
        if len(images) == 0:
            raise ShapeError("cannot draw batches from an empty set")
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.normalization, self.augment = normalization, augment
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.rank, self.world_size = rank, world_size

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
            index = shard(index, self.rank, self.world_size)
            x = gather(self, index, params)
            yield x, None if self.labels is None else self.labels[index]


def gather(
    stream: BatchStream | CycledStream, index: torch.Tensor, params: torch.Tensor | None
) -> torch.Tensor:
    """The stream's normalised images at `index`, augmented with this process's slice of the
    global batch's `params`."""
    batch = stream.images[index]
    if stream.augment is not None and params is not None:
        batch = stream.augment.apply(batch, shard(params, stream.rank, stream.world_size))
    return stream.normalization(batch)


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
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(images) == 0:
            raise ShapeError("cannot cycle over an empty set")
        self.images, self.batch_size = images, batch_size
        self.normalization, self.augment, self.seed = normalization, augment, seed
        self.rank, self.world_size = rank, world_size
        self.cycle_cache: tuple[int, torch.Tensor] | None = None

    def permutation(self, cycle: int) -> torch.Tensor:
        if self.cycle_cache is None or self.cycle_cache[0] != cycle:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, cycle, 2))
            self.cycle_cache = (cycle, torch.randperm(len(self.images), generator=gen))
        return self.cycle_cache[1]

    def indices(self, draw: int) -> torch.Tensor:
        """Dataset indices of draw number `draw`."""
        n = len(self.images)
        positions = torch.arange(draw * self.batch_size, (draw + 1) * self.batch_size)
        cycles = positions // n
        out = torch.empty_like(positions)
        for cycle in torch.unique(cycles).tolist():  # one or two cycles unless batch > set
            here = cycles == cycle
            out[here] = self.permutation(cycle)[positions[here] % n]
        return out

    def batch(self, draw: int) -> torch.Tensor:
        index = self.indices(draw).to(self.images.device)
        params = None
        if self.augment is not None:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, draw, 3))
            params = self.augment.draw(len(index), gen)
        index = shard(index, self.rank, self.world_size)
        return gather(self, index, params)


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
