"""The modules users hold."""

from lstmkit.nn.convlstm import ConvLSTM
from lstmkit.nn.gru import GRU
from lstmkit.nn.lstm import LSTM
from lstmkit.nn.mlstm import mLSTM
from lstmkit.nn.slstm import sLSTM
from lstmkit.nn.xlstm import xLSTM

__all__ = ["GRU", "LSTM", "ConvLSTM", "mLSTM", "sLSTM", "xLSTM"]
