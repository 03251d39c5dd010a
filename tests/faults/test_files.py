"""Damaged or foreign files: clear errors naming the file; untrusted input never runs code."""

import json
import pickle
import shutil

import pytest

from leaveout import ConfigError, CorruptFileError, ShapeError
from leaveout import training as tr
from leaveout.config import RunConfig, read_toml
from leaveout.ensemble import LeaveOutEnsemble
from leaveout.rundir import RunDir


@pytest.fixture
def run(digits_run, tmp_path):
    _, run_dir, _ = digits_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.mark.parametrize("damage", ["truncate", "flip-header", "garbage", "empty"])
def test_damaged_weights(run, damage):
    path = RunDir(run).member_dir(1) / "best.safetensors"
    data = path.read_bytes()
    damaged = {
        "truncate": data[: len(data) - 100],
        "flip-header": data[:8] + b"#" + data[9:],
        "garbage": b"\x00\x01garbage" * 50,
        "empty": b"",
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(CorruptFileError, match=r"members/1/best\.safetensors"):
        LeaveOutEnsemble.load(run)


def test_a_pickle_offered_as_weights_or_checkpoint_never_runs(run, tmp_path):
    marker = tmp_path / "payload_ran"
    evil = pickle.dumps({"state_dict": Payload(marker)})
    (RunDir(run).member_dir(0) / "best.safetensors").write_bytes(evil)
    with pytest.raises(CorruptFileError, match="best.safetensors"):
        LeaveOutEnsemble.load(run)
    RunDir(run).checkpoint_path(0).write_bytes(evil)
    with pytest.raises(CorruptFileError, match="checkpoint.safetensors"):
        RunDir(run).read_checkpoint(0)
    assert not marker.exists()


def test_weights_in_place_of_a_checkpoint_and_a_damaged_progress_record(run):
    folder = RunDir(run).member_dir(0)
    shutil.copy(folder / "best.safetensors", folder / "checkpoint.safetensors")
    with pytest.raises(CorruptFileError, match="not a leaveout checkpoint"):
        RunDir(run).read_checkpoint(0)
    from leaveout.files import write_safetensors

    tensors, _ = RunDir(run).read_checkpoint(1)
    meta = {"format": "leaveout-checkpoint-1", "progress": '{"epoch": "two"'}
    write_safetensors(RunDir(run).checkpoint_path(1), tensors, meta)
    with pytest.raises(CorruptFileError, match="progress record is damaged"):
        RunDir(run).read_checkpoint(1)
    state = RunDir(run).read_state(1) | {"status": "training"}
    RunDir(run).state_path(1).write_text(json.dumps(state))
    cfg = RunConfig.from_dict(read_toml(run / "config.toml"))
    with pytest.raises(CorruptFileError, match=r"members/1/checkpoint\.safetensors"):
        tr.train(cfg, run, device="cpu", progress=False)


def test_run_json_that_does_not_match_the_partition(run):
    info = json.loads((run / "run.json").read_text())
    info["classes"] = info["classes"][:6]
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(ShapeError, match="partition.json"):
        LeaveOutEnsemble.load(run)


def test_another_architecture_or_class_count(run):
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace('name = "digits_cnn"', 'name = "resnet8"'))
    with pytest.raises(ShapeError, match=r"members/0/best\.safetensors does not fit"):
        LeaveOutEnsemble.load(run)
    (run / "config.toml").write_text(text)
    partition = json.loads((run / "partition.json").read_text())
    partition["groups"] = [[0], [1, 2], [3, 4, 5], [6, 7]]  # member sizes change
    (run / "partition.json").write_text(json.dumps(partition))
    with pytest.raises(ShapeError, match="shape"):
        LeaveOutEnsemble.load(run)


def test_training_on_data_with_another_class_count_is_refused(run):
    from leaveout.config import resolve

    other = resolve("digits", overrides=["train.epochs=2", "data.id_classes=[0, 1, 2, 3, 4, 5]"])
    with pytest.raises(ConfigError, match="data.id_classes"):
        tr.train(other, run, device="cpu", progress=False)
    with pytest.raises(ConfigError, match="partition.json is for 8 classes; the data has 6"):
        tr.train(other, run, device="cpu", force=True, progress=False)
