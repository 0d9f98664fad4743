"""Training configs: YAML or TOML files, validated up front against dataclasses.

Every key is checked before anything runs: an unknown key names the valid ones and the
closest match, a wrong type names the key, what it expects and what came. ``--set
section.key=value`` overrides are parsed as YAML scalars and validated the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

TaskShape = Literal["sequence", "per_step", "language_model", "ctc"]


@dataclass
class ModelConfig:
    cell: Literal["lstm", "gru"] = "lstm"
    variant: str = "standard"  # any name of lstmkit.variants() (LSTM only)
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between layers
    proj_size: int = 0
    layer_norm: bool = False
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0
    forget_bias: float = 0.0
    embedding_dim: int = 32  # token inputs only
    readout: Literal["last", "mean", "max"] = "last"  # one target per sequence only
    backend: str = "auto"


@dataclass
class DataConfig:
    name: Literal["adding", "echo", "text", "ctc_symbols"] = "adding"
    path: str | None = None  # a text file for "text"; None: the built-in text
    length: int = 50  # steps per sequence (per chunk of the stream for "text")
    delay: int = 5  # "echo"
    train_size: int = 2048  # sequences (characters for "text": the split is by fraction)
    val_size: int = 256
    test_size: int = 256
    batch_size: int = 32
    shuffle: bool = True


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd and rmsprop
    scheduler: Literal["none", "cosine", "step", "plateau"] = "none"
    step_size: int = 10  # "step": epochs between decays
    gamma: float = 0.5  # "step" and "plateau": decay factor
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    max_steps: int = -1
    seed: int = 0
    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"  # "ddp" for several processes (gloo on CPU, NCCL on GPUs)
    num_nodes: int = 1
    tbptt_steps: int = 0  # truncated BPTT chunk length k; 0 is full BPTT
    early_stopping_patience: int = 0  # epochs without val improvement; 0 turns it off
    logger: Literal["csv", "tensorboard", "none"] = "csv"
    output_dir: str = "runs"
    name: str = "run"
    progress_bar: bool = True
    log_every_n_steps: int = 10
    checkpoint_every_n_epochs: int = 1


@dataclass
class TrainConfig:
    task: TaskShape = "sequence"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A config that does not fit the schema; the message names the key."""


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """Validate a nested dict (as read from YAML/TOML) into a TrainConfig."""
    config = _build(TrainConfig, data, "")
    _check_consistency(config)
    return config


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file and apply ``key=value`` overrides."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config {str(path)!r} does not exist or is not a file")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix == ".toml":
            data = tomllib.loads(text)
        elif file.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config must be a .yaml, .yml or .toml file, got {file.name!r}")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(
            f"config {str(path)!r} is not valid {file.suffix[1:]}: {error}"
        ) from error
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(path)!r} must hold a mapping, got {type(data).__name__}")
    for override in overrides or []:
        apply_override(data, override)
    return from_dict(data)


def apply_override(data: dict[str, Any], override: str) -> None:
    """``section.key=value`` into the nested dict; the value is parsed as a YAML scalar."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set must be key=value (e.g. optim.lr=0.01), got {override!r}")
    *sections, leaf = key.strip().split(".")
    node = data
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {section!r} is not a section")
    node[leaf] = yaml.safe_load(value)


def _build(cls: type, data: Any, prefix: str):
    if not isinstance(data, dict):
        where = prefix.removesuffix(".") or "config"
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {name!r}; valid keys: {sorted(fields)}{hint}")
        expected = hints[key]
        if dataclasses.is_dataclass(expected):
            values[key] = _build(expected, value, f"{name}.")
        else:
            values[key] = _check_type(name, value, expected)
    return cls(**values)


def _check_type(name: str, value: Any, expected: Any) -> Any:
    origin = typing.get_origin(expected)
    if origin is Literal:
        choices = typing.get_args(expected)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _check_type(name, value, inner)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string; it is a float to any reader
            return float(value)
        except ValueError:
            pass
    if (expected is int and isinstance(value, bool)) or not isinstance(value, expected):
        raise ConfigError(
            f"{name} must be of type {expected.__name__}, got {type(value).__name__} ({value!r})"
        )
    return value


# which task shape each built-in dataset trains
DATASET_TASKS: dict[str, TaskShape] = {
    "adding": "sequence",
    "echo": "per_step",
    "text": "language_model",
    "ctc_symbols": "ctc",
}


def _check_consistency(config: TrainConfig) -> None:
    expected = DATASET_TASKS[config.data.name]
    if config.task != expected:
        raise ConfigError(
            f"task must be {expected!r} for data.name={config.data.name!r}, got {config.task!r}"
        )
    if config.model.cell == "gru" and config.model.proj_size:
        raise ConfigError(
            f"model.proj_size must be 0 with model.cell='gru', got {config.model.proj_size}"
        )
    if config.trainer.tbptt_steps and config.task not in ("per_step", "language_model"):
        raise ConfigError(
            "trainer.tbptt_steps needs a per-step task ('per_step' or 'language_model'), "
            f"got task={config.task!r}"
        )
    if config.data.path is not None:
        if config.data.name != "text":
            raise ConfigError(
                f"data.path is only read for data.name='text', got data.name={config.data.name!r}"
            )
        if not Path(config.data.path).is_file():
            raise FileNotFoundError(
                f"data.path {config.data.path!r} does not exist or is not a file"
            )
