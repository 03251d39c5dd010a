"""A write that fails (a full disk) gives a clear error and leaves the previous checkpoint intact."""

import errno
import json

import pytest

from leaveout import WriteError, files
from leaveout import training as tr
from leaveout.config import resolve
from leaveout.rundir import RunDir


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    tr.train(
        resolve("digits", overrides=["train.k=2", "train.epochs=1"]),
        run,
        device="cpu",
        member=0,
        progress=False,
    )
    ckpt = RunDir(run).checkpoint_path(0)
    before = ckpt.read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    more = resolve("digits", overrides=["train.k=2", "train.epochs=2"])
    with pytest.raises(WriteError, match="No space left on device") as err:
        tr.train(more, run, device="cpu", member=0, force=True, progress=False)
    assert "unchanged" in str(err.value)
    monkeypatch.undo()
    assert ckpt.read_bytes() == before
    assert not list(ckpt.parent.glob(".*.tmp"))
    state = json.loads((ckpt.parent / "state.json").read_text())
    assert state["status"] in ("failed", "done")


def test_write_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(
        files.os,
        "replace",
        lambda a, b: (_ for _ in ()).throw(PermissionError(13, "Permission denied")),
    )
    with pytest.raises(WriteError, match=r"results\.json.*Permission denied"):
        files.write_json(tmp_path / "results.json", {"a": 1})
    assert not (tmp_path / "results.json").exists() and not list(tmp_path.glob(".*.tmp"))
