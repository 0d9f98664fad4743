"""Synthetic tasks of the LSTM literature, generated from a seed."""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit._checks import check_positive_int


def adding_problem(
    batch_size: int, length: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997, Exp. 4), in its common modern form.

    Each step carries a value in U[0, 1) and a marker; two steps are marked, one in each half
    of the sequence, and the target is the sum of their values. Predicting the mean target
    (1.0) gives an MSE of 1/6, the level a model must beat to show it bridged the lag.

    Returns:
        x: ``[length, batch_size, 2]`` (value, marker), time first.
        y: ``[batch_size, 1]``.
    """
    check_positive_int("batch_size", batch_size)
    if check_positive_int("length", length) < 2:
        raise ValueError(f"length must be at least 2 (one marker per half), got {length}")
    values = torch.rand(length, batch_size, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (batch_size,), generator=generator)
    second = torch.randint(half, length, (batch_size,), generator=generator)
    markers = torch.zeros(length, batch_size)
    batch = torch.arange(batch_size)
    markers[first, batch] = 1.0
    markers[second, batch] = 1.0
    y = (values[first, batch] + values[second, batch]).unsqueeze(-1)
    return torch.stack([values, markers], dim=-1), y
