"""Weights to and from torch.nn.LSTM / torch.nn.GRU.

lstmkit's ``standard`` LSTM and reset-after GRU use torch's parameter names and shapes
(``weight_ih_l0``, ``weight_hh_l0_reverse``, ``weight_hr_l0``, ...) and gate order (i, f, g, o;
r, z, n), so conversion is a strict state-dict copy.
"""

from __future__ import annotations

import torch
from torch import nn


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy every parameter of ``source`` into ``target`` by name (strict)."""
    target.load_state_dict(source.state_dict(), strict=True)


def torch_incompatibility(module, variants: set[str], activations: tuple[str, ...]) -> str | None:
    """Why ``module`` cannot become a torch module with the same math, or None if it can."""
    name = getattr(module, "variant", None)
    if name is not None and name.name not in variants:
        return f"variant={name.name!r} is not one of {sorted(variants)}"
    cell = module.cells[0][0]
    if getattr(cell, "activations", activations) != activations:
        return f"activations {cell.activations} differ from torch's {activations}"
    if getattr(cell, "cell_clip", None) is not None:
        return "cell_clip is set"
    if cell.layer_norm:
        return "layer_norm=True"
    if not getattr(cell, "reset_after", True):
        return "reset_after=False"
    if any(module.zoneout) or module.recurrent_dropout:
        return "zoneout or recurrent_dropout is set"
    return None


def torch_like_kwargs(module: nn.Module) -> dict[str, object]:
    """device and dtype of a module's first parameter, for building its twin."""
    weight: torch.Tensor = module.weight_ih_l0
    return {"device": weight.device, "dtype": weight.dtype}
