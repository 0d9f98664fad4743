"""The adding and multiplication problems (Hochreiter & Schmidhuber 1997, Exp. 4 and 5):
generators, criteria, the last-step model and a tiny run of each command."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers import assert_close, grads_of
from lstmkit.tasks.papers import arithmetic
from lstmkit.tasks.papers.arithmetic import (
    LastStepRegressor,
    adding_sequences,
    adding_stop,
    count_wrong,
    multiplication_sequences,
    multiplication_stop,
)


def _marks(x: torch.Tensor) -> list[list[int]]:
    """Per sequence, the steps whose marker is 1.0."""
    return [torch.nonzero(x[:, b, 1] == 1.0).flatten().tolist() for b in range(x.shape[1])]


@pytest.mark.parametrize("T", [22, 100])
@pytest.mark.parametrize("generate", [adding_sequences, multiplication_sequences])
def test_sequences_follow_the_papers_layout(generate, T):
    x, y, lengths = generate(400, T, torch.Generator().manual_seed(T))
    assert x.shape == (int(lengths.max()), 400, 2) and y.shape == lengths.shape == (400,)
    assert int(lengths.min()) >= T and int(lengths.max()) <= T + T // 10
    low = -1.0 if generate is adding_sequences else 0.0
    for b, (first, second) in enumerate(_marks(x)):
        length = int(lengths[b])
        markers, values = x[:length, b, 1], x[:length, b, 0]
        assert first < 10 and first < second <= T // 2 - 1  # the minimal lag is T/2
        if first != 0:
            assert markers[0] == -1.0
        assert markers[length - 1] == -1.0
        others = torch.ones(length, dtype=torch.bool)
        others[[0, first, second, length - 1]] = False
        assert torch.all(markers[others] == 0.0)
        assert torch.all(x[length:, b] == 0.0)  # padding
        assert float(values.min()) >= low and float(values.max()) <= 1.0
        x1, x2 = float(values[first]), float(values[second])
        expected = 0.5 + (x1 + x2) / 4.0 if generate is adding_sequences else x1 * x2
        assert abs(float(y[b]) - expected) < 1e-6


def test_marks_cover_the_allowed_positions():
    x, _, _ = adding_sequences(4000, 22, torch.Generator().manual_seed(1))
    # sorted, so "first" here is the earlier mark; either can be the paper's X1
    positions = [p for marks in _marks(x) for p in marks]
    assert set(positions) == set(range(22 // 2))  # the first T/2 steps, no other
    x1_positions = {marks[0] for marks in _marks(x)}
    assert x1_positions <= set(range(10))


@pytest.mark.parametrize(
    "generate, replaced", [(adding_sequences, 0.0), (multiplication_sequences, 1.0)]
)
def test_a_marked_first_pair_gets_the_papers_value(generate, replaced):
    x, _, _ = generate(3000, 30, torch.Generator().manual_seed(2))
    marked_first = x[0, :, 1] == 1.0
    assert 100 < int(marked_first.sum()) < 1000  # about 1/10 + 1/14 of the sequences
    assert torch.all(x[0, marked_first, 0] == replaced)
    assert torch.all(x[0, ~marked_first, 1] == -1.0)


def test_the_criteria_pass_a_right_prediction_and_fail_the_mean():
    _, y, _ = adding_sequences(2000, 22, torch.Generator().manual_seed(3))
    assert adding_stop(y - y) and count_wrong(y - y) == 0
    assert not adding_stop(torch.full_like(y, 0.5) - y)  # the mean target: no memory
    _, y, _ = multiplication_sequences(2000, 22, torch.Generator().manual_seed(3))
    assert multiplication_stop(y - y, 13)
    assert not multiplication_stop(torch.full_like(y, 0.25) - y, 140)


def test_processed_correctly_means_an_error_below_0_04():
    assert count_wrong(torch.tensor([0.0, 0.039, -0.039, 0.04, -0.05, 1.0])) == 3


def test_adding_stop_needs_2000_recent_sequences_all_correct():
    good = torch.full((2000,), 0.03)
    assert adding_stop(good)
    assert not adding_stop(good[:1999])  # too few sequences seen
    one_wrong = good.clone()
    one_wrong[1500] = -0.05
    assert not adding_stop(one_wrong)
    assert adding_stop(torch.cat([torch.tensor([0.9]), good]))  # older than the window


def test_multiplication_stop_counts_fewer_than_n_seq_wrong():
    errors = torch.zeros(2000)
    errors[:139] = 0.1
    assert multiplication_stop(errors, 140)
    errors[139] = -0.2
    assert not multiplication_stop(errors, 140)
    assert not multiplication_stop(torch.zeros(1999), 140)
    assert multiplication_stop(torch.cat([torch.full((500,), 0.5), torch.zeros(2000)]), 13)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: adding_sequences(0, 100), "batch_size"),
        (lambda: adding_sequences(4, 21), "T"),
        (lambda: multiplication_sequences(4, True), "T"),
        (lambda: multiplication_sequences(2.5, 100), "batch_size"),
        (lambda: multiplication_stop(torch.zeros(2000), 0), "n_seq"),
        (lambda: arithmetic.multiplication_setup(100, 7), "n_seq"),
        (lambda: arithmetic.run_adding(output_dir=".", protocol="paper"), "protocol"),
        (lambda: arithmetic.run_multiplication(output_dir=".", seeds=0), "seeds"),
    ],
)
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_the_last_step_read_equals_each_sequence_run_alone():
    model = LastStepRegressor(hidden_size=5, forget_bias=1.0, input_bias=-1.0)
    x, _, lengths = adding_sequences(4, 30, torch.Generator().manual_seed(4))
    batched = model(x, lengths)
    alone = torch.cat([model(x[: int(n), b : b + 1], n.view(1)) for b, n in enumerate(lengths)])
    assert_close("output", alone, batched)
    params = list(model.parameters())
    for name, expected, actual in zip(
        [n for n, _ in model.named_parameters()],
        grads_of([alone], params, seed=5),
        grads_of([batched], params, seed=5),
        strict=True,
    ):
        assert_close(f"d{name}", expected, actual)


def test_the_input_bias_shifts_only_the_input_gates():
    torch.manual_seed(6)
    plain = LastStepRegressor(hidden_size=4, forget_bias=2.0, input_bias=0.0)
    torch.manual_seed(6)
    shifted = LastStepRegressor(hidden_size=4, forget_bias=2.0, input_bias=-3.0)
    shift = shifted.lstm.bias_ih_l0 - plain.lstm.bias_ih_l0  # blocks i, f, g, o
    assert_close("shift", torch.tensor([-3.0] * 4 + [0.0] * 12), shift)


def _tiny(setup):
    return dataclasses.replace(setup, T=22, max_sequences=320, check_every_steps=2)


@pytest.mark.parametrize(
    "command, setup_name",
    [("run_adding", "adding_setup"), ("run_multiplication", "multiplication_setup")],
)
def test_a_tiny_run_writes_rows_and_the_curve(tmp_path, monkeypatch, command, setup_name):
    real = getattr(arithmetic, setup_name)
    monkeypatch.setattr(arithmetic, setup_name, lambda *a, **k: _tiny(real(*a, **k)))
    result = getattr(arithmetic, command)(quick=True, output_dir=tmp_path, seed=0, seeds=2)
    assert len(result.rows) == 1 and len(result.rows[0]) == len(result.columns)
    assert result.rows[0][3].endswith("/2")  # solved of 2 trials
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert result.files["curves"] == str(tmp_path / "curves.png")


def test_adding_at_a_short_lag_reaches_the_papers_criterion():
    setup = dataclasses.replace(arithmetic.adding_setup(30), max_sequences=100_000)
    trial = arithmetic.train_trial(setup, seed=0)
    assert trial.solved and trial.test_error <= 1
