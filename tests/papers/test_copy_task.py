"""The copy task (Arjovsky, Shah & Bengio 2016): layout, baseline, criterion, errors, and a
tiny run of ``lstmkit reproduce copy``."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lstmkit.tasks.papers import copy_task as copy


@pytest.mark.parametrize("delay", [1, 7, 100])
def test_layout_is_t_plus_20_steps(delay):
    inputs, targets = copy.copy_batch(16, delay, torch.Generator().manual_seed(1))
    assert inputs.shape == targets.shape == (delay + 20, 16)
    data = inputs[:10]
    assert data.min() >= 1 and data.max() <= 8
    assert torch.all(inputs[10 : 10 + delay - 1] == 0)
    assert torch.all(inputs[9 + delay] == 9), "the last of the T blanks is the delimiter"
    assert torch.all(inputs[10 + delay :] == 0)
    assert torch.all(targets[: delay + 10] == 0)
    assert torch.equal(targets[-10:], data)


def test_all_categories_occur():
    inputs, _ = copy.copy_batch(100, 5, torch.Generator().manual_seed(0))
    assert set(inputs[:10].flatten().tolist()) == set(range(1, 9))


def confident(symbols: torch.Tensor) -> torch.Tensor:
    """Logits ``[T, B, 10]`` that put (almost) all probability on ``symbols`` ``[T, B]``."""
    return torch.nn.functional.one_hot(symbols, 10).double() * 50.0


def test_memoryless_strategy_scores_the_baseline():
    delay = 30
    _, targets = copy.copy_batch(8, delay, torch.Generator().manual_seed(2))
    logits = confident(torch.zeros_like(targets))  # blank everywhere ...
    logits[-10:] = torch.tensor([-1e9] + [0.0] * 8 + [-1e9]).double()  # ... then guess 1..8
    entropy, exact = copy.copy_scores(logits, targets)
    assert math.isclose(entropy, copy.baseline(delay), rel_tol=1e-9)
    assert math.isclose(copy.baseline(delay), 10 * math.log(8) / 50)
    assert exact < 1.0


def test_scores_and_criterion_on_right_and_wrong_copies():
    delay = 12
    _, targets = copy.copy_batch(4, delay, torch.Generator().manual_seed(3))
    entropy, exact = copy.copy_scores(confident(targets), targets)
    assert entropy < 1e-6 and exact == 1.0
    assert copy.solved(entropy, exact, delay)
    wrong = targets.clone()
    wrong[-3, 1] = wrong[-3, 1] % 8 + 1  # one symbol of sequence 1 copied wrong
    entropy, exact = copy.copy_scores(confident(wrong), targets)
    assert exact == 0.75
    assert not copy.solved(entropy, exact, delay), "a confident wrong symbol costs 50 nats"


def test_bad_inputs_are_named():
    generator = torch.Generator()
    with pytest.raises(ValueError, match="batch_size"):
        copy.copy_batch(0, 10, generator)
    with pytest.raises(ValueError, match="delay"):
        copy.copy_batch(4, 0, generator)
    with pytest.raises(ValueError, match="logits"):
        copy.copy_scores(torch.zeros(5, 2, 10), torch.zeros(5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="protocol"):
        copy.run(quick=True, output_dir=Path("unused"), protocol="paper")


def test_tiny_run_writes_rows_and_curves(tmp_path, monkeypatch):
    tiny = [
        replace(copy.QUICK[0], hidden_size=16, max_sequences=128, check_every=64, test_sequences=32)
    ]
    monkeypatch.setattr(copy, "QUICK", tiny)
    result = copy.run(quick=True, output_dir=tmp_path, seeds=2)
    assert len(result.rows) == 1 and result.rows[0][0] == "copy T=10"
    assert result.rows[0][3] == "0/2", "128 sequences cannot solve it"
    assert Path(result.files["curves"]).stat().st_size > 0
