"""Hochreiter & Schmidhuber 1997, Exp. 2a, 2c, 3a: generators, criteria, model, commands."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import assert_close
from lstmkit.tasks.papers import long_lag
from lstmkit.tasks.papers.long_lag import (
    LagNet,
    Setup,
    all_below,
    distractor_sequences,
    noise_free_sequences,
    sequence_errors,
    stopping_criteria,
    two_sequence_problem,
)


# ------------------------------------------------------------------------- Exp. 2a data
def test_noise_free_sequences_are_the_two_training_sequences():
    p = 5  # a_1..a_4 are 0..3, x is 4, y is 5
    sequences = noise_free_sequences(p, 64, torch.Generator().manual_seed(0))
    assert sequences.shape == (64, p + 1)
    x_sequence = torch.tensor([4, 0, 1, 2, 3, 4])
    y_sequence = torch.tensor([5, 0, 1, 2, 3, 5])
    is_x = (sequences == x_sequence).all(dim=1)
    is_y = (sequences == y_sequence).all(dim=1)
    assert bool((is_x | is_y).all())
    assert 0 < int(is_x.sum()) < 64  # both occur (probability 1 - 2^-63)


# ------------------------------------------------------------------------- Exp. 2c data
def test_distractor_sequences_follow_the_paper():
    p, q = 7, 10  # distractors 0..6, e=7, b=8, x=9, y=10
    inputs, lengths, labels = distractor_sequences(p, q, 500, torch.Generator().manual_seed(1))
    assert inputs.shape[0] == 500 and inputs.shape[1] == int(lengths.max())
    assert int(lengths.min()) >= q + 3  # b, s, >= q distractors, e (the final s is the target)
    for row, length, label in zip(inputs, lengths.tolist(), labels.tolist(), strict=True):
        assert row[0] == 8 and row[1] == 9 + label
        middle = row[2 : length - 1]
        assert len(middle) >= q and bool((middle < p).all())
        assert bool((row[length - 1 :] == 7).all())  # the trigger e, then e padding
    extra = (lengths - (q + 3)).float()
    assert 7.0 < float(extra.mean()) < 11.0  # geometric, mean 9 (r = 0.9)
    assert 0.4 < float(labels.float().mean()) < 0.6


def test_distractor_sequences_without_extra_have_the_minimal_length():
    inputs, lengths, _ = distractor_sequences(
        3, 4, 20, torch.Generator().manual_seed(2), extra_probability=0.0
    )
    assert bool((lengths == 4 + 3).all()) and inputs.shape == (20, 7)


# ------------------------------------------------------------------------- Exp. 3a data
def test_two_sequence_problem_marks_the_class_in_the_first_n_steps():
    T, N = 50, 3
    inputs, lengths, targets = two_sequence_problem(T, N, 400, torch.Generator().manual_seed(3))
    assert inputs.shape[-1] == 1 and inputs.shape[0] == 400
    assert int(lengths.min()) >= T and int(lengths.max()) <= T + T // 10
    values = inputs[..., 0]
    assert_close("class marks", (2 * targets - 1)[:, None].expand(-1, N), values[:, :N])
    noise = torch.cat([values[b, N:length] for b, length in enumerate(lengths.tolist())])
    assert abs(float(noise.mean())) < 0.02 and abs(float(noise.var()) - 0.2) < 0.02
    past_end = torch.arange(values.shape[1])[None, :] >= lengths[:, None]
    assert bool((values[past_end] == 0).all())


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda g: noise_free_sequences(1, 4, g), "p"),
        (lambda g: noise_free_sequences(5, 0, g), "batch"),
        (lambda g: distractor_sequences(5, -1, 4, g), "q"),
        (lambda g: distractor_sequences(5, 5, 4, g, extra_probability=1.0), "extra_probability"),
        (lambda g: two_sequence_problem(10, 11, 4, g), "N"),
        (lambda g: two_sequence_problem(10, 3, 4, g, noise_variance=-1.0), "noise_variance"),
        (lambda g: two_sequence_problem(10.0, 3, 4, g), "T"),
    ],
)
def test_generators_reject_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call(torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- criteria
def test_sequence_errors_take_the_worst_unit_and_step():
    targets = torch.zeros(2, 3, 4)
    outputs = torch.zeros(2, 3, 4)
    outputs[0, 2, 1] = 0.3  # one bad unit at one step of sequence 0
    outputs[1, 0, 0] = 0.1
    assert_close("errors", torch.tensor([0.3, 0.1]), sequence_errors(outputs, targets))
    with pytest.raises(ValueError, match="same shape"):
        sequence_errors(outputs, targets[:, :2])


def test_success_needs_every_sequence_below_the_threshold():
    right = torch.tensor([0.01, 0.24, 0.1])
    assert all_below(right, 0.25)
    assert not all_below(torch.cat([right, torch.tensor([0.25])]), 0.25)  # strictly below
    with pytest.raises(ValueError, match="threshold"):
        all_below(right, 0.0)


def test_stopping_criteria_st1_and_st2():
    assert stopping_criteria(torch.full((256,), 0.005)) == (True, True)
    assert stopping_criteria(torch.full((256,), 0.05)) == (True, False)  # mean >= 0.01
    wrong = torch.full((256,), 0.001)
    wrong[7] = 0.2  # one misclassified sequence breaks both
    assert stopping_criteria(wrong) == (False, False)


# -------------------------------------------------------------------------------- model
def test_lag_net_reads_the_last_step_of_each_sequence():
    net = LagNet(6, 3, 2, embedding=4)
    inputs = torch.randint(0, 6, (3, 9))
    lengths = torch.tensor([9, 4, 6])
    last = net(inputs, lengths, last_only=True)
    for b, length in enumerate(lengths.tolist()):  # each alone, cut at its length
        alone = net(inputs[b : b + 1, :length])[0, -1]
        assert_close(f"sequence {b}", alone, last[b], rtol=1e-5, atol=1e-6)


def test_lag_net_input_gate_bias_shuts_the_gates():
    net = LagNet(None, 2, 1, input_gate_bias=(-1.0, -5.0))
    plain = LagNet(None, 2, 1)
    with pytest.raises(ValueError, match="input_gate_bias"):
        LagNet(None, 2, 1, input_gate_bias=(-1.0,))
    assert net.lstm.bias_ih_l0.shape == plain.lstm.bias_ih_l0.shape
    assert (
        float(net.lstm.bias_ih_l0[1].detach()) < -4.0
    )  # the second cell's input gate, U(-1,1) - 5


def test_paper_net_2a_has_the_papers_weights():
    net = long_lag._paper_net(101, 1, 101, experiment="2a")
    trained = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trained == 10504  # the paper's count for p = 100 (Table 2)
    assert all(float(p.detach().abs().max()) <= 0.2 for p in net.parameters())


def test_cell_added_later_holds_the_cell_weights_until_the_error_stalls():
    readout = torch.nn.Linear(3, 2)  # reads [1 cell, 2 inputs]
    schedule = long_lag.CellAddedLater(readout, hidden=1, window=2)
    assert bool((readout.weight[:, 0] == 0).all())
    readout(torch.randn(4, 3)).sum().backward()
    assert bool((readout.weight.grad[:, 0] == 0).all()) and bool(readout.weight.grad[:, 1:].any())
    for loss in (10.0, 10.0, 5.0, 5.0):  # falling: the cell stays out
        schedule.record(loss)
    assert not schedule.added
    for loss in (5.0, 5.0):  # stalled: the cell joins
        schedule.record(loss)
    assert schedule.added
    readout.weight.grad = None
    readout(torch.randn(4, 3)).sum().backward()
    assert bool(readout.weight.grad[:, 0].any())


# ---------------------------------------------------------------------- end to end
def test_trials_and_commands_run_end_to_end(tmp_path, monkeypatch):
    tiny = Setup(hidden=2, batch=4, lr=1e-2, max_sequences=8, check_every=4, embedding=4)
    monkeypatch.setattr(long_lag, "MODERN_2A", tiny)
    monkeypatch.setattr(long_lag, "MODERN_2C", tiny)
    monkeypatch.setattr(long_lag, "MODERN_3A", tiny)
    monkeypatch.setattr(long_lag, "SUCCESSIVE", 20)
    monkeypatch.setattr(long_lag, "PROBE", 10)
    monkeypatch.setattr(long_lag, "ST1_TEST", 16)
    monkeypatch.setattr(long_lag, "FINAL_TEST", 16)
    monkeypatch.setattr(long_lag, "_DEFAULT_P", 6)
    monkeypatch.setattr(long_lag, "_LONG_P", 8)
    monkeypatch.setattr(long_lag, "_DEFAULT_T", 10)
    from lstmkit.tasks.reproduce import run

    for name in ("long-lag", "noise-signal"):
        result = run(name, quick=True, output_dir=tmp_path / name)
        assert (tmp_path / name / "curves.png").stat().st_size > 0
        assert json.loads((tmp_path / name / "results.json").read_text())["rows"]
        assert all(len(row) == len(result.columns) for row in result.rows)
        assert all(row[3].endswith("/1") for row in result.rows)  # 1 seed in quick
    with pytest.raises(ValueError, match="protocol"):
        run("noise-signal", quick=True, output_dir=tmp_path / "x", protocol="paper")
