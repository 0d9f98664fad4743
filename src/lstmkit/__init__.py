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


def variants() -> dict[str, str]:
    """Every LSTM variant's name and its paper (the GRU is ``lstmkit.GRU``)."""
    return {name: variant.paper for name, variant in VARIANTS.items()}


__all__ = [
    "GRU",
    "LSTM",
    "ConvLSTM",
    "LSTMVariant",
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
