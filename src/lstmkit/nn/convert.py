"""Weights to and from torch.nn.LSTM / torch.nn.GRU.

lstmkit's ``standard`` LSTM and reset-after GRU use torch's parameter names and shapes
(``weight_ih_l0``, ``weight_hh_l0_reverse``, ``weight_hr_l0``, ...) and gate order (i, f, g, o;
r, z, n), so conversion is a strict state-dict copy. ``RecurrentBase.from_torch`` and
``to_torch`` build the twin; ``backends.torch_backend.unsupported_reason`` says when the math
differs.
"""

from __future__ import annotations

import torch
from torch import nn

# constructor arguments torch.nn.LSTM / GRU and lstmkit's modules share, by name
TORCH_ARGUMENTS = (
    "input_size",
    "hidden_size",
    "num_layers",
    "bias",
    "batch_first",
    "dropout",
    "bidirectional",
    "proj_size",
)


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy every parameter of ``source`` into ``target`` by name (strict)."""
    target.load_state_dict(source.state_dict(), strict=True)


def torch_like_kwargs(module: nn.Module) -> dict[str, object]:
    """device and dtype of a module's first parameter, for building its twin."""
    weight: torch.Tensor = module.weight_ih_l0
    return {"device": weight.device, "dtype": weight.dtype}
