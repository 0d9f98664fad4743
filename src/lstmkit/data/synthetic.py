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


def delayed_echo(
    batch_size: int,
    length: int,
    delay: int,
    vocab: int = 8,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-step labelling: at step t, output the token seen ``delay`` steps earlier.

    Returns tokens ``[length, batch_size]`` and targets ``[length, batch_size]``; the first
    ``delay`` targets are ``-100`` (cross-entropy's ignore index): nothing to echo yet.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("length", length)
    check_positive_int("delay", delay, allow_zero=True)
    tokens = torch.randint(0, vocab, (length, batch_size), generator=generator)
    targets = torch.full_like(tokens, -100)
    targets[delay:] = tokens[: length - delay]
    return tokens, targets


def ctc_symbols(
    batch_size: int,
    length: int,
    num_symbols: int = 5,
    max_label: int = 6,
    noise: float = 0.3,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Unsegmented recognition: noisy frames spell a label sequence, alignment unknown.

    Each label symbol lasts a random number of frames, separated by silent gaps; a frame is
    the symbol's one-hot code plus Gaussian noise (a silent frame is noise only). Labels are
    1..num_symbols (0 is CTC's blank).

    Returns frames ``[length, B, num_symbols]``, frame lengths ``[B]``, labels
    ``[B, max_label]`` (padded with 0) and label lengths ``[B]``.
    """
    if length < 6 * max_label + 2:  # start <= 2 frames, each symbol <= 4 frames + gap <= 2
        raise ValueError(
            f"length must be at least 6 * max_label + 2 ({6 * max_label + 2}), got {length}"
        )
    frames = torch.zeros(length, batch_size, num_symbols)
    labels = torch.zeros(batch_size, max_label, dtype=torch.long)
    label_lengths = torch.randint(1, max_label + 1, (batch_size,), generator=generator)
    frame_lengths = torch.zeros(batch_size, dtype=torch.long)
    for b in range(batch_size):
        n = int(label_lengths[b])
        symbols = torch.randint(1, num_symbols + 1, (n,), generator=generator)
        labels[b, :n] = symbols
        t = int(torch.randint(0, 3, (1,), generator=generator))
        for symbol in symbols.tolist():
            span = int(torch.randint(2, 5, (1,), generator=generator))
            frames[t : t + span, b, symbol - 1] = 1.0
            t += span + int(torch.randint(1, 3, (1,), generator=generator))
        frame_lengths[b] = t
    frames += noise * torch.randn(frames.shape, generator=generator)
    return frames, frame_lengths, labels, label_lengths
