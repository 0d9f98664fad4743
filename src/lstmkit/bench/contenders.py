"""What the benchmark runs: one callable per contender, case and mode.

A case is a size ``(T, B, D, H)`` and a variant (an LSTM variant or ``"gru"``). Its
contenders are:

- ``torch.nn``: the peer, torch.nn.LSTM (the ``standard`` cell) or torch.nn.GRU, padded;
- ``torch.nn packed``: the peer on a PackedSequence with lengths uniform in [T/2, T]
  (packed once, outside the timing, as a user's data loader would);
- ``reference``, ``cpu``, ``auto`` and, when the registry offers it, ``torch``: lstmkit's
  module on that backend, padded;
- ``cpu lengths``: lstmkit on ``cpu`` with the same lengths through ``lengths=``.

A ``train`` run zeroes the gradients, runs forward, sums the output into a loss and runs
backward (the input requires grad, as the layer inside a network would); an ``infer`` run is
forward under ``torch.no_grad()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import lstmkit

Size = tuple[int, int, int, int]  # (T, B, D, H)
MODES = ("train", "infer")
PEER = "torch.nn"
PACKED = "torch.nn packed"
LENGTHS = "cpu lengths"
LSTMKIT_BACKENDS = ("reference", "cpu", "torch", "auto")
# the contenders that run on the lengths batch rather than the padded one
ON_LENGTHS = (PACKED, LENGTHS)


@dataclass(frozen=True)
class Inputs:
    x: Tensor  # [T, B, D] padded batch
    lengths: Tensor  # [B] int64, uniform in [ceil(T/2), T]
    packed: PackedSequence  # x packed with lengths (data [sum(lengths), D])


def make_inputs(size: Size, seed: int) -> Inputs:
    """The batch every contender of ``size`` reads, the same for a given seed."""
    T, B, D, _ = size
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, D, generator=generator)
    lengths = torch.randint(math.ceil(T / 2), T + 1, (B,), generator=generator)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    return Inputs(x, lengths, packed)


def make_module(contender: str, variant: str, size: Size) -> nn.Module:
    """The module a contender runs; ValueError if its backend cannot run ``variant``."""
    _, _, D, H = size
    if contender in (PEER, PACKED):
        return nn.GRU(D, H) if variant == "gru" else nn.LSTM(D, H)
    backend = "cpu" if contender == LENGTHS else contender
    if backend not in LSTMKIT_BACKENDS:
        raise ValueError(f"contender must be one of {contenders(True)}, got {contender!r}")
    if variant == "gru":
        return lstmkit.GRU(D, H, backend=backend)
    return lstmkit.LSTM(D, H, variant=variant, backend=backend)


def contenders(with_torch_backend: bool) -> tuple[str, ...]:
    """Every contender's name, in the order of the table's columns."""
    backends = [b for b in LSTMKIT_BACKENDS if with_torch_backend or b != "torch"]
    return (PEER, PACKED, *backends, LENGTHS)


class Run:
    """One run of a module for a mode: a training step, or a forward under no_grad."""

    def __init__(self, contender: str, module: nn.Module, inputs: Inputs, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        self.module, self.mode = module, mode
        train = mode == "train"
        module.train(train)
        self.lengths = inputs.lengths if contender == LENGTHS else None
        if contender == PACKED:
            packed = inputs.packed
            self.input = packed.data.detach().clone().requires_grad_(train)  # a leaf
            self.packed = PackedSequence(
                self.input, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
            )
        else:
            self.input = inputs.x.clone().requires_grad_(train)
            self.packed = None

    def forward(self) -> Tensor:
        if self.packed is not None:
            return self.module(self.packed)[0].data
        if self.lengths is not None:
            return self.module(self.input, lengths=self.lengths)[0]
        return self.module(self.input)[0]

    def clear_grads(self) -> None:
        self.module.zero_grad(set_to_none=True)
        self.input.grad = None

    def __call__(self) -> None:
        if self.mode == "infer":
            with torch.no_grad():
                self.forward()
            return
        self.clear_grads()
        self.forward().sum().backward()
