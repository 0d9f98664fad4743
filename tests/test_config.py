"""Training configs (lstmkit/training/config.py): YAML and TOML files, ``--set`` overrides,
and the checks that run before anything trains.

Every mistake is a ``ConfigError`` (a ValueError) or a FileNotFoundError whose message names
the key or the path, what was expected and what came; each test checks the type and the
message, so a check that starts saying less fails here.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from lstmkit.training.config import (
    ConfigError,
    TrainConfig,
    apply_override,
    from_dict,
    load_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted(p for p in CONFIGS.iterdir() if p.suffix in (".yaml", ".yml", ".toml"))


def says(*parts: str) -> str:
    """A ``match=`` pattern: every literal part, in order, anywhere in the message."""
    return ".*".join(re.escape(part) for part in parts)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


YAML_TEXT = """\
task: per_step
model:
  cell: gru
  hidden_size: 12
  bidirectional: true
data:
  name: echo
  delay: 3
optim:
  name: sgd
  lr: 0.5
  momentum: 0.9
trainer:
  tbptt_steps: 8
  name: from-file
"""

TOML_TEXT = """\
task = "per_step"

[model]
cell = "gru"
hidden_size = 12
bidirectional = true

[data]
name = "echo"
delay = 3

[optim]
name = "sgd"
lr = 0.5
momentum = 0.9

[trainer]
tbptt_steps = 8
name = "from-file"
"""


# ---------------------------------------------------------------------- files


@pytest.mark.parametrize(
    "name, text",
    [("c.yaml", YAML_TEXT), ("c.yml", YAML_TEXT), ("c.toml", TOML_TEXT)],
    ids=["yaml", "yml", "toml"],
)
def test_file_sets_the_keys_it_names_and_defaults_the_rest(name, text, tmp_path):
    config = load_config(write(tmp_path, name, text))
    expected = TrainConfig()
    expected.task = "per_step"
    expected.model.cell, expected.model.hidden_size, expected.model.bidirectional = "gru", 12, True
    expected.data.name, expected.data.delay = "echo", 3
    expected.optim.name, expected.optim.lr, expected.optim.momentum = "sgd", 0.5, 0.9
    expected.trainer.tbptt_steps, expected.trainer.name = 8, "from-file"
    assert config == expected


def test_yaml_and_toml_give_the_same_config(tmp_path):
    from_yaml = load_config(write(tmp_path, "c.yaml", YAML_TEXT))
    from_toml = load_config(write(tmp_path, "c.toml", TOML_TEXT))
    assert from_yaml.to_dict() == from_toml.to_dict()


def test_empty_yaml_is_the_default_config(tmp_path):
    assert load_config(write(tmp_path, "c.yaml", "")) == TrainConfig()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_loads_with_every_value_it_names(path):
    text = path.read_text(encoding="utf-8")
    raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    config = load_config(path)
    for key, value in raw.items():
        if isinstance(value, dict):
            section = getattr(config, key)
            for name, setting in value.items():
                assert getattr(section, name) == setting, f"{path.name}: {key}.{name}"
        else:
            assert getattr(config, key) == value, f"{path.name}: {key}"


def test_shipped_configs_cover_every_task():
    tasks = {load_config(path).task for path in SHIPPED}
    assert tasks == {"sequence", "per_step", "language_model", "ctc"}


def test_to_dict_round_trips_through_from_dict():
    config = load_config(SHIPPED[0], ["model.dropout=0.1", "optim.scheduler=cosine"])
    assert from_dict(config.to_dict()) == config


def test_missing_config_file_names_the_path(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(FileNotFoundError, match=says(str(path), "does not exist")):
        load_config(path)


@pytest.mark.parametrize("name", ["config.json", "config.txt", "config"])
def test_unsupported_suffix(name, tmp_path):
    path = write(tmp_path, name, "{}")
    with pytest.raises(ConfigError, match=says(".yaml, .yml or .toml", repr(name))):
        load_config(path)


@pytest.mark.parametrize(
    "name, text, language",
    [
        ("bad.yaml", "model:\n  hidden_size: [8\n", "yaml"),
        ("bad.yaml", "model:\n\thidden_size: 8\n", "yaml"),
        ("bad.toml", "task = \n", "toml"),
        ("bad.toml", "[model\nhidden_size = 8\n", "toml"),
    ],
    ids=["yaml-unclosed", "yaml-tab", "toml-no-value", "toml-unclosed-table"],
)
def test_invalid_syntax(name, text, language, tmp_path):
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=says(str(path), f"is not valid {language}")):
        load_config(path)


def test_file_that_is_not_a_mapping(tmp_path):
    path = write(tmp_path, "list.yaml", "- task\n- model\n")
    with pytest.raises(ConfigError, match=says(str(path), "must hold a mapping", "list")):
        load_config(path)


# ---------------------------------------------------------------------- unknown keys


def fields(section: str) -> list[str]:
    cls = type(getattr(TrainConfig(), section))
    return sorted(f.name for f in dataclasses.fields(cls))


UNKNOWN = {
    "top-level": ({"modle": {}}, "modle", None),
    "optim": ({"optim": {"lrr": 0.1}}, "optim.lrr", "optim"),
    "model": ({"model": {"hiden_size": 8}}, "model.hiden_size", "model"),
    "trainer": ({"trainer": {"max_epoch": 3}}, "trainer.max_epoch", "trainer"),
}


@pytest.mark.parametrize("case", UNKNOWN)
def test_unknown_key_lists_the_valid_keys(case):
    data, key, section = UNKNOWN[case]
    valid = fields(section) if section else ["data", "model", "optim", "task", "trainer"]
    with pytest.raises(ConfigError, match=says(f"unknown config key {key!r}", str(valid))):
        from_dict(data)


def test_unknown_top_level_key_names_the_closest_match():
    with pytest.raises(ConfigError, match=says("did you mean 'model'?")):
        from_dict({"modle": {}})


@pytest.mark.parametrize(
    "data, closest",
    [({"optim": {"lrr": 0.1}}, "optim.lr"), ({"model": {"hiden_size": 8}}, "model.hidden_size")],
    ids=["optim.lrr", "model.hiden_size"],
)
def test_unknown_section_key_names_the_closest_match(data, closest):
    with pytest.raises(ConfigError, match=says(f"did you mean {closest!r}?")):
        from_dict(data)


def test_unknown_key_with_nothing_close_gives_no_guess():
    with pytest.raises(ConfigError) as error:
        from_dict({"optim": {"zzzzzz": 1}})
    assert "did you mean" not in str(error.value)
    assert "'optim.zzzzzz'" in str(error.value)


# ---------------------------------------------------------------------- types


@pytest.mark.parametrize(
    "data, message",
    [
        ({"model": {"hidden_size": "big"}}, ("model.hidden_size", "int", "got str", "'big'")),
        ({"optim": {"lr": "fast"}}, ("optim.lr", "float", "got str", "'fast'")),
        ({"model": {"bidirectional": 1}}, ("model.bidirectional", "bool", "got int", "1")),
        ({"model": {"hidden_size": True}}, ("model.hidden_size", "int", "got bool", "True")),
        ({"model": {"hidden_size": 8.0}}, ("model.hidden_size", "int", "got float", "8.0")),
        ({"optim": {"lr": True}}, ("optim.lr", "float", "got bool", "True")),
        ({"data": {"path": 3}}, ("data.path", "str", "got int", "3")),
        ({"trainer": {"name": None}}, ("trainer.name", "str", "got NoneType", "None")),
    ],
    ids=[
        "int-got-str",
        "float-got-str",
        "bool-got-int",
        "int-got-bool",
        "int-got-float",
        "float-got-bool",
        "optional-str-got-int",
        "str-got-none",
    ],
)
def test_wrong_type_names_key_expected_and_got(data, message):
    key, expected, got, value = message
    with pytest.raises(ConfigError, match=says(key, f"must be of type {expected}", got, value)):
        from_dict(data)


def test_int_is_accepted_for_a_float():
    config = from_dict({"optim": {"lr": 1, "weight_decay": 0}})
    assert config.optim.lr == 1.0 and type(config.optim.lr) is float
    assert type(config.optim.weight_decay) is float


def test_optional_path_accepts_none():
    assert from_dict({"task": "language_model", "data": {"name": "text", "path": None}})


LITERALS = {
    "optim.name": ("adagrad", ["adam", "adamw", "sgd", "rmsprop"]),
    "task": ("regression", ["sequence", "per_step", "language_model", "ctc"]),
    "model.readout": (3, ["last", "mean", "max"]),
    "trainer.logger": ("wandb", ["csv", "tensorboard", "none"]),
}


@pytest.mark.parametrize("key", LITERALS)
def test_literal_lists_the_choices(key):
    got, choices = LITERALS[key]
    section, _, name = key.rpartition(".")
    data = {section: {name: got}} if section else {name: got}
    with pytest.raises(ConfigError, match=says(key, f"must be one of {choices}", f"got {got!r}")):
        from_dict(data)


def test_section_that_is_not_a_mapping():
    with pytest.raises(ConfigError, match=says("model", "must be a mapping", "got int")):
        from_dict({"model": 3})


def test_section_that_is_not_a_mapping_is_named_without_a_dot():
    with pytest.raises(ConfigError, match=r"^model must be a mapping, got int$"):
        from_dict({"model": 3})


# ---------------------------------------------------------------------- --set


@pytest.mark.parametrize(
    "override, section, key, value",
    [
        ("optim.lr=0.01", "optim", "lr", 0.01),
        ("model.bidirectional=true", "model", "bidirectional", True),
        ("model.hidden_size=16", "model", "hidden_size", 16),
        ("trainer.name=my run", "trainer", "name", "my run"),
        ("trainer.name='007'", "trainer", "name", "007"),
        ("data.path=null", "data", "path", None),
    ],
)
def test_override_parses_a_yaml_scalar(override, section, key, value):
    data: dict = {}
    apply_override(data, override)
    assert data == {section: {key: value}}
    assert type(data[section][key]) is type(value)


def test_override_creates_sections_and_keeps_siblings():
    data = {"model": {"hidden_size": 8}}
    apply_override(data, "model.cell=gru")
    apply_override(data, "optim.lr=0.5")
    apply_override(data, "task=per_step")
    expected = {"model": {"hidden_size": 8, "cell": "gru"}, "optim": {"lr": 0.5}}
    assert data == {**expected, "task": "per_step"}


def test_override_of_a_value_with_an_equals_sign():
    data: dict = {}
    apply_override(data, "trainer.name=a=b")
    assert data == {"trainer": {"name": "a=b"}}


@pytest.mark.parametrize("override", ["optim.lr", "=0.1", ""])
def test_malformed_override(override):
    with pytest.raises(ConfigError, match=says("--set must be key=value", repr(override))):
        apply_override({}, override)


def test_override_through_a_value_that_is_not_a_section():
    with pytest.raises(ConfigError, match=says("--set task.name", "'task' is not a section")):
        apply_override({"task": "sequence"}, "task.name=x")


def test_overrides_apply_after_the_file_and_are_validated(tmp_path):
    path = write(tmp_path, "c.yaml", YAML_TEXT)
    config = load_config(path, ["model.hidden_size=3", "trainer.max_epochs=1"])
    assert (config.model.hidden_size, config.trainer.max_epochs) == (3, 1)
    assert config.model.cell == "gru"  # the file's other keys stay
    with pytest.raises(ConfigError, match=says("unknown config key 'optim.lrr'")):
        load_config(path, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match=says("model.hidden_size", "int", "got str")):
        load_config(path, ["model.hidden_size=big"])


@pytest.mark.parametrize("text", ["1e-3", "5E-4"])
def test_exponent_without_a_dot_is_a_float(text):
    data: dict = {}
    apply_override(data, f"optim.lr={text}")
    assert from_dict(data).optim.lr == float(text)


# ---------------------------------------------------------------------- consistency


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"task": "sequence", "data": {"name": "echo"}},
            ("task must be 'per_step'", "data.name='echo'", "got 'sequence'"),
        ),
        (
            {"task": "ctc", "data": {"name": "adding"}},
            ("task must be 'sequence'", "data.name='adding'", "got 'ctc'"),
        ),
        (
            {"task": "sequence", "trainer": {"tbptt_steps": 10}},
            ("trainer.tbptt_steps", "per-step task", "got task='sequence'"),
        ),
        (
            {"task": "ctc", "data": {"name": "ctc_symbols"}, "trainer": {"tbptt_steps": 5}},
            ("trainer.tbptt_steps", "got task='ctc'"),
        ),
        (
            {"model": {"cell": "gru", "proj_size": 4}},
            ("model.proj_size must be 0", "model.cell='gru'", "got 4"),
        ),
        (
            {"data": {"path": "notes.txt"}},
            ("data.path is only read for data.name='text'", "data.name='adding'"),
        ),
    ],
    ids=[
        "task-vs-echo",
        "task-vs-adding",
        "tbptt-sequence",
        "tbptt-ctc",
        "gru-proj",
        "path-not-text",
    ],
)
def test_inconsistent_config(data, message):
    with pytest.raises(ConfigError, match=says(*message)):
        from_dict(data)


def test_tbptt_is_accepted_on_per_step_tasks():
    assert from_dict({"task": "per_step", "data": {"name": "echo"}, "trainer": {"tbptt_steps": 4}})
    language_model = {"task": "language_model", "data": {"name": "text"}}
    assert from_dict({**language_model, "trainer": {"tbptt_steps": 4}})


def test_missing_data_path_names_the_path(tmp_path):
    path = tmp_path / "absent.txt"
    data = {"task": "language_model", "data": {"name": "text", "path": str(path)}}
    with pytest.raises(FileNotFoundError, match=says("data.path", str(path), "does not exist")):
        from_dict(data)


def test_existing_data_path_is_accepted(tmp_path):
    path = write(tmp_path, "corpus.txt", "some text\n")
    data = {"task": "language_model", "data": {"name": "text", "path": str(path)}}
    assert from_dict(data).data.path == str(path)


def test_missing_data_path_from_a_file_and_override(tmp_path):
    path = tmp_path / "absent.txt"
    with pytest.raises(FileNotFoundError, match=says(str(path))):
        load_config(CONFIGS / "language_model.toml", [f"data.path={path}"])
