import os
import stat
import subprocess
import sys

import pytest
import torch

from leaveout import CorruptFileError, WriteError, files


def test_import_leaveout_needs_no_fcntl():
    """fcntl is Unix only: it is imported where locks are taken, not by `import leaveout`."""
    code = "import sys; sys.modules['fcntl'] = None; import leaveout; print(leaveout.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_atomic_writes_round_trip_with_the_umask_mode(tmp_path):
    files.write_json(tmp_path / "a" / "b.json", {"x": [1, 2]})
    assert files.read_json(tmp_path / "a" / "b.json") == {"x": [1, 2]}
    mode = stat.S_IMODE((tmp_path / "a" / "b.json").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    files.write_safetensors(tmp_path / "t.safetensors", {"w": torch.arange(3.0)}, {"k": "v"})
    tensors, meta = files.read_safetensors(tmp_path / "t.safetensors")
    assert torch.equal(tensors["w"], torch.arange(3.0)) and meta == {"k": "v"}


def test_equal_weights_and_metadata_give_equal_safetensors_bytes(tmp_path):
    """The library orders the metadata at random; written files must not differ for it."""
    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.int64)}
    meta = {f"key{i}": f"välue {i}" for i in range(8)}
    written = []
    for i in range(6):
        path = tmp_path / f"{i}.safetensors"
        shuffled = dict(sorted(meta.items(), key=lambda kv: hash((i, kv[0]))))
        files.write_safetensors(path, tensors, shuffled)
        written.append(path.read_bytes())
    assert all(data == written[0] for data in written)
    read, read_meta = files.read_safetensors(tmp_path / "0.safetensors")
    assert read_meta == meta and list(read_meta) == sorted(meta)
    assert all(torch.equal(read[k], v) for k, v in tensors.items())


def test_damaged_json_and_a_path_under_a_file(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CorruptFileError, match=r"bad\.json"):
        files.read_json(tmp_path / "bad.json")
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match="could not write"):
        files.write_text(tmp_path / "file" / "sub" / "out.txt", "y")
