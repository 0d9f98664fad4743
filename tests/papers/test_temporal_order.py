"""The temporal order task (Hochreiter & Schmidhuber 1997, Exp. 6): generator, criterion,
chrono initialisation, errors, and a tiny run of ``lstmkit reproduce temporal-order``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import lstmkit
from lstmkit.tasks.papers import temporal_order as order
from lstmkit.tasks.papers.common import chrono_init


def decode(inputs: torch.Tensor, lengths: torch.Tensor, column: int) -> str:
    """Sequence ``column`` as its string of symbols (one-hot rows -> letters)."""
    steps = inputs[: int(lengths[column]), column]  # [L, 8]
    assert torch.all(steps.sum(-1) == 1), "every step holds exactly one symbol"
    return "".join(order.SYMBOLS[i] for i in steps.argmax(-1).tolist())


@pytest.mark.parametrize("experiment", ["6a", "6b"])
def test_sequences_follow_the_paper_layout(experiment):
    generator = torch.Generator().manual_seed(3)
    inputs, lengths, labels = order.temporal_order_batch(64, experiment, generator)
    assert inputs.shape == (110, 64, 8)
    assert lengths.min() >= 100 and lengths.max() <= 110
    for column in range(64):
        text = decode(inputs, lengths, column)
        assert text[0] == "B" and text[-1] == "E"
        assert set(text[1:-1]) <= set("abcdXY")
        assert inputs[int(lengths[column]) :, column].abs().sum() == 0, "nothing past the end"
        relevant = [i + 1 for i, s in enumerate(text) if s in "XY"]  # 1-based positions
        ranges = order.POSITIONS[experiment]
        assert len(relevant) == len(ranges)
        for position, (low, high) in zip(relevant, ranges, strict=True):
            assert low <= position <= high
        # the class is the order of X and Y, read as binary (X = 0, Y = 1), first bit first
        expected = int("".join("1" if text[p - 1] == "Y" else "0" for p in relevant), 2)
        assert int(labels[column]) == expected


def test_all_classes_occur_and_named_classes_match():
    generator = torch.Generator().manual_seed(0)
    inputs, lengths, labels = order.temporal_order_batch(400, "6a", generator)
    assert set(labels.tolist()) == {0, 1, 2, 3}
    names = {"XX": 0, "XY": 1, "YX": 2, "YY": 3}  # Q, R, S, U in the paper
    for column in range(20):
        pair = "".join(s for s in decode(inputs, lengths, column) if s in "XY")
        assert names[pair] == int(labels[column])


def test_criterion_is_the_papers_0_3_rule():
    labels = torch.tensor([2, 0])
    right = torch.tensor([[0.29, 0.0, 0.71, 0.1], [0.8, 0.2, 0.0, 0.29]])
    assert order.classified_correctly(right, labels).tolist() == [True, True]
    wrong = torch.tensor([[0.31, 0.0, 0.9, 0.0], [0.69, 0.0, 0.0, 0.0]])
    assert order.classified_correctly(wrong, labels).tolist() == [False, False]


def test_chrono_init_sets_forget_and_input_biases():
    lstm = lstmkit.LSTM(8, 16)
    chrono_init(lstm, 110, torch.Generator().manual_seed(0))
    forget = lstm.bias_ih_l0[16:32]
    assert torch.all(forget >= 0) and torch.all(forget <= torch.log(torch.tensor(109.0)))
    assert torch.equal(lstm.bias_ih_l0[:16], -forget)
    assert torch.all(lstm.bias_ih_l0[32:] == 0) and torch.all(lstm.bias_hh_l0 == 0)


def test_bad_inputs_are_named():
    generator = torch.Generator()
    with pytest.raises(ValueError, match="experiment"):
        order.temporal_order_batch(4, "6c", generator)
    with pytest.raises(ValueError, match="batch_size"):
        order.temporal_order_batch(0, "6a", generator)
    with pytest.raises(ValueError, match="outputs"):
        order.classified_correctly(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="protocol"):
        order.run(quick=True, output_dir=Path("unused"), protocol="paper")


def test_tiny_run_writes_rows_and_curves(tmp_path, monkeypatch):
    tiny = {
        name: replace(setup, max_sequences=96, check_every=32)
        for name, setup in order.QUICK.items()
    }
    monkeypatch.setattr(order, "QUICK", tiny)
    monkeypatch.setattr(order, "TEST_SEQUENCES", 64)
    result = order.run(quick=True, output_dir=tmp_path, seeds=1)
    assert [row[0] for row in result.rows] == ["6a (4 classes)", "6b (8 classes)"]
    assert all(row[3] == "0/1" for row in result.rows), "96 sequences cannot solve it"
    assert Path(result.files["curves"]).stat().st_size > 0


@pytest.mark.slow
def test_quick_setup_solves_6a_with_seed_0():
    trial = order.trial(order.QUICK["6a"], seed=0)
    assert trial.solved and trial.test_error <= order.PAPER_WRONG["6a"]
