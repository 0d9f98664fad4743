"""CTC decoding and error rates (the loss itself is torch's ``ctc_loss``).

- ``best_path``: the most likely class per frame, repeats merged, blanks removed.
- ``prefix_beam_search``: keeps the ``beam_width`` most probable label prefixes, each scored by
  the sum over all its alignments (Graves 2012, ch. 7; Hannun et al. 2014), optionally joined
  with a character language model: score = log P_ctc(prefix) + alpha * log P_lm(prefix)
  + beta * len(prefix).
- ``character_error_rate`` / ``word_error_rate``: edit distance over reference length.

Beam width 1 is not best path in general (one prefix sums several alignments, best path follows
one); on peaky posteriors, as a trained network gives, they agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import Tensor

# log P(next symbol | prefix) for a prefix of label ids (no blanks): the language model hook
CharLM = Callable[[tuple[int, ...], int], float]


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


def prefix_beam_search(
    log_probs: Tensor,
    lengths: Tensor,
    beam_width: int = 8,
    blank: int = 0,
    lm: CharLM | None = None,
    alpha: float = 0.0,
    beta: float = 0.0,
) -> list[list[int]]:
    """Prefix beam search over CTC posteriors, optionally with a character language model.

    log_probs ``[T, B, C]`` (log-softmax outputs), lengths ``[B]`` -> one label list per
    sequence. ``lm(prefix, symbol)`` gives log P(symbol | prefix); its sum over a prefix is
    weighted by ``alpha``; ``beta`` is added per emitted symbol (the insertion bonus that offsets
    the LM's pull towards short outputs). Without ``lm`` only ``beta`` changes the ranking.
    """
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be an int >= 1, got {beam_width!r}")
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be [T, B, C], got shape {tuple(log_probs.shape)}")
    frames = log_probs.detach().double().cpu().transpose(0, 1).tolist()  # [B][T][C]
    return [
        _search_one(frames[b][:length], beam_width, blank, lm, alpha, beta)
        for b, length in enumerate(lengths.tolist())
    ]


def _search_one(
    frames: list[list[float]],
    beam_width: int,
    blank: int,
    lm: CharLM | None,
    alpha: float,
    beta: float,
) -> list[int]:
    """The best prefix of one sequence's ``[T, C]`` log posteriors."""
    # prefix -> [log P(prefix, path ends in blank), log P(prefix, path ends in a symbol),
    #            log P_lm(prefix)]
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, -math.inf, 0.0]}
    symbols = [c for c in range(len(frames[0]) if frames else 0) if c != blank]
    for frame in frames:  # [C] log posteriors per step
        grown: dict[tuple[int, ...], list[float]] = {}
        for prefix, (ends_blank, ends_symbol, lm_score) in beams.items():
            total = _logaddexp(ends_blank, ends_symbol)
            stay = _entry(grown, prefix, lm_score)
            stay[0] = _logaddexp(stay[0], total + frame[blank])
            last = prefix[-1] if prefix else None
            for c in symbols:
                longer = (*prefix, c)
                extended = grown.get(longer)
                if extended is None:
                    extended = _entry(grown, longer, lm_score + _lm(lm, prefix, c, alpha))
                if c == last:
                    # a repeat only starts a new symbol after a blank; otherwise it merges
                    stay[1] = _logaddexp(stay[1], ends_symbol + frame[c])
                    extended[1] = _logaddexp(extended[1], ends_blank + frame[c])
                else:
                    extended[1] = _logaddexp(extended[1], total + frame[c])
        ranked = sorted(grown.items(), key=lambda item: -_score(item, alpha, beta))
        beams = dict(ranked[:beam_width])
    best = max(beams.items(), key=lambda item: _score(item, alpha, beta))
    return list(best[0])


def _logaddexp(a: float, b: float) -> float:
    """log(e^a + e^b) on Python floats (numpy's is ten times slower on scalars)."""
    if a < b:
        a, b = b, a
    if b == -math.inf:
        return a
    return a + math.log1p(math.exp(b - a))


def _entry(beams: dict, prefix: tuple[int, ...], lm_score: float) -> list[float]:
    if prefix not in beams:
        beams[prefix] = [-math.inf, -math.inf, lm_score]
    return beams[prefix]


def _lm(lm: CharLM | None, prefix: tuple[int, ...], symbol: int, alpha: float) -> float:
    if lm is None or alpha == 0:
        return 0.0
    return float(lm(prefix, symbol))


def _score(item: tuple[tuple[int, ...], list[float]], alpha: float, beta: float) -> float:
    prefix, (ends_blank, ends_symbol, lm_score) = item
    return _logaddexp(ends_blank, ends_symbol) + alpha * lm_score + beta * len(prefix)


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


def word_error_rate(decoded: Sequence[str], truth: Sequence[str]) -> float:
    """Total edit distance between word lists (split on whitespace) over total reference words."""
    return character_error_rate([d.split() for d in decoded], [t.split() for t in truth])
