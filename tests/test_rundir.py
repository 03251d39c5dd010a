import json
import shutil

import pytest
import torch

from leaveout import ConfigError, CorruptFileError, RunNotFoundError
from leaveout.config import resolve
from leaveout.rundir import RunDir


@pytest.fixture
def run(digits_run, tmp_path):
    _, run_dir, _ = digits_run
    shutil.copytree(run_dir, tmp_path / "run")
    return RunDir(tmp_path / "run")


def test_the_layout(run):
    assert run.exists() and run.require() is run
    info = run.read_info()
    assert info.members == 4 and info.classes == tuple(str(d) for d in range(8))
    assert info.image_size == (16, 16) and run.read_partition().k == 4
    assert run.read_config().model.name == "digits_cnn"
    for m in range(4):
        for path in (
            run.weights_path(m, "best"),
            run.weights_path(m, "last"),
            run.checkpoint_path(m),
        ):
            assert path.is_file()
        assert run.read_state(m)["status"] == "done"
    assert [(r["member"], r["epoch"]) for r in run.read_metrics()] == [
        (m, e) for m in range(4) for e in (1, 2)
    ]


def test_weights_round_trip_and_the_weights_id_follows_the_files(run):
    first = run.weights_id()
    tensors = run.read_weights(0)
    tensors["classifier.bias"] = tensors["classifier.bias"] + 0.5
    run.write_weights(0, "best", tensors, {"epoch": "2"})
    assert torch.equal(run.read_weights(0)["classifier.bias"], tensors["classifier.bias"])
    assert run.weights_id() != first


def test_checkpoints_round_trip_and_a_damaged_one_is_named(run):
    tensors, progress = run.read_checkpoint(0)
    assert progress["epoch"] == 2 and "rng.torch" in tensors
    run.write_checkpoint(1, {"x": torch.zeros(2)}, {"epoch": 1, "history": []})
    assert run.read_checkpoint(1)[1] == {"epoch": 1, "history": []}
    path = run.checkpoint_path(1)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptFileError, match=r"members/1/checkpoint\.safetensors"):
        run.read_checkpoint(1)
    run.remove_checkpoint(1)
    assert run.read_checkpoint(1) is None


def test_status_names_missing_weights_and_stopped_members(run):
    run.weights_path(2, "best").unlink()
    state = run.read_state(3) | {"status": "training", "pid": 2**22 + 17}
    run.state_path(3).write_text(json.dumps(state))
    rows = {r["member"]: r for r in run.status()}
    assert rows[0]["status"] == "done" and rows[0]["epoch"] == "2/2"
    assert "best.safetensors missing" in rows[2]["status"]
    assert rows[3]["status"].startswith("stopped")
    assert float(rows[0]["val acc %"]) > 50  # stored as a fraction, shown in percent


def test_a_differing_config_is_refused_with_the_keys_listed(run):
    other = resolve("digits", overrides=["train.epochs=3", "optim.lr=0.2"])
    with pytest.raises(ConfigError) as err:
        run.start(other)
    assert "train.epochs: 2 -> 3" in str(err.value) and "optim.lr: 0.05 -> 0.2" in str(err.value)
    run.start(resolve("digits", overrides=["train.epochs=2"]))  # the same settings are fine


def test_missing_and_damaged_files_are_named(run, tmp_path):
    with pytest.raises(RunNotFoundError, match="training run"):
        RunDir(tmp_path / "none").require()
    run.info_path.write_text("{not json")
    with pytest.raises(CorruptFileError, match=r"run\.json"):
        run.read_info()
    run.info_path.write_text(json.dumps({"mode": "leaveout"}))
    with pytest.raises(CorruptFileError, match="not a run description"):
        run.read_info()
