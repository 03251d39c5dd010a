"""Images and data sets that are odd or hostile: handled, or refused naming the file."""

import io

import numpy as np
import pytest
from PIL import Image

from leaveout import CorruptFileError, ShapeError, create_detector, decode_image, load_images
from leaveout.data import report_split
from leaveout.ensemble import LeaveOutEnsemble

from ..helpers import random_images, write_image_files


def _png(array, mode=None):
    out = io.BytesIO()
    Image.fromarray(array, mode=mode).save(out, format="PNG")
    return out.getvalue()


def _palette_png():
    out = io.BytesIO()
    Image.fromarray(random_images(1, size=40)[0]).quantize(16).save(out, format="PNG")
    return out.getvalue()


def _jpeg(array):
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("gray.png", lambda: _png(np.full((40, 40), 7, np.uint8))),
        ("rgba.png", lambda: _png(np.full((40, 40, 4), 200, np.uint8))),
        ("palette.png", lambda: _palette_png()),
        ("deep.png", lambda: _png(np.full((40, 40), 40000, np.uint16))),
        ("photo.jpg", lambda: _jpeg(random_images(1, size=48)[0])),
    ],
)
def test_image_kinds_are_decoded_to_rgb(name, make):
    out = decode_image(make(), name)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("truncated.jpg", _jpeg(random_images(1, size=64)[0])[:300]),
        ("empty.png", b""),
        ("notes.jpg", b"these are my notes, not an image"),
        ("script.png", b"#!/bin/sh\nrm -rf /\n"),
    ],
)
def test_unreadable_images_are_refused_by_name(name, content):
    with pytest.raises(CorruptFileError, match=name.replace(".", r"\.")):
        decode_image(content, name)


def test_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(CorruptFileError, match=r"bomb\.png.*Decompression"):
        decode_image(_png(np.zeros((100, 100, 3), np.uint8)), "bomb.png")  # 10,000 > 2 x 1000
    with pytest.raises(CorruptFileError, match=r"big\.png"):
        decode_image(_png(np.zeros((40, 40, 3), np.uint8)), "big.png")  # 1,600: Pillow's warning


def test_folder_with_one_bad_file_names_it_or_skips_it(tmp_path):
    write_image_files(tmp_path, random_images(3))
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(CorruptFileError, match=r"zero\.png"):
        load_images(tmp_path)
    with pytest.warns(UserWarning):
        assert len(load_images(tmp_path, skip_corrupt=True)) == 3


def test_ood_set_smaller_than_the_tuning_part(tmp_path):
    from leaveout import ImageSet

    write_image_files(tmp_path / "small", random_images(50, size=16))
    parts = report_split(load_images(tmp_path / "small")).apply(load_images(tmp_path / "small"))
    assert len(parts["tune"]) == 10 and len(parts["report"]) == 40
    with pytest.raises(ShapeError, match="at least 2"):
        report_split(ImageSet(random_images(1, size=4), None, (), "one"))


def test_nan_and_inf_inputs_to_score(digits_run):
    import torch

    _, run_dir, _ = digits_run
    ensemble = LeaveOutEnsemble.load(run_dir)
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.zeros(2, 3, 16, 16)
        x[1, 0, 3, 3] = bad
        with pytest.raises(ShapeError, match="NaN or infinite"):
            create_detector("leaveout", ensemble).score_samples(x)
