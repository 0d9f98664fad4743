"""lstmkit.data.formal_languages: every label against an independent computation (Python
arithmetic on the written-out sequence, a walk, a count), seeding, lengths, MQAR's layout,
the scaled accuracy and bad input."""

from __future__ import annotations

import itertools

import pytest
import torch

from lstmkit.data.formal_languages import (
    IGNORE_INDEX,
    TASKS,
    formal_task,
    mqar,
    scaled_accuracy,
)

# ----------------------------------------------------------------- independent definitions


def brute_parity(seq: list[int]) -> int:
    return seq.count(1) % 2


def brute_even_pairs(seq: list[int]) -> int:
    text = "".join(map(str, seq))
    pairs = sum(text[t : t + 2] in ("01", "10") for t in range(len(text) - 1))
    return pairs % 2


def brute_cycle(seq: list[int]) -> int:
    position = 0
    for token in seq:
        position = {0: position - 1, 1: position, 2: position + 1}[token]
        position %= 5
    return position


def brute_arithmetic(seq: list[int]) -> int:
    """Python evaluates the written expression with its own precedence; then mod 5."""
    text = "".join("+-*"[t - 5] if t >= 5 else str(t) for t in seq)
    return eval(text) % 5  # the text holds digits and + - * only


BRUTE = {
    "parity": brute_parity,
    "even_pairs": brute_even_pairs,
    "cycle_navigation": brute_cycle,
    "modular_arithmetic": brute_arithmetic,
}


@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("length", [1, 2, 5, 12, 41])
def test_sampled_labels_match_brute_force(name, length):
    task = TASKS[name]
    tokens, labels = task.batch(200, length, torch.Generator().manual_seed(length))
    assert tokens.dtype == labels.dtype == torch.long
    expected_length = length - (1 - length % 2) if name == "modular_arithmetic" else length
    assert tokens.shape == (200, expected_length) and labels.shape == (200,)
    assert tokens.min() >= 0 and tokens.max() < task.vocab_size
    assert [BRUTE[name](row) for row in tokens.tolist()] == labels.tolist()


@pytest.mark.parametrize("name", ["parity", "even_pairs", "cycle_navigation"])
def test_every_prefix_label_exhaustively(name):
    """All sequences of length 6 over the task's alphabet; every prefix's label."""
    task = TASKS[name]
    tokens = torch.tensor(list(itertools.product(range(task.vocab_size), repeat=6)))
    labels = task.prefix_labels(tokens)
    for row, row_labels in zip(tokens.tolist(), labels.tolist(), strict=True):
        assert row_labels == [BRUTE[name](row[: t + 1]) for t in range(6)]


def test_modular_arithmetic_prefix_labels_exhaustively():
    """Every expression of 7 tokens (4 residues, 3 operators): the value of each prefix that
    ends on a residue, and no label on the operators."""
    residues, operators = range(5), range(5, 8)
    rows = [
        [a, p, b, q, c, r, d]
        for a, b, c, d in itertools.product(residues, repeat=4)
        for p, q, r in itertools.product(operators, repeat=3)
    ]
    labels = TASKS["modular_arithmetic"].prefix_labels(torch.tensor(rows))
    for row, row_labels in zip(rows, labels.tolist(), strict=True):
        expected = [
            brute_arithmetic(row[: t + 1]) if t % 2 == 0 else IGNORE_INDEX for t in range(7)
        ]
        assert row_labels == expected


def test_arithmetic_examples_of_deletang_et_al():
    """1 + 2 * 3 = 2, 1 - 1 - 1 = 4, 0 * 1 + 4 * 3 - 2 = 0 (mod 5)."""
    plus, minus, times = 5, 6, 7
    cases = [
        ([1, plus, 2, times, 3], 2),
        ([1, minus, 1, minus, 1], 4),
        ([0, times, 1, plus, 4, times, 3, minus, 2], 0),
    ]
    for tokens, value in cases:
        labels = TASKS["modular_arithmetic"].prefix_labels(torch.tensor([tokens]))
        assert labels[0, -1].item() == value


@pytest.mark.parametrize("name", list(TASKS))
def test_seeding_is_reproducible(name):
    task = TASKS[name]
    first = task.dataset(64, 20, generator=torch.Generator().manual_seed(3))
    again = task.dataset(64, 20, generator=torch.Generator().manual_seed(3))
    other = task.dataset(64, 20, generator=torch.Generator().manual_seed(4))
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("name", list(TASKS))
def test_dataset_lengths_padding_and_labels(name):
    task = TASKS[name]
    tokens, lengths, labels = task.dataset(
        300, 17, min_length=4, generator=torch.Generator().manual_seed(0)
    )
    assert tokens.shape == (300, 17)
    low = 3 if name == "modular_arithmetic" else 4  # an even 4 becomes 3 tokens
    assert lengths.min() >= low and lengths.max() <= 17
    assert len(lengths.unique()) > 5  # lengths are drawn, not one
    if name == "modular_arithmetic":
        assert (lengths % 2 == 1).all()
    for row, n, label in zip(tokens.tolist(), lengths.tolist(), labels.tolist(), strict=True):
        assert all(t == task.vocab_size for t in row[n:])  # padding past the end
        assert all(t < task.vocab_size for t in row[:n])
        assert BRUTE[name](row[:n]) == label


def test_label_balance_matches_chance():
    """The labels are (near) uniform, so 1 / classes is the chance the scale refers to."""
    for task in TASKS.values():
        _, labels = task.batch(20000, 41, torch.Generator().manual_seed(1))
        share = torch.bincount(labels, minlength=task.num_classes).float() / len(labels)
        assert (share - task.chance).abs().max() < 0.02, task.name


def test_scaled_accuracy():
    assert scaled_accuracy(0.5, 0.5) == 0.0
    assert scaled_accuracy(1.0, 0.2) == 1.0
    assert scaled_accuracy(0.6, 0.2) == pytest.approx(0.5)
    assert scaled_accuracy(0.1, 0.2) == pytest.approx(-0.125)
    with pytest.raises(ValueError, match="chance"):
        scaled_accuracy(0.5, 1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="task must be one of"):
        formal_task("parity_check")
    with pytest.raises(ValueError, match="min_length"):
        TASKS["parity"].dataset(4, 10, min_length=11)
    with pytest.raises(ValueError, match="length must be >= 1"):
        TASKS["parity"].batch(4, 0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        TASKS["parity"].batch(2.0, 4)  # type: ignore[arg-type]


# ----------------------------------------------------------------- MQAR


@pytest.mark.parametrize(("context", "pairs"), [(64, 4), (128, 8), (12, 4)])
def test_mqar_targets_are_the_stored_values(context, pairs):
    vocab = 41
    tokens, targets = mqar(50, context, pairs, vocab, torch.Generator().manual_seed(pairs))
    assert tokens.shape == targets.shape == (50, context)
    half = (vocab - 1) // 2
    for row, target in zip(tokens.tolist(), targets.tolist(), strict=True):
        keys, values = row[0 : 2 * pairs : 2], row[1 : 2 * pairs : 2]
        assert len(set(keys)) == pairs and all(1 <= k <= half for k in keys)
        assert all(half < v < vocab for v in values)
        store = dict(zip(keys, values, strict=True))
        asked = [t for t in range(context) if target[t] != IGNORE_INDEX]
        assert len(asked) == pairs and min(asked) >= 2 * pairs
        assert sorted(row[t] for t in asked) == sorted(keys)  # every key once
        assert all(target[t] == store[row[t]] for t in asked)
        filler = [row[t] for t in range(2 * pairs, context) if t not in asked]
        assert all(t == 0 for t in filler)


def test_mqar_seeding_and_bad_input():
    a = mqar(8, 64, 4, generator=torch.Generator().manual_seed(5))
    b = mqar(8, 64, 4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="context_length must be >= 3 \\* num_pairs"):
        mqar(2, 11, 4)
    with pytest.raises(ValueError, match="vocab_size must be >= 9"):
        mqar(2, 64, 4, vocab_size=8)
