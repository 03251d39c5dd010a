import hashlib

import numpy as np
import pytest

from leaveout import CorruptFileError, DatasetNotFoundError, catalog, download, load_dataset, locate
from leaveout.data import ImageSet, save_npz
from leaveout.data import sets as ds

from ..helpers import make_tar, random_images, smooth_images, write_cifar10, write_image_files


def test_missing_dataset_names_archive_url_and_where(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("lsun_resize", root=tmp_path)
    msg = str(err.value)
    assert "LSUN_resize.tar.gz" in msg and "dropbox.com" in msg and str(tmp_path) in msg
    assert "278b7b31c8cb7e804a1465a8ce03a2dc" in msg and "leaveout download lsun_resize" in msg


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DatasetNotFoundError, match="tiny_imagenet_crop"):
        load_dataset("svhn_not_known")


def test_odin_folder_layout_is_found_and_crop_sets_are_center_cropped(tmp_path):
    big = random_images(3, size=36)
    write_image_files(tmp_path / "LSUN" / "test", big)
    data = load_dataset("lsun_crop", root=tmp_path)
    assert locate("lsun_crop", tmp_path).form == "folder"
    assert data.name == "lsun_crop" and data.labels is None
    np.testing.assert_array_equal(data.images, big[:, 2:34, 2:34])


def test_odin_archive_is_read_without_extracting(tmp_path):
    src = tmp_path / "src"
    write_image_files(src / "iSUN" / "iSUN_patches", smooth_images(5), ext=".jpeg")
    (tmp_path / "root").mkdir()
    make_tar(src, tmp_path / "root" / "iSUN.tar.gz")
    data = load_dataset("isun", root=tmp_path / "root")
    assert locate("isun", tmp_path / "root").form == "archive" and len(data) == 5


def test_npz_copy_under_ood_is_accepted(tmp_path):
    images = random_images(6)
    save_npz(ImageSet(images, None, (), "x"), tmp_path / "ood" / "tiny_imagenet_resize.npz")
    data = load_dataset("tiny_imagenet_resize", root=tmp_path)
    np.testing.assert_array_equal(data.images, images)


def test_cifar10_by_name_from_official_folder_and_env_root(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path, per_batch=2)
    monkeypatch.setenv("LEAVEOUT_DATA", str(tmp_path))
    train = load_dataset("cifar10", split="train")
    assert train.name == "cifar10-train" and len(train) == 10
    np.testing.assert_array_equal(train.images, written["train"])
    assert len(load_dataset("cifar10")) == 2  # test split by default


def test_noise_and_digits_need_no_files(tmp_path):
    assert len(load_dataset("uniform", root=tmp_path)) == 10_000
    assert load_dataset("digits").num_classes == 10


def test_a_path_is_loaded_directly(tmp_path):
    write_image_files(tmp_path / "a", random_images(2))
    write_image_files(tmp_path / "b", random_images(1))
    assert load_dataset(str(tmp_path)).classes == ("a", "b")


def _fake_archive(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_image_files(src / "LSUN" / "test", random_images(2))
    archive = make_tar(src, tmp_path / "upstream.tar.gz")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    info = ds.DATASETS["lsun_crop"]
    monkeypatch.setitem(ds.DATASETS, "lsun_crop", ds.DatasetInfo(**{**info.__dict__, "md5": md5}))
    return archive


def test_download_from_a_local_file_or_file_url_checks_md5(tmp_path, monkeypatch):
    archive = _fake_archive(tmp_path, monkeypatch)
    root = tmp_path / "root"
    done = download("lsun_crop", root, source=str(archive))
    assert done.path == root / "LSUN.tar.gz" and done.checksum == "md5 ok"
    assert len(load_dataset("lsun_crop", root=root)) == 2
    done.path.unlink()
    assert download("lsun_crop", root, source=archive.as_uri()).path == done.path


def test_a_set_without_a_published_checksum_says_it_is_not_verified(tmp_path):
    src = tmp_path / "src"
    write_image_files(src / "iSUN" / "iSUN_patches", random_images(2), ext=".jpeg")
    archive = make_tar(src, tmp_path / "isun-copy.tar.gz")
    done = download("isun", tmp_path / "root", source=str(archive))
    assert done.checksum == "no published checksum: not verified"
    assert "checksum ok" not in done.checksum


def test_a_missing_source_is_an_error_not_a_success(tmp_path, capsys):
    from leaveout.cli import main

    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        download("isun", tmp_path, source=str(tmp_path / "nowhere.tar.gz"))
    code = main(["download", "isun", "--data-root", str(tmp_path), "--source", "/no/such/file"])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "iSUN.tar.gz").exists()


def test_the_catalogue_counts_archive_members_without_decoding_them(tmp_path, monkeypatch):
    import leaveout.data.images as images_module

    src = tmp_path / "src"
    write_image_files(src / "LSUN" / "test", random_images(3))
    (src / "LSUN" / "test" / "broken.jpg").write_bytes(b"not a jpeg")
    make_tar(src, tmp_path / "LSUN.tar.gz")
    monkeypatch.setattr(images_module, "decode_image", lambda *a, **k: pytest.fail("decoded"))
    rows = {(r["name"], r["split"]): r for r in catalog(tmp_path)}
    assert rows[("lsun_crop", "all")]["images"] == "4"
    assert rows[("lsun_crop", "all")]["status"] == "present"


def test_an_unknown_split_is_a_clear_error(capsys):
    from leaveout import ConfigError
    from leaveout.cli import main

    with pytest.raises(ConfigError, match="splits train, test"):
        load_dataset("cifar10", split="val")
    assert main(["data", "cifar10", "--split", "val"]) == 2
    assert "splits train, test; not 'val'" in capsys.readouterr().err


def test_download_with_wrong_md5_leaves_nothing(tmp_path, monkeypatch):
    archive = _fake_archive(tmp_path, monkeypatch)
    archive.write_bytes(archive.read_bytes() + b"tampered")
    root = tmp_path / "root"
    with pytest.raises(CorruptFileError, match="md5"):
        download("lsun_crop", root, source=str(archive))
    assert list(root.iterdir()) == []


def test_download_failure_says_how_to_place_by_hand(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="by hand"):
        download("lsun_crop", tmp_path, source="file:///nonexistent/LSUN.tar.gz")


def test_catalog_reports_present_and_missing(tmp_path):
    write_image_files(tmp_path / "LSUN_resize" / "LSUN_resize", random_images(3))
    rows = {(r["name"], r["split"]): r for r in catalog(tmp_path)}
    assert rows[("lsun_resize", "all")]["status"] == "present"
    assert rows[("lsun_resize", "all")]["images"] == "3"
    assert rows[("isun", "all")]["status"] == "missing"
    assert "iSUN.tar.gz" in rows[("isun", "all")]["location"]
    assert rows[("gaussian", "all")]["status"] == "generated"


def test_catalog_on_shared_data(shared_data):
    rows = {(r["name"], r["split"]): r for r in catalog(shared_data, verify=True)}
    assert rows[("cifar10", "train")]["images"] == "50000"
    assert rows[("cifar10", "test")]["images"] == "10000"
    for name in ("tiny_imagenet_crop", "tiny_imagenet_resize"):
        assert rows[(name, "all")]["status"] == "present"
        assert rows[(name, "all")]["images"] == "10000"
        assert rows[(name, "all")]["checksum"] == "sha256 ok"
    for name in ("lsun_crop", "lsun_resize", "isun"):
        assert rows[(name, "all")]["status"] == "missing"


def test_an_npz_is_decoded_once_per_version_and_every_caller_gets_a_copy(tmp_path, monkeypatch):
    path = tmp_path / "set.npz"
    save_npz(ImageSet(random_images(4), None, (), "set"), path)
    calls = []
    real = ds.load_npz
    monkeypatch.setattr(ds, "load_npz", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(ds, "RECENT", ds.RecentSets())
    first = load_dataset(str(path))
    first.images[:] = 0
    second = load_dataset(str(path))
    assert len(calls) == 1 and second.images.any()  # decoded once; the change did not leak
    np.testing.assert_array_equal(second.images, random_images(4))
    save_npz(ImageSet(random_images(4, seed=1), None, (), "set"), path)
    again = load_dataset(str(path))  # a new version of the file is decoded again
    assert len(calls) == 2
    np.testing.assert_array_equal(again.images, random_images(4, seed=1))
    with pytest.raises(DatasetNotFoundError, match="gone.npz"):
        load_dataset(str(tmp_path / "gone.npz"))


def test_recent_sets_forget_the_oldest_beyond_their_size():
    recent, loads = ds.RecentSets(max_bytes=2 * 4 * 32 * 32 * 3), []

    def loader(seed):
        return lambda: loads.append(seed) or ImageSet(random_images(4, seed=seed), None, (), "x")

    for seed in (0, 1, 0, 2, 1, 0):
        recent.get(("x", seed), loader(seed))
    assert loads == [0, 1, 2, 1, 0]  # each load pushes out the set used longest ago
