"""``lstmkit.GRU``: torch.nn.GRU's contract, with both reset forms and lstmkit's options."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from lstmkit._checks import check_probability
from lstmkit.cells import GRUCellSpec
from lstmkit.nn.recurrent import RecurrentBase, layer_input_sizes


class GRU(RecurrentBase):
    r"""A multi-layer GRU, a drop-in for ``torch.nn.GRU``.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional:
            as torch.nn.GRU.
        proj_size: accepted for signature compatibility; must be 0 (a GRU has no projection).
        reset_after: True for torch's and cuDNN's form (reset applied to ``U_n h + b_hn``),
            False for Cho et al.'s (reset applied to h before ``U_n``).
        layer_norm: layer-normalise each gate's input and recurrent pre-activation.
        zoneout: probability that a unit of h keeps its previous value at a step, in training.
        recurrent_dropout: dropout on h entering the recurrent product, one mask per sequence.
        backend: ``"auto"`` (the fastest that runs the module: docs/backends.md),
            ``"reference"``, ``"cpu"`` (the fused C++ engine) or ``"torch"`` (torch's own
            kernels; the reset-after GRU without layer_norm, zoneout or recurrent_dropout).
            ``LSTMKIT_BACKEND`` overrides it.

    Inputs: ``input, h0``, optional ``lengths`` (shapes as ``lstmkit.LSTM``).
    Outputs: ``output, h_n``.
    """

    torch_class = nn.GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        reset_after: bool = True,
        layer_norm: bool = False,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if proj_size:
            raise ValueError(
                f"proj_size is only supported by lstmkit.LSTM, got proj_size={proj_size}"
            )
        directions = 2 if bidirectional else 1
        sizes = layer_input_sizes(input_size, hidden_size, num_layers, directions)
        cells = [
            [GRUCellSpec(size, hidden_size, bias, reset_after, layer_norm)] * directions
            for size in sizes
        ]
        super().__init__(
            cells,
            batch_first=batch_first,
            dropout=dropout,
            zoneout=(check_probability("zoneout", zoneout),),
            recurrent_dropout=recurrent_dropout,
            backend=backend,
            device=device,
            dtype=dtype,
        )
        self.input_size, self.hidden_size, self.proj_size = input_size, hidden_size, 0
        self.bias = bias
        self.reset_after = reset_after
        self.reset_parameters()

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Tensor | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, Tensor]:
        return super().forward(input, hx, lengths)

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}"]
        if not self.bias:
            parts.append("bias=False")
        if not self.reset_after:
            parts.append("reset_after=False")
        if self.cells[0][0].layer_norm:
            parts.append("layer_norm=True")
        return ", ".join(parts + self._extra_repr_common())

    def to_dict(self) -> dict:
        """The constructor's arguments, as JSON-able values (``lstmkit.save`` stores them)."""
        return {"kind": "GRU", **self._common_dict(), "reset_after": self.reset_after}
