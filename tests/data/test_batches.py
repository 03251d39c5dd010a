import numpy as np
import pytest
import torch

from leaveout import (
    CIFAR_MEAN,
    CIFAR_STD,
    Augment,
    BatchStream,
    CycledStream,
    Normalization,
    PairedStream,
    ShapeError,
)
from leaveout.data import crop_and_flip

from ..helpers import random_images


@pytest.mark.parametrize("padding", [0, 2])
def test_crop_and_flip_matches_a_per_image_numpy_loop(padding):
    images = random_images(6, size=8)
    top = np.array([0, 1, 2, 4, 3, 0]) * padding // 2
    left = np.array([4, 0, 2, 1, 0, 3]) * padding // 2
    flip = np.array([True, False, True, False, False, True])
    out = crop_and_flip(
        torch.from_numpy(images),
        torch.from_numpy(top),
        torch.from_numpy(left),
        torch.from_numpy(flip),
        padding=padding,
    ).numpy()
    for b in range(6):
        padded = np.pad(images[b], ((padding, padding), (padding, padding), (0, 0)))
        expected = padded[top[b] : top[b] + 8, left[b] : left[b] + 8]
        if flip[b]:
            expected = expected[:, ::-1]
        np.testing.assert_array_equal(out[b], expected)


def test_normalization_matches_float64_and_is_channels_last():
    images = random_images(3, size=5)
    x = Normalization()(torch.from_numpy(images))
    assert x.shape == (3, 3, 5, 5) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    expected = (
        images.transpose(0, 3, 1, 2) / 255.0 - np.array(CIFAR_MEAN)[:, None, None]
    ) / np.array(CIFAR_STD)[:, None, None]
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)


def test_fitted_normalization():
    images = random_images(10, size=4)
    norm = Normalization.fit(images)
    x = norm(torch.from_numpy(images)).double()
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(dim=(0, 2, 3), unbiased=False), 1, atol=1e-4)


def _stream(n=50, batch=8, seed=0, augment=None):
    images = torch.from_numpy(random_images(n, size=6))
    labels = torch.arange(n)
    return BatchStream(images, labels, batch, Normalization(), augment=augment, seed=seed)


def test_batch_counts_with_and_without_drop_last():
    images = torch.from_numpy(random_images(50, size=4))
    assert len(BatchStream(images, None, 8, Normalization())) == 6
    assert len(BatchStream(images, None, 8, Normalization(), drop_last=False)) == 7
    assert len(BatchStream(images, None, 80, Normalization())) == 1  # at least one batch
    last = list(BatchStream(images, None, 8, Normalization(), drop_last=False).epoch(0))[-1]
    assert last[0].shape[0] == 2


def test_an_epoch_visits_every_image_once_and_is_reproducible():
    stream = _stream(48, batch=8)
    labels = torch.cat([y for _, y in stream.epoch(0)])
    assert sorted(labels.tolist()) == list(range(48))
    again = torch.cat([y for _, y in _stream(48, 8).epoch(0)])
    assert torch.equal(labels, again)
    assert not torch.equal(labels, torch.cat([y for _, y in stream.epoch(1)]))


def test_augmented_epochs_are_reproducible_and_differ_between_epochs():
    aug = Augment(padding=2, hflip=True)
    a = [x for x, _ in _stream(augment=aug, seed=3).epoch(2)]
    b = [x for x, _ in _stream(augment=aug, seed=3).epoch(2)]
    c = [x for x, _ in _stream(augment=aug, seed=3).epoch(3)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert a[0].is_contiguous(memory_format=torch.channels_last)


def test_cycled_stream_covers_the_set_each_cycle_and_restarts_identically():
    images = torch.from_numpy(random_images(10, size=4))
    stream = CycledStream(images, 4, Normalization(), seed=1)
    draws = torch.cat([stream.indices(d) for d in range(5)])  # 20 positions = 2 full cycles
    assert sorted(draws[:10].tolist()) == list(range(10))
    assert sorted(draws[10:].tolist()) == list(range(10))
    fresh = CycledStream(images, 4, Normalization(), seed=1)
    assert torch.equal(fresh.indices(3), stream.indices(3))
    big = CycledStream(images, 25, Normalization(), seed=1)  # batch larger than the set
    assert len(big.indices(0)) == 25


def test_paired_stream_yields_id_and_left_out_batches():
    id_stream = _stream(n=20, batch=5)
    out = CycledStream(torch.from_numpy(random_images(7, size=6)), 3, Normalization(), seed=2)
    paired = PairedStream(id_stream, out)
    batches = list(paired.epoch(1))
    assert len(batches) == len(paired) == 4
    x, y, x_out = batches[0]
    assert x.shape == (5, 3, 6, 6) and y.shape == (5,) and x_out.shape == (3, 3, 6, 6)
    expected = out.batch(1 * 4 + 0)
    assert torch.equal(x_out, expected)


def test_stream_refuses_float_images():
    with pytest.raises(ShapeError, match="uint8"):
        BatchStream(torch.zeros(2, 4, 4, 3), None, 2, Normalization())


def test_fitted_normalization_is_the_float64_mean_and_std_however_the_rows_are_read(
    tmp_path, monkeypatch
):
    import leaveout.data.npyfile as npyfile
    from leaveout.data import PackedImages

    images = random_images(13, size=5, seed=4)
    flat = images.reshape(-1, 3).astype(np.float64) / 255
    np.save(tmp_path / "x.npy", images)
    monkeypatch.setattr(npyfile, "CHUNK_BYTES", 4 * 5 * 5 * 3)  # chunks of 4 images
    for source in (images, PackedImages(tmp_path / "x.npy")):
        norm = Normalization.fit(source)
        np.testing.assert_allclose(norm.mean, flat.mean(0), rtol=1e-12)
        np.testing.assert_allclose(norm.std, flat.std(0), rtol=1e-9)


def test_padding_scales_with_the_image_side():
    from leaveout.data.transforms import scaled_padding

    assert [scaled_padding(4, side) for side in (32, 64, 224, 16)] == [4, 8, 28, 2]


@pytest.mark.parametrize("workers", [0, 2])
def test_packed_rows_give_the_batches_of_the_tensor(tmp_path, workers):
    from leaveout.data import PackedImages

    images = random_images(40, size=6, seed=5)
    np.save(tmp_path / "x.npy", images)
    view = np.array([39, *range(0, 30), 35, 36])  # a member's rows of the set
    packed = PackedImages(tmp_path / "x.npy").take(view)
    memory = torch.from_numpy(images[view])
    labels = torch.arange(len(view))
    aug = Augment(padding=1, hflip=True)

    def stream(rows, **options):
        ids = BatchStream(rows, labels, 8, Normalization(), aug, seed=2, **options)
        outs = CycledStream(rows, 5, Normalization(), aug, seed=3, **options)
        return list(PairedStream(ids, outs).epoch(1))

    for (x, y, o), (px, py, po) in zip(stream(memory), stream(packed, workers=workers)):
        assert torch.equal(x, px) and torch.equal(y, py) and torch.equal(o, po)
