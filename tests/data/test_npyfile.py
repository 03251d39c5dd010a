import numpy as np
import pytest

from leaveout import CorruptFileError
from leaveout.data.npyfile import PackedImages, iter_chunks, read_header, write_header

from ..helpers import random_images


@pytest.fixture
def saved(tmp_path):
    images = random_images(50, size=8, seed=3)
    path = tmp_path / "images.npy"
    np.save(path, images)
    return PackedImages(path), images


def test_every_kind_of_index_reads_what_numpy_indexing_gives(saved):
    packed, images = saved
    rng = np.random.default_rng(0)
    for key in (
        7,
        -1,
        slice(3, 17),
        slice(None, None, -3),
        rng.integers(0, 50, 40),  # unsorted, with repeats
        np.array([4, 5, 6, 7, 2, 3]),  # runs read in one go
        rng.random(50) < 0.5,
        np.array([], dtype=np.int64),
    ):
        np.testing.assert_array_equal(packed[key], images[key])
    assert packed.shape == images.shape and len(packed) == 50 and packed.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(packed), images)


def test_views_compose_without_reading(saved):
    packed, images = saved
    first = np.array([40, 2, 2, 9, 30, 1])
    view = packed.take(first)
    inner = np.array([5, 0, 2])
    np.testing.assert_array_equal(view.take(inner)[:], images[first][inner])
    assert len(view) == 6 and view.shape == (6, 8, 8, 3)
    with pytest.raises(IndexError):
        view[6]


def test_chunks_cover_the_rows_in_order(saved, monkeypatch):
    packed, images = saved
    import leaveout.data.npyfile as npyfile

    monkeypatch.setattr(npyfile, "CHUNK_BYTES", 7 * 8 * 8 * 3)
    chunks = list(iter_chunks(packed))
    assert [len(c) for c in chunks] == [7] * 7 + [1]
    np.testing.assert_array_equal(np.concatenate(chunks), images)


def test_a_written_header_makes_a_file_numpy_opens_as_a_memory_map(tmp_path):
    path = tmp_path / "x.npy"
    offset = write_header(path, (3, 4, 5, 3), np.uint8)
    assert read_header(path) == ((3, 4, 5, 3), np.dtype(np.uint8), offset)
    mapped = np.load(path, mmap_mode="r")
    assert mapped.shape == (3, 4, 5, 3) and not mapped.any()


def test_a_truncated_file_is_named(saved):
    packed, _ = saved
    with open(packed.path, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(CorruptFileError, match="shorter than its header"):
        PackedImages(packed.path)
    packed.path.write_bytes(b"not an array")
    with pytest.raises(CorruptFileError, match="not a readable .npy"):
        PackedImages(packed.path)
