import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from leaveout import (
    CorruptFileError,
    DatasetNotFoundError,
    ImageSet,
    ShapeError,
    Split,
    UnsafePickleError,
    decode_image,
    load_cifar,
    load_digits,
    load_images,
    load_npz,
    noise_image,
    noise_images,
    odin_split,
    random_split,
    save_npz,
    stratified_split,
)
from leaveout.data import npz_image_count, restricted_unpickle

from .helpers import (
    CIFAR10_CLASSES,
    make_tar,
    png_bytes,
    random_images,
    smooth_images,
    write_cifar10,
    write_image_files,
)

# --- ImageSet ---


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


# --- CIFAR pickles ---


def test_cifar10_folder_and_archive_give_the_official_pixels(tmp_path):
    written = write_cifar10(tmp_path / "root", per_batch=3)
    archive = make_tar(tmp_path / "root", tmp_path / "cifar-10-python.tar.gz")
    for source in (tmp_path / "root", tmp_path / "root" / "cifar-10-batches-py", archive):
        train = load_cifar(source, "cifar10", "train")
        test = load_cifar(source, "cifar10", "test")
        assert train.images.shape == (15, 32, 32, 3) and len(test) == 3
        np.testing.assert_array_equal(train.images, written["train"])
        np.testing.assert_array_equal(train.labels, written["train_y"])
        np.testing.assert_array_equal(test.images, written["test"])
        assert train.classes == CIFAR10_CLASSES
        assert train.images.flags["C_CONTIGUOUS"]


def test_cifar_planar_layout_maps_red_plane_to_channel_0(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    planar = np.zeros((1, 3072), np.uint8)
    planar[0, :1024] = 200  # red plane
    planar[0, 1024 + 5] = 7  # green, row 0, column 5
    for name in ("train", "test"):
        batch = {b"data": planar, b"fine_labels": [42], b"coarse_labels": [3]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {
        b"fine_label_names": [f"f{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    fine = load_cifar(tmp_path, "cifar100", "test")
    assert fine.images[0, :, :, 0].min() == 200 and fine.images[0, 0, 5, 1] == 7
    assert fine.labels.tolist() == [42] and fine.num_classes == 100
    coarse = load_cifar(tmp_path, "cifar100", "train", labels="coarse")
    assert coarse.labels.tolist() == [3] and coarse.classes[3] == "c3"


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "payload_ran"
    evil = pickle.dumps({b"data": _Payload(marker), b"labels": [0]}, protocol=2)
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control")))  # the payload works when trusted
    assert (tmp_path / "control").exists()
    with pytest.raises(UnsafePickleError, match="exec"):
        restricted_unpickle(evil, "evil")
    assert not marker.exists()

    write_cifar10(tmp_path / "root", per_batch=1)
    (tmp_path / "root" / "cifar-10-batches-py" / "data_batch_3").write_bytes(evil)
    with pytest.raises(UnsafePickleError, match="data_batch_3"):
        load_cifar(tmp_path / "root", "cifar10", "train")
    assert not marker.exists()


def test_a_codec_other_than_latin1_is_refused():
    # the protocol-2 pickle of bytes goes through _codecs.encode(text, "latin1")
    crafted = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(UnsafePickleError, match="codec"):
        restricted_unpickle(crafted, "x")


def test_truncated_cifar_pickle_names_the_file(tmp_path):
    write_cifar10(tmp_path, per_batch=1)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CorruptFileError, match="test_batch"):
        load_cifar(tmp_path, "cifar10", "test")


def test_missing_cifar_batch_names_the_path(tmp_path):
    write_cifar10(tmp_path, per_batch=1)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_2"):
        load_cifar(tmp_path, "cifar10", "train")


# --- npz ---


def test_npz_roundtrip_and_header_count(tmp_path):
    data = ImageSet(random_images(5), np.array([0, 1, 2, 1, 0]), ("a", "b", "c"), "s")
    save_npz(data, tmp_path / "s.npz")
    again = load_npz(tmp_path / "s.npz")
    np.testing.assert_array_equal(again.images, data.images)
    np.testing.assert_array_equal(again.labels, data.labels)
    assert again.classes == ("a", "b", "c") and again.name == "s"
    assert npz_image_count(tmp_path / "s.npz") == 5


def test_npz_with_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.array([object()], dtype=object))
    with pytest.raises(CorruptFileError, match=r"bad\.npz"):
        load_npz(path)


def test_npz_with_wrong_shape_names_the_file(tmp_path):
    path = tmp_path / "gray.npz"
    np.savez(path, images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ShapeError, match=r"gray\.npz"):
        load_npz(path)


# --- images ---


def test_larger_images_are_center_cropped():
    big = np.arange(40 * 40 * 3, dtype=np.uint32).reshape(40, 40, 3) % 251
    big = big.astype(np.uint8)
    out = decode_image(png_bytes(big), "big.png", size=32)
    np.testing.assert_array_equal(out, big[4:36, 4:36])


def test_smaller_or_narrow_images_are_resized():
    small = np.full((20, 24, 3), 90, np.uint8)
    assert decode_image(png_bytes(small), "s.png", size=32).shape == (32, 32, 3)
    narrow = np.full((40, 20, 3), 90, np.uint8)
    out = decode_image(png_bytes(narrow), "n.png", size=32)
    assert out.shape == (32, 32, 3) and (out == 90).all()


def test_image_modes_become_rgb():
    gray = np.full((32, 32), 100, np.uint8)
    assert (decode_image(png_bytes(gray), "g.png") == 100).all()
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    assert (decode_image(png_bytes(rgba), "a.png")[..., 0] == 255).all()
    palette = Image.fromarray(np.full((32, 32, 3), 60, np.uint8)).quantize(4)
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    assert (decode_image(buf.getvalue(), "p.png") == 60).all()
    deep = Image.fromarray(np.full((32, 32), 65535 // 2, np.uint16))
    buf = io.BytesIO()
    deep.save(buf, format="PNG")
    assert abs(int(decode_image(buf.getvalue(), "d.png")[0, 0, 0]) - 127) <= 1


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_unreadable_image_names_the_file(content):
    if content is None:
        content = png_bytes(random_images(1)[0])[:-40]
    with pytest.raises(CorruptFileError, match=r"photo\.png"):
        decode_image(content, "photo.png")


def test_folder_with_class_subfolders(tmp_path):
    write_image_files(tmp_path / "dog", random_images(3, seed=1))
    write_image_files(tmp_path / "cat", random_images(2, seed=2))
    data = load_images(tmp_path)
    assert data.classes == ("cat", "dog") and data.labels.tolist() == [0, 0, 1, 1, 1]
    np.testing.assert_array_equal(data.images[2:], random_images(3, seed=1))


def test_flat_folder_is_unlabelled_and_mixed_layout_is_an_error(tmp_path):
    write_image_files(tmp_path, random_images(3))
    data = load_images(tmp_path)
    assert data.labels is None and len(data) == 3
    write_image_files(tmp_path / "sub", random_images(1))
    with pytest.raises(CorruptFileError, match="mixed layout"):
        load_images(tmp_path)
    assert len(load_images(tmp_path, layout="flat")) == 4


def test_corrupt_image_in_folder_raises_or_is_skipped_and_counted(tmp_path):
    write_image_files(tmp_path, random_images(3))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(CorruptFileError, match=r"broken\.jpg"):
        load_images(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1"):
        data = load_images(tmp_path, skip_corrupt=True)
    assert len(data) == 3 and len(data.skipped) == 1 and "broken.jpg" in data.skipped[0]


@pytest.mark.parametrize("kind", ["tar.gz", "tar", "zip"])
def test_archives_with_odin_layout_and_with_classes(tmp_path, kind):
    images = smooth_images(4)
    src = tmp_path / "src"
    write_image_files(src / "Imagenet" / "test", images, ext=".jpg")
    archive = tmp_path / f"Imagenet.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as z:
            for p in sorted(src.rglob("*.jpg")):
                z.write(p, p.relative_to(src).as_posix())
    else:
        with tarfile.open(archive, "w:gz" if kind == "tar.gz" else "w") as tar:
            tar.add(src / "Imagenet", arcname="Imagenet")
    data = load_images(archive)
    assert data.labels is None and len(data) == 4 and data.name == "Imagenet"
    assert np.abs(data.images.astype(int) - images.astype(int)).max() <= 3  # JPEG

    labelled = tmp_path / "pets"
    write_image_files(labelled / "pets" / "cat", random_images(2))
    write_image_files(labelled / "pets" / "dog", random_images(1))
    pets = load_images(make_tar(labelled, tmp_path / "pets.tar.gz"))
    assert pets.classes == ("cat", "dog") and pets.labels.tolist() == [0, 0, 1]


def test_corrupt_member_of_archive_names_archive_and_member(tmp_path):
    src = tmp_path / "src"
    write_image_files(src, random_images(1))
    (src / "bad.png").write_bytes(b"nope")
    archive = make_tar(src, tmp_path / "a.tar.gz")
    with pytest.raises(CorruptFileError, match=r"a\.tar\.gz:bad\.png"):
        load_images(archive)


def test_truncated_archive_is_a_clear_error(tmp_path):
    src = tmp_path / "src"
    write_image_files(src, random_images(20, size=64))
    archive = make_tar(src, tmp_path / "a.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match=r"a\.tar\.gz"):
        load_images(archive)


# --- noise ---


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


# --- digits ---


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


# --- splits ---


def test_odin_split_and_too_small_set():
    split = odin_split(1500)
    assert split.parts["tune"].tolist() == list(range(1000))
    assert split.parts["report"][0] == 1000 and len(split.parts["report"]) == 500
    with pytest.raises(ShapeError, match="1000"):
        odin_split(1000)


def test_stratified_split_is_seeded_disjoint_and_saved(tmp_path):
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    split = stratified_split(labels, 0.1, seed=5)
    train, val = split.parts["train"], split.parts["val"]
    assert np.bincount(labels[val]).tolist() == [1, 2, 3, 4]
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 100
    assert np.array_equal(stratified_split(labels, 0.1, seed=5).parts["val"], val)
    assert not np.array_equal(stratified_split(labels, 0.1, seed=6).parts["val"], val)
    split.save(tmp_path / "split.json")
    again = Split.load(tmp_path / "split.json")
    assert again.rule == split.rule and np.array_equal(again.parts["val"], val)
    data = ImageSet(random_images(100, size=4), labels, ("a", "b", "c", "d"), "x")
    parts = split.apply(data)
    np.testing.assert_array_equal(parts["val"].images, data.images[val])


def test_random_split_sizes():
    split = random_split(10, 0.3, seed=0)
    assert len(split.parts["val"]) == 3 and len(split.parts["train"]) == 7
    with pytest.raises(ShapeError):
        split.apply(ImageSet(random_images(5, size=4), None, (), "x"))


# --- real data ---


def test_shared_cifar10_npz(shared_data):
    train = load_npz(shared_data / "cifar10" / "train.npz")
    assert train.images.shape == (50_000, 32, 32, 3)
    assert np.bincount(train.labels).tolist() == [5000] * 10
    assert train.classes == CIFAR10_CLASSES
    assert abs(train.images.mean() - 120.69) < 0.05
