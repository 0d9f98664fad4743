"""The modules users hold."""

from lstmkit.nn.convlstm import ConvLSTM
from lstmkit.nn.gru import GRU
from lstmkit.nn.lstm import LSTM

__all__ = ["GRU", "LSTM", "ConvLSTM"]
