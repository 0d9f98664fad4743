"""Cells: the math of one time step, per variant family."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from lstmkit.cells.convlstm import ConvLSTMCellSpec
from lstmkit.cells.gru import GRUCellSpec
from lstmkit.cells.lstm import VARIANTS, LSTMCellSpec, LSTMVariant, get_variant
from lstmkit.cells.mlstm import MLSTMCellSpec
from lstmkit.cells.slstm import SLSTMCellSpec


class CellSpec(Protocol):
    """What a backend needs of a cell: parameter shapes, states, and one step."""

    @property
    def output_size(self) -> int: ...

    @property
    def recurrent_input_size(self) -> int: ...

    @property
    def zoneout_states(self) -> tuple[int, ...]: ...

    def param_shapes(self) -> dict[str, tuple[int, ...]]: ...

    def state_sizes(self) -> tuple[int, ...]: ...

    def input_projection(self, p: dict[str, Tensor], x: Tensor) -> Tensor: ...

    def step(
        self,
        p: dict[str, Tensor],
        gx: Tensor,
        state: tuple[Tensor, ...],
        recurrent_mask: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]: ...


__all__ = [
    "VARIANTS",
    "CellSpec",
    "ConvLSTMCellSpec",
    "GRUCellSpec",
    "LSTMCellSpec",
    "LSTMVariant",
    "MLSTMCellSpec",
    "SLSTMCellSpec",
    "get_variant",
]
