"""lstmkit.tasks.papers.counting: the languages, the acceptance criterion, the
generalisation measure, and one tiny run of the command."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from lstmkit.tasks.papers import counting
from lstmkit.tasks.reproduce import REPRODUCTIONS


def brute_force_next(language: str, prefix: str, max_n: int = 12) -> set[str]:
    """The symbols that follow ``prefix`` in some string of the language with n <= max_n:
    read off the strings themselves, independently of ``legal_next``'s rules."""
    follows = set()
    for n in range(1, max_n + 1):
        text = counting.string(language, n)
        if text.startswith(prefix) and len(text) > len(prefix):
            follows.add(text[len(prefix)])
    return follows


@pytest.mark.parametrize("language", ["anbn", "anbncn"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_legal_next_matches_the_strings_of_the_language(language, n):
    text = counting.string(language, n)
    sets = counting.legal_next(language, n)
    assert len(sets) == len(text) - 1
    for step, legal in enumerate(sets):
        assert set(legal) == brute_force_next(language, text[: step + 1]), (text, step)


def test_hand_made_strings_and_sets():
    assert counting.string("anbn", 3) == "SaaabbbT"
    assert counting.string("anbncn", 2) == "SaabbccT"
    assert counting.legal_next("anbn", 2) == ["a", "ab", "ab", "b", "T"]
    assert counting.legal_next("anbncn", 1) == ["a", "ab", "c", "T"]


def test_encode_pads_and_marks_real_steps():
    inputs, targets, mask = counting.encode("anbn", [1, 2])
    assert inputs.shape == (2, 5, 4) and targets.shape == (2, 5, 3) and mask.shape == (2, 5)
    assert mask.tolist() == [[True, True, True, False, False], [True] * 5]
    # the string S a b: inputs S, a, b; targets {a}, {a, b}, {T} over outputs a, b, T
    assert inputs[0, :3].argmax(dim=1).tolist() == [0, 1, 2]
    assert targets[0, :3].tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert inputs[0, 3:].abs().sum() == 0


def perfect_logits(targets):
    return torch.where(targets > 0.5, 4.0, -4.0)


def test_accepted_passes_right_and_fails_one_wrong_bit():
    _, targets, mask = counting.encode("anbncn", [1, 3])
    logits = perfect_logits(targets)
    assert counting.accepted(logits, targets, mask).tolist() == [True, True]
    wrong = logits.clone()
    wrong[1, 4, 2] *= -1  # one output of one step of the second string on the wrong side
    assert counting.accepted(wrong, targets, mask).tolist() == [True, False]
    # a wrong output on a padded step does not count
    padded = logits.clone()
    padded[0, -1] *= -1
    assert counting.accepted(padded, targets, mask).tolist() == [True, True]


class Oracle(torch.nn.Module):
    """Predicts perfectly for n <= good_up_to and gives one wrong bit for the n's in ``bad``."""

    def __init__(self, language, bad):
        super().__init__()
        self.language, self.bad = language, set(bad)

    def forward(self, inputs):
        a_count = inputs[:, :, 1].sum(dim=1).long()  # n of each string
        _, targets, _ = counting.encode(self.language, a_count.tolist())
        logits = perfect_logits(targets)[:, : inputs.shape[1]]
        for row, n in enumerate(a_count.tolist()):
            if n in self.bad:
                logits[row, 0, 0] *= -1
        return logits


@pytest.mark.parametrize(("bad", "expected"), [([], 60), ([7], 6), ([7, 3], 2), ([1], 0)])
def test_largest_generalised_stops_at_the_first_failure(bad, expected):
    model = Oracle("anbn", bad)
    assert counting.largest_generalised(model, 60, chunk=8) == expected


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="language"):
        counting.string("anbm", 2)
    with pytest.raises(ValueError, match="n must be"):
        counting.string("anbn", 0)
    with pytest.raises(ValueError, match="ns must"):
        counting.encode("anbn", [])
    with pytest.raises(ValueError, match="mask"):
        counting.accepted(torch.zeros(2, 3, 3), torch.zeros(2, 3, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="protocol"):
        counting.run(quick=True, output_dir=".", seeds=1, protocol="paper")


def test_registered_command():
    reproduction = REPRODUCTIONS["counting"]
    assert reproduction.module == counting.__name__ and reproduction.function == "run"


def test_tiny_run_writes_rows_and_plot(tmp_path, monkeypatch):
    tiny = replace(counting.FULL, max_sequences=64, check_every=32, test_max_n=20)
    monkeypatch.setattr(counting, "QUICK", tiny)
    result = counting.run(quick=True, output_dir=tmp_path, seed=0, seeds=1)
    assert [row[:3] for row in result.rows] == [
        ["a^n b^n", "peephole", "modern"],
        ["a^n b^n c^n", "peephole", "modern"],
    ]
    assert all(len(row) == len(result.columns) for row in result.rows)
    assert (tmp_path / "curves.png").stat().st_size > 0
    result.write(tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["columns"] == counting.COLUMNS
