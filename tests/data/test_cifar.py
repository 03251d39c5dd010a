import pickle

import numpy as np
import pytest

from leaveout import (
    CorruptFileError,
    DatasetNotFoundError,
    UnsafePickleError,
    load_cifar,
)
from leaveout.data import restricted_unpickle

from ..helpers import (
    CIFAR10_CLASSES,
    make_tar,
    write_cifar10,
)


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
