"""Training batches straight from uint8 images: tensors in memory, or a packed set on disk.

Images stay (N, H, W, 3) uint8, either as a tensor on the model's device or as `PackedImages`
read a batch at a time (rows in file order, then put back in the batch's order); a batch is
gathered by index, randomly cropped and flipped in one vectorised step, then normalised to float
(B, 3, H, W) channels_last. With `workers` > 0 a torch DataLoader reads the packed rows of the
coming batches in worker processes (pinned memory on CUDA); the draws stay in this process.
Every random draw comes from a generator seeded by (seed, epoch), so an epoch is reproducible on
its own: resuming at epoch e needs no saved state. Under data parallelism a stream is told its
`rank` among `world_size` processes: batches stay global, and each process takes its slice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..errors import ShapeError
from .npyfile import PackedImages
from .transforms import Augment, Normalization, derive_seed

Rows = torch.Tensor | PackedImages  # uint8 (N, H, W, 3): a tensor, or a packed set on disk


def rows_at(images: Rows, index: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """The uint8 images at `index`, as a tensor on `device`."""
    if isinstance(images, torch.Tensor):
        return images[index.to(images.device)].to(device)
    return torch.from_numpy(images[index.cpu().numpy()]).to(device)


def row_slice(images: Rows, start: int, stop: int, device: torch.device | str) -> torch.Tensor:
    """Images start..stop-1 as a tensor on `device`."""
    if isinstance(images, torch.Tensor):
        return images[start:stop].to(device)
    return torch.from_numpy(images[start:stop]).to(device)


class PackedRows(torch.utils.data.Dataset):
    """A DataLoader's view of packed images: item i is the uint8 rows of index batch i."""

    def __init__(self, images: PackedImages, batches: list[np.ndarray]) -> None:
        self.images, self.batches = images, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[self.batches[i]])


def prefetched(
    images: Rows, batches: list[torch.Tensor], workers: int, device: torch.device
) -> Iterable[torch.Tensor | None]:
    """The uint8 rows of each index batch read ahead by `workers` processes, or None per batch
    when they are read in this process (tensors, or workers = 0)."""
    if workers <= 0 or not isinstance(images, PackedImages):
        return [None] * len(batches)
    loader = torch.utils.data.DataLoader(
        PackedRows(images, [b.cpu().numpy() for b in batches]),
        batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4,
    )
    return loader


def shard(global_part: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process `rank`'s contiguous slice of a global batch's rows."""
    if world_size == 1:
        return global_part
    return torch.tensor_split(global_part, world_size)[rank]


class BatchStream:
    """Shuffled (and optionally augmented) batches of one set.

    images: (N, H, W, 3) uint8, a tensor or packed rows; labels: (N,) int64 tensor or None, on the
    device the batches are wanted on (`device`, by default the labels' or the images'). An epoch
    yields (x, y): x float (B, 3, H, W) channels_last, y (B,).
    With drop_last, an epoch has N // batch_size batches (at least one).
    """

    def __init__(
        self,
        images: Rows,
        labels: torch.Tensor | None,
        batch_size: int,
        normalization: Normalization,
        augment: Augment | None = None,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | None = None,
        workers: int = 0,
    ) -> None:
        check_rows(images)
        self.images, self.labels = images, labels
        self.device = device or stream_device(images, labels)
        self.workers = workers
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
        order = self.order(epoch)
        if isinstance(self.images, torch.Tensor):
            order = order.to(self.images.device)  # once per epoch, not per batch
        gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 1))
        global_batches = [
            order[step * self.batch_size : (step + 1) * self.batch_size]
            for step in range(len(self))
        ]
        mine = [shard(index, self.rank, self.world_size) for index in global_batches]
        for index, local, rows in zip(
            global_batches, mine, prefetched(self.images, mine, self.workers, self.device)
        ):
            params = None if self.augment is None else self.augment.draw(len(index), gen)
            x = gather(self, local, params, rows)
            labels = None if self.labels is None else self.labels[local.to(self.labels.device)]
            yield x, labels


def check_rows(images: Rows) -> None:
    if images.dtype not in (torch.uint8, np.uint8) or images.ndim != 4 or images.shape[-1] != 3:
        raise ShapeError(
            f"images must be uint8 (N, H, W, 3), got {images.dtype} {tuple(images.shape)}"
        )
    if len(images) == 0:
        raise ShapeError("cannot draw batches from an empty set")


def stream_device(images: Rows, labels: torch.Tensor | None = None) -> torch.device:
    if isinstance(images, torch.Tensor):
        return images.device
    return labels.device if labels is not None else torch.device("cpu")


def gather(
    stream: BatchStream | CycledStream,
    index: torch.Tensor,
    params: torch.Tensor | None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """The stream's normalised images at `index` (`rows`: those images already read),
    augmented with this process's slice of the global batch's `params`."""
    batch = rows_at(stream.images, index, stream.device) if rows is None else rows
    batch = batch.to(stream.device, non_blocking=True)
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
        images: Rows,
        batch_size: int,
        normalization: Normalization,
        augment: Augment | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | None = None,
        workers: int = 0,
    ) -> None:
        if len(images) == 0:
            raise ShapeError("cannot cycle over an empty set")
        check_rows(images)
        self.images, self.batch_size = images, batch_size
        self.device, self.workers = device or stream_device(images), workers
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

    def batch(self, draw: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Draw number `draw` (`rows`: its images already read by `draws`)."""
        index = self.indices(draw)
        params = None
        if self.augment is not None:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, draw, 3))
            params = self.augment.draw(len(index), gen)
        return gather(self, shard(index, self.rank, self.world_size), params, rows)

    def draws(self, first: int, count: int) -> Iterator[torch.Tensor]:
        """Draws first..first+count-1, their rows read ahead when the stream has workers."""
        local = [
            shard(self.indices(d), self.rank, self.world_size) for d in range(first, first + count)
        ]
        for draw, rows in zip(
            range(first, first + count), prefetched(self.images, local, self.workers, self.device)
        ):
            yield self.batch(draw, rows)


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
        outs = self.out_stream.draws(epoch * len(self), len(self))
        for (x, y), x_out in zip(self.id_stream.epoch(epoch), outs):
            assert y is not None
            yield x, y, x_out
