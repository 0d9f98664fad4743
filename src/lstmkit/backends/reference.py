"""The reference backend: a plain PyTorch loop over a cell's step.

Slow, obviously right, any dtype and device: the oracle every other backend is tested
against. The input projection of all steps is one GEMM before the loop (the same math as
projecting inside the step); the loop walks ``unbind`` views and ``stack``s the outputs,
because indexing a large tensor per step (``x[t]``) makes backward O(T^2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lstmkit.cells import CellSpec


def run_layer(
    cell: CellSpec,
    params: dict[str, Tensor],
    x: Tensor,  # [T, B, D]
    state: tuple[Tensor, ...],  # the cell's states, each [B, size] (or [B, C, *spatial])
    *,
    lengths: Tensor | None = None,  # [B] int64 on x's device, 1 <= lengths <= T
    reverse: bool = False,
    zoneout_masks: tuple[Tensor | None, ...] | None = None,  # per state: [T, B, size] or None
    recurrent_mask: Tensor | None = None,  # [B, cell.recurrent_input_size]
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run one layer in one direction; returns (outputs ``[T, B, P]``, final states).

    With ``lengths``, sequence b is ``x[:lengths[b], b]``: outputs past its end are zero and
    its final state is the one at its last step (its first, in reverse). Zoneout keeps state
    unit k at step t where ``zoneout_masks[s][t, b, k]`` is 1. Only the leading ``[T, B]`` dims
    are the loop's: a cell's inputs, states and outputs may have any trailing shape (ConvLSTM's
    ``[C, *spatial]``).
    """
    steps = step_inputs(cell, params, x)
    T = len(steps)
    valid = None
    if lengths is not None:
        # [T, B]: step t of sequence b is real data
        valid = (torch.arange(T, device=x.device)[:, None] < lengths[None, :]).unbind(0)
    zoneout = [None if m is None else m.unbind(0) for m in (zoneout_masks or ())]

    outputs: list[Tensor | None] = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        y, new_state = cell.step(params, steps[t], state, recurrent_mask)
        if zoneout:
            new_state = tuple(
                new
                if k >= len(zoneout) or zoneout[k] is None
                else torch.lerp(new, old, zoneout[k][t])
                for k, (new, old) in enumerate(zip(new_state, state, strict=True))
            )
            y = new_state[0]
        if valid is not None:
            new_state = tuple(
                torch.where(_rows(valid[t], new), new, old)
                for new, old in zip(new_state, state, strict=True)
            )
            y = torch.where(_rows(valid[t], y), y, torch.zeros_like(y))
        state = new_state
        outputs[t] = y
    return torch.stack(outputs), state  # type: ignore[arg-type]


def step_inputs(cell: CellSpec, params: dict[str, Tensor], x: Tensor) -> Sequence[Tensor]:
    """``[T, B, D]`` -> the T input projections: the cell's own schedule if it has one
    (``step_inputs``, e.g. ConvLSTM's on the CPU), else one batched projection."""
    own = getattr(cell, "step_inputs", None)
    if own is not None:
        return own(params, x)
    return cell.input_projection(params, x).unbind(0)


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    """A per-sequence ``[B]`` mask as ``[B, 1, ...]``, to broadcast over ``like``'s rows."""
    return mask.view(mask.shape[0], *([1] * (like.dim() - 1)))
