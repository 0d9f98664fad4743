"""lstmkit.tasks.papers.timing: the spike generators, the criteria, and one tiny run."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lstmkit.tasks.papers import timing
from lstmkit.tasks.reproduce import REPRODUCTIONS


def test_spike_pairs_by_hand():
    inputs, labels, second = timing.spike_pairs(torch.tensor([0, 3]), torch.tensor([50, 49]), 60)
    assert inputs.shape == (2, 60, 1)
    assert inputs[0, :, 0].nonzero().flatten().tolist() == [0, 50]
    assert inputs[1, :, 0].nonzero().flatten().tolist() == [3, 52]
    assert labels.tolist() == [1.0, 0.0] and second.tolist() == [50, 52]


def test_random_spike_pairs_have_two_spikes_49_or_50_apart():
    generator = torch.Generator().manual_seed(3)
    inputs, labels, second = timing.random_spike_pairs(200, 70, generator)
    for row in range(200):
        steps = inputs[row, :, 0].nonzero().flatten().tolist()
        assert len(steps) == 2 and steps[1] == second[row]
        assert steps[1] - steps[0] == (50 if labels[row] == 1 else 49)
    assert 0 < labels.mean() < 1  # both classes drawn


def test_all_spike_pairs_are_every_sequence_once():
    inputs, labels, _ = timing.all_spike_pairs(55)
    assert inputs.shape[0] == 10 and labels.sum() == 5
    assert len({tuple(row.flatten().tolist()) for row in inputs}) == 10


def test_timed_spikes_by_hand():
    inputs, targets = timing.timed_spikes(torch.tensor([0, 2]), 3, 2)
    assert inputs.shape == (2, 9, 1) and targets.shape == (2, 9)
    assert inputs[:, :, 0].nonzero().tolist() == [[0, 0], [1, 2]]
    assert targets[0].nonzero().flatten().tolist() == [3, 6]
    assert targets[1].nonzero().flatten().tolist() == [5, 8]


def test_spikes_right_fails_on_a_late_or_missing_spike():
    _, targets = timing.timed_spikes(torch.tensor([0]), 4, 3)
    right = torch.where(targets > 0.5, 3.0, -3.0)
    assert timing.spikes_right(right, targets).tolist() == [True]
    late = right.roll(1, dims=1)  # every spike one step late
    assert timing.spikes_right(late, targets).tolist() == [False]
    missing = right.clone()
    missing[0, 8] = -1.0
    assert timing.spikes_right(missing, targets).tolist() == [False]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="distances"):
        timing.spike_pairs(torch.tensor([0]), torch.tensor([48]), 60)
    with pytest.raises(ValueError, match="offset"):
        timing.spike_pairs(torch.tensor([20]), torch.tensor([50]), 60)
    with pytest.raises(ValueError, match="length"):
        timing.all_spike_pairs(50)
    with pytest.raises(ValueError, match="period"):
        timing.timed_spikes(torch.tensor([0]), 1, 3)
    with pytest.raises(ValueError, match="periods"):
        timing.timed_spikes(torch.tensor([0]), 5, 0)
    with pytest.raises(ValueError, match="differ"):
        timing.spikes_right(torch.zeros(1, 3), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="protocol"):
        timing.run(quick=True, output_dir=".", seeds=1, protocol="paper")


def test_registered_command():
    reproduction = REPRODUCTIONS["timing"]
    assert reproduction.module == timing.__name__ and reproduction.function == "run"


def test_interval_trial_checks_every_sequence_and_reports_a_fraction():
    # a budget of one step: the trial runs, checks all 10 sequences, reports the wrong share
    scale = replace(timing.SCALES["interval"], length=55, max_sequences=8, batch_size=8)
    trial = timing.interval_trial("peephole", 0, scale)
    assert trial.curve and 0.0 <= trial.test_error <= 1.0
    assert trial.solved == (trial.test_error == 0.0)


def test_tiny_run_writes_rows_and_plot(tmp_path, monkeypatch):
    tiny = replace(timing.SCALES["generate"], period=3, max_sequences=64, check_every=32)
    monkeypatch.setitem(timing.SCALES, "generate", tiny)
    result = timing.run(quick=True, output_dir=tmp_path, seed=0, seeds=1)
    assert [row[1:3] for row in result.rows] == [["peephole", "modern"]]
    assert all(len(row) == len(result.columns) for row in result.rows)
    assert (tmp_path / "curves.png").stat().st_size > 0
