"""CTC loss and decoders against brute force over every alignment, on tiny cases."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.nn import functional as F

from helpers import assert_close
from lstmkit.training.ctc import (
    best_path,
    character_error_rate,
    edit_distance,
    prefix_beam_search,
    word_error_rate,
)

BLANK = 0


# ----------------------------------------------------------------------------- the oracle
def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    """CTC's many-to-one map, written from its definition: merge runs, then drop blanks."""
    merged = [symbol for k, symbol in enumerate(path) if k == 0 or path[k - 1] != symbol]
    return tuple(symbol for symbol in merged if symbol != BLANK)


def labelling_log_probs(log_probs: torch.Tensor) -> dict[tuple[int, ...], torch.Tensor]:
    """log P(labelling) for every labelling of one ``[T, C]`` sequence: sum over all C^T paths."""
    steps, classes = log_probs.shape
    per_label: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for path in itertools.product(range(classes), repeat=steps):
        score = log_probs[torch.arange(steps), torch.tensor(path)].sum()
        per_label.setdefault(collapse(path), []).append(score)
    return {label: torch.logsumexp(torch.stack(s), 0) for label, s in per_label.items()}


def random_log_probs(steps: int, classes: int, sharpness: float = 1.0) -> torch.Tensor:
    return (sharpness * torch.randn(steps, classes, dtype=torch.float64)).log_softmax(-1)


# ----------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("classes", [2, 3], ids=lambda c: f"C{c}")
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5], ids=lambda t: f"T{t}")
def test_torch_ctc_loss_is_the_sum_over_all_alignments(steps: int, classes: int) -> None:
    logits = torch.randn(steps, classes, dtype=torch.float64, requires_grad=True)
    log_probs = logits.log_softmax(-1)
    exact = labelling_log_probs(log_probs)
    # every labelling some alignment spells: the empty one, repeats (1, 1) from T = 3 on
    for label in exact:
        loss = F.ctc_loss(
            log_probs[:, None],  # [T, 1, C]
            torch.tensor([label], dtype=torch.long).reshape(1, len(label)),
            torch.tensor([steps]),
            torch.tensor([len(label)]),
            blank=BLANK,
            reduction="sum",
        )
        assert_close(f"loss {label}", -exact[label], loss)
        (ours,) = torch.autograd.grad(loss, logits, retain_graph=True)
        (theirs,) = torch.autograd.grad(-exact[label], logits, retain_graph=True)
        assert_close(f"dlogits {label}", theirs, ours)


def test_unalignable_label_has_zero_probability() -> None:
    """A label needing more steps than given (repeats need a blank between) is impossible."""
    log_probs = random_log_probs(3, 2)
    assert (1, 1) in labelling_log_probs(log_probs)  # 1 - 1 fits in 3 steps
    assert (1, 1, 1) not in labelling_log_probs(log_probs)  # would need 5
    loss = F.ctc_loss(
        log_probs[:, None], torch.tensor([[1, 1, 1]]), torch.tensor([3]), torch.tensor([3])
    )
    assert math.isinf(loss.item())


# ----------------------------------------------------------------------------- decoders
def one_hot_frames(path: list[int], classes: int, peak: float = 0.9) -> torch.Tensor:
    """Posteriors ``[T, 1, C]`` that put ``peak`` on each step of ``path``, the rest spread."""
    probs = torch.full((len(path), classes), (1 - peak) / (classes - 1), dtype=torch.float64)
    probs[torch.arange(len(path)), torch.tensor(path)] = peak
    return probs.log()[:, None]


HAND_MADE = [  # (frame-wise path, its labelling, written by hand)
    ([1, 1, 0, 1, 2, 2], [1, 1, 2]),  # a repeat separated by a blank stays two symbols
    ([1, 1, 1, 2, 0, 0], [1, 2]),  # a run is one symbol
    ([0, 0, 0], []),
    ([2, 0, 2, 0, 2], [2, 2, 2]),
    ([3, 1, 0, 0, 1, 3, 3, 0, 3], [3, 1, 1, 3, 3]),
]


@pytest.mark.parametrize("path, expected", HAND_MADE, ids=[str(p) for p, _ in HAND_MADE])
@pytest.mark.parametrize("width", [1, 4, 16], ids=lambda w: f"beam{w}")
def test_decoders_read_hand_made_posteriors(path, expected, width: int) -> None:
    frames = one_hot_frames(path, classes=4)
    lengths = torch.tensor([len(path)])
    assert best_path(frames, lengths) == [expected]
    assert prefix_beam_search(frames, lengths, beam_width=width) == [expected]


def test_decoders_respect_lengths_in_a_batch() -> None:
    paths = [[1, 0, 2, 2, 0], [2, 2, 0, 0, 0]]
    frames = torch.cat([one_hot_frames(p, 3) for p in paths], dim=1)  # [5, 2, 3]
    lengths = torch.tensor([5, 2])  # the second stops before its padding
    assert best_path(frames, lengths) == [[1, 2], [2]]
    assert prefix_beam_search(frames, lengths, beam_width=3) == [[1, 2], [2]]


def test_beam_width_1_equals_best_path_on_peaky_posteriors() -> None:
    """Each step's top class at >= 0.8 (as a trained network gives): one prefix kept per step
    is then the best path's. (On flat posteriors they may differ, see the next test.)"""
    generator = torch.Generator().manual_seed(1)
    for _ in range(200):
        steps, classes = int(torch.randint(1, 12, (1,), generator=generator)), 4
        top = torch.randint(0, classes, (steps,), generator=generator)
        peak = 0.8 + 0.19 * torch.rand(steps, generator=generator, dtype=torch.float64)
        rest = torch.rand(steps, classes, generator=generator, dtype=torch.float64)
        rest[torch.arange(steps), top] = 0
        probs = rest / rest.sum(-1, keepdim=True) * (1 - peak)[:, None]
        probs[torch.arange(steps), top] = peak
        frames, lengths = probs.log()[:, None], torch.tensor([steps])
        assert prefix_beam_search(frames, lengths, beam_width=1) == best_path(frames, lengths)


def test_beam_search_beats_best_path_where_they_differ() -> None:
    # two steps of P(blank) = 0.6, P(a) = 0.4: the best path is "--" (labelling "", 0.36) but
    # "a" collects a-, -a and aa: 0.24 + 0.24 + 0.16 = 0.64
    frames = torch.tensor([[0.6, 0.4], [0.6, 0.4]], dtype=torch.float64).log()[:, None]
    lengths = torch.tensor([2])
    greedy, beam = best_path(frames, lengths)[0], prefix_beam_search(frames, lengths, 2)[0]
    assert greedy == [] and beam == [1]

    def log_p(label: list[int]) -> float:
        target = torch.tensor([label], dtype=torch.long).reshape(1, len(label))
        loss = F.ctc_loss(frames, target, lengths, torch.tensor([len(label)]), reduction="sum")
        return -loss.item()

    assert log_p(beam) > log_p(greedy)
    assert math.isclose(math.exp(log_p(beam)), 0.64) and math.isclose(math.exp(log_p([])), 0.36)


def exact_best(log_probs: torch.Tensor, lm=None, alpha: float = 0.0, beta: float = 0.0):
    """The labelling maximising log P_ctc + alpha * log P_lm + beta * length, by brute force."""

    def lm_score(label: tuple[int, ...]) -> float:
        return sum(lm(label[:k], label[k]) for k in range(len(label))) if lm else 0.0

    scores = {
        label: value.item() + alpha * lm_score(label) + beta * len(label)
        for label, value in labelling_log_probs(log_probs).items()
    }
    return list(max(scores, key=scores.get))


@pytest.mark.parametrize("steps", [2, 3, 4, 5], ids=lambda t: f"T{t}")
def test_wide_beam_finds_the_most_probable_labelling(steps: int) -> None:
    """With a beam wider than the number of prefixes, prefix search is exact."""
    for _ in range(5):
        log_probs = random_log_probs(steps, 3, sharpness=0.7)  # flat: best path often wrong
        found = prefix_beam_search(log_probs[:, None], torch.tensor([steps]), beam_width=400)
        assert found == [exact_best(log_probs)]


def bigram_lm(table: torch.Tensor):
    """log P(next | prefix) from a bigram table ``[C, C]`` (row 0: the start of a line)."""
    log_table = table.log_softmax(-1)

    def lm(prefix: tuple[int, ...], symbol: int) -> float:
        return log_table[prefix[-1] if prefix else 0, symbol].item()

    return lm


@pytest.mark.parametrize("alpha, beta", [(0.5, 0.0), (1.0, 0.5), (2.0, -0.3)])
def test_beam_search_with_a_language_model_maximises_the_joint_score(alpha, beta) -> None:
    generator = torch.Generator().manual_seed(2)
    for _ in range(4):
        log_probs = random_log_probs(4, 3, sharpness=0.7)
        lm = bigram_lm(2 * torch.randn(3, 3, generator=generator, dtype=torch.float64))
        found = prefix_beam_search(
            log_probs[:, None], torch.tensor([4]), beam_width=400, lm=lm, alpha=alpha, beta=beta
        )
        assert found == [exact_best(log_probs, lm, alpha, beta)]


def test_language_model_changes_the_decision() -> None:
    """Acoustics slightly prefer 1 over 2; a language model that rules 1 out flips it."""
    probs = torch.tensor([[0.1, 0.5, 0.4]], dtype=torch.float64)
    frames, lengths = probs.log()[:, None], torch.tensor([1])
    assert prefix_beam_search(frames, lengths, 3) == [[1]]

    def no_ones(prefix: tuple[int, ...], symbol: int) -> float:
        return math.log(0.01) if symbol == 1 else math.log(0.99)

    assert prefix_beam_search(frames, lengths, 3, lm=no_ones, alpha=1.0) == [[2]]
    assert prefix_beam_search(frames, lengths, 3, lm=no_ones, alpha=0.0) == [[1]]


def test_beam_width_must_be_positive() -> None:
    frames = random_log_probs(3, 3)[:, None]
    with pytest.raises(ValueError, match="beam_width must be an int >= 1, got 0"):
        prefix_beam_search(frames, torch.tensor([3]), beam_width=0)
    with pytest.raises(ValueError, match=r"log_probs must be \[T, B, C\]"):
        prefix_beam_search(frames[:, 0], torch.tensor([3]))


# ----------------------------------------------------------------------------- error rates
def test_edit_distance_and_error_rates_by_hand() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "abc") == 0
    # "12 34 5" read as "12 35 5": one substituted character of 7, one word of 3
    assert character_error_rate(["12 35 5"], ["12 34 5"]) == pytest.approx(1 / 7)
    assert word_error_rate(["12 35 5"], ["12 34 5"]) == pytest.approx(1 / 3)
    # a dropped space merges two words: 1 substitution + 1 deletion over 2 reference words
    assert word_error_rate(["1234"], ["12 34"]) == pytest.approx(2 / 2)
    assert word_error_rate(["9", "1 2"], ["9", "1 2 3"]) == pytest.approx(1 / 4)
