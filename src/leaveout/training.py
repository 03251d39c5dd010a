"""Training the leave-out ensemble (or one standard classifier), resumably.

Run directory:
    config.toml        the full resolved settings
    run.json           what loading needs: classes, normalisation, image size, members
    partition.json     the leave-out groups (leave-out mode)
    metrics.jsonl      one line per member per epoch (a re-done epoch may repeat; last wins)
    members/<i>/checkpoint.safetensors   everything needed to resume (written every epoch)
    members/<i>/best.safetensors         weights of the selected epoch
    members/<i>/last.safetensors         weights after the last epoch
    members/<i>/state.json               progress and summary, for people and `status`
Every file is written atomically. The checkpoint is one file (weights, optimiser buffers, RNG
state and the epoch in its metadata), so it can never disagree with itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from . import _io, distributed
from .batches import Augment, BatchStream, CycledStream, Normalization, PairedStream, derive_seed
from .config import OptimSettings, RunConfig, differences, read_toml
from .data import ImageSet, Split, stratified_split
from .datasets import DATASETS, load_dataset
from .distributed import ALONE, World, barrier, check_batch, file_lock, sum_across, this_host
from .errors import ConfigError, CorruptFileError, TrainingDivergedError
from .losses import entropy, margin_entropy_loss
from .metrics import auroc
from .models import create_model
from .partitions import LeaveOutPartition
from .reports import text_table

CHECKPOINT_FORMAT = "leaveout-checkpoint-1"


# --- data for a run --------------------------------------------------------------------------------


def load_splits(cfg: RunConfig, data_root: str | Path | None) -> dict[str, ImageSet]:
    """train / val / test parts of the configured dataset, restricted to `data.id_classes`.

    Adds "unseen": test images of the classes outside `id_classes` (an OOD set), when there are.
    val is a stratified part of the training split (seed train.seed); sets without a test
    split (digits) give a stratified test part first.
    """
    d, seed = cfg.data, cfg.train.seed
    info = DATASETS.get(d.dataset)
    if info is not None and "test" in info.splits:
        full_train = load_dataset(d.dataset, "train", data_root)
        test = load_dataset(d.dataset, "test", data_root)
    else:
        whole = load_dataset(d.dataset, root=data_root)
        if whole.labels is None:
            raise ConfigError(
                f"data.dataset {d.dataset!r} has no labels: training needs one sub-folder per class"
            )
        parts = stratified_split(whole.labels, d.test_fraction, seed, ("train", "test")).apply(
            whole
        )
        full_train, test = parts["train"], parts["test"]
    if full_train.labels is None:
        raise ConfigError(f"data.dataset {d.dataset!r} has no labels; training needs classes")
    split = stratified_split(full_train.labels, d.val_fraction, seed)
    if d.max_per_class:
        split = _cap_per_class(split, full_train.labels, d.max_per_class)
    out = split.apply(full_train)
    out["test"] = test
    if d.id_classes is not None:
        out = _restrict_classes(out, d.id_classes)
    return out


def _cap_per_class(split: Split, labels: np.ndarray, cap: int) -> Split:
    train = split.parts["train"]
    keep = np.concatenate([train[labels[train] == c][:cap] for c in np.unique(labels)])
    return Split({"train": np.sort(keep), "val": split.parts["val"]}, f"{split.rule}, cap {cap}")


def _restrict_classes(parts: dict[str, ImageSet], id_classes: list[int]) -> dict[str, ImageSet]:
    first = parts["train"]
    if sorted(set(id_classes)) != sorted(id_classes) or not set(id_classes) <= set(
        range(first.num_classes)
    ):
        raise ConfigError(
            f"data.id_classes {id_classes} must be distinct classes of 0..{first.num_classes - 1}"
        )
    relabel = np.full(first.num_classes, -1, dtype=np.int64)
    relabel[id_classes] = np.arange(len(id_classes))
    classes = tuple(first.classes[c] for c in id_classes)
    out = {}
    for name, data in parts.items():
        assert data.labels is not None
        inside = relabel[data.labels] >= 0
        kept = data.subset(np.flatnonzero(inside))
        out[name] = ImageSet(kept.images, relabel[kept.labels], classes, data.name)
    test = parts["test"]
    unseen = np.flatnonzero(relabel[test.labels] < 0)
    if len(unseen):
        out["unseen"] = ImageSet(test.images[unseen], None, (), f"{test.name}-unseen-classes")
    return out


def make_normalization(cfg: RunConfig, train: ImageSet) -> Normalization:
    return Normalization.fit(train.images) if cfg.data.normalization == "fit" else Normalization()


# --- one training step -----------------------------------------------------------------------------


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp = 'fp16' needs a CUDA device; use 'bf16' on the CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class StepResult:
    loss: torch.Tensor  # scalar, detached
    correct: torch.Tensor  # number of correctly classified ID images, detached


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    x_out: torch.Tensor | None,
    cfg: RunConfig,
    scaler: torch.amp.GradScaler | None = None,
) -> StepResult:
    """One SGD step on an ID batch (and a left-out batch in leave-out mode)."""
    t = cfg.train
    with autocast(x.device, t.amp):
        if x_out is None:
            id_logits = model(x)
            loss = F.cross_entropy(id_logits.float(), y)
        else:
            if t.joint_forward:
                logits = model(torch.cat([x, x_out]))
                id_logits, out_logits = logits[: len(x)], logits[len(x) :]
            else:
                id_logits, out_logits = model(x), model(x_out)
            loss = margin_entropy_loss(id_logits, y, out_logits, t.beta, t.margin)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return StepResult(loss.detach(), (id_logits.argmax(1) == y).sum())


def learning_rate(optim: OptimSettings, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate at global step `step` (0-based) of `total_steps`."""
    progress = step / max(1, total_steps)
    if optim.schedule == "linear":
        return optim.lr + (optim.lr_floor - optim.lr) * progress
    if optim.schedule == "cosine":
        return optim.lr_floor + 0.5 * (optim.lr - optim.lr_floor) * (
            1 + math.cos(math.pi * progress)
        )
    if optim.schedule == "step":
        epoch = step // steps_per_epoch
        return optim.lr * optim.gamma ** sum(epoch >= m for m in optim.milestones)
    return optim.lr


# --- evaluation on the validation part --------------------------------------------------------------


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, norm: Normalization, batch_size: int, amp: str = "none"
) -> torch.Tensor:
    """Logits (N, C) float32 of uint8 images (N, H, W, 3), in eval mode, in batches."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        with autocast(images.device, amp):
            out.append(model(norm(images[start : start + batch_size])).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


@dataclass
class MemberData:
    """One member's tensors (on the training device): uint8 images, member labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    out_images: torch.Tensor | None
    val_images: torch.Tensor
    val_labels: torch.Tensor
    val_out_images: torch.Tensor | None
    num_classes: int


def member_data(
    parts: dict[str, ImageSet],
    partition: LeaveOutPartition | None,
    member: int,
    device: torch.device,
) -> MemberData:
    def tensors(data: ImageSet) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        assert data.labels is not None
        images = torch.from_numpy(data.images)
        if partition is None:
            return images.to(device), torch.from_numpy(data.labels).to(device), None
        labels = partition.to_member_labels(member, data.labels)
        inside = torch.from_numpy(labels >= 0)
        return (
            images[inside].to(device),
            torch.from_numpy(labels[labels >= 0]).to(device),
            images[~inside].to(device),
        )

    train_x, train_y, out_x = tensors(parts["train"])
    val_x, val_y, val_out = tensors(parts["val"])
    assert train_y is not None and val_y is not None
    classes = parts["train"].num_classes
    num = classes if partition is None else partition.member_num_classes(member)
    return MemberData(train_x, train_y, out_x, val_x, val_y, val_out, num)


def validate(
    model: nn.Module, data: MemberData, norm: Normalization, cfg: RunConfig
) -> dict[str, float | None]:
    """ID validation accuracy (%) and the max-softmax AUROC (%) of ID vs left-out validation images,
    plus the mean entropies of both (nats)."""
    bs, amp = cfg.train.eval_batch_size, cfg.train.amp
    logits = predict_logits(model, data.val_images, norm, bs, amp)
    out: dict[str, float | None] = {
        "val_acc": 100.0 * (logits.argmax(1) == data.val_labels).float().mean().item(),
        "val_auroc": None,
        "val_entropy_id": entropy(logits).mean().item(),
        "val_entropy_out": None,
    }
    if data.val_out_images is not None and len(data.val_out_images):
        out_logits = predict_logits(model, data.val_out_images, norm, bs, amp)
        msp_id = logits.softmax(1).amax(1).cpu().numpy()
        msp_out = out_logits.softmax(1).amax(1).cpu().numpy()
        out["val_auroc"] = 100.0 * auroc(msp_id, msp_out)
        out["val_entropy_out"] = entropy(out_logits).mean().item()
    return out


# --- checkpoints -------------------------------------------------------------------------------------


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def save_weights(model: nn.Module, path: Path, meta: dict[str, str]) -> None:
    """Model weights as safetensors (atomic); `meta` goes into the header."""
    _io.write_bytes(path, save_safetensors_bytes(_contiguous(model.state_dict()), metadata=meta))


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file; never unpickles anything."""
    try:
        data = path.read_bytes()
        tensors = load_safetensors_bytes(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {}) or {}
    except (OSError, SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path}: not a readable safetensors file ({exc})") from exc
    return tensors, meta


def load_weights(
    model: nn.Module, path: Path, tensors: dict[str, torch.Tensor] | None = None
) -> None:
    """Copy weights into `model`; a missing, extra or mis-shaped tensor is an error naming `path`."""
    if tensors is None:
        tensors, _ = read_safetensors(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or extra or wrong:
        raise ConfigError(
            f"{path} does not fit the network: "
            + "; ".join(
                s
                for s in (
                    f"missing {missing[:3]}" if missing else "",
                    f"unexpected {extra[:3]}" if extra else "",
                    f"shape {wrong[:3]}" if wrong else "",
                )
                if s
            )
        )
    model.load_state_dict(tensors)


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    progress: dict[str, Any],
) -> None:
    """Everything needed to resume, in one safetensors file (atomic)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, param in enumerate(optimizer.param_groups[0]["params"]):
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"optim.{i}.momentum_buffer"] = buffer
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    meta = {"format": CHECKPOINT_FORMAT, "progress": json.dumps(progress)}
    if scaler is not None:
        meta["scaler"] = json.dumps(scaler.state_dict())
    _io.write_bytes(path, save_safetensors_bytes(_contiguous(tensors), metadata=meta))


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> dict[str, Any]:
    """Restore model, optimiser buffers, RNG state (and loss scaler); returns the progress dict."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != CHECKPOINT_FORMAT or "rng.torch" not in tensors:
        raise CorruptFileError(f"{path}: not a leaveout checkpoint (format {meta.get('format')!r})")
    try:
        progress = json.loads(meta["progress"])
        if not isinstance(progress["epoch"], int) or not isinstance(progress["history"], list):
            raise ValueError("epoch or history of the wrong type")
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(
            f"{path}: the checkpoint's progress record is damaged ({exc})"
        ) from exc
    load_weights(model, path, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = optimizer.param_groups[0]["params"]
    for i, param in enumerate(params):
        key = f"optim.{i}.momentum_buffer"
        if key in tensors:
            buffer = torch.empty_like(param)
            buffer.copy_(tensors[key])
            optimizer.state[param]["momentum_buffer"] = buffer
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    if scaler is not None and "scaler" in meta:
        scaler.load_state_dict(json.loads(meta["scaler"]))
    return progress


# --- the run directory ---------------------------------------------------------------------------------


def member_dir(run_dir: Path, member: int) -> Path:
    return run_dir / "members" / str(member)


def prepare_run_dir(run_dir: Path, cfg: RunConfig, force: bool = False) -> None:
    """Create `run_dir` with config.toml, or check that the saved config equals `cfg`."""
    saved_path = run_dir / "config.toml"
    if saved_path.is_file():
        saved = RunConfig.from_dict(read_toml(saved_path)).validate()
        diff = differences(saved, cfg)
        if diff and not force:
            raise ConfigError(
                f"{run_dir} was created with other settings:\n  "
                + "\n  ".join(diff)
                + "\nUse the same settings to resume, another --out, or --force to continue "
                "with the new settings."
            )
        if not diff:
            return
    run_dir.mkdir(parents=True, exist_ok=True)
    _io.write_text(saved_path, cfg.to_toml())


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl with re-done epochs collapsed (the last line for a (member, epoch) wins)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    latest: dict[tuple[int, int], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a torn last line after a crash
            rec = json.loads(line)
            latest[(rec["member"], rec["epoch"])] = rec
    return [latest[k] for k in sorted(latest)]


def _append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    line = (json.dumps(record) + "\n").encode()
    with open(run_dir / "metrics.jsonl", "ab") as f:  # one write per line: O_APPEND keeps it whole
        f.write(line)


# --- one member ----------------------------------------------------------------------------------------


def _is_better(select: str, candidate: dict[str, Any], best: dict[str, Any] | None) -> bool:
    if best is None or select == "last":
        return True
    key = "val_auroc" if select == "auroc" else "val_acc"
    return candidate[key] is not None and candidate[key] > best[key]


def _model_kwargs(cfg: RunConfig) -> dict[str, Any]:
    return {} if cfg.model.dropout is None else {"dropout": cfg.model.dropout}


def build_network(cfg: RunConfig, num_classes: int) -> nn.Module:
    """The configured network with `num_classes` outputs (random weights from torch's RNG)."""
    return create_model(cfg.model.name, num_classes, 3, **_model_kwargs(cfg))


def build_member_model(cfg: RunConfig, num_classes: int, member: int) -> nn.Module:
    """The member's network, initialised from a seed derived from (train.seed, member)."""
    torch.manual_seed(derive_seed(cfg.train.seed, member, 7))
    return build_network(cfg, num_classes)


def make_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.SGD:
    o = cfg.optim
    return torch.optim.SGD(
        model.parameters(),
        lr=o.lr,
        momentum=o.momentum,
        nesterov=o.nesterov and o.momentum > 0,
        weight_decay=o.weight_decay,
    )


def make_stream(
    cfg: RunConfig, data: MemberData, norm: Normalization, member: int, world: World = ALONE
) -> PairedStream | BatchStream:
    """The member's batches; under torchrun each process gets its shard of every global batch."""
    augment = Augment(cfg.data.padding, cfg.data.hflip)
    seed = derive_seed(cfg.train.seed, member)
    check_batch(cfg.train.batch_size, world, "train.batch_size")
    ids = BatchStream(
        data.train_images,
        data.train_labels,
        cfg.train.batch_size,
        norm,
        augment,
        seed=seed,
        world=world,
    )
    if data.out_images is None:
        return ids
    check_batch(cfg.train.ood_batch_size, world, "train.ood_batch_size")
    outs = CycledStream(
        data.out_images, cfg.train.ood_batch_size, norm, augment, seed=seed + 1, world=world
    )
    return PairedStream(ids, outs)


def _epoch_batches(
    stream: PairedStream | BatchStream, epoch: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    if isinstance(stream, PairedStream):
        yield from stream.epoch(epoch)
    else:
        for x, y in stream.epoch(epoch):
            assert y is not None
            yield x, y, None


def train_member(
    cfg: RunConfig,
    member: int,
    data: MemberData,
    norm: Normalization,
    run_dir: Path,
    device: torch.device,
    progress: bool = True,
    world: World = ALONE,
) -> dict[str, Any]:
    """Train (or resume, or skip when done) one member; returns its summary.

    Under torchrun (world.size > 1) the model is wrapped in DistributedDataParallel, every
    process trains on its shard of each global batch, and only rank 0 writes files.
    """

    folder = member_dir(run_dir, member)
    if world.main:
        folder.mkdir(parents=True, exist_ok=True)
        _io.remove_stale_temporaries(folder)
    state_path, ckpt_path = folder / "state.json", folder / "checkpoint.safetensors"
    if state_path.is_file():
        state = json.loads(state_path.read_text())
        if state.get("status") == "done" and state.get("epochs_done", 0) >= cfg.train.epochs:
            return state

    model = build_member_model(cfg, data.num_classes, member).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    scaler = torch.amp.GradScaler("cuda") if cfg.train.amp == "fp16" else None
    done: dict[str, Any] = {"epoch": 0, "history": [], "best": None}
    if ckpt_path.is_file():
        done = load_checkpoint(ckpt_path, model, optimizer, scaler)
    stepper = _data_parallel(model, cfg, world, device)
    stream = make_stream(cfg, data, norm, member, world)
    try:
        return _train_epochs(
            cfg,
            member,
            data,
            norm,
            run_dir,
            progress,
            world,
            model,
            stepper,
            optimizer,
            scaler,
            done,
            stream,
        )
    except BaseException as exc:
        if world.main:
            _write_state(
                state_path, member, "failed", done, 0.0, error=f"{type(exc).__name__}: {exc}"
            )
        raise


def _data_parallel(
    model: nn.Module, cfg: RunConfig, world: World, device: torch.device
) -> nn.Module:
    """The module the training step runs: DistributedDataParallel under torchrun, else `model`."""
    if world.size == 1:
        return model
    if cfg.train.sync_batchnorm:
        if device.type != "cuda":
            raise ConfigError(
                "train.sync_batchnorm needs CUDA devices (PyTorch has no CPU version)"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def _train_epochs(
    cfg: RunConfig,
    member: int,
    data: MemberData,
    norm: Normalization,
    run_dir: Path,
    progress: bool,
    world: World,
    model: nn.Module,
    stepper: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    done: dict[str, Any],
    stream: PairedStream | BatchStream,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    folder = member_dir(run_dir, member)
    state_path, ckpt_path = folder / "state.json", folder / "checkpoint.safetensors"
    steps, epochs = len(stream), cfg.train.epochs
    info = {"model": cfg.model.name, "num_classes": str(data.num_classes), "member": str(member)}
    bar = tqdm(
        total=(epochs - done["epoch"]) * steps * cfg.train.batch_size,
        unit="img",
        unit_scale=True,
        desc=f"member {member}",
        disable=not progress or not world.main,
        dynamic_ncols=True,
    )
    started = time.time() - sum(h["seconds"] for h in done["history"])
    with bar:
        for epoch in range(done["epoch"], epochs):
            tick = time.time()
            total_loss, correct, seen = 0.0, 0, 0
            model.train()
            for step, (x, y, x_out) in enumerate(_epoch_batches(stream, epoch)):
                lr = learning_rate(cfg.optim, epoch * steps + step, epochs * steps, steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                result = train_step(stepper, optimizer, x, y, x_out, cfg, scaler)
                totals = sum_across(
                    torch.stack([result.loss.float(), result.correct.float()]), world
                )
                loss, batch_correct = totals[0].item() / world.size, int(totals[1].item())
                if not math.isfinite(loss):
                    raise TrainingDivergedError(
                        f"member {member}: the loss is {loss} at epoch {epoch + 1}, step {step + 1}; "
                        f"the last good checkpoint ({ckpt_path}, after epoch {done['epoch']}) "
                        "is kept. Lower optim.lr or turn off train.amp."
                    )
                batch_seen = len(x) * world.size
                total_loss += loss * batch_seen
                correct += batch_correct
                seen += batch_seen
                bar.update(batch_seen)
                bar.set_postfix(
                    epoch=f"{epoch + 1}/{epochs}",
                    loss=f"{total_loss / seen:.3f}",
                    acc=f"{100 * correct / seen:.1f}",
                    refresh=False,
                )
            seconds = time.time() - tick
            record = {
                "member": member,
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": total_loss / seen,
                "train_acc": 100.0 * correct / seen,
                **validate(model, data, norm, cfg),
                "seconds": seconds,
                "images_per_s": seen / seconds,
            }
            better = _is_better(cfg.train.select, record, done["best"])
            if better:
                done["best"] = record
            done["epoch"] = epoch + 1
            done["history"].append(record)
            if world.main:  # every process holds the same weights; one writes them
                _append_metrics(run_dir, record)
                if better:
                    meta = info | {"epoch": str(epoch + 1)}
                    save_weights(model, folder / "best.safetensors", meta)
                save_checkpoint(ckpt_path, model, optimizer, scaler, done)
                _write_state(state_path, member, "training", done, time.time() - started)
            bar.set_postfix(
                epoch=f"{epoch + 1}/{epochs}",
                val_acc=f"{record['val_acc']:.1f}",
                val_auroc=_fmt(record["val_auroc"]),
            )
    if world.main:
        save_weights(model, folder / "last.safetensors", info | {"epoch": str(epochs)})
        return _write_state(state_path, member, "done", done, time.time() - started)
    return _state(member, "done", done, time.time() - started)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _state(
    member: int, status: str, done: dict[str, Any], seconds: float, error: str | None = None
) -> dict[str, Any]:
    best = done["best"] or {}
    state = {
        "member": member,
        "status": status,
        "epochs_done": done["epoch"],
        "best_epoch": best.get("epoch"),
        "val_acc": best.get("val_acc"),
        "val_auroc": best.get("val_auroc"),
        "seconds": seconds,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": this_host(),
        "pid": os.getpid(),
    }
    if error:
        state["error"] = error
    return state


def _write_state(
    path: Path,
    member: int,
    status: str,
    done: dict[str, Any],
    seconds: float,
    error: str | None = None,
) -> dict[str, Any]:
    state = _state(member, status, done, seconds, error)
    if status == "failed" and path.is_file():  # keep the time already spent
        state["seconds"] = json.loads(path.read_text()).get("seconds", 0.0)
    _io.write_json(path, state)
    return state


# --- the ensemble ------------------------------------------------------------------------------------


def resolve_device(name: str | None = None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device")
    return device


def train(
    cfg: RunConfig,
    run_dir: str | Path,
    data_root: str | Path | None = None,
    device: str | torch.device | None = None,
    member: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train every member (or only `member`) into `run_dir`, resuming what is there.

    Returns one summary dict per trained member.
    """
    cfg = cfg.validate()
    run_dir = Path(run_dir)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    world = World.from_env()
    device = distributed.start(world, device)
    parts = load_splits(cfg, data_root)
    norm = make_normalization(cfg, parts["train"])
    if world.main:  # member jobs sharing the directory create its shared files one at a time
        with file_lock(run_dir / ".lock"):
            prepare_run_dir(run_dir, cfg, force)
            partition = _partition(cfg, run_dir, parts["train"].num_classes)
            _write_run_info(run_dir, cfg, parts, norm, partition)
    barrier(world)
    if not world.main:
        partition = _partition(cfg, run_dir, parts["train"].num_classes)
    count = 1 if partition is None else partition.k
    members = range(count) if member is None else [member]
    if member is not None and not 0 <= member < count:
        raise ConfigError(f"--member must be in 0..{count - 1}, got {member}")
    summaries = []
    for i in members:
        data = member_data(parts, partition, i, device)
        summary = train_member(cfg, i, data, norm, run_dir, device, progress, world)
        summary["left_out"] = (
            "-"
            if partition is None
            else ", ".join(parts["train"].classes[c] for c in partition.left_out(i))
        )
        summaries.append(summary)
    return summaries


def _partition(cfg: RunConfig, run_dir: Path, classes: int) -> LeaveOutPartition | None:
    if cfg.train.mode == "standard":
        return None
    path = run_dir / "partition.json"
    if path.is_file():
        partition = LeaveOutPartition.load(path)
        if partition.num_classes != classes:
            raise ConfigError(
                f"{path} is for {partition.num_classes} classes; the data has {classes}"
            )
        return partition
    partition = LeaveOutPartition(classes, cfg.train.k, cfg.train.partition_seed)
    partition.save(path)
    return partition


def _write_run_info(
    run_dir: Path,
    cfg: RunConfig,
    parts: dict[str, ImageSet],
    norm: Normalization,
    partition: LeaveOutPartition | None,
) -> None:
    train = parts["train"]
    info = {
        "mode": cfg.train.mode,
        "model": cfg.model.name,
        "classes": list(train.classes),
        "image_size": list(train.image_size),
        "normalization": {"mean": list(norm.mean), "std": list(norm.std)},
        "members": 1 if partition is None else partition.k,
        "sizes": {name: len(data) for name, data in parts.items()},
    }
    path = run_dir / "run.json"
    if not path.is_file() or json.loads(path.read_text()) != info:
        _io.write_json(path, info)


def summary_table(summaries: list[dict[str, Any]]) -> str:
    rows = [
        {
            "member": s["member"],
            "left out": s.get("left_out", "-"),
            "epochs": s["epochs_done"],
            "best epoch": s["best_epoch"],
            "val acc %": s["val_acc"],
            "val AUROC %": "-" if s["val_auroc"] is None else s["val_auroc"],
            "minutes": s["seconds"] / 60,
        }
        for s in summaries
    ]
    return text_table(rows, list(rows[0]) if rows else [])


def run_status(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per member: done, training (epoch, last update), stopped, failed or missing."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.toml)")
    cfg = RunConfig.from_dict(read_toml(run_dir / "config.toml")).validate()
    count = 1
    if cfg.train.mode == "leaveout":
        partition_path = run_dir / "partition.json"
        count = (
            LeaveOutPartition.load(partition_path).k if partition_path.is_file() else cfg.train.k
        )
    rows = []
    for member in range(count):
        path = member_dir(run_dir, member) / "state.json"
        row: dict[str, Any] = {
            "member": member,
            "epoch": f"0/{cfg.train.epochs}",
            "status": "missing",
        }
        if path.is_file():
            state = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
            status = state["status"]
            same_host = state.get("host") == this_host()
            if status == "training" and same_host and not distributed.process_alive(state["pid"]):
                status = "stopped (run the same command to resume)"
            if status == "failed":
                status = f"failed: {state.get('error', '?')}"
            row |= {
                "status": status,
                "epoch": f"{state['epochs_done']}/{cfg.train.epochs}",
                "val acc %": "-" if state.get("val_acc") is None else f"{state['val_acc']:.2f}",
                "val AUROC %": "-"
                if state.get("val_auroc") is None
                else f"{state['val_auroc']:.2f}",
                "last update": f"{age / 60:.1f} min ago",
            }
        rows.append(row)
    return rows
