"""Training on PyTorch Lightning: configs, LightningModules, truncated BPTT, CTC, runs."""

from lstmkit.training.config import ConfigError, TrainConfig, from_dict, load_config
from lstmkit.training.modules import (
    CTCTask,
    LanguageModelTask,
    PerStepTask,
    RecurrentTask,
    SequenceTargetTask,
)
from lstmkit.training.run import TrainResult, evaluate, load_trained, train

__all__ = [
    "CTCTask",
    "ConfigError",
    "LanguageModelTask",
    "PerStepTask",
    "RecurrentTask",
    "SequenceTargetTask",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "from_dict",
    "load_config",
    "load_trained",
    "train",
]
