"""Turning what a user passes to ``forward`` into ``[T, B, D]`` + lengths, and back.

torch.nn.LSTM accepts padded batches (time- or batch-first), unbatched sequences and
PackedSequence; lstmkit also takes ``lengths=`` on padded input. Every form is checked here
and reduced to one: a time-first padded tensor with optional lengths, in the caller's batch
order. Outputs go back to the caller's form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


@dataclass
class SequenceBatch:
    x: Tensor  # [T, B, D], time first, caller's batch order
    lengths: Tensor | None  # [B] int64 on x's device, or None when every sequence has T steps
    packed: PackedSequence | None  # the input, when it came packed (its order is reused)
    unbatched: bool
    batch_first: bool


def check_tensor_like(argument: str, tensor: Tensor, dtype: torch.dtype, device: torch.device):
    """dtype and device of ``tensor`` must match the module's parameters."""
    if tensor.dtype != dtype:
        raise TypeError(
            f"{argument} must have the module's dtype {dtype}, got {tensor.dtype} "
            f"(convert with .to({dtype}) or build the module with dtype={tensor.dtype})"
        )
    if tensor.device != device:
        raise ValueError(f"{argument} must be on the module's device {device}, got {tensor.device}")


def prepare_input(
    input: Tensor | PackedSequence,
    lengths: Tensor | Sequence[int] | None,
    *,
    batch_first: bool,
    input_size: int,
    dtype: torch.dtype,
    device: torch.device,
) -> SequenceBatch:
    """Check ``input`` and ``lengths`` and bring them to ``[T, B, D]`` + ``[B]``."""
    if isinstance(input, PackedSequence):
        if lengths is not None:
            raise ValueError(
                "lengths must be None for PackedSequence input (it carries its own lengths), "
                "got a lengths argument"
            )
        check_tensor_like("input", input.data, dtype, device)
        _check_features(input.data.shape[-1], input_size)
        x, packed_lengths = pad_packed_sequence(input)  # caller's order, time first
        return SequenceBatch(x, packed_lengths.to(device), input, False, batch_first)

    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a Tensor or a PackedSequence, got {type(input).__name__}")
    if input.dim() not in (2, 3):
        layout = "[B, T, D]" if batch_first else "[T, B, D]"
        raise ValueError(
            f"input must be 3-D {layout} or 2-D unbatched [T, D], "
            f"got {input.dim()}-D of shape {tuple(input.shape)}"
        )
    check_tensor_like("input", input, dtype, device)
    _check_features(input.shape[-1], input_size)
    unbatched = input.dim() == 2
    if unbatched:
        x = input.unsqueeze(1)
    else:
        x = input.transpose(0, 1) if batch_first else input
    if x.shape[0] == 0:
        raise ValueError(f"input must have at least one time step, got shape {tuple(input.shape)}")
    return SequenceBatch(x, _check_lengths(lengths, x, unbatched), None, unbatched, batch_first)


def _check_features(got: int, input_size: int) -> None:
    if got != input_size:
        raise ValueError(f"input.size(-1) must be equal to input_size ({input_size}), got {got}")


def _check_lengths(lengths: Tensor | Sequence[int] | None, x: Tensor, unbatched: bool):
    if lengths is None:
        return None
    T, B = x.shape[:2]
    if not isinstance(lengths, Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(
                f"lengths must be a 1-D integer tensor or a sequence of ints, got {lengths!r}"
            ) from error
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
    if unbatched and lengths.dim() == 0:
        lengths = lengths.reshape(1)
    if lengths.shape != (B,):
        raise ValueError(
            f"lengths must have shape ({B},), one per sequence, got {tuple(lengths.shape)}"
        )
    # The values are data: reading them under torch.compile would break the graph (or guard on
    # them), so only eager mode checks them; compiled code trusts them as the kernels do.
    if not torch.compiler.is_compiling():
        low, high = int(lengths.min()), int(lengths.max())
        if low < 1:
            raise ValueError(f"lengths must be at least 1, got {low}")
        if high > T:
            raise ValueError(f"lengths must be at most the input's time steps ({T}), got {high}")
    return lengths.to(device=x.device, dtype=torch.int64)


def finish_output(output: Tensor | PackedSequence, batch: SequenceBatch) -> Tensor | PackedSequence:
    """``[T, B, O]`` back to the caller's form (packed like the input, batch-first, ...).

    An output that is packed already (the torch backend runs packed input as it came) is
    the caller's form.
    """
    if isinstance(output, PackedSequence):
        return output
    if batch.packed is not None:
        packed = batch.packed
        order = packed.sorted_indices
        sorted_output = output if order is None else output.index_select(1, order)
        sorted_lengths = batch.lengths if order is None else batch.lengths[order]
        data = pack_padded_sequence(sorted_output, sorted_lengths.cpu(), enforce_sorted=True).data
        return PackedSequence(
            data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
        )
    if batch.unbatched:
        return output.squeeze(1)
    return output.transpose(0, 1) if batch.batch_first else output
