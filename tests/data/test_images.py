import io
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from leaveout import (
    CorruptFileError,
    decode_image,
    load_images,
)

from ..helpers import (
    make_tar,
    png_bytes,
    random_images,
    smooth_images,
    write_image_files,
)


def test_center_crop_rule_takes_the_central_square_of_a_large_image():
    big = np.arange(40 * 40 * 3, dtype=np.uint32).reshape(40, 40, 3) % 251
    big = big.astype(np.uint8)
    out = decode_image(png_bytes(big), "big.png", size=32, resize="center-crop")
    np.testing.assert_array_equal(out, big[4:36, 4:36])


def _three_bands(width: int = 128, height: int = 64) -> np.ndarray:
    """Red left 24 columns, blue right 24 columns, green between."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :24, 0] = 255
    image[:, 24:-24, 1] = 255
    image[:, -24:, 2] = 255
    return image


def test_shorter_side_keeps_the_aspect_ratio_and_the_whole_height():
    out = decode_image(png_bytes(_three_bands()), "wide.png", size=32, resize="shorter-side")
    # scaled by 1/2 to 64x32, then the central 32 columns: the red and blue bands fall outside
    assert out.shape == (32, 32, 3)
    assert (out[..., 1] == 255).all() and out[..., 0].max() < 40 and out[..., 2].max() < 40


def test_stretch_squeezes_the_whole_width_in():
    out = decode_image(png_bytes(_three_bands()), "wide.png", size=32, resize="stretch")
    assert out[:, 0, 0].min() > 200 and out[:, -1, 2].min() > 200  # bands still at the edges
    assert (out[:, 16, 1] == 255).all()


def test_a_photo_is_resized_by_default_not_cut_to_its_centre():
    photo = np.full((480, 640, 3), 128, np.uint8)
    photo[:160, :240] = (255, 0, 0)  # a red object in the corner, far from the centre
    default = decode_image(png_bytes(photo), "photo.png", size=32)
    cropped = decode_image(png_bytes(photo), "photo.png", size=32, resize="center-crop")
    assert (cropped == 128).all()  # the old rule saw a featureless grey patch
    assert default[:4, :4, 0].min() > 200 and default[:4, :4, 1].max() < 60


def test_unknown_resize_rule_is_refused():
    from leaveout import ConfigError

    with pytest.raises(ConfigError, match="shorter-side"):
        decode_image(png_bytes(random_images(1)[0]), "x.png", resize="squash")


def test_smaller_or_narrow_images_are_resized():
    small = np.full((20, 24, 3), 90, np.uint8)
    for rule in ("shorter-side", "stretch", "center-crop"):
        assert decode_image(png_bytes(small), "s.png", size=32, resize=rule).shape == (32, 32, 3)
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
    with pytest.raises(CorruptFileError, match=r"photo\.png") as err:
        decode_image(content, "photo.png")
    assert "BytesIO" not in str(err.value) and " at 0x" not in str(err.value)


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
    with pytest.raises(CorruptFileError, match=r"broken\.jpg.*--skip-corrupt"):
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
