"""Property tests: hostile bytes only ever raise the project's documented errors, and the metrics
behave as rank statistics should."""

import contextlib
import io
import pickle
import tarfile
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaveout import LeaveoutError, decode_image, load_images
from leaveout.data import restricted_unpickle
from leaveout.files import read_safetensors
from leaveout.metrics import aupr_in, aupr_out, auroc, detection_error, fpr_at_tpr, ood_metrics

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FAST
@given(st.binary(max_size=2048))
def test_random_bytes_as_an_image(data):
    with contextlib.suppress(LeaveoutError):
        decode_image(data, "random.png")


@FAST
@given(st.binary(max_size=2048), st.sampled_from([".tar.gz", ".tar", ".zip", ".tgz"]))
def test_random_bytes_as_an_archive(tmp_path, data, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    with contextlib.suppress(LeaveoutError):
        load_images(path)


@FAST
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_archives_of_random_files_named_as_images(tmp_path, members):
    path = tmp_path / "imgs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i, content in enumerate(members):
            archive.writestr(f"set/img_{i}.png", content)
    with contextlib.suppress(LeaveoutError):
        load_images(path)
    tar_path = tmp_path / "imgs.tar"
    with tarfile.open(tar_path, "w") as tar:
        for i, content in enumerate(members):
            info = tarfile.TarInfo(f"set/img_{i}.jpg")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    with contextlib.suppress(LeaveoutError):
        load_images(tar_path)


@FAST
@given(st.binary(max_size=1024))
def test_random_bytes_as_a_pickle_or_weights(tmp_path, data):
    for payload in (data, b"\x80\x02" + data, pickle.dumps(data) + data):
        with contextlib.suppress(LeaveoutError):
            restricted_unpickle(payload, "batch")
    path = tmp_path / "w.safetensors"
    path.write_bytes(data)
    with contextlib.suppress(LeaveoutError):
        read_safetensors(path)


# integer-valued scores: ties are common, and every monotone warp below keeps them distinct
scores = st.lists(st.integers(-1000, 1000).map(float), min_size=1, max_size=40)


@FAST
@given(scores, scores)
def test_metrics_are_invariant_to_monotone_transforms(ids, oods):
    ids, oods = np.array(ids), np.array(oods)
    warp = lambda s: np.exp(s / 300.0) + 2 * s  # noqa: E731  (strictly increasing)
    a, b = ood_metrics(ids, oods), ood_metrics(warp(ids), warp(oods))
    for key in a:
        assert np.isclose(a[key], b[key], atol=1e-9), key


@FAST
@given(scores, scores)
def test_swapping_the_convention_is_negating_and_swapping_the_roles(ids, oods):
    ids, oods = np.array(ids), np.array(oods)
    assert np.isclose(auroc(ids, oods), auroc(-oods, -ids))
    assert np.isclose(aupr_out(ids, oods), aupr_in(-oods, -ids))
    assert np.isclose(detection_error(ids, oods), detection_error(-oods, -ids))
    assert np.isclose(fpr_at_tpr(ids, oods, ood_positive=True), fpr_at_tpr(-oods, -ids))
    m = ood_metrics(ids, oods)
    assert all(0 <= v <= 100 for v in m.values())


@FAST
@given(scores, st.sampled_from([float("nan"), float("inf")]))
def test_non_finite_scores_are_a_documented_error(ids, bad):
    try:
        ood_metrics(np.array(ids), np.array([0.0, bad]))
    except LeaveoutError:
        return
    raise AssertionError("non-finite scores were accepted")
