"""CTC decoding and error rates (the loss itself is torch's ``ctc_loss``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


def best_path(log_probs: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """Best-path decoding: the most likely class per frame, repeats merged, blanks removed.

    log_probs ``[T, B, C]``, lengths ``[B]`` -> one label list per sequence.
    """
    best = log_probs.argmax(-1).T.tolist()  # [B, T]
    decoded = []
    for frames, length in zip(best, lengths.tolist(), strict=True):
        labels, previous = [], blank
        for symbol in frames[:length]:
            if symbol != previous and symbol != blank:
                labels.append(symbol)
            previous = symbol
        decoded.append(labels)
    return decoded


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance: insertions, deletions and substitutions, each costing 1."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def character_error_rate(decoded: Sequence[Sequence], truth: Sequence[Sequence]) -> float:
    """Total edit distance over total reference length."""
    errors = sum(edit_distance(d, t) for d, t in zip(decoded, truth, strict=True))
    return errors / max(1, sum(len(t) for t in truth))
