import pytest

from leaveout import ConfigError
from leaveout.config import (
    RunConfig,
    differences,
    list_presets,
    load_preset,
    parse_override,
    read_toml,
    resolve,
)


def test_every_shipped_preset_loads():
    names = list_presets()
    for required in (
        "paper-densenet-cifar10",
        "paper-wrn-cifar10",
        "paper-densenet-cifar100",
        "paper-wrn-cifar100",
        "cpu-cifar10",
        "digits",
    ):
        assert required in names
    for name in names:
        load_preset(name)


@pytest.mark.parametrize("name", ["paper-densenet-cifar10", "paper-wrn-cifar100"])
def test_paper_presets_hold_the_published_recipe(name):
    cfg = load_preset(name)
    t, o = cfg.train, cfg.optim
    assert (t.k, t.margin, t.beta, t.epochs, t.batch_size, t.ood_batch_size) == (
        5,
        0.4,
        0.2,
        100,
        100,
        100,
    )
    assert (o.lr, o.momentum, o.weight_decay, o.schedule, o.lr_floor) == (
        0.1,
        0.9,
        5e-4,
        "linear",
        1e-4,
    )
    assert (cfg.data.padding, cfg.data.hflip, cfg.data.normalization) == (4, True, "cifar")
    if "wrn" in name:
        assert cfg.model.name == "wrn_28_10" and cfg.model.dropout == 0.3
    assert cfg.data.dataset == ("cifar100" if "100" in name else "cifar10")


def test_overrides_are_typed():
    assert parse_override("train.epochs=3") == {"train": {"epochs": 3}}
    assert parse_override("model.name=resnet8") == {"model": {"name": "resnet8"}}
    cfg = resolve("digits", overrides=["train.epochs=3", "optim.lr=1", "data.id_classes=[0, 1, 2]"])
    assert cfg.train.epochs == 3 and cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.data.id_classes == [0, 1, 2]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "unknown setting train.epoch"),
        ("trian.epochs=3", "unknown section"),
        ("train.epochs=three", "train.epochs must be int"),
        ("train.channels_last=1", "true or false"),
        ("train.mode=both", "train.mode must be one of"),
        ("epochs", "section.key=value"),
        ("train.label_smoothing=1.0", "train.label_smoothing must lie in"),
        ("optim.warmup=0.0", "optim.warmup must lie in"),
    ],
)
def test_bad_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve("digits", overrides=[override])


def test_toml_roundtrip_and_differences(tmp_path):
    cfg = resolve("cpu-cifar10", overrides=["model.dropout=0.1"])
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml())
    again = RunConfig.from_dict(read_toml(path)).validate()
    assert again == cfg
    other = resolve("cpu-cifar10", overrides=["train.epochs=1", "optim.nesterov=false"])
    assert sorted(differences(cfg, other)) == [
        "model.dropout: 0.1 -> None",
        "optim.nesterov: True -> False",
        f"train.epochs: {cfg.train.epochs} -> 1",
    ]


def test_config_file_is_applied_over_the_preset(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[train]\nepochs = 2\n[model]\nname = 'resnet20'\n")
    cfg = resolve("cpu-cifar10", path)
    assert cfg.train.epochs == 2 and cfg.model.name == "resnet20" and cfg.train.k == 5
    path.write_text("[train\n")
    with pytest.raises(ConfigError, match=r"mine\.toml"):
        resolve("cpu-cifar10", path)
