"""Activation functions a cell may use for sigma_g, sigma_c and sigma_h, by name.

The set is closed on purpose: every fused backend implements each one (and its derivative)
by the same name, so a name accepted here runs everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lstmkit._checks import unknown_name

Activation = Callable[[torch.Tensor], torch.Tensor]

ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "identity": lambda x: x,
    "relu": torch.relu,
    "hard_sigmoid": F.hardsigmoid,  # relu6(x + 3) / 6, as torch
}


def check_activation(argument: str, name: object) -> str:
    """Return ``name`` if it is a known activation, else raise naming ``argument``."""
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be an activation's name (str), got {type(name).__name__}")
    if name not in ACTIVATIONS:
        raise unknown_name(argument, name, ACTIVATIONS)
    return name
