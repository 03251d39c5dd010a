"""The run directory: one owner for its layout and for reading and writing every file in it.

    config.toml                       the resolved settings (`RunConfig`)
    run.json                          what loading needs (`RunInfo`): classes, normalisation, ...
    partition.json                    the leave-out groups (leave-out mode)
    metrics.jsonl                     one line per member per epoch (a re-done epoch: last wins)
    members/<i>/checkpoint.safetensors  everything needed to resume (written every epoch)
    members/<i>/best.safetensors      weights of the selected epoch
    members/<i>/last.safetensors      weights after the last epoch
    members/<i>/state.json            progress and summary, for people and `status`
    calibration/<detector>.json       a detector's chosen settings and threshold
    eval/<report>/                    evaluation reports (results.json/csv/md, plots)
    cache/<weights id>/               scores and fitted statistics of exactly these weights
    splits/<set>-<rule>-<digest>.json the tuning/reporting split of each evaluation set
Every file is written atomically (weights and checkpoints included); nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import files
from .config import RunConfig, differences, read_toml
from .data.transforms import Normalization
from .errors import ConfigError, CorruptFileError, RunNotFoundError, WriteError
from .partitions import LeaveOutPartition

CHECKPOINT_FORMAT = "leaveout-checkpoint-1"
WEIGHTS = ("best", "last")


@dataclass(frozen=True)
class RunInfo:
    """What loading a run needs besides its weights (run.json)."""

    mode: str
    model: str
    classes: tuple[str, ...]
    image_size: tuple[int, int]
    normalization: Normalization
    members: int
    sizes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "model": self.model,
            "classes": list(self.classes),
            "image_size": list(self.image_size),
            "normalization": {
                "mean": list(self.normalization.mean),
                "std": list(self.normalization.std),
            },
            "members": self.members,
            "sizes": self.sizes,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: Path) -> RunInfo:
        try:
            norm = obj["normalization"]
            return cls(
                mode=str(obj["mode"]),
                model=str(obj["model"]),
                classes=tuple(str(c) for c in obj["classes"]),
                image_size=(int(obj["image_size"][0]), int(obj["image_size"][1])),
                normalization=Normalization(tuple(norm["mean"]), tuple(norm["std"])),
                members=int(obj["members"]),
                sizes={str(k): int(v) for k, v in obj.get("sizes", {}).items()},
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CorruptFileError(f"{source}: not a run description ({exc})") from exc


class RunDir:
    """A training run's folder. Construct with the path; nothing is read or written until asked."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- layout ---

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def info_path(self) -> Path:
        return self.path / "run.json"

    @property
    def partition_path(self) -> Path:
        return self.path / "partition.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def member_dir(self, member: int) -> Path:
        return self.path / "members" / str(member)

    def weights_path(self, member: int, which: str = "best") -> Path:
        if which not in WEIGHTS:
            raise ConfigError(f"which weights: one of {', '.join(WEIGHTS)}, got {which!r}")
        return self.member_dir(member) / f"{which}.safetensors"

    def checkpoint_path(self, member: int) -> Path:
        return self.member_dir(member) / "checkpoint.safetensors"

    def state_path(self, member: int) -> Path:
        return self.member_dir(member) / "state.json"

    def calibration_path(self, detector: str) -> Path:
        return self.path / "calibration" / f"{detector}.json"

    def eval_dir(self, report: str) -> Path:
        return self.path / "eval" / report

    def cache_dir(self, weights_id: str) -> Path:
        return self.path / "cache" / weights_id

    def split_path(self, label: str, rule: str, fingerprint: str) -> Path:
        """Where the tuning/reporting split of an evaluation set is kept (by content digest)."""
        return self.path / "splits" / f"{label}-{rule}-{fingerprint}.json"

    # --- the run as a whole ---

    def exists(self) -> bool:
        return self.config_path.is_file()

    def require(self) -> RunDir:
        """self, or RunNotFoundError when this is not a trained run's folder."""
        for path in (self.config_path, self.info_path):
            if not path.is_file():
                raise RunNotFoundError(f"{path} is missing: is {self.path} a training run?")
        return self

    def read_config(self) -> RunConfig:
        if not self.config_path.is_file():
            raise RunNotFoundError(f"{self.path} is not a run directory (no config.toml)")
        return RunConfig.from_dict(read_toml(self.config_path)).validate()

    def check_config(self, cfg: RunConfig, force: bool = False) -> bool:
        """Whether config.toml must be (re)written for `cfg`; differing settings are refused
        with the keys listed unless `force`."""
        if not self.config_path.is_file():
            return True
        diff = differences(self.read_config(), cfg)
        if diff and not force:
            raise ConfigError(
                f"{self.path} was created with other settings:\n  "
                + "\n  ".join(diff)
                + "\nUse the same settings to resume, another --out, or --force to continue "
                "with the new settings."
            )
        return bool(diff)

    def start(self, cfg: RunConfig, force: bool = False) -> None:
        """Create the folder with config.toml, or check that the saved settings equal `cfg`."""
        if self.check_config(cfg, force):
            files.write_text(self.config_path, cfg.to_toml())

    def read_info(self) -> RunInfo:
        self.require()
        return RunInfo.from_json(files.read_json(self.info_path), self.info_path)

    def write_info(self, info: RunInfo) -> None:
        if not self.info_path.is_file() or files.read_json(self.info_path) != info.to_json():
            files.write_json(self.info_path, info.to_json())

    def read_partition(self) -> LeaveOutPartition | None:
        """The leave-out groups, or None for a standard (single classifier) run."""
        if not self.partition_path.is_file():
            if self.info_path.is_file() and self.read_info().mode == "leaveout":
                raise RunNotFoundError(f"{self.partition_path} is missing")
            return None
        return LeaveOutPartition.load(self.partition_path)

    def write_partition(self, partition: LeaveOutPartition) -> None:
        partition.save(self.partition_path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock for creating the shared files (member jobs may start together).

        Unix only (fcntl, imported here so that `import leaveout` works everywhere).
        """
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- weights and checkpoints ---

    def write_weights(
        self, member: int, which: str, state: dict[str, torch.Tensor], meta: dict[str, str]
    ) -> None:
        files.write_safetensors(self.weights_path(member, which), state, meta)

    def read_weights(self, member: int, which: str = "best") -> dict[str, torch.Tensor]:
        tensors, _ = files.read_safetensors(self.existing_weights_path(member, which))
        return tensors

    def existing_weights_path(self, member: int, which: str) -> Path:
        """The member's weights file, or RunNotFoundError saying what to do."""
        path = self.weights_path(member, which)
        if not path.is_file():
            raise RunNotFoundError(
                f"{path} is missing: member {member} has not finished training or the file was "
                f"removed (`leaveout status {self.path}` says which; `leaveout train` restores it)"
            )
        return path

    def weights_id(self, which: str = "best") -> str:
        """A short digest of the members' weight files: caches and calibrations are keyed by it."""
        members = self.read_info().members
        for m in range(members):
            self.existing_weights_path(m, which)
        digests = [files.file_digest(self.weights_path(m, which), "sha1") for m in range(members)]
        return hashlib.sha1("".join(digests).encode()).hexdigest()[:12]

    def current_calibration(self, detector: str, which: str = "best") -> dict[str, Any] | None:
        """The saved calibration of `detector` when it was chosen for the current weights."""
        record = self.read_calibration(detector)
        if record is None or record.get("weights") != self.weights_id(which):
            return None
        return record

    def write_checkpoint(
        self, member: int, tensors: dict[str, torch.Tensor], progress: dict[str, Any]
    ) -> None:
        """One file with everything needed to resume, so that it never disagrees with itself."""
        meta = {"format": CHECKPOINT_FORMAT, "progress": json.dumps(progress)}
        files.write_safetensors(self.checkpoint_path(member), tensors, meta)

    def read_checkpoint(self, member: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """(tensors, progress) of the member's checkpoint, or None when there is none."""
        path = self.checkpoint_path(member)
        if not path.is_file():
            return None
        tensors, meta = files.read_safetensors(path)
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CorruptFileError(
                f"{path}: not a leaveout checkpoint (format {meta.get('format')!r})"
            )
        try:
            progress = json.loads(meta["progress"])
            if not isinstance(progress["epoch"], int) or not isinstance(progress["history"], list):
                raise ValueError("epoch or history of the wrong type")
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(
                f"{path}: the checkpoint's progress record is damaged ({exc})"
            ) from exc
        return tensors, progress

    def remove_checkpoint(self, member: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.checkpoint_path(member).unlink()

    def clean_member_dir(self, member: int) -> None:
        """Create the member's folder and delete temporaries that a killed writer left."""
        folder = self.member_dir(member)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(f"could not create {folder} ({exc.strerror or exc})") from exc
        files.remove_stale_temporaries(folder)

    # --- progress records ---

    def read_state(self, member: int) -> dict[str, Any] | None:
        return self.read_record(self.state_path(member))

    def read_record(self, path: Path) -> dict[str, Any] | None:
        """A JSON object, None when the file is missing; anything else is a CorruptFileError."""
        if not path.is_file():
            return None
        record = files.read_json(path)
        if not isinstance(record, dict):
            raise CorruptFileError(f"{path}: expected a JSON object, got {type(record).__name__}")
        return record

    def write_state(self, member: int, state: dict[str, Any]) -> dict[str, Any]:
        """Save a member's state.json, stamped with the time, host and process."""
        stamped = state | {
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        files.write_json(self.state_path(member), stamped)
        return stamped

    def append_metrics(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record) + "\n").encode()
        try:
            with open(self.metrics_path, "ab") as f:  # one write per line: O_APPEND keeps it whole
                f.write(line)
        except OSError as exc:
            raise WriteError(
                f"could not write {self.metrics_path} ({exc.strerror or exc})"
            ) from exc

    def read_metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl with re-done epochs collapsed (the last line for a (member, epoch) wins)."""
        if not self.metrics_path.is_file():
            return []
        latest: dict[tuple[int, int], dict[str, Any]] = {}
        for line in self.metrics_path.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):  # a torn line after a crash
                rec = json.loads(line)
                latest[(int(rec["member"]), int(rec["epoch"]))] = rec
        return [latest[k] for k in sorted(latest)]

    # --- calibrations and caches ---

    def read_calibration(self, detector: str) -> dict[str, Any] | None:
        return self.read_record(self.calibration_path(detector))

    def write_calibration(self, detector: str, record: dict[str, Any]) -> Path:
        path = self.calibration_path(detector)
        files.write_json(path, record)
        return path

    def cached(
        self, weights_id: str, key: str, compute: Callable[[], dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """compute(), read from (or saved to) cache/<weights id>/<key>.safetensors."""
        path = self.cache_dir(weights_id) / f"{key}.safetensors"
        if path.is_file():
            with contextlib.suppress(CorruptFileError):  # a damaged cache entry is recomputed
                return files.read_safetensors(path)[0]
        tensors = compute()
        files.write_safetensors(path, tensors)
        return tensors

    # --- status ---

    def status(self) -> list[dict[str, Any]]:
        """Per member: done, training, stopped, failed, missing, or what weights are missing."""
        cfg = self.read_config()
        if self.info_path.is_file():
            count = self.read_info().members
        else:  # training has not written run.json yet
            count = 1 if cfg.train.mode == "standard" else cfg.train.k
        return [self.member_status(m, cfg.train.epochs) for m in range(count)]

    def member_status(self, member: int, epochs: int) -> dict[str, Any]:
        row: dict[str, Any] = {"member": member, "epoch": f"0/{epochs}", "status": "missing"}
        state = self.read_state(member)
        if state is None:
            return row
        status = state.get("status", "?")
        alive = state.get("host") != socket.gethostname() or process_alive(state.get("pid", -1))
        if status == "training" and not alive:
            status = "stopped (run the same command to resume)"
        elif status == "failed":
            status = f"failed: {state.get('error', '?')}"
        elif status == "done":
            missing = [w for w in WEIGHTS if not self.weights_path(member, w).is_file()]
            if missing:
                status = f"done, but {' and '.join(m + '.safetensors' for m in missing)} missing"
                status += " (run `leaveout train` again to restore it)"
        age = time.time() - self.state_path(member).stat().st_mtime
        return row | {
            "status": status,
            "epoch": f"{state.get('epochs_done', 0)}/{epochs}",
            "val acc %": _percent(state.get("val_acc")),
            "val AUROC %": _percent(state.get("val_auroc")),
            "last update": f"{age / 60:.1f} min ago",
        }


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.2f}"


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
