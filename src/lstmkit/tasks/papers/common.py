"""What every classic-paper reproduction shares: trials over seeds, the training loop that
stops at the paper's success criterion, the summary row, the learning-curve plot.

A reproduction module (``lstmkit/tasks/papers/NAME.py``) writes, per experiment, a trial
function ``trial(seed) -> Trial`` (its generator, model, optimiser and criterion) and
turns the trials into rows with ``summary_row``; ``paper_result`` makes them the
``ReproductionResult`` that ``lstmkit reproduce`` prints and writes.

The columns every such table has (``COLUMNS``):

- solved: trials that met the paper's success criterion, of all trials;
- sequences to success: training sequences seen when the criterion first held, median and
  range over the solved trials (the paper's count where the protocol matches);
- test error: the paper's final error measure on fresh test data, median and range over
  all trials;
- paper: the published claim or number for the same row.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import torch
from torch import nn

from lstmkit.tasks.reproduce import ReproductionResult

PROTOCOLS = ("modern", "paper")
PROTOCOL_HELP = {
    "modern": "Adam on minibatches",
    "paper": "the paper's online SGD, cell sizes and biases",
}
COLUMNS = [
    "experiment",
    "model",
    "protocol",
    "solved",
    "sequences to success",
    "test error",
    "paper",
    "time (s)",
]


@dataclass
class Trial:
    """One seed's run of one experiment."""

    seed: int
    solved: bool
    sequences: int | None  # training sequences seen when the criterion first held
    test_error: float  # the paper's final error measure on fresh test data
    seconds: float
    curve: list[tuple[int, float]] = field(default_factory=list)  # (sequences seen, error)
    extra: dict[str, float] = field(default_factory=dict)  # experiment-specific measures


def check_protocol(protocol: str, supported: Sequence[str] = PROTOCOLS) -> str:
    """``protocol`` if this experiment offers it, else a ValueError naming the choices."""
    if protocol not in supported:
        raise ValueError(
            f"protocol must be one of {', '.join(repr(p) for p in supported)} for this "
            f"reproduction, got {protocol!r}"
        )
    return protocol


def seed_list(seed: int, seeds: int) -> list[int]:
    """``seeds`` consecutive seeds from ``seed``."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    return list(range(seed, seed + seeds))


def train_until_solved(
    train_step: Callable[[], float],
    check: Callable[[], tuple[bool, float]],
    *,
    sequences_per_step: int,
    max_sequences: int,
    check_every: int,
    seed: int,
    test: Callable[[], float] | None = None,
) -> Trial:
    """Train until ``check`` says solved or ``max_sequences`` are spent.

    ``train_step()`` draws a fresh batch, takes one optimiser step and returns the loss;
    ``check()`` returns (criterion met, error measure) and is called every ``check_every``
    training sequences (rounded up to whole steps) and at the end; ``test()`` gives the final
    test error (default: the error measure of the last check).
    """
    start = time.perf_counter()
    sequences, next_check = 0, check_every
    curve: list[tuple[int, float]] = []
    solved_at: int | None = None
    while sequences < max_sequences:
        train_step()
        sequences += sequences_per_step
        if sequences >= next_check or sequences >= max_sequences:
            next_check += check_every
            solved, error = check()
            curve.append((sequences, error))
            if solved:
                solved_at = sequences
                break
    final = test() if test is not None else (curve[-1][1] if curve else math.nan)
    return Trial(
        seed=seed,
        solved=solved_at is not None,
        sequences=solved_at,
        test_error=final,
        seconds=time.perf_counter() - start,
        curve=curve,
    )


Result = TypeVar("Result")


class TestedStop(Generic[Result]):
    """The 1997 paper's stop-then-test rule: when the stop rule holds on training data, a
    test on fresh data decides whether the trial is solved (``confirm``, inside ``check``);
    when the budget ends without a passing test, the final weights are tested once more
    (``final``, for ``train_until_solved``'s ``test``). ``results`` keeps every test run."""

    def __init__(self, run_test: Callable[[], Result], passed: Callable[[Result], bool]):
        self.run_test = run_test
        self.passed = passed
        self.results: list[Result] = []

    def confirm(self) -> bool:
        """Run a test; whether it passed."""
        self.results.append(self.run_test())
        return self.passed(self.results[-1])

    def final(self) -> Result:
        """The passing test, else a fresh test of the current weights."""
        if not (self.results and self.passed(self.results[-1])):
            self.results.append(self.run_test())
        return self.results[-1]


def chrono_init(lstm: nn.Module, max_delay: int, generator: torch.Generator) -> None:
    """Chrono initialisation (Tallec & Ollivier 2018) of a one-layer ``standard`` LSTM:
    forget bias ``log(u)``, u ~ U[1, max_delay - 1], input bias its negative, other biases 0.

    Why: with the default biases (forget gate ~0.5) neither torch.nn.LSTM nor lstmkit.LSTM
    left chance level within 100,000 sequences on the temporal-order task 6a (Adam, lr 3e-3
    and 1e-2, forget bias 0, 1, 3, 5, the lstm1997 variant too); with chrono init 6a is
    solved in ~30,000. Works on lstmkit.LSTM and torch.nn.LSTM (gate order i, f, g, o).
    """
    hidden = lstm.hidden_size
    forget = torch.log(torch.rand(hidden, generator=generator) * (max_delay - 2) + 1)  # [H]
    with torch.no_grad():
        lstm.bias_hh_l0.zero_()
        lstm.bias_ih_l0.zero_()
        lstm.bias_ih_l0[:hidden] = -forget  # gate order i, f, g, o
        lstm.bias_ih_l0[hidden : 2 * hidden] = forget


def median_range(values: Sequence[float], digits: int = 3) -> str:
    """``"median [low, high]"`` (one value: itself; none: ``"-"``)."""
    if not values:
        return "-"

    def show(value: float) -> str:
        if abs(value) >= 100 or (float(value).is_integer() and abs(value) >= 1):
            return f"{value:,.0f}"  # counts: whole, with thousands separators
        return f"{value:.{digits}g}"

    if len(values) == 1:
        return show(values[0])
    return f"{show(statistics.median(values))} [{show(min(values))}, {show(max(values))}]"


def summary_row(
    experiment: str, model: str, protocol: str, trials: Sequence[Trial], paper: str
) -> list[str | int | float]:
    """One row of ``COLUMNS`` from the trials of one experiment and model."""
    solved = [trial.sequences for trial in trials if trial.solved and trial.sequences is not None]
    return [
        experiment,
        model,
        protocol,
        f"{sum(trial.solved for trial in trials)}/{len(trials)}",
        median_range([float(s) for s in solved]),
        median_range([trial.test_error for trial in trials]),
        paper,
        round(sum(trial.seconds for trial in trials), 1),
    ]


def plot_curves(
    path: Path,
    curves: dict[str, Sequence[Trial]],
    *,
    title: str,
    ylabel: str,
    log_y: bool = True,
) -> Path:
    """A PNG of error against training sequences, one line per trial, a colour per label."""
    from lstmkit.tasks.plotting import save_figure

    def draw(figure) -> None:
        axes = figure.add_subplot()
        colours = [f"C{i}" for i in range(10)]
        for index, (label, trials) in enumerate(curves.items()):
            colour = colours[index % len(colours)]
            for number, trial in enumerate(trials):
                if not trial.curve:
                    continue
                seen, error = zip(*trial.curve, strict=True)
                axes.plot(
                    seen,
                    error,
                    color=colour,
                    alpha=0.8,
                    linewidth=1.0,
                    label=label if number == 0 else None,
                )
        if log_y and all(e > 0 for t in curves.values() for tr in t for _, e in tr.curve):
            axes.set_yscale("log")
        axes.set_xlabel("training sequences")
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        axes.legend(fontsize="small")

    return save_figure(path, draw, width=7.0, height=3.5)


def paper_result(
    title: str,
    rows: list[list[str | int | float]],
    *,
    notes: Sequence[str],
    files: dict[str, str],
    started: float,
    success: bool | None = None,
) -> ReproductionResult:
    """The ``ReproductionResult`` of a classic-paper reproduction (``COLUMNS``); ``success``
    says whether the run met the experiment's success criterion."""
    return ReproductionResult(
        title=title,
        columns=list(COLUMNS),
        rows=rows,
        notes=list(notes),
        files=files,
        seconds=time.perf_counter() - started,
        success=success,
    )


def sgd_or_adam(model: nn.Module, protocol: str, lr: float) -> torch.optim.Optimizer:
    """The paper's plain SGD (``protocol="paper"``) or Adam (``"modern"``) at ``lr``."""
    if protocol == "paper":
        return torch.optim.SGD(model.parameters(), lr=lr)
    return torch.optim.Adam(model.parameters(), lr=lr)
