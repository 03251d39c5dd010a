import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from leaveout import ConfigError, CorruptFileError
from leaveout.data import (
    ImageSet,
    is_packed,
    load_cifar,
    load_dataset,
    load_images,
    load_npz,
    load_packed,
    locate,
    pack_dataset,
    save_npz,
)

from ..helpers import png_bytes, random_images, write_cifar10, write_image_files


def assert_same_set(packed: ImageSet, expected: ImageSet) -> None:
    assert packed.is_packed and not expected.is_packed
    np.testing.assert_array_equal(np.asarray(packed.images), expected.images)
    if expected.labels is None:
        assert packed.labels is None
    else:
        np.testing.assert_array_equal(packed.labels, expected.labels)
    assert packed.classes == expected.classes
    assert packed.fingerprint() == expected.fingerprint()


@pytest.fixture
def class_folders(tmp_path):
    root = tmp_path / "photos"
    for c, name in enumerate(["cat", "dog", "owl"]):
        write_image_files(root / name, random_images(5 + c, size=20, seed=c))
    return root


def test_a_folder_packs_to_exactly_what_reading_it_gives(class_folders, tmp_path):
    out = pack_dataset(str(class_folders), tmp_path / "packed", size=(16, 16), progress=False)
    assert is_packed(out) and not (tmp_path / "packed.partial").exists()
    assert_same_set(load_packed(out), load_images(class_folders, size=16))
    meta = json.loads((out / "pack.json").read_text())
    assert meta["names"][0] == "cat/img_0000.png" and meta["count"] == 18
    import hashlib

    pixels = np.load(out / "images.npy", mmap_mode="r")
    assert meta["pixels_sha256"] == hashlib.sha256(np.ascontiguousarray(pixels).data).hexdigest()
    # load_dataset takes the packed folder as a path; a packed size is never silently changed
    assert load_dataset(str(out)).image_size == (16, 16)
    with pytest.raises(ConfigError, match="--size 32 32"):
        load_dataset(str(out), size=32)


def test_an_archive_in_any_member_order_packs_in_the_sorted_order(class_folders, tmp_path):
    archive = tmp_path / "photos.tar"
    with tarfile.open(archive, "w") as tar:  # members reversed, inside a wrapper folder
        for path in sorted(class_folders.rglob("*.png"), reverse=True):
            tar.add(path, arcname="wrap/" + path.relative_to(class_folders).as_posix())
    out = pack_dataset(str(archive), tmp_path / "packed", size=(16, 16), progress=False)
    assert_same_set(load_packed(out), load_images(archive, size=16))


def test_a_size_with_two_sides_gives_rectangular_images(class_folders, tmp_path):
    out = pack_dataset(str(class_folders), tmp_path / "p", size=(12, 20), progress=False)
    assert load_packed(out).images.shape == (18, 12, 20, 3)


def test_npz_and_cifar_pickles_pack_and_a_named_set_is_found_packed(tmp_path):
    data = ImageSet(random_images(9, size=8), np.arange(9) % 3, ("a", "b", "c"), "tiny")
    save_npz(data, tmp_path / "tiny.npz")
    out = pack_dataset(str(tmp_path / "tiny.npz"), tmp_path / "tiny", progress=False)
    assert_same_set(load_packed(out), load_npz(tmp_path / "tiny.npz"))

    root = tmp_path / "root"
    write_cifar10(root)
    out = pack_dataset("cifar10", split="train", root=root, progress=False)
    assert out == root / "packed" / "cifar10-train"
    assert locate("cifar10", root, "train").form == "packed"
    found = load_dataset("cifar10", "train", root)
    assert found.name == "cifar10-train"
    assert_same_set(found, load_cifar(root / "cifar-10-batches-py", "cifar10", "train"))
    with pytest.raises(ConfigError, match="already packed"):
        pack_dataset("cifar10", split="train", root=root, progress=False)


def test_the_generated_sets_pack_at_any_size_as_they_load(tmp_path):
    for name in ("digits", "uniform"):
        out = pack_dataset(name, tmp_path / name, root=tmp_path, size=(24, 24), progress=False)
        assert_same_set(load_packed(out), load_dataset(name, size=24))


def interrupt_decoding(monkeypatch, at: int) -> list[str]:
    """Progress saved every 4 images, and Ctrl-C at the `at`-th decoded image; returns the list
    of the sources decoded (which keeps growing after the interruption)."""
    import leaveout.data.packed as packed

    monkeypatch.setattr(packed, "CHECKPOINT_EVERY", 4)
    decoded: list[str] = []
    real = packed.decode_image

    def decode(*args, **kwargs):
        decoded.append(args[1])
        if len(decoded) == at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(packed, "decode_image", decode)
    return decoded


def test_an_interrupted_pack_resumes_where_it_stopped(class_folders, tmp_path, monkeypatch):
    decoded = interrupt_decoding(monkeypatch, at=11)
    out = tmp_path / "packed"
    with pytest.raises(KeyboardInterrupt):
        pack_dataset(str(class_folders), out, size=(16, 16), progress=False)
    assert not out.exists()
    progress = json.loads((tmp_path / "packed.partial" / "progress.json").read_text())
    assert progress["done"] == 8
    decoded.clear()
    pack_dataset(str(class_folders), out, size=(16, 16), progress=False)
    assert len(decoded) == 18 - 8  # only the images after the last saved progress
    assert_same_set(load_packed(out), load_images(class_folders, size=16))
    with pytest.raises(ConfigError, match="exists"):
        pack_dataset(str(class_folders), out, size=(16, 16), progress=False)


def test_other_settings_start_an_interrupted_pack_afresh(class_folders, tmp_path):
    work = tmp_path / "packed.partial"
    work.mkdir()
    (work / "progress.json").write_text(json.dumps({"source": "elsewhere", "done": 5}))
    out = pack_dataset(str(class_folders), tmp_path / "packed", size=(16, 16), progress=False)
    assert_same_set(load_packed(out), load_images(class_folders, size=16))


def test_a_corrupt_image_is_named_or_skipped_on_request(class_folders, tmp_path):
    (class_folders / "dog" / "broken.png").write_bytes(png_bytes(random_images(1, 8)[0])[:40])
    with pytest.raises(CorruptFileError, match="broken.png"):
        pack_dataset(str(class_folders), tmp_path / "a", size=(16, 16), progress=False)
    out = pack_dataset(
        str(class_folders), tmp_path / "b", size=(16, 16), skip_corrupt=True, progress=False
    )
    with pytest.warns(Warning):
        expected = load_images(class_folders, size=16, skip_corrupt=True)
    assert_same_set(load_packed(out), expected)
    assert json.loads((out / "pack.json").read_text())["skipped"] == ["dog/broken.png"]


def test_a_packed_set_with_damaged_files_is_refused(class_folders, tmp_path):
    out = pack_dataset(str(class_folders), tmp_path / "p", size=(16, 16), progress=False)
    meta = json.loads((out / "pack.json").read_text())
    (out / "pack.json").write_text(json.dumps(meta | {"count": 3}))
    with pytest.raises(CorruptFileError, match="pack.json says 3"):
        load_packed(out)
    (out / "pack.json").write_text(json.dumps(meta | {"names": meta["names"][:-1]}))
    with pytest.raises(CorruptFileError, match="lists of"):
        load_packed(out)
    (out / "pack.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "shape"}))
    with pytest.raises(CorruptFileError, match="lacks shape"):
        load_packed(out)
    with pytest.raises(Exception, match="not a packed set"):
        load_packed(tmp_path)


def test_a_packed_view_reads_only_its_rows(class_folders, tmp_path):
    out = pack_dataset(str(class_folders), tmp_path / "p", size=(16, 16), progress=False)
    packed, memory = load_packed(out), load_images(class_folders, size=16)
    rows = np.array([17, 3, 3, 0])
    assert_same_set(packed.subset(rows), memory.subset(rows))
    assert packed.describe() == memory.describe()


def synthetic_set(n: int, side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """n images whose class (i % 10) shows as a brighter band; the rest is noise."""
    labels = np.arange(n, dtype=np.int64) % 10
    images = np.random.default_rng(0).integers(0, 100, (n, side, side, 3), dtype=np.uint8)
    for c in range(10):
        images[labels == c, 3 * c : 3 * c + 4, :, c % 3] += 120
    return images, labels


@pytest.mark.slow
def test_training_and_evaluating_a_packed_set_fit_under_a_memory_limit_far_below_its_size(
    tmp_path,
):
    import os
    import subprocess
    import sys

    from .limited_run import train_and_evaluate

    images, labels = synthetic_set(200_000)  # 614 MB
    source = tmp_path / "synthetic.npz"
    np.savez(source, images=images, labels=labels, classes=np.array([str(c) for c in range(10)]))
    set_bytes = images.nbytes
    del images
    packed = pack_dataset(str(source), tmp_path / "packed", progress=False)
    headroom = set_bytes // 4
    env = os.environ | {"MALLOC_ARENA_MAX": "2"}  # glibc reserves 64 MB of addresses per arena
    arguments = [str(packed), str(tmp_path / "run"), str(headroom), str(set_bytes)]
    done = subprocess.run(
        [sys.executable, "-m", "tests.data.limited_run", *arguments],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    limited = json.loads(done.stdout.strip().splitlines()[-1])
    assert limited["limit_bites"]  # the set itself could not be held in memory
    in_memory = train_and_evaluate(str(source), tmp_path / "memory")
    assert limited["weights"] == in_memory["weights"]
    assert limited["rows"] == in_memory["rows"] and limited["accuracy"] == in_memory["accuracy"]
    assert limited["accuracy"] > 0.5


@pytest.mark.slow
def test_the_shared_cifar10_copy_packs_to_its_own_pixels(shared_data, tmp_path):
    out = pack_dataset("cifar10", tmp_path / "c10", split="test", root=shared_data, progress=False)
    assert_same_set(load_packed(out, "cifar10-test"), load_dataset("cifar10", "test", shared_data))


def test_archive_members_with_one_name_each_get_their_row(tmp_path):
    images = random_images(3, size=16, seed=9)
    archive = tmp_path / "dup.tar"
    with tarfile.open(archive, "w") as tar:
        for name, image in (("a.png", images[0]), ("b.png", images[1]), ("a.png", images[2])):
            data = png_bytes(image)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = pack_dataset(str(archive), tmp_path / "p", size=(16, 16), progress=False)
    assert_same_set(load_packed(out), load_images(archive, size=16))


def test_another_resize_rule_does_not_resume_a_pack(class_folders, tmp_path, monkeypatch):
    import leaveout.data.packed as packed

    real = packed.decode_image
    interrupt_decoding(monkeypatch, at=6)
    with pytest.raises(KeyboardInterrupt):
        pack_dataset(str(class_folders), tmp_path / "p", size=(16, 16), resize="center-crop")
    monkeypatch.setattr(packed, "decode_image", real)
    out = pack_dataset(str(class_folders), tmp_path / "p", size=(16, 16), progress=False)
    assert_same_set(load_packed(out), load_images(class_folders, size=16))


def test_a_pack_stopped_after_dropping_skipped_rows_finishes(class_folders, tmp_path, monkeypatch):
    import leaveout.data.packed as packed

    (class_folders / "cat" / "broken.png").write_bytes(b"not a png")
    monkeypatch.setattr(packed, "CHECKPOINT_EVERY", 4)
    real = packed.iter_chunks
    monkeypatch.setattr(packed, "iter_chunks", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    options = {"size": (16, 16), "skip_corrupt": True, "progress": False}
    with pytest.raises(KeyboardInterrupt):  # while hashing, after the compaction
        pack_dataset(str(class_folders), tmp_path / "p", **options)
    monkeypatch.setattr(packed, "iter_chunks", real)
    out = pack_dataset(str(class_folders), tmp_path / "p", **options)
    with pytest.warns(Warning):
        expected = load_images(class_folders, size=16, skip_corrupt=True)
    assert_same_set(load_packed(out), expected)


def test_a_packed_set_is_hashed_once(class_folders, tmp_path, monkeypatch):
    import leaveout.data.imageset as imageset

    out = pack_dataset(str(class_folders), tmp_path / "p", size=(16, 16), progress=False)
    packed = load_packed(out)
    first, in_memory = packed.fingerprint(), load_images(class_folders, size=16).fingerprint()
    monkeypatch.setattr(imageset, "iter_chunks", lambda *a: pytest.fail("read again"))
    assert packed.fingerprint() == first == in_memory
