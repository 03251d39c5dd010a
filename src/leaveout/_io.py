"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import LeaveoutError, WriteError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, LeaveoutError):
            raise WriteError(
                f"could not write {path} ({exc.strerror or exc}); the previous version, if any, "
                "is unchanged"
            ) from exc
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


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files that a killed writer left behind in `folder`."""
    for stale in folder.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
