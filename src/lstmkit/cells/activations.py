"""Activation functions a cell may use for sigma_g, sigma_c and sigma_h, by name.

The set is closed on purpose: every fused backend implements each one (and its derivative)
by the same name, so a name accepted here runs everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

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
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"{argument} must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return name
