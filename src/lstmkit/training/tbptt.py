"""Truncated backpropagation through time, for streams longer than memory.

A sequence ``[T, B, ...]`` is cut into chunks of k steps; the state flows forward across
chunks but is detached between them, so each chunk's backward stops at its first step.
Where ``resets`` marks that a new sequence starts at step t for stream b, that stream's state
is zeroed before step t (within a chunk too: the chunk is split at such steps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

State = Tensor | tuple[Tensor, ...] | None


def chunks(length: int, k: int) -> list[slice]:
    """Slices of at most k steps covering ``range(length)``; k <= 0 gives one slice."""
    if k <= 0 or k >= length:
        return [slice(0, length)]
    return [slice(start, min(start + k, length)) for start in range(0, length, k)]


def detach_state(state: State) -> State:
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)


def reset_state(state: State, keep: Tensor) -> State:
    """Zero the states of the streams where ``keep`` ``[B]`` is False."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state * keep[None, :, None].to(state.dtype)
    return tuple(s * keep[None, :, None].to(s.dtype) for s in state)


def segments(resets: Tensor | None, span: slice) -> Iterator[tuple[slice, Tensor | None]]:
    """Split ``span`` at the steps where any stream resets: (sub-slice, keep mask [B] | None)."""
    if resets is None:
        yield span, None
        return
    cuts = [t for t in range(span.start, span.stop) if bool(resets[t].any())]
    if not cuts or cuts[0] != span.start:
        cuts.insert(0, span.start)
    for start, stop in zip(cuts, [*cuts[1:], span.stop], strict=True):
        yield slice(start, stop), ~resets[start] if bool(resets[start].any()) else None


def run_chunk(
    forward: Callable[[slice, State], tuple[Tensor, State]],
    span: slice,
    state: State,
    resets: Tensor | None = None,  # [T, B] bool
) -> tuple[Tensor, State]:
    """Outputs of steps ``span`` (concatenated over time) and the state after them."""
    outputs = []
    for part, keep in segments(resets, span):
        if keep is not None:
            state = reset_state(state, keep)
        output, state = forward(part, state)
        outputs.append(output)
    return torch.cat(outputs, dim=0), state
