"""The classic-paper machinery: the registry's seeds and protocol, ``--all``, and the shared
pieces of ``lstmkit.tasks.papers.common`` (the stopping loop, the summary row, the plot)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmkit.cli.main import app
from lstmkit.tasks import reproduce
from lstmkit.tasks.papers import common

calls: list[dict] = []


def fake_experiment(*, quick, output_dir, seed, seeds, protocol):
    """A classic experiment that records how it was called; solved when ``seed`` is even."""
    calls.append(dict(quick=quick, seed=seed, seeds=seeds, protocol=protocol))
    trials = [
        common.Trial(seed=s, solved=s % 2 == 0, sequences=100 * (s + 1), test_error=0.1, seconds=0)
        for s in common.seed_list(seed, seeds)
    ]
    row = common.summary_row("fake", "standard", protocol, trials, "paper: 100%")
    return common.paper_result(
        "fake", [row], notes=[], files={}, started=time.perf_counter(), success=seed % 2 == 0
    )


def fake(name: str, protocols: tuple[str, ...] = ("modern", "paper")) -> reproduce.Reproduction:
    return reproduce.Reproduction(
        name=name,
        paper="Nobody 1900",
        summary="fake",
        description="fake",
        example=f"lstmkit reproduce {name}",
        module=__name__,
        function="fake_experiment",
        classic=True,
        protocols=protocols,
    )


@pytest.fixture
def registry(monkeypatch):
    """Only two fake classic experiments are registered."""
    entries = {"fake-a": fake("fake-a"), "fake-b": fake("fake-b", ("modern",))}
    monkeypatch.setattr(reproduce, "REPRODUCTIONS", entries)
    calls.clear()
    return entries


def test_run_gives_the_seeds_default_of_quick_and_full_and_the_protocol(registry, tmp_path):
    reproduce.run("fake-a", quick=True, output_dir=tmp_path / "q")
    reproduce.run("fake-a", output_dir=tmp_path / "f", protocol="paper")
    reproduce.run("fake-a", output_dir=tmp_path / "s", seeds=3, seed=7)
    assert calls == [
        dict(quick=True, seed=0, seeds=1, protocol="modern"),
        dict(quick=False, seed=0, seeds=5, protocol="paper"),
        dict(quick=False, seed=7, seeds=3, protocol="modern"),
    ]
    written = json.loads((tmp_path / "f" / "results.json").read_text())
    assert written["rows"][0][3] == "3/5"  # seeds 0, 2, 4 of 0..4 solved
    assert written["success"] is True


def test_run_refuses_a_protocol_or_seeds_the_experiment_does_not_offer(registry, tmp_path):
    with pytest.raises(ValueError, match="protocol must be one of 'modern' for fake-b"):
        reproduce.run("fake-b", protocol="paper", output_dir=tmp_path)
    with pytest.raises(ValueError, match="seeds must be a positive integer, got 0"):
        reproduce.run("fake-a", seeds=0, output_dir=tmp_path)
    assert calls == []


def test_seeds_are_refused_for_a_one_seed_reproduction(tmp_path):
    with pytest.raises(ValueError, match="seeds: convlstm runs one seed"):
        reproduce.run("convlstm", seeds=2, output_dir=tmp_path)


def test_run_classic_runs_each_experiment_and_writes_one_table(registry, tmp_path):
    seen: list[str] = []
    result = reproduce.run_classic(
        quick=True, output_dir=tmp_path, seed=1, report=lambda r: seen.append(r.title)
    )
    assert seen == ["fake", "fake"]
    assert [row[0] for row in result.rows] == ["fake-a", "fake-b"]
    assert [row[2] for row in result.rows] == ["no", "no"]  # seed 1 is odd: not solved
    assert result.success is False
    assert (tmp_path / "fake-a" / "results.md").is_file()
    assert "fake-b" in (tmp_path / "all" / "results.md").read_text()


def test_cli_all_quick_runs_every_classic_experiment(registry, tmp_path):
    output = CliRunner().invoke(
        app, ["reproduce", "--all", "--quick", "--output-dir", str(tmp_path)], terminal_width=200
    )
    assert output.exit_code == 0, output.output
    assert "success criterion met: yes" in output.output
    assert [call["quick"] for call in calls] == [True, True]
    assert json.loads((tmp_path / "all" / "results.json").read_text())["success"] is True


def test_cli_refuses_options_before_a_command_name():
    output = CliRunner().invoke(app, ["reproduce", "--quick", "convlstm"], terminal_width=200)
    assert output.exit_code == 2
    assert "put them after it" in output.output


def test_cli_names_a_protocol_the_experiment_lacks():
    output = CliRunner().invoke(
        app, ["reproduce", "adding", "--protocol", "paper"], terminal_width=200
    )
    assert output.exit_code == 2
    assert "protocol must be one of 'modern' for adding, got 'paper'" in output.output


def test_every_classic_experiment_is_importable_with_its_function():
    for name in reproduce.classic_names():
        assert callable(reproduce.get(name).load()), name


# ------------------------------------------------------------------------------ common
def test_train_until_solved_stops_at_the_first_check_that_passes():
    steps: list[int] = []
    errors = iter([0.9, 0.5, 0.1, 0.05])

    def check():
        error = next(errors)
        return error < 0.2, error

    trial = common.train_until_solved(
        lambda: steps.append(1) or 0.0,
        check,
        sequences_per_step=4,
        max_sequences=1000,
        check_every=10,
        seed=3,
    )
    # checks after 12, 20, 32 sequences (each rounded up to whole steps of 4)
    assert trial.curve == [(12, 0.9), (20, 0.5), (32, 0.1)]
    assert trial.solved and trial.sequences == 32 and len(steps) == 8
    assert trial.test_error == 0.1 and trial.seed == 3


def test_train_until_solved_gives_up_at_the_budget_and_runs_the_test():
    trial = common.train_until_solved(
        lambda: 0.0,
        lambda: (False, 1.0),
        sequences_per_step=5,
        max_sequences=23,
        check_every=100,
        seed=0,
        test=lambda: 0.75,
    )
    assert not trial.solved and trial.sequences is None
    assert trial.curve == [(25, 1.0)]  # one check, at the end of the budget
    assert trial.test_error == 0.75


def test_median_range_and_summary_row():
    assert common.median_range([]) == "-"
    assert common.median_range([3.0]) == "3"
    assert common.median_range([1000.0, 3000.0, 2000.0]) == "2,000 [1,000, 3,000]"
    assert common.median_range([0.5, 0.25]) == "0.375 [0.25, 0.5]"
    assert common.median_range([7502.0, 18004.0]) == "12,753 [7,502, 18,004]"  # a half
    trials = [
        common.Trial(seed=0, solved=True, sequences=10, test_error=0.0, seconds=1.0),
        common.Trial(seed=1, solved=False, sequences=None, test_error=0.5, seconds=2.0),
        common.Trial(seed=2, solved=True, sequences=30, test_error=0.1, seconds=3.5),
    ]
    row = common.summary_row("Exp", "lstm1997", "modern", trials, "100%")
    assert row == ["Exp", "lstm1997", "modern", "2/3", "20 [10, 30]", "0.1 [0, 0.5]", "100%", 6.5]
    assert len(row) == len(common.COLUMNS)


def test_seed_list_and_check_protocol_reject_bad_values():
    assert common.seed_list(4, 3) == [4, 5, 6]
    with pytest.raises(ValueError, match="seeds must be a positive integer, got 0"):
        common.seed_list(0, 0)
    with pytest.raises(ValueError, match="protocol must be one of 'modern'"):
        common.check_protocol("paper", ("modern",))


def test_plot_curves_writes_a_png(tmp_path: Path):
    trials = [common.Trial(0, True, 20, 0.1, 0.0, curve=[(10, 1.0), (20, 0.1)])]
    path = common.plot_curves(tmp_path / "c.png", {"standard": trials}, title="t", ylabel="e")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not math.isnan(trials[0].test_error)


def test_tested_stop_solves_only_on_a_passing_test_and_tests_the_final_weights_once():
    scores = iter([5, 1, 0, 7])
    tested = common.TestedStop(lambda: next(scores), lambda wrong: wrong <= 1)
    assert tested.confirm() is False  # 5 wrong: the stop held, the test failed
    assert tested.final() == 1 and tested.results == [5, 1]  # out of budget: one fresh test
    assert tested.final() == 1 and tested.results == [5, 1]  # it passed: not run again
    assert tested.confirm() is True and tested.final() == 0
    assert tested.results == [5, 1, 0]
