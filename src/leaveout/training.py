"""Training the leave-out ensemble (or one standard classifier), resumably.

`train` validates everything, writes the run's shared files (`RunDir`: config, partition,
run.json), then trains each member with `train_member`: a plain loop over epochs and steps whose
state fits in a small dataclass (`Progress`). After every epoch one checkpoint file holds the
weights, the optimiser's momentum buffers, the RNG state and the progress; re-running the same
command continues from it and, on the CPU, ends with bit-identical weights. `train_runs` trains
the members of one or more runs side by side in worker processes (`workers.run_in_workers`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .config import OptimSettings, RunConfig
from .data.batches import BatchStream, CycledStream, PairedStream, Rows, row_slice, rows_at
from .data.imageset import ImageSet
from .data.npyfile import PackedImages
from .data.splits import load_run_sets
from .data.transforms import Augment, Normalization, derive_seed, scaled_padding
from .devices import autocast, check_amp, keep_freed_memory, resolve_device
from .distributed import ALONE, World, barrier, check_batch, sum_across
from .errors import ConfigError, CorruptFileError, TrainingDivergedError
from .losses import entropy, margin_entropy_loss
from .metrics import auroc
from .models import check_model, create_model, load_state
from .partitions import LeaveOutPartition
from .reports import text_table
from .rundir import WEIGHTS, RunDir, RunInfo
from .workers import run_in_workers, worker_slot

# --- what one member trains on ---------------------------------------------------------------------


@dataclass
class MemberData:
    """One member's images and member labels: uint8 images as tensors on the training device,
    or as views of a packed set read batch by batch (`data.batches.Rows`); labels as tensors."""

    train_images: Rows
    train_labels: torch.Tensor
    out_images: Rows | None
    val_images: Rows
    val_labels: torch.Tensor
    val_out_images: Rows | None
    num_classes: int


def member_data(
    sets: dict[str, ImageSet],
    partition: LeaveOutPartition | None,
    member: int,
    device: torch.device,
) -> MemberData:
    def rows(data: ImageSet, chosen: np.ndarray) -> Rows:
        if isinstance(data.images, PackedImages):
            return data.images.take(chosen)  # nothing read until a batch needs it
        return torch.from_numpy(data.images[chosen]).to(device)

    def parts(data: ImageSet) -> tuple[Rows, torch.Tensor, Rows | None]:
        assert data.labels is not None
        everything = np.arange(len(data))
        if partition is None:
            return rows(data, everything), torch.from_numpy(data.labels).to(device), None
        labels = partition.to_member_labels(member, data.labels)
        inside = labels >= 0
        return (
            rows(data, everything[inside]),
            torch.from_numpy(labels[inside]).to(device),
            rows(data, everything[~inside]),
        )

    train_x, train_y, out_x = parts(sets["train"])
    val_x, val_y, val_out = parts(sets["val"])
    classes = sets["train"].num_classes
    num = classes if partition is None else partition.member_num_classes(member)
    return MemberData(train_x, train_y, out_x, val_x, val_y, val_out, num)


# --- one step --------------------------------------------------------------------------------------


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
            loss = F.cross_entropy(id_logits.float(), y, label_smoothing=t.label_smoothing)
        else:
            if t.joint_forward:
                logits = model(torch.cat([x, x_out]))
                id_logits, out_logits = logits[: len(x)], logits[len(x) :]
            else:
                id_logits, out_logits = model(x), model(x_out)
            loss = margin_entropy_loss(
                id_logits, y, out_logits, t.beta, t.margin, t.label_smoothing
            )
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
    if optim.schedule == "triangular":
        rise = progress / optim.warmup if progress < optim.warmup else None
        if rise is not None:
            return optim.lr_floor + (optim.lr - optim.lr_floor) * rise
        fall = (progress - optim.warmup) / (1 - optim.warmup)
        return optim.lr + (optim.lr_floor - optim.lr) * fall
    if optim.schedule == "cosine":
        return optim.lr_floor + 0.5 * (optim.lr - optim.lr_floor) * (
            1 + math.cos(math.pi * progress)
        )
    if optim.schedule == "step":
        epoch = step // steps_per_epoch
        return optim.lr * optim.gamma ** sum(epoch >= m for m in optim.milestones)
    return optim.lr


# --- validation after every epoch ---------------------------------------------------------------------


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: Rows, norm: Normalization, batch_size: int, amp: str = "none"
) -> torch.Tensor:
    """Logits (N, C) float32 of uint8 images (N, H, W, 3), in eval mode, in batches."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        batch = row_slice(images, start, start + batch_size, device)
        with autocast(device, amp):
            out.append(model(norm(batch)).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def validate(
    model: nn.Module, data: MemberData, norm: Normalization, cfg: RunConfig
) -> dict[str, float | None]:
    """ID validation accuracy and the max-softmax AUROC of ID vs left-out validation images
    (fractions), and the mean entropies of both (nats)."""
    bs, amp = cfg.train.eval_batch_size, cfg.train.amp
    logits = predict_logits(model, data.val_images, norm, bs, amp)
    out: dict[str, float | None] = {
        "val_acc": (logits.argmax(1) == data.val_labels).float().mean().item(),
        "val_auroc": None,
        "val_entropy_id": entropy(logits).mean().item(),
        "val_entropy_out": None,
    }
    if data.val_out_images is not None and len(data.val_out_images):
        out_logits = predict_logits(model, data.val_out_images, norm, bs, amp)
        msp_id = logits.softmax(1).amax(1).cpu().numpy()
        msp_out = out_logits.softmax(1).amax(1).cpu().numpy()
        out["val_auroc"] = auroc(msp_id, msp_out)
        out["val_entropy_out"] = entropy(out_logits).mean().item()
    return out


# --- a member's network, optimiser, batches and checkpoint ----------------------------------------------

INIT_IMAGES = 5000


def build_member_model(
    cfg: RunConfig,
    num_classes: int,
    member: int,
    images: Rows | None = None,
    norm: Normalization | None = None,
) -> nn.Module:
    """The member's network, initialised from a seed derived from (train.seed, member).

    A network with an `init_from_data` method (e.g. the airnet's whitening) gets it called on up to
    INIT_IMAGES of the member's uint8 training images, taken at an even stride.
    """
    torch.manual_seed(derive_seed(cfg.train.seed, member, 7))
    model = create_model(cfg.model.name, num_classes, **cfg.model.kwargs())
    init = getattr(model, "init_from_data", None)
    if init is not None and images is not None:
        step = max(1, len(images) // INIT_IMAGES)
        chosen = torch.arange(0, len(images), step)[:INIT_IMAGES]
        init((norm or Normalization())(rows_at(images, chosen, "cpu")))
    return model


def check_whitening_bias(cfg: RunConfig, world: World) -> None:
    """train.whiten_bias_epochs needs a network with a whitening layer (airnet), and one process:
    DistributedDataParallel cannot follow a parameter that stops learning."""
    if cfg.train.whiten_bias_epochs < 0:
        return
    with torch.random.fork_rng():
        probe = create_model(cfg.model.name, 2, **cfg.model.kwargs())
    if not getattr(probe, "whitened", False):
        raise ConfigError(
            f"train.whiten_bias_epochs: {cfg.model.name} has no whitening layer (airnet has one); "
            "leave it at -1"
        )
    if world.size > 1:
        raise ConfigError("train.whiten_bias_epochs cannot be combined with torchrun")


def set_whitening_bias(model: nn.Module, cfg: RunConfig, epoch: int) -> None:
    """airbench's economy: the whitening bias learns in the first train.whiten_bias_epochs only."""
    if cfg.train.whiten_bias_epochs >= 0:
        model.train_whitening_bias(epoch < cfg.train.whiten_bias_epochs)


class Lookahead:
    """airbench's lookahead: every `every` steps the slow weights (a copy of every float tensor of
    the state, BatchNorm statistics included) move toward the live ones, and the live ones jump to
    them. The move's decay ramps up with training as progress cubed, to decay**every at the end;
    an epoch's last step always syncs, so a checkpoint's weights are also the slow ones."""

    def __init__(self, model: nn.Module, decay: float, every: int) -> None:
        self.decay, self.every = decay, every
        self.slow = {k: v.detach().clone() for k, v in slow_tensors(model).items()}

    def after_step(self, model: nn.Module, step: int, total_steps: int, epoch_end: bool) -> None:
        """Sync after global step `step` (0-based) when it is due."""
        if (step + 1) % self.every and not epoch_end:
            return
        decay = self.decay**self.every * ((step + 1) / total_steps) ** 3
        with torch.no_grad():
            for name, live in slow_tensors(model).items():
                self.slow[name].lerp_(live, 1 - decay)
                live.copy_(self.slow[name])


def slow_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


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
    side = min(data.train_images.shape[1:3])
    augment = Augment(scaled_padding(cfg.data.padding, side), cfg.data.hflip)
    seed = derive_seed(cfg.train.seed, member)
    device = data.train_labels.device
    workers = cfg.data.loader_workers
    if workers < 0:  # auto: worker processes only feed a GPU; on the CPU they compete with it
        workers = 4 if device.type == "cuda" else 0
    place = {"rank": world.rank, "world_size": world.size, "device": device, "workers": workers}
    ids = BatchStream(
        data.train_images, data.train_labels, cfg.train.batch_size, norm, augment, seed, **place
    )
    if data.out_images is None:
        return ids
    outs = CycledStream(data.out_images, cfg.train.ood_batch_size, norm, augment, seed + 1, **place)
    return PairedStream(ids, outs)


def epoch_batches(
    stream: PairedStream | BatchStream, epoch: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """(x, y, x_out) per step; x_out is None for a standard classifier."""
    if isinstance(stream, PairedStream):
        yield from stream.epoch(epoch)
        return
    for x, y in stream.epoch(epoch):
        assert y is not None
        yield x, y, None


def checkpoint_tensors(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, torch.Tensor]:
    """Weights, momentum buffers and RNG state, flat, for one safetensors file."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, param in enumerate(optimizer.param_groups[0]["params"]):
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"optim.{i}.momentum_buffer"] = buffer
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    return tensors


def restore_checkpoint(
    tensors: dict[str, torch.Tensor],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    source: Path,
) -> None:
    """Put `checkpoint_tensors` back into the model, the optimiser and the RNG."""
    if "rng.torch" not in tensors:
        raise CorruptFileError(f"{source}: a leaveout checkpoint without RNG state")
    load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, source)
    for i, param in enumerate(optimizer.param_groups[0]["params"]):
        key = f"optim.{i}.momentum_buffer"
        if key in tensors:
            optimizer.state[param]["momentum_buffer"] = tensors[key].to(param).clone()
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)


@dataclass
class Progress:
    """What a member has done: epochs finished, one record per epoch, the best one so far."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None  # fp16 loss scaler state

    def add(self, record: dict[str, Any], select: str) -> bool:
        """Append an epoch's record; whether it is the new best (by `select`)."""
        key = {"auroc": "val_auroc", "accuracy": "val_acc"}.get(select)
        better = (
            self.best is None
            or key is None
            or (record[key] is not None and record[key] > self.best[key])
        )
        if better:
            self.best = record
        self.epoch = record["epoch"]
        self.history.append(record)
        return better

    def seconds(self) -> float:
        return sum(r["seconds"] for r in self.history)

    def summary(self, member: int, status: str) -> dict[str, Any]:
        best = self.best or {}
        return {
            "member": member,
            "status": status,
            "epochs_done": self.epoch,
            "best_epoch": best.get("epoch"),
            "val_acc": best.get("val_acc"),
            "val_auroc": best.get("val_auroc"),
            "seconds": self.seconds(),
        }


# --- one member -----------------------------------------------------------------------------------------


@dataclass
class MemberJob:
    """Everything one member's training needs."""

    cfg: RunConfig
    member: int
    data: MemberData
    norm: Normalization
    run: RunDir
    device: torch.device
    world: World = ALONE
    progress: bool = True


def train_member(job: MemberJob) -> dict[str, Any]:
    """Train (or resume, or skip when done) one member; returns its summary."""
    cfg, run, member, world = job.cfg, job.run, job.member, job.world
    if world.main:
        run.clean_member_dir(member)
    done = finished_state(job)
    if done is not None:
        return done
    data = job.data
    model = build_member_model(cfg, data.num_classes, member, data.train_images, job.norm)
    model = model.to(job.device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    scaler = torch.amp.GradScaler("cuda") if cfg.train.amp == "fp16" else None
    progress = resume(job, model, optimizer, scaler)
    lookahead = (
        Lookahead(model, cfg.train.lookahead, cfg.train.lookahead_every)
        if cfg.train.lookahead
        else None
    )
    stepper = data_parallel(model, cfg, world, job.device)
    stream = make_stream(cfg, job.data, job.norm, member, world)
    steps, epochs = len(stream), cfg.train.epochs
    meta = {
        "model": cfg.model.name,
        "num_classes": str(job.data.num_classes),
        "member": str(member),
    }
    bar = progress_bar(job, (epochs - progress.epoch) * steps * cfg.train.batch_size)
    try:
        for epoch in range(progress.epoch, epochs):
            tick, loss_sum, correct, seen = time.time(), 0.0, 0, 0
            model.train()
            set_whitening_bias(model, cfg, epoch)
            for step, (x, y, x_out) in enumerate(epoch_batches(stream, epoch)):
                lr = learning_rate(cfg.optim, epoch * steps + step, epochs * steps, steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                result = train_step(stepper, optimizer, x, y, x_out, cfg, scaler)
                if lookahead is not None:
                    lookahead.after_step(
                        model, epoch * steps + step, epochs * steps, step == steps - 1
                    )
                both = sum_across(torch.stack([result.loss.float(), result.correct.float()]), world)
                loss = both[0].item() / world.size
                check_finite(loss, member, epoch, step, run, progress)
                batch_seen = len(x) * world.size
                loss_sum, correct, seen = (
                    loss_sum + loss * batch_seen,
                    correct + int(both[1]),
                    seen + batch_seen,
                )
                bar.update(batch_seen)
                bar.set_postfix(
                    epoch=f"{epoch + 1}/{epochs}", loss=f"{loss_sum / seen:.3f}", refresh=False
                )
            seconds = time.time() - tick
            record = {
                "member": member,
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": loss_sum / seen,
                "train_acc": correct / seen,
                **validate(model, job.data, job.norm, cfg),
                "seconds": seconds,
                "images_per_s": seen / seconds,
            }
            better = progress.add(record, cfg.train.select)
            progress.scaler = None if scaler is None else scaler.state_dict()
            if world.main:  # every process holds the same weights; one writes them
                save_epoch(run, member, model, optimizer, progress, better, meta)
    except BaseException as exc:
        if world.main:
            stopped = isinstance(exc, KeyboardInterrupt)
            error = None if stopped else f"{type(exc).__name__}: {exc}"
            write_state(run, member, progress, "stopped" if stopped else "failed", error)
        raise
    finally:
        bar.close()
    if world.main:
        run.write_weights(member, "last", model.state_dict(), meta | {"epoch": str(epochs)})
        return write_state(run, member, progress, "done")
    return progress.summary(member, "done")


def finished_state(job: MemberJob) -> dict[str, Any] | None:
    """The member's state when it is done and its weights are all there (restored from the
    checkpoint when they can be); None when it has (more) training to do."""
    run, member = job.run, job.member
    state = run.read_state(member)
    if (
        not state
        or state.get("status") != "done"
        or state.get("epochs_done", 0) < job.cfg.train.epochs
    ):
        return None
    missing = [w for w in WEIGHTS if not run.weights_path(member, w).is_file()]
    if not missing:
        return state
    saved = run.read_checkpoint(member)
    last_is_best = state.get("best_epoch") == state.get("epochs_done")
    if (
        saved is not None
        and saved[1]["epoch"] == state["epochs_done"]
        and (last_is_best or missing == ["last"])
    ):
        weights = {k[6:]: v for k, v in saved[0].items() if k.startswith("model.")}
        meta = {
            "model": job.cfg.model.name,
            "member": str(member),
            "epoch": str(state["epochs_done"]),
        }
        for which in missing:
            run.write_weights(member, which, weights, meta)
        say(job, f"member {member}: restored {', '.join(missing)} weights from the checkpoint")
        return state
    say(job, f"member {member}: {', '.join(missing)} weights missing; training it again")
    run.remove_checkpoint(member)
    return None


def resume(
    job: MemberJob,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> Progress:
    """The member's progress so far, with model, optimiser and RNG restored from its checkpoint."""
    saved = job.run.read_checkpoint(job.member)
    if saved is None:
        return Progress()
    tensors, record = saved
    restore_checkpoint(tensors, model, optimizer, job.run.checkpoint_path(job.member))
    progress = Progress(**{k: record[k] for k in ("epoch", "history", "best") if k in record})
    progress.scaler = record.get("scaler")
    if scaler is not None and progress.scaler:
        scaler.load_state_dict(progress.scaler)
    if progress.epoch < job.cfg.train.epochs:
        say(job, f"resuming member {job.member} at epoch {progress.epoch + 1}")
    return progress


def save_epoch(
    run: RunDir,
    member: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    better: bool,
    meta: dict[str, str],
) -> None:
    run.append_metrics(progress.history[-1])
    if better:
        run.write_weights(member, "best", model.state_dict(), meta | {"epoch": str(progress.epoch)})
    run.write_checkpoint(member, checkpoint_tensors(model, optimizer), asdict(progress))
    write_state(run, member, progress, "training")


def write_state(
    run: RunDir, member: int, progress: Progress, status: str, error: str | None = None
) -> dict[str, Any]:
    state = progress.summary(member, status)
    if error:
        state["error"] = error
    return run.write_state(member, state)


def check_finite(
    loss: float, member: int, epoch: int, step: int, run: RunDir, progress: Progress
) -> None:
    if not math.isfinite(loss):
        raise TrainingDivergedError(
            f"member {member}: the loss is {loss} at epoch {epoch + 1}, step {step + 1}; the last "
            f"good checkpoint ({run.checkpoint_path(member)}, after epoch {progress.epoch}) is "
            "kept. Lower optim.lr or turn off train.amp."
        )


def data_parallel(
    model: nn.Module, cfg: RunConfig, world: World, device: torch.device
) -> nn.Module:
    """The module the training step runs: DistributedDataParallel under torchrun, else `model`."""
    if world.size == 1:
        return model
    if cfg.train.sync_batchnorm:  # CUDA only, checked by `train`
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def progress_bar(job: MemberJob, images: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=images,
        unit="img",
        unit_scale=True,
        desc=f"member {job.member}",
        position=worker_slot(),
        disable=not job.progress or not job.world.main,
        dynamic_ncols=True,
    )


def say(job: MemberJob, text: str) -> None:
    if job.progress and job.world.main:
        print(text, flush=True)


# --- the ensemble -------------------------------------------------------------------------------------


def train(
    cfg: RunConfig,
    run_dir: str | Path,
    data_root: str | Path | None = None,
    device: str | torch.device | None = None,
    member: int | None = None,
    force: bool = False,
    progress: bool = True,
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Train every member (or only `member`) into `run_dir`, resuming what is there; with
    `workers` > 1 the members train side by side in that many processes (`train_runs`).

    Every setting is checked before anything is written. Returns one summary per member.
    """
    if workers != 1 and member is None:  # train_runs refuses workers < 1
        return train_runs([(cfg, run_dir)], data_root, device, workers, force, progress)[0]
    keep_freed_memory()
    cfg = cfg.validate()
    run = RunDir(run_dir)
    device = resolve_device(device)
    check_amp(device, cfg.train.amp)
    check_model(cfg.model.name, **cfg.model.kwargs())
    world = World.from_env()
    check_whitening_bias(cfg, world)
    device = distributed.start(world, device)
    run.check_config(cfg, force)
    sets = load_run_sets(cfg.data, cfg.train.seed, data_root)
    norm = Normalization.named(cfg.data.normalization, sets["train"].images)
    partition = planned_partition(cfg, run, sets["train"].num_classes)
    check_batch(cfg.train.batch_size, world, "train.batch_size")
    check_batch(cfg.train.ood_batch_size, world, "train.ood_batch_size")
    if cfg.train.sync_batchnorm and world.size > 1 and device.type != "cuda":
        raise ConfigError("train.sync_batchnorm needs CUDA devices (PyTorch has no CPU version)")
    count = 1 if partition is None else partition.k
    if member is not None and not 0 <= member < count:
        raise ConfigError(f"--member must be in 0..{count - 1}, got {member}")
    if world.main:  # member jobs sharing the directory create its shared files one at a time
        with run.lock():
            run.start(cfg, force)
            if partition is not None and not run.partition_path.is_file():
                run.write_partition(partition)
            run.write_info(run_info(cfg, sets, norm, count))
    barrier(world)
    summaries = []
    for i in range(count) if member is None else [member]:
        data = member_data(sets, partition, i, device)
        job = MemberJob(cfg, i, data, norm, run, device, world, progress)
        summary = train_member(job)
        names = sets["train"].classes
        summary["left_out"] = (
            "-" if partition is None else ", ".join(names[c] for c in partition.left_out(i))
        )
        summaries.append(summary)
    return summaries


def member_count(cfg: RunConfig) -> int:
    """How many networks a run of these settings trains."""
    return 1 if cfg.train.mode == "standard" else cfg.train.k


def train_runs(
    runs: Sequence[tuple[RunConfig, str | Path]],
    data_root: str | Path | None = None,
    device: str | torch.device | None = None,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
) -> list[list[dict[str, Any]]]:
    """Every member of every (settings, run directory) pair, `workers` members at a time, each in
    its own process with an equal share of the threads; one list of summaries per run.

    A member's weights depend on the number of threads it trained with (float sums run in another
    order), not on which other members trained beside it.
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        return [
            train(cfg, run_dir, data_root, device, force=force, progress=progress)
            for cfg, run_dir in runs
        ]
    if World.from_env().size > 1:
        raise ConfigError("workers > 1 cannot be combined with torchrun's data parallelism")
    for cfg, _ in runs:  # fail here, before any process starts
        cfg.validate()
        check_model(cfg.model.name, **cfg.model.kwargs())
        check_whitening_bias(cfg, World.from_env())
    device = str(resolve_device(device))
    calls, owners = [], []
    for index, (cfg, run_dir) in enumerate(runs):
        for i in range(member_count(cfg)):
            options = {"member": i, "force": force, "progress": progress}
            calls.append((train, (cfg, run_dir, data_root, device), options))
            owners.append(index)
    grouped: list[list[dict[str, Any]]] = [[] for _ in runs]
    for index, summaries in zip(owners, run_in_workers(calls, workers), strict=True):
        grouped[index].extend(summaries)
    return grouped


def planned_partition(cfg: RunConfig, run: RunDir, classes: int) -> LeaveOutPartition | None:
    """The run's saved partition, or the one the settings draw (not written yet)."""
    if cfg.train.mode == "standard":
        return None
    if run.partition_path.is_file():
        partition = LeaveOutPartition.load(run.partition_path)
        if partition.num_classes != classes:
            raise ConfigError(
                f"{run.partition_path} is for {partition.num_classes} classes; the data has {classes}"
            )
        return partition
    return LeaveOutPartition(classes, cfg.train.k, cfg.train.partition_seed)


def run_info(
    cfg: RunConfig, sets: dict[str, ImageSet], norm: Normalization, members: int
) -> RunInfo:
    train_set = sets["train"]
    return RunInfo(
        mode=cfg.train.mode,
        model=cfg.model.name,
        classes=train_set.classes,
        image_size=train_set.image_size,
        normalization=norm,
        members=members,
        sizes={name: len(data) for name, data in sets.items()},
    )


def summary_table(summaries: list[dict[str, Any]]) -> str:
    def percent(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    rows = [
        {
            "member": s["member"],
            "left out": s.get("left_out", "-"),
            "epochs": s["epochs_done"],
            "best epoch": s["best_epoch"],
            "val acc %": percent(s["val_acc"]),
            "val AUROC %": percent(s["val_auroc"]),
            "minutes": s["seconds"] / 60,
        }
        for s in summaries
    ]
    return text_table(rows, list(rows[0]) if rows else [])
