"""``lstmkit.sLSTM``: stacked sLSTM layers (Beck et al. 2024) behind lstmkit.LSTM's contract."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from lstmkit.cells.slstm import SLSTMCellSpec
from lstmkit.nn.recurrent import RecurrentBase, layer_input_sizes


class sLSTM(RecurrentBase):
    r"""A multi-layer sLSTM: exponential gates, normaliser, stabiliser, head-wise recurrence.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional:
            as lstmkit.LSTM.
        num_heads: the recurrent matrix is block-diagonal with this many blocks (heads);
            it must divide hidden_size. 1 is a dense recurrence.
        forget_gate: ``"exp"`` (exp(f~), the paper's exponential gate) or ``"sigmoid"``.
        forget_bias: added to the forget gate's bias at init.
        recurrent_dropout: dropout on h_{t-1} entering the recurrent product, one mask per
            sequence in training.
        backend: ``"auto"`` (the fused CPU engine for float32/float64 CPU tensors, else the
            reference loop), ``"cpu"`` or ``"reference"``.

    Inputs: ``input, (h0, c0, n0, m0)``, optional ``lengths`` (shapes as lstmkit.LSTM; each
    state ``[num_layers * num_directions, B, H]``, zeros when omitted).
    Outputs: ``output, (h_n, c_n, n_n, m_n)``.
    """

    state_names = ("h0", "c0", "n0", "m0")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        num_heads: int = 1,
        forget_gate: str = "exp",
        forget_bias: float = 0.0,
        recurrent_dropout: float = 0.0,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        directions = 2 if bidirectional else 1
        sizes = layer_input_sizes(input_size, hidden_size, num_layers, directions)
        cells = [
            [SLSTMCellSpec(size, hidden_size, num_heads, bias, forget_gate)] * directions  # type: ignore[arg-type]
            for size in sizes
        ]
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, int | float):
            raise TypeError(f"forget_bias must be a float, got {type(forget_bias).__name__}")
        if forget_bias and not bias:
            raise ValueError(
                f"forget_bias needs bias=True, got forget_bias={forget_bias}, bias=False"
            )
        super().__init__(
            cells,
            batch_first=batch_first,
            dropout=dropout,
            zoneout=(),
            recurrent_dropout=recurrent_dropout,
            backend=backend,
            device=device,
            dtype=dtype,
        )
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bias, self.num_heads, self.forget_gate = bias, num_heads, forget_gate
        self.forget_bias = float(forget_bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) as lstmkit.LSTM, plus ``forget_bias`` on the forget gate."""
        super().reset_parameters()
        if not self.forget_bias:
            return
        H = self.hidden_size
        with torch.no_grad():
            for layer, directions in enumerate(self.cells):
                for direction in range(len(directions)):
                    self.layer_params(layer, direction)["bias"][H : 2 * H].add_(self.forget_bias)

    def _unpack_hx(self, hx) -> Sequence[Tensor | None]:
        # c and n only mean something together (c / n), so all four states come at once
        if not isinstance(hx, tuple | list) or len(hx) != 4:
            got = f"a tuple of {len(hx)}" if isinstance(hx, tuple | list) else type(hx).__name__
            raise ValueError(f"hx must be a tuple (h0, c0, n0, m0), got {got}")
        return tuple(hx)

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: tuple[Tensor, ...] | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, ...]]:
        return super().forward(input, hx, lengths)

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_heads != 1:
            parts.append(f"num_heads={self.num_heads}")
        if self.forget_gate != "exp":
            parts.append(f"forget_gate={self.forget_gate!r}")
        if not self.bias:
            parts.append("bias=False")
        if self.forget_bias:
            parts.append(f"forget_bias={self.forget_bias}")
        return ", ".join(parts + self._extra_repr_common())

    def _zoneout_argument(self) -> float:
        return 0.0

    def to_dict(self) -> dict:
        """The constructor's arguments, as JSON-able values."""
        return {
            "kind": "sLSTM",
            **self._stack_dict(),
            "recurrent_dropout": self.recurrent_dropout,
            "backend": self.backend,
            "num_heads": self.num_heads,
            "forget_gate": self.forget_gate,
            "forget_bias": self.forget_bias,
        }
