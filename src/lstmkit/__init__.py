"""lstmkit: every LSTM variant of the literature, defined once, as drop-in PyTorch modules.

>>> import torch, lstmkit
>>> lstm = lstmkit.LSTM(8, 16, variant="peephole")
>>> output, (h_n, c_n) = lstm(torch.randn(5, 3, 8))
>>> output.shape
torch.Size([5, 3, 16])
"""

from lstmkit.cells import VARIANTS, LSTMVariant
from lstmkit.io import load, save
from lstmkit.nn import GRU, LSTM, ConvLSTM, mLSTM, sLSTM, xLSTM
from lstmkit.nn.sequence_net import SequenceNet, SequenceNetConfig

__version__ = "0.1.0"


# The task estimators import pandas and their baselines' libraries: loaded on first use, so
# that ``import lstmkit`` stays light.
_TASKS = {
    "Forecaster": "lstmkit.tasks.forecasting",
    "AnomalyDetector": "lstmkit.tasks.anomaly",
    "SequenceClassifier": "lstmkit.tasks.classification",
    "LanguageModel": "lstmkit.tasks.language_model",
    "Recognizer": "lstmkit.tasks.recognition",
    "Seq2Seq": "lstmkit.tasks.seq2seq",
}


def __getattr__(name: str):
    if name in _TASKS:
        import importlib

        return getattr(importlib.import_module(_TASKS[name]), name)
    raise AttributeError(f"module 'lstmkit' has no attribute {name!r}")


def variants() -> dict[str, str]:
    """Every LSTM variant's name and its paper (the GRU is ``lstmkit.GRU``)."""
    return {name: variant.paper for name, variant in VARIANTS.items()}


__all__ = [
    "GRU",
    "LSTM",
    "AnomalyDetector",
    "ConvLSTM",
    "Forecaster",
    "LSTMVariant",
    "LanguageModel",
    "Recognizer",
    "Seq2Seq",
    "SequenceClassifier",
    "SequenceNet",
    "SequenceNetConfig",
    "__version__",
    "load",
    "mLSTM",
    "sLSTM",
    "save",
    "variants",
    "xLSTM",
]
