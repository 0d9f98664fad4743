"""``SequenceNet``: input layer + recurrent backbone + linear head, the model every task trains.

Inputs are features (``[T, B, D]`` floats) or tokens (``[T, B]`` ints, embedded); the head
reads every step (per-step targets, language models, CTC) or one vector per sequence (the
last step, or the mean or max over the steps of each sequence). It is built from a plain
dict, so ``lstmkit.save`` / ``lstmkit.load`` rebuild it without the training code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from lstmkit.io import Saveable
from lstmkit.nn.gru import GRU
from lstmkit.nn.lstm import LSTM

Readout = Literal["last", "mean", "max", "per_step"]


@dataclass(frozen=True)
class SequenceNetConfig:
    """Everything that defines a SequenceNet's architecture (saved beside its weights)."""

    input_size: int  # features per step, or the vocabulary size for token inputs
    output_size: int
    tokens: bool = False  # inputs are token ids [T, B] embedded to embedding_dim
    embedding_dim: int = 0
    cell: Literal["lstm", "gru"] = "lstm"
    variant: str = "standard"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    proj_size: int = 0
    layer_norm: bool = False
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0
    forget_bias: float = 0.0
    readout: Readout = "per_step"
    backend: str = "auto"


class SequenceNet(Saveable, nn.Module):
    """A recurrent network with an input layer and a linear head.

    forward(x ``[T, B, D]`` or tokens ``[T, B]``, lengths ``[B]`` | None, state | None)
        -> (outputs ``[T, B, output_size]`` per step, or ``[B, output_size]``, final state)
    """

    def __init__(self, config: SequenceNetConfig) -> None:
        super().__init__()
        self.config = config
        if config.tokens:
            if config.embedding_dim < 1:
                raise ValueError(
                    f"embedding_dim must be >= 1 for token inputs, got {config.embedding_dim}"
                )
            self.embedding = nn.Embedding(config.input_size, config.embedding_dim)
            rnn_input = config.embedding_dim
        else:
            self.embedding = None
            rnn_input = config.input_size
        common = {
            "num_layers": config.num_layers,
            "dropout": config.dropout,
            "bidirectional": config.bidirectional,
            "layer_norm": config.layer_norm,
            "zoneout": config.zoneout,
            "recurrent_dropout": config.recurrent_dropout,
            "backend": config.backend,
        }
        if config.cell == "gru":
            self.rnn: LSTM | GRU = GRU(rnn_input, config.hidden_size, **common)
        elif config.cell == "lstm":
            self.rnn = LSTM(
                rnn_input,
                config.hidden_size,
                proj_size=config.proj_size,
                variant=config.variant,
                forget_bias=config.forget_bias,
                **common,
            )
        else:
            raise ValueError(f"cell must be 'lstm' or 'gru', got {config.cell!r}")
        features = (config.proj_size or config.hidden_size) * (2 if config.bidirectional else 1)
        self.head = nn.Linear(features, config.output_size)

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, state=None
    ) -> tuple[Tensor, object]:
        if self.embedding is not None:
            x = self.embedding(x)
        outputs, state = self.rnn(x, state, lengths=lengths)  # [T, B, F]
        return self.head(self._read(outputs, lengths)), state

    def _read(self, outputs: Tensor, lengths: Tensor | None) -> Tensor:
        """The features the head sees: every step, or one vector per sequence."""
        readout = self.config.readout
        if readout == "per_step":
            return outputs
        T, B = outputs.shape[:2]
        if lengths is None:
            lengths = torch.full((B,), T, device=outputs.device)
        if readout == "last":
            # the last real step of each sequence; the reverse direction ends at step 0
            last = outputs[lengths.to(outputs.device) - 1, torch.arange(B, device=outputs.device)]
            if self.config.bidirectional:
                half = outputs.shape[-1] // 2
                last = torch.cat([last[:, :half], outputs[0, :, half:]], dim=-1)
            return last
        valid = (torch.arange(T, device=outputs.device)[:, None] < lengths.to(outputs.device))[
            ..., None
        ]  # [T, B, 1]
        if readout == "mean":
            return (outputs * valid).sum(0) / valid.sum(0)
        return outputs.masked_fill(~valid, float("-inf")).amax(0)

    def to_dict(self) -> dict:
        return {"kind": "SequenceNet", **asdict(self.config)}
