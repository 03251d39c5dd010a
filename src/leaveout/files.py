"""Files on disk: atomic writes, JSON, safetensors and checksums.

A reader sees the old version of a file or the new one, never half of one: every write goes to a
temporary file beside the target, is flushed to disk, then renamed over it. New files get the
permissions of the process's umask, like files written by other tools.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_from_bytes
from safetensors.torch import save as safetensors_to_bytes

from .errors import CorruptFileError, LeaveoutError, WriteError


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_process_umask()


def _write_error(path: Path, exc: OSError) -> WriteError:
    return WriteError(
        f"could not write {path} ({exc.strerror or exc}); the previous version, if any, is unchanged"
    )


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, LeaveoutError):
            raise _write_error(path, exc) from exc
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# Fault injection for the test suite: LEAVEOUT_FAULT_KILL_WRITE="NAME:K" makes the process
# SIGKILL itself halfway through its K-th write of a file called NAME (tests/faults/).
_FAULT = os.environ.get("LEAVEOUT_FAULT_KILL_WRITE", "")
_writes: dict[str, int] = {}


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    name = Path(path).name
    with atomic_open(path, "wb") as f:
        if _FAULT and _FAULT.split(":")[0] == name:
            _writes[name] = _writes.get(name, 0) + 1
            if str(_writes[name]) == _FAULT.split(":")[1]:
                f.write(data[: len(data) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in `path`; an unreadable or damaged file is a CorruptFileError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"{path}: not readable JSON ({exc})") from exc


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files that a killed writer left behind in `folder`."""
    for stale in folder.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def write_safetensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None
) -> None:
    """Tensors (moved to the CPU, made contiguous) and string metadata, atomically."""
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_bytes(path, sorted_metadata(safetensors_to_bytes(plain, metadata=meta)))


def sorted_metadata(data: bytes) -> bytes:
    """safetensors bytes with the header's metadata in key order. The library writes it in a
    random order (a Rust hash map), so equal weights gave files, and weights_id digests, that
    differed; the header keeps its length, and so every tensor its offset."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    if not header.get("__metadata__"):
        return data
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:  # not the library's spelling: keep its bytes rather than move tensors
        return data
    return data[:8] + text.ljust(length) + data[8 + length :]


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file; never unpickles anything."""
    try:
        data = Path(path).read_bytes()
        tensors = safetensors_from_bytes(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {}) or {}
    except (OSError, SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path}: not a readable safetensors file ({exc})") from exc
    return tensors, meta


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
