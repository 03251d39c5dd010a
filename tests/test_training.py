import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from leaveout import ConfigError, CorruptFileError, ShapeError, TrainingDivergedError
from leaveout import training as tr
from leaveout.config import OptimSettings, resolve
from leaveout.data import Normalization, load_run_sets
from leaveout.files import read_safetensors
from leaveout.losses import entropy
from leaveout.models import create_model, load_state
from leaveout.partitions import LeaveOutPartition
from leaveout.rundir import RunDir

from .helpers import digits_train_command


def digits_config(*overrides: str):
    return resolve("digits", overrides=list(overrides))


@pytest.fixture(scope="module")
def two_epoch_run(digits_run):
    return digits_run


def _entropy_gap(model, data, norm):
    h_id = entropy(tr.predict_logits(model, data.val_images, norm, 512)).mean().item()
    h_out = entropy(tr.predict_logits(model, data.val_out_images, norm, 512)).mean().item()
    return h_out - h_id


def test_two_epochs_on_digits_learn_classes_and_the_entropy_margin(two_epoch_run):
    cfg, run_dir, summaries = two_epoch_run
    parts = load_run_sets(cfg.data, cfg.train.seed)
    partition = LeaveOutPartition.load(run_dir / "partition.json")
    norm = Normalization.named(cfg.data.normalization, parts["train"].images)
    assert len(summaries) == partition.k == 4
    for member, summary in enumerate(summaries):
        data = tr.member_data(parts, partition, member, torch.device("cpu"))
        chance = 1.0 / data.num_classes
        assert summary["status"] == "done" and summary["val_acc"] > 4 * chance
        untrained = tr.build_member_model(cfg, data.num_classes, member)
        assert _entropy_gap(untrained, data, norm) < cfg.train.margin / 2
        trained = tr.build_member_model(cfg, data.num_classes, member)
        load_state(trained, RunDir(run_dir).read_weights(member, "last"), "last")
        assert _entropy_gap(trained, data, norm) >= cfg.train.margin / 2


def test_members_start_from_different_initialisations():
    cfg = digits_config()
    a = tr.build_member_model(cfg, 6, 0).state_dict()
    b = tr.build_member_model(cfg, 6, 1).state_dict()
    again = tr.build_member_model(cfg, 6, 0).state_dict()
    key = next(k for k in a if k.endswith("weight"))
    assert not torch.equal(a[key], b[key]) and torch.equal(a[key], again[key])


def test_airnet_whitening_is_set_from_the_member_images_and_stays_frozen(tmp_path):
    cfg = digits_config('model.name="airnet_small"', "train.epochs=1", "train.k=2")
    tr.train(cfg, tmp_path / "run", device="cpu", member=0, progress=False)
    parts = load_run_sets(cfg.data, cfg.train.seed)
    partition = LeaveOutPartition.load(tmp_path / "run" / "partition.json")
    data = tr.member_data(parts, partition, 0, torch.device("cpu"))
    norm = Normalization.named(cfg.data.normalization, parts["train"].images)
    fresh = tr.build_member_model(cfg, data.num_classes, 0, data.train_images, norm)
    saved = RunDir(tmp_path / "run").read_weights(0, "last")["whiten.weight"]
    assert torch.equal(saved, fresh.whiten.weight)  # from the data, and not moved by training
    assert not torch.equal(saved, tr.build_member_model(cfg, data.num_classes, 0).whiten.weight)
    bias = RunDir(tmp_path / "run").read_weights(0, "last")["whiten.bias"]
    assert not torch.equal(bias, fresh.whiten.bias)  # the bias learns


def test_a_whitening_bias_frozen_from_the_first_epoch_keeps_its_initial_value(tmp_path):
    cfg = digits_config(
        'model.name="airnet_small"', "train.epochs=1", "train.k=2", "train.whiten_bias_epochs=0"
    )
    tr.train(cfg, tmp_path / "run", device="cpu", member=0, progress=False)
    saved = RunDir(tmp_path / "run").read_weights(0, "last")
    classes = saved["classifier.weight"].shape[0]
    fresh = tr.build_member_model(cfg, classes, 0)  # the bias does not depend on the images
    assert torch.equal(saved["whiten.bias"], fresh.whiten.bias)
    assert not torch.equal(saved["classifier.weight"], fresh.classifier.weight)


def test_the_whitening_bias_learns_in_the_first_epochs_only():
    cfg = digits_config('model.name="airnet_small"', "train.whiten_bias_epochs=2")
    model = tr.build_member_model(cfg, 4, 0)
    learning = []
    for epoch in range(4):
        tr.set_whitening_bias(model, cfg, epoch)
        learning.append(model.whiten.bias.requires_grad)
    assert learning == [True, True, False, False]
    assert not model.whiten.weight.requires_grad


def test_lookahead_moves_slow_and_live_weights_by_the_ramped_decay():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    lookahead = tr.Lookahead(model, decay=0.9, every=5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    lookahead.after_step(model, step=2, total_steps=10, epoch_end=False)  # not due
    assert model.weight.item() == 1.0
    lookahead.after_step(model, step=4, total_steps=10, epoch_end=False)  # 5th step: due
    decay = 0.9**5 * (5 / 10) ** 3  # 0.0738...: early in training the slow weights follow
    assert model.weight.item() == pytest.approx(1 - decay, rel=1e-6)
    with torch.no_grad():
        model.weight.fill_(2.0)
    lookahead.after_step(model, step=6, total_steps=10, epoch_end=True)  # an epoch's end syncs
    late = 0.9**5 * (7 / 10) ** 3
    assert model.weight.item() == pytest.approx((1 - decay) * late + 2.0 * (1 - late), rel=1e-6)
    assert lookahead.slow["weight"].item() == model.weight.item()


def test_lookahead_changes_training_and_an_interrupted_run_resumes_bit_identically(
    tmp_path, monkeypatch
):
    cfg = digits_config("train.epochs=2", "train.k=2", "train.lookahead=0.95")
    tr.train(cfg, tmp_path / "whole", device="cpu", member=0, progress=False)
    tr.train(
        digits_config("train.epochs=2", "train.k=2"),
        tmp_path / "plain",
        device="cpu",
        member=0,
        progress=False,
    )
    real_step, calls = tr.train_step, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 40:  # in epoch 2 (27 steps per epoch)
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(tr, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tr.train(cfg, tmp_path / "resumed", device="cpu", member=0, progress=False)
    monkeypatch.setattr(tr, "train_step", real_step)
    tr.train(cfg, tmp_path / "resumed", device="cpu", member=0, progress=False)
    whole, resumed, plain = (
        read_safetensors(RunDir(tmp_path / name).weights_path(0, "last"))[0]
        for name in ("whole", "resumed", "plain")
    )
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not torch.equal(whole["classifier.weight"], plain["classifier.weight"])


def test_member_option_and_force_with_more_epochs(tmp_path):
    run_dir = tmp_path / "run"
    one = digits_config("train.epochs=1", "train.k=2")
    tr.train(one, run_dir, device="cpu", member=0, progress=False)
    run = RunDir(run_dir)
    assert not run.member_dir(1).exists()  # --member trains that member alone
    state = run.read_state(0)
    assert state["status"] == "done" and state["epochs_done"] == 1
    two = digits_config("train.epochs=2", "train.k=2")
    with pytest.raises(ConfigError, match="train.epochs: 1 -> 2"):
        tr.train(two, run_dir, device="cpu", member=0, progress=False)
    (summary,) = tr.train(two, run_dir, device="cpu", member=0, force=True, progress=False)
    assert summary["epochs_done"] == 2
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    assert "epochs = 2" in (run_dir / "config.toml").read_text()


def test_standard_mode_trains_one_classifier_on_all_classes(tmp_path):
    cfg = digits_config('train.mode="standard"', "train.epochs=1")
    (summary,) = tr.train(cfg, tmp_path / "std", device="cpu", progress=False)
    assert summary["val_auroc"] is None and summary["val_acc"] > 0.5
    assert not (tmp_path / "std" / "partition.json").exists()
    weights = RunDir(tmp_path / "std").read_weights(0)
    assert weights["classifier.weight"].shape[0] == 8


def test_nan_loss_stops_with_member_epoch_step_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    cfg = digits_config("train.epochs=3", "train.k=2")
    run_dir = tmp_path / "run"
    real_step, calls = tr.train_step, {"n": 0}

    def poisoned(*args, **kwargs):
        result = real_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == steps_per_epoch + 3:  # epoch 2, step 3
            result.loss = torch.tensor(float("nan"))
        return result

    parts = load_run_sets(cfg.data, cfg.train.seed)
    data = tr.member_data(parts, LeaveOutPartition(8, 2, 3), 0, torch.device("cpu"))
    norm = Normalization.named(cfg.data.normalization, parts["train"].images)
    steps_per_epoch = len(tr.make_stream(cfg, data, norm, 0))
    monkeypatch.setattr(tr, "train_step", poisoned)
    with pytest.raises(TrainingDivergedError, match="member 0.*epoch 2, step 3"):
        tr.train(cfg, run_dir, device="cpu", progress=False)
    _, progress = RunDir(run_dir).read_checkpoint(0)
    assert progress["epoch"] == 1
    state = RunDir(run_dir).read_state(0)
    assert state["status"] == "failed" and "epoch 2, step 3" in state["error"]


def test_loading_weights_into_another_architecture_names_the_file(two_epoch_run):
    _, run_dir, _ = two_epoch_run
    run = RunDir(run_dir)
    path, tensors = run.weights_path(0), run.read_weights(0)
    with pytest.raises(ShapeError, match=r"best\.safetensors does not fit the network CifarResNet"):
        load_state(create_model("resnet8", 6), tensors, path)
    with pytest.raises(ShapeError, match="shape"):
        load_state(create_model("digits_cnn", 9), tensors, path)


def test_truncated_weights_are_a_clear_error(two_epoch_run, tmp_path):
    _, run_dir, _ = two_epoch_run
    data = RunDir(run_dir).weights_path(0).read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"broken\.safetensors"):
        read_safetensors(broken)


def test_learning_rate_schedules():
    o = OptimSettings(lr=0.1, lr_floor=1e-4, schedule="linear")
    assert tr.learning_rate(o, 0, 100, 10) == pytest.approx(0.1)
    assert tr.learning_rate(o, 50, 100, 10) == pytest.approx((0.1 + 1e-4) / 2)
    assert tr.learning_rate(o, 100, 100, 10) == pytest.approx(1e-4)
    o.schedule = "cosine"
    assert tr.learning_rate(o, 50, 100, 10) == pytest.approx((0.1 + 1e-4) / 2)
    o.schedule, o.milestones = "step", [5, 8]
    lrs = [tr.learning_rate(o, s, 100, 10) for s in (0, 49, 50, 79, 80)]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_triangular_schedule_rises_to_the_peak_then_falls_to_the_floor():
    o = OptimSettings(lr=0.2, lr_floor=0.01, schedule="triangular", warmup=0.25)
    lrs = [tr.learning_rate(o, s, 100, 10) for s in (0, 10, 25, 50, 100)]
    # 0.01 + 0.19 * 10/25; the peak at 25%; halfway down at 62.5% of the steps
    assert lrs == pytest.approx([0.01, 0.086, 0.2, 0.2 - 0.19 / 3, 0.01])


def _weights(run_dir: Path, member: int) -> dict[str, torch.Tensor]:
    return RunDir(run_dir).read_weights(member, "last")


@pytest.mark.slow
def test_sigkill_and_rerun_gives_bit_identical_weights(tmp_path):
    command = digits_train_command("train.epochs=4")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    subprocess.run([*command, "--out", str(tmp_path / "whole")], check=True, env=env)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*command, "--out", str(killed)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(RunDir(killed).read_metrics()) < 6:  # mid member 1
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    states = [json.loads(p.read_text())["status"] for p in killed.glob("members/*/state.json")]
    assert states.count("done") < 4, "the run finished before it could be killed"
    subprocess.run([*command, "--out", str(killed)], check=True, env=env)
    for member in range(4):
        a, b = _weights(tmp_path / "whole", member), _weights(killed, member)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"member {member} differs"
    assert np.isfinite([r["val_acc"] for r in RunDir(killed).read_metrics()]).all()


def test_training_on_an_image_folder(tmp_path):
    from .helpers import smooth_images, write_image_files

    for c in range(3):
        images = smooth_images(24, size=20)
        images[:, :, :, c] = 255  # a colour per class
        write_image_files(tmp_path / "data" / f"class_{c}", images)
    cfg = resolve(
        "digits",
        overrides=[
            f'data.dataset="{tmp_path / "data"}"',
            "data.id_classes=[0, 1, 2]",
            "train.k=3",
            "train.epochs=1",
        ],
    )
    (summary, *_) = tr.train(cfg, tmp_path / "run", device="cpu", progress=False)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["classes"] == ["class_0", "class_1", "class_2"] and info["image_size"] == [32, 32]
    assert summary["status"] == "done"
    flat = tmp_path / "flat"
    write_image_files(flat, smooth_images(4))
    with pytest.raises(ConfigError, match="no labels"):
        tr.train(
            resolve("digits", overrides=[f'data.dataset="{flat}"']),
            tmp_path / "r2",
            device="cpu",
            progress=False,
        )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('model.name="resnet_9000"', "unknown model"),
        ("train.k=20", "k must be in"),
        ('train.amp="fp16"', "fp16.*CUDA"),
        ("model.dropout=0.3", "digits_cnn.*no setting 'dropout'"),
        ("data.test_shift=-1", "data.test_shift must be 0"),
        ("train.whiten_bias_epochs=-2", "whiten_bias_epochs must be -1"),
        ("train.whiten_bias_epochs=2", "digits_cnn has no whitening layer"),
        (
            ("model.name='airnet_learned_stem'", "train.whiten_bias_epochs=2"),
            "airnet_learned_stem has no whitening layer",
        ),
        ("train.lookahead=1.0", "lookahead must lie in"),
        ("train.lookahead_every=0", "lookahead_every must be at least 1"),
    ],
)
def test_a_rejected_config_writes_nothing(tmp_path, override, message):
    import warnings

    run_dir = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no GradScaler warning before the real error
        with pytest.raises(ConfigError, match=message):
            overrides = override if isinstance(override, tuple) else (override,)
            tr.train(digits_config(*overrides), run_dir, device="cpu", progress=False)
    assert not run_dir.exists()
    with pytest.raises(ConfigError, match="--member must be in 0..3"):
        tr.train(digits_config("train.epochs=1"), run_dir, device="cpu", member=7, progress=False)
    assert not run_dir.exists()


def test_missing_weights_are_restored_or_the_member_retrained(tmp_path, capsys):
    run_dir = tmp_path / "run"
    cfg = digits_config("train.epochs=2", "train.k=2")
    tr.train(cfg, run_dir, device="cpu", progress=False)
    run = RunDir(run_dir)
    last = run.read_weights(0, "last")
    best_epoch = run.read_state(0)["best_epoch"]
    run.weights_path(0, "last").unlink()
    assert "last.safetensors missing" in run.status()[0]["status"]
    tr.train(cfg, run_dir, device="cpu", progress=True)
    assert "restored last" in capsys.readouterr().out
    assert all(torch.equal(last[k], v) for k, v in run.read_weights(0, "last").items())
    # best weights of an earlier epoch cannot come from the checkpoint: the member is retrained
    best = run.read_weights(1, "best")
    run.weights_path(1, "best").unlink()
    state = run.read_state(1)
    run.state_path(1).write_text(json.dumps(state | {"best_epoch": 1}))
    tr.train(cfg, run_dir, device="cpu", progress=True)
    out = capsys.readouterr().out
    assert "training it again" in out and "member 1" in out
    again = run.read_weights(1, "best")
    if run.read_state(1)["best_epoch"] == state["best_epoch"]:
        assert all(torch.equal(best[k], v) for k, v in again.items())  # deterministic on the CPU
    assert best_epoch in (1, 2) and run.status()[1]["status"] == "done"


def test_an_interrupted_member_is_stopped_and_resumes_with_a_message(tmp_path, monkeypatch, capsys):
    cfg = digits_config("train.epochs=2", "train.k=2")
    run_dir = tmp_path / "run"
    real_step, calls = tr.train_step, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 40:  # in epoch 2 of member 0 (27 steps per epoch)
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(tr, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tr.train(cfg, run_dir, device="cpu", progress=False)
    run = RunDir(run_dir)
    assert run.read_state(0)["status"] == "stopped"
    assert run.status()[0]["status"].startswith("stopped")
    monkeypatch.setattr(tr, "train_step", real_step)
    tr.train(cfg, run_dir, device="cpu", progress=True)
    assert "resuming member 0 at epoch 2" in capsys.readouterr().out


def weights_of(run_dir: Path, members: int) -> list[dict[str, torch.Tensor]]:
    return [read_safetensors(RunDir(run_dir).weights_path(m, "last"))[0] for m in range(members)]


@pytest.mark.slow
def test_a_packed_set_trains_and_evaluates_exactly_as_in_memory_at_64_pixels(tmp_path):
    from leaveout.data import pack_dataset
    from leaveout.evaluation import evaluate

    packed = pack_dataset("digits", tmp_path / "digits64", size=(64, 64), progress=False)
    settings = ["train.epochs=1", "train.k=2", "data.image_size=64"]
    results = []
    for name, dataset in (("memory", "digits"), ("packed", str(packed))):
        cfg = resolve("digits", overrides=[*settings, f'data.dataset="{dataset}"'])
        tr.train(cfg, tmp_path / name, device="cpu", progress=False)
        assert RunDir(tmp_path / name).read_info().image_size == (64, 64)
        results.append(
            evaluate(tmp_path / name, ["uniform"], method="msp", progress=False, plots=False)
        )
    for a, b in zip(weights_of(tmp_path / "memory", 2), weights_of(tmp_path / "packed", 2)):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert results[0]["rows"] == results[1]["rows"]
    assert results[0]["id_accuracy"] == results[1]["id_accuracy"]


def test_members_trained_side_by_side_equal_members_trained_one_by_one_on_one_thread(tmp_path):
    ensemble = digits_config("train.epochs=1", "train.k=2")
    standard = digits_config("train.epochs=1", 'train.mode="standard"')
    runs = [(ensemble, tmp_path / "ens"), (standard, tmp_path / "std")]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # one thread for each of the two workers
        summaries = tr.train_runs(runs, device="cpu", workers=2, progress=False)
        torch.set_num_threads(1)
        tr.train(ensemble, tmp_path / "alone", device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert [[s["member"] for s in run] for run in summaries] == [[0, 1], [0]]
    assert summaries[0][1]["left_out"] != "-" and summaries[1][0]["left_out"] == "-"
    for member in range(2):
        a, b = _weights(tmp_path / "ens", member), _weights(tmp_path / "alone", member)
        assert all(torch.equal(a[k], b[k]) for k in a), f"member {member} differs"
    assert RunDir(tmp_path / "std").read_state(0)["status"] == "done"
    with pytest.raises(ConfigError, match="workers must be at least 1"):
        tr.train(ensemble, tmp_path / "none", device="cpu", workers=0)
