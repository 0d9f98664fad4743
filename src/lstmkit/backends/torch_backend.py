"""The ``torch`` backend: a whole LSTM or GRU stack in one call of torch's own RNN kernels.

torch.nn.LSTM computes lstmkit's ``standard`` LSTM (``proj_size`` included) and torch.nn.GRU
the reset-after GRU, with the same parameter names, shapes and gate order. Where a module
computes exactly that math, this backend hands the whole stack (every layer, both directions,
lengths and packing) to ``torch._VF.lstm`` / ``torch._VF.gru``, the kernels behind those
modules: oneDNN's fused LSTM on CPU for float32 without projection, cuDNN on a GPU, torch's
own C++ loop elsewhere. It takes whole modules, not layers: a per-layer call that masked
lengths in Python would cost torch the speed it is chosen for.

``unsupported_reason`` names the first option of a module that torch does not compute.
torch.compile cannot trace these kernels (dynamo refuses RNN ops), so they are a graph break.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import _VF, Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmkit.cells import CellSpec, GRUCellSpec, LSTMCellSpec

Kind = Literal["lstm", "gru"]
LSTM_ACTIVATIONS = ("sigmoid", "tanh", "tanh")  # torch.nn.LSTM's sigma_g, sigma_c, sigma_h


def unsupported_reason(
    cells: Sequence[Sequence[CellSpec]], zoneout: Sequence[float], recurrent_dropout: float
) -> str | None:
    """None if torch.nn.LSTM / GRU computes what these cells and options compute, else the
    first option it lacks (``"variant='peephole' (diagonal peepholes)"``)."""
    cell = cells[0][0]  # every layer-direction of a module shares the options
    if isinstance(cell, LSTMCellSpec):
        difference = _difference_from_standard(cell)
        if difference is not None:
            return difference
    elif isinstance(cell, GRUCellSpec):
        if not cell.reset_after:
            return "reset_after=False (torch.nn.GRU resets after the recurrent product)"
    else:
        return f"cells of type {type(cell).__name__}"
    if cell.layer_norm:
        return "layer_norm=True"
    if any(zoneout):
        return f"zoneout={max(zoneout)}"
    if recurrent_dropout:
        return f"recurrent_dropout={recurrent_dropout}"
    return None


def _difference_from_standard(cell: LSTMCellSpec) -> str | None:
    v = cell.variant
    differences = [
        (not v.input_gate, "no input gate"),
        (not v.forget_gate, "no forget gate"),
        (not v.output_gate, "no output gate"),
        (v.coupled, "a coupled forget gate"),
        (v.peephole != "none", f"{v.peephole} peepholes"),
        (v.gate_recurrence, "gate recurrence"),
    ]
    for differs, what in differences:
        if differs:
            return f"variant={v.name!r} ({what})"
    if cell.activations != LSTM_ACTIVATIONS:
        return f"activations {cell.activations} (torch's are {LSTM_ACTIVATIONS})"
    if cell.cell_clip is not None:
        return f"cell_clip={cell.cell_clip}"
    return None


def run_stack(
    kind: Kind,
    # torch's flat order: per layer, per direction w_ih, w_hh, (b_ih, b_hh), (w_hr)
    weights: list[Tensor],
    x: Tensor,  # [T, B, D]
    initial: tuple[Tensor, ...],  # (h0, c0) or (h0,), each [L * dirs, B, size]
    *,
    lengths: Tensor | None,  # [B], 1 <= lengths <= T; None: every sequence has T steps
    packed: PackedSequence | None,  # the caller's packed input (the same data as x), reused
    num_layers: int,
    bidirectional: bool,
    bias: bool,
    dropout: float = 0.0,  # between layers; pass 0 outside training
) -> tuple[Tensor | PackedSequence, tuple[Tensor, ...]]:
    """Run a whole stack on torch's kernels.

    Returns the output ``[T, B, dirs * P]``, zero past each sequence's length (a
    PackedSequence in ``packed``'s order when ``packed`` is given), and the final states,
    each ``[L * dirs, B, size]``, at each sequence's true end.
    """
    if not dropout or num_layers == 1:
        return _call(kind, weights, x, initial, lengths, packed, num_layers, bidirectional, bias)
    # One call per layer and F.dropout on the padded output, as the other backends do, so that
    # a seed draws the same dropout masks whichever backend runs the module.
    directions = 2 if bidirectional else 1
    per_layer = len(weights) // num_layers
    finals = []
    for layer in range(num_layers):
        rows = slice(layer * directions, (layer + 1) * directions)
        layer_weights = weights[layer * per_layer : (layer + 1) * per_layer]
        layer_initial = tuple(s[rows] for s in initial)
        x, states = _call(
            kind, layer_weights, x, layer_initial, lengths, None, 1, bidirectional, bias
        )
        finals.append(states)
        if layer < num_layers - 1:
            x = F.dropout(x, dropout, training=True)
    return x, tuple(torch.cat(rows) for rows in zip(*finals, strict=True))


def _call(kind, weights, x, initial, lengths, packed, num_layers, bidirectional, bias):
    """One ``_VF`` call: padded input as it is, lengths through a PackedSequence."""
    run = _VF.lstm if kind == "lstm" else _VF.gru

    def hx(states: Sequence[Tensor]):  # the LSTM takes a list of states, the GRU one tensor
        return list(states) if kind == "lstm" else states[0]

    # oneDNN saves what backward needs only in training mode, which inference need not pay for
    # (x is the padded view of packed input, so it requires grad where the packed data does)
    train = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *weights, *initial))
    if lengths is None and packed is None:
        output, *states = run(
            x, hx(initial), weights, bias, num_layers, 0.0, train, bidirectional, False
        )
        return output, tuple(states)
    sequence = packed or pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
    order, unorder = sequence.sorted_indices, sequence.unsorted_indices
    if order is not None:  # torch runs the batch sorted by length, longest first
        initial = tuple(s.index_select(1, order) for s in initial)
    data, *states = run(
        sequence.data, sequence.batch_sizes, hx(initial), weights, bias, num_layers, 0.0, train,
        bidirectional,
    )  # fmt: skip
    if unorder is not None:
        states = [s.index_select(1, unorder) for s in states]
    output = PackedSequence(data, sequence.batch_sizes, order, unorder)
    if packed is None:
        output, _ = pad_packed_sequence(output, total_length=x.shape[0])
    return output, tuple(states)


__all__ = ["run_stack", "unsupported_reason"]
