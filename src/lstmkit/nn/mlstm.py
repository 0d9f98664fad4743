"""``lstmkit.mLSTM``: stacked mLSTM layers (Beck et al. 2024): parallel, chunkwise or stepwise."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from lstmkit._checks import check_positive_int, unknown_name
from lstmkit.backends.registry import resolve
from lstmkit.cells.mlstm import DEFAULT_CHUNK_SIZE, FORMS, MLSTMCellSpec
from lstmkit.nn.inputs import finish_output
from lstmkit.nn.recurrent import RecurrentBase, layer_input_sizes


class mLSTM(RecurrentBase):
    r"""A multi-layer mLSTM: matrix memory, covariance update, no recurrence into the gates.

    Each layer is the paper's mLSTM cell: q, k, v, an output gate (sigmoid) and per-head
    exponential input and forget gates from one dense projection of the input.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional:
            as lstmkit.LSTM.
        num_heads: memory heads; each holds an ``E x E`` matrix, E = hidden_size / num_heads.
        forget_gate: ``"sigmoid"`` (default, as the paper's language models) or ``"exp"``.
        form: ``"auto"`` (recurrent for one step, parallel up to ``chunk_size`` steps,
            chunkwise beyond), ``"parallel"`` (quadratic in T), ``"chunkwise"`` (linear in T)
            or ``"recurrent"`` (one step at a time, through the backend's loop). All compute
            the same function.
        chunk_size: steps per chunk of the chunkwise form.

    Inputs: ``input, (C0, n0, m0)``, optional ``lengths``; input as lstmkit.LSTM; states
    ``C0 [L * dirs, B, K, E, E]``, ``n0 [L * dirs, B, K, E]``, ``m0 [L * dirs, B, K]`` (zeros
    when omitted).
    Outputs: ``output [T, B, dirs * H]``, ``(C_n, n_n, m_n)``.

    Init: weights U(-1/sqrt(H), 1/sqrt(H)); forget-gate biases spread over [3, 6] across
    heads, so the memory starts long-lived.
    """

    state_names = ("C0", "n0", "m0")
    state_layout = "heads, ..."

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
        forget_gate: str = "sigmoid",
        form: str = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        directions = 2 if bidirectional else 1
        sizes = layer_input_sizes(input_size, hidden_size, num_layers, directions)
        cells = [
            [MLSTMCellSpec(size, hidden_size, num_heads, bias, forget_gate)] * directions  # type: ignore[arg-type]
            for size in sizes
        ]
        if form not in FORMS:
            raise unknown_name("form", form, FORMS)
        super().__init__(
            cells,
            batch_first=batch_first,
            dropout=dropout,
            zoneout=(),
            recurrent_dropout=0.0,
            backend="reference",
            device=device,
            dtype=dtype,
        )
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bias, self.num_heads, self.forget_gate = bias, num_heads, forget_gate
        self.form, self.chunk_size = form, check_positive_int("chunk_size", chunk_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if not self.bias:
            return
        K = self.num_heads
        with torch.no_grad():
            for layer, directions in enumerate(self.cells):
                for direction in range(len(directions)):
                    bias = self.layer_params(layer, direction)["bias_ih"]
                    bias[-K:] = torch.linspace(3.0, 6.0, K)

    # ------------------------------------------------------------------ states
    def _state_shapes(self, x: Tensor) -> tuple[tuple[int, ...], ...]:
        return self.cells[0][0].state_shapes()  # type: ignore[attr-defined]

    def _unpack_hx(self, hx) -> Sequence[Tensor | None]:
        if not isinstance(hx, tuple | list) or len(hx) != 3:
            got = f"a tuple of {len(hx)}" if isinstance(hx, tuple | list) else type(hx).__name__
            raise ValueError(f"hx must be a tuple (C0, n0, m0), got {got}")
        return tuple(hx)

    # ------------------------------------------------------------------ running
    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: tuple[Tensor, Tensor, Tensor] | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, Tensor, Tensor]]:
        batch = self._prepare_input(input, lengths)
        B = batch.x.shape[1]
        initial = self._initial_states(hx, B, batch.unbatched, self._state_shapes(batch.x))
        layer_input = batch.x
        finals: list[list[Tensor]] = [[], [], []]
        for layer, directions in enumerate(self.cells):
            outputs = []
            for direction, cell in enumerate(directions):
                row = layer * self.num_directions + direction
                x = layer_input if direction == 0 else _reverse(layer_input, batch.lengths)
                output, state = self._run(cell, layer, direction, x, initial, row, batch.lengths)
                outputs.append(output if direction == 0 else _reverse(output, batch.lengths))
                for final, s in zip(finals, state, strict=True):
                    final.append(s)
            layer_input = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = torch.nn.functional.dropout(layer_input, self.dropout, training=True)
        states = tuple(torch.stack(final) for final in finals)
        if batch.unbatched:
            states = tuple(s.squeeze(1) for s in states)
        return finish_output(layer_input, batch), states  # type: ignore[return-value]

    def _run(self, cell, layer, direction, x, initial, row, lengths):
        params = self.layer_params(layer, direction)
        state = tuple(s[row] for s in initial)
        if self.form == "recurrent":  # the plain loop over the cell's step: the oracle
            return resolve("reference")(cell, params, x, state, lengths=lengths)
        return cell.sequence(
            params, x, state, form=self.form, chunk_size=self.chunk_size, lengths=lengths
        )

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_heads != 1:
            parts.append(f"num_heads={self.num_heads}")
        if self.forget_gate != "sigmoid":
            parts.append(f"forget_gate={self.forget_gate!r}")
        if not self.bias:
            parts.append("bias=False")
        if self.form != "auto":
            parts.append(f"form={self.form!r}")
        if self.chunk_size != DEFAULT_CHUNK_SIZE:
            parts.append(f"chunk_size={self.chunk_size}")
        parts += [p for p in self._extra_repr_common() if not p.startswith("backend")]
        return ", ".join(parts)

    def _zoneout_argument(self) -> float:
        return 0.0

    def to_dict(self) -> dict:
        """The constructor's arguments, as JSON-able values."""
        return {
            "kind": "mLSTM",
            **self._stack_dict(),
            "num_heads": self.num_heads,
            "forget_gate": self.forget_gate,
            "form": self.form,
            "chunk_size": self.chunk_size,
        }


def _reverse(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Each sequence of ``x`` ``[T, B, ...]`` reversed within its length (padding stays put)."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device)[:, None]  # [T, 1]
    index = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # [T, B]
    return x.gather(0, index.view(T, -1, *([1] * (x.dim() - 2))).expand_as(x))
