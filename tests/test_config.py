import pytest

from anpyc.config import RunConfig
from anpyc.errors import ConfigError


def test_defaults_and_nested():
    cfg = RunConfig.from_dict({"method": "joint", "train": {"epochs": 3, "lr": 1}, "model": {"hidden": "64,32"}})
    assert cfg.train.epochs == 3 and cfg.train.lr == 1.0 and cfg.model.hidden == (64, 32)


@pytest.mark.parametrize(
    "data, words",
    [
        ({"trian": {}}, "unknown key"),
        ({"train": {"epochs": "many"}}, "expected a number"),
        ({"train": {"epochs": 0}}, "epochs must be > 0"),
        ({"train": {"optimizer": "rmsprop"}}, "not one of"),
        ({"model": {"hidden": [64, -1]}}, "positive"),
        ({"stream": {"val_fraction": 0.9}}, "val_fraction"),
        ({"train": {"batch_size": True}}, "integer"),
        ({"stream": "permuted"}, "mapping"),
        ({"train": {"lr": float("inf")}}, "config.train.lr: expected a finite number, got inf"),  # inf passes "> 0"
        ({"train": {"lr": "nan"}}, "config.train.lr: expected a finite number, got 'nan'"),  # nan passes no range check
        ({"train": {"batch_size": 3.5}}, "config.train.batch_size: expected an integer, got 3.5"),
        ({"model": {"hidden": {"a": 1}}}, "config.model.hidden: expected a list, got {'a': 1}"),
    ],
)
def test_bad_configs_name_the_problem(data, words):
    with pytest.raises(ConfigError, match=words):
        RunConfig.from_dict(data)


def test_yaml_and_toml_files(tmp_path):
    (tmp_path / "a.yaml").write_text("method: finetune\ntrain:\n  epochs: 2\n")
    (tmp_path / "b.toml").write_text('method = "joint"\n[stream]\ntasks = 4\n')
    assert RunConfig.from_file(tmp_path / "a.yaml").train.epochs == 2
    assert RunConfig.from_file(tmp_path / "b.toml").stream.tasks == 4


def test_malformed_and_missing_files(tmp_path):
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed"):
        RunConfig.from_file(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="not found"):
        RunConfig.from_file(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        RunConfig.from_file(tmp_path / "list.yaml")


def test_round_trip_through_dict():
    cfg = RunConfig.from_dict({"method": "finetune", "seed": 3, "model": {"hidden": [8]}})
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_a_config_saved_before_standardisation_reads_as_it_ran(tmp_path):
    """Saved configs hold every field; one without stream.standardize ran on [0, 1] pixels."""
    old = {"stream": {"benchmark": "permuted-mnist", "tasks": 2}, "meta": {"git_commit": "13bb1ba"}}
    assert RunConfig.from_dict(old).stream.standardize is False
    assert RunConfig.from_dict({"stream": {"benchmark": "permuted-mnist"}}).stream.standardize is True  # not saved: default
    new = {**old, "stream": {**old["stream"], "standardize": True}}
    assert RunConfig.from_dict(new).stream.standardize is True
    import yaml

    from anpyc.cli import _config_from_args, build_parser

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    args = build_parser().parse_args(["run", "--method", "finetune", "--config", str(tmp_path / "config.yaml"), "--out", "x"])
    assert _config_from_args(args, "finetune").stream.standardize is False
