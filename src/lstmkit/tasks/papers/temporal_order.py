"""Hochreiter & Schmidhuber 1997, Experiment 6: the temporal order of widely separated symbols.

``lstmkit reproduce temporal-order``. The setup as the paper gives it (Sec. 5.6, as best
recalled; the positions are read as 1-based, the first symbol being position 1):

- 6a, 4 classes: a sequence of length random in [100, 110] over the eight symbols
  {a, b, c, d, B, E, X, Y}, one-hot. It starts with B and ends with E; every other element is
  drawn at random from {a, b, c, d}, except two elements at positions t1 in [10, 20] and
  t2 in [50, 60], each X or Y. The class is their temporal order: Q = XX, R = XY, S = YX,
  U = YY. One output unit per class; the target, at the last step (E), is 1 for the right
  class and 0 for the others.
- 6b, 8 classes: three relevant positions t1 in [10, 20], t2 in [33, 43], t3 in [66, 76];
  the classes are XXX, XXY, ..., YYY.

The paper's criterion, in its words as closely as recalled: "a sequence is classified
correctly if the final absolute error of all output units is below 0.3"; training stops
"once the average training error is below 0.1 and the 2000 most recent sequences were
classified correctly"; the net is then tested on 2560 fresh sequences. Its results (Table 9
of the paper, quoted from memory; the counts are what we are surest of, the "wrong of
2560" less so): 6a, 2 memory-cell blocks of size 2, 1 wrong of 2560 test sequences after
31,390 training sequences on average; 6b, 3 blocks of size 2, 2 wrong of 2560 after
571,100 sequences.

Our "modern" protocol: ``lstmkit.LSTM`` (``standard``) with a linear head and one sigmoid
output per class, binary cross-entropy against the paper's 1/0 targets, Adam on minibatches.
Each sequence's output is taken at its own last step (a gather: the LSTM is causal, so the
padding after a shorter sequence does not touch its earlier outputs). The stopping rule is
the paper's, over training minibatches (every sequence of the last 2000 classified
correctly by the 0.3 rule, mean squared error of the training outputs below 0.1); once it
holds, 2560 fresh test sequences are classified, and the trial succeeds when at most the
paper's number of them is wrong (else training goes on). "Sequences" count steps times batch
size: not the paper's online protocol, so they are not comparable with its counts.

One deviation was needed: chrono initialisation of the LSTM's biases (``chrono_init``). With
torch's default initialisation neither ``lstmkit.LSTM`` nor ``torch.nn.LSTM`` left chance
level on 6a within 100,000 sequences (Adam at lr 3e-3 and 1e-2; forget bias 0, 1, 3, 5 and
the ``lstm1997`` variant were tried); with it, 6a and 6b are solved in 10,000-30,000.
The paper's cells (4 and 6 cells in 2 and 3 blocks, negative input-gate biases) are not
rebuilt: a 32-unit ``standard`` LSTM runs both.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lstmkit
from lstmkit.tasks.papers.common import (
    TestedStop,
    Trial,
    check_protocol,
    chrono_init,
    paper_result,
    plot_curves,
    seed_list,
    summary_row,
    train_until_solved,
)
from lstmkit.tasks.reproduce import ReproductionResult

SYMBOLS = ("a", "b", "c", "d", "B", "E", "X", "Y")  # one-hot index = position in this tuple
_INDEX = {symbol: index for index, symbol in enumerate(SYMBOLS)}
NOISE = tuple(_INDEX[s] for s in "abcd")
LENGTHS = (100, 110)  # sequence length, inclusive range
# the relevant positions (1-based, inclusive ranges) of 6a and 6b
POSITIONS = {
    "6a": ((10, 20), (50, 60)),
    "6b": ((10, 20), (33, 43), (66, 76)),
}
ERROR_THRESHOLD = 0.3  # a sequence is right when every output is within 0.3 of its target
TEST_SEQUENCES = 2560
RECENT_SEQUENCES = 2000  # the paper's "2000 most recent sequences classified correctly"
TRAIN_ERROR = 0.1  # the paper's "average training error below 0.1"
# Table 9 of the paper (from memory; see the module docstring)
PAPER_WRONG = {"6a": 1, "6b": 2}  # wrong of 2560 test sequences
PAPER_SEQUENCES = {"6a": 31_390, "6b": 571_100}  # training sequences, mean over trials


def temporal_order_batch(
    batch_size: int, experiment: str, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """``batch_size`` sequences of experiment ``"6a"`` or ``"6b"``.

    Returns ``(inputs, lengths, labels)``: one-hot inputs ``[T_max, B, 8]`` (zeros past each
    sequence's end), lengths ``[B]`` in [100, 110], class labels ``[B]``. The class number
    reads the X/Y symbols as binary digits, X = 0, Y = 1, first symbol most significant
    (6a: 0 = XX = Q, 1 = XY = R, 2 = YX = S, 3 = YY = U).
    """
    if experiment not in POSITIONS:
        raise ValueError(f"experiment must be one of {list(POSITIONS)}, got {experiment!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    low, high = LENGTHS
    lengths = torch.randint(low, high + 1, (batch_size,), generator=generator)
    noise = torch.tensor(NOISE)[torch.randint(0, 4, (high, batch_size), generator=generator)]
    symbols = noise  # [T_max, B] symbol indices
    symbols[0] = _INDEX["B"]
    columns = torch.arange(batch_size)
    symbols[lengths - 1, columns] = _INDEX["E"]
    labels = torch.zeros(batch_size, dtype=torch.long)
    for first, last in POSITIONS[experiment]:
        position = torch.randint(first, last + 1, (batch_size,), generator=generator)
        is_y = torch.randint(0, 2, (batch_size,), generator=generator)
        symbols[position - 1, columns] = torch.where(is_y == 1, _INDEX["Y"], _INDEX["X"])
        labels = labels * 2 + is_y
    inputs = F.one_hot(symbols, len(SYMBOLS)).float()  # [T_max, B, 8]
    steps = torch.arange(high).unsqueeze(1)  # [T_max, 1]
    inputs = inputs * (steps < lengths).unsqueeze(-1)  # nothing past the end
    return inputs, lengths, labels


def num_classes(experiment: str) -> int:
    return 2 ** len(POSITIONS[experiment])


def classified_correctly(outputs: Tensor, labels: Tensor) -> Tensor:
    """The paper's rule: ``[B]`` bools, True where every output ``[B, C]`` (in [0, 1]) is
    within 0.3 of its 1/0 target."""
    if outputs.dim() != 2 or labels.shape != outputs.shape[:1]:
        raise ValueError(
            f"outputs must be [B, C] and labels [B], got {tuple(outputs.shape)} and "
            f"{tuple(labels.shape)}"
        )
    targets = F.one_hot(labels, outputs.shape[1]).to(outputs.dtype)
    return ((outputs - targets).abs() < ERROR_THRESHOLD).all(dim=1)


class OrderClassifier(nn.Module):
    """One-hot inputs ``[T, B, 8]`` + lengths ``[B]`` -> class logits ``[B, C]`` read at each
    sequence's last step (sigmoid of them: the paper's outputs). The LSTM's biases get chrono
    initialisation for delays up to the longest sequence (``chrono_init``)."""

    def __init__(self, hidden_size: int, classes: int, generator: torch.Generator) -> None:
        super().__init__()
        self.lstm = lstmkit.LSTM(len(SYMBOLS), hidden_size)
        chrono_init(self.lstm, LENGTHS[1], generator)
        self.head = nn.Linear(hidden_size, classes)

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        features, _ = self.lstm(inputs)  # [T, B, H]
        last = features[lengths - 1, torch.arange(inputs.shape[1])]  # [B, H]
        return self.head(last)


@dataclass(frozen=True)
class Setup:
    """One experiment's model and training budget."""

    experiment: str
    hidden_size: int
    batch_size: int
    lr: float
    max_sequences: int
    check_every: int  # sequences between checks of the stopping rule


QUICK = {
    "6a": Setup(
        "6a", hidden_size=32, batch_size=32, lr=1e-2, max_sequences=64_000, check_every=1_024
    ),
    "6b": Setup(
        "6b", hidden_size=32, batch_size=32, lr=1e-2, max_sequences=96_000, check_every=1_024
    ),
}
FULL = {
    name: replace(setup, max_sequences=setup.max_sequences * 2) for name, setup in QUICK.items()
}


def count_wrong(
    model: OrderClassifier,
    experiment: str,
    count: int,
    generator: torch.Generator,
    chunk: int = 640,
) -> int:
    """Sequences of ``count`` fresh ones that the paper's 0.3 rule calls wrong."""
    wrong = 0
    with torch.no_grad():
        for start in range(0, count, chunk):
            inputs, lengths, labels = temporal_order_batch(
                min(chunk, count - start), experiment, generator
            )
            outputs = torch.sigmoid(model(inputs, lengths))
            wrong += int((~classified_correctly(outputs, labels)).sum())
    return wrong


def trial(setup: Setup, seed: int) -> Trial:
    """Train one seed until the paper's stopping rule holds and the test passes."""
    torch.manual_seed(seed)
    train_data = torch.Generator().manual_seed(seed)
    test_data = torch.Generator().manual_seed(10_000 + seed)
    classes = num_classes(setup.experiment)
    model = OrderClassifier(setup.hidden_size, classes, torch.Generator().manual_seed(seed))
    optimiser = torch.optim.Adam(model.parameters(), lr=setup.lr)
    recent: deque[bool] = deque(maxlen=RECENT_SEQUENCES)
    recent_mse: deque[float] = deque(maxlen=max(RECENT_SEQUENCES // setup.batch_size, 1))
    tested = TestedStop(
        lambda: count_wrong(model, setup.experiment, TEST_SEQUENCES, test_data),
        lambda wrong: wrong <= PAPER_WRONG[setup.experiment],
    )

    def train_step() -> float:
        inputs, lengths, labels = temporal_order_batch(
            setup.batch_size, setup.experiment, train_data
        )
        logits = model(inputs, lengths)
        targets = F.one_hot(labels, classes).float()
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        outputs = torch.sigmoid(logits.detach())
        recent.extend(classified_correctly(outputs, labels).tolist())
        recent_mse.append(float(((outputs - targets) ** 2).mean()))
        return float(loss.detach())

    def check() -> tuple[bool, float]:
        fraction_wrong = 1 - sum(recent) / max(len(recent), 1)
        stop = (
            len(recent) == RECENT_SEQUENCES
            and fraction_wrong == 0
            and sum(recent_mse) / len(recent_mse) < TRAIN_ERROR
        )
        if stop:  # the paper's rule holds: the test decides
            return tested.confirm(), fraction_wrong
        return False, fraction_wrong

    result = train_until_solved(
        train_step,
        check,
        sequences_per_step=setup.batch_size,
        max_sequences=setup.max_sequences,
        check_every=setup.check_every,
        seed=seed,
        test=lambda: float(tested.final()),
    )
    result.extra["tests_run"] = float(len(tested.results))
    return result


def run(
    *,
    quick: bool = False,
    output_dir: Path,
    seed: int = 0,
    seeds: int = 5,
    protocol: str = "modern",
) -> ReproductionResult:
    """Experiments 6a and 6b over ``seeds`` seeds; the table against Table 9 of the paper."""
    started = time.perf_counter()
    check_protocol(protocol, ("modern",))
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    setups = QUICK if quick else FULL
    rows, curves = [], {}
    for name, setup in setups.items():
        trials = [trial(setup, s) for s in seed_list(seed, seeds)]
        curves[name] = trials
        paper = (
            f"{PAPER_WRONG[name]} wrong of 2560 after {PAPER_SEQUENCES[name]:,} sequences "
            "(online SGD)"
        )
        model = f"LSTM {setup.hidden_size}, {num_classes(name)} sigmoid outputs"
        rows.append(
            summary_row(
                f"{name} ({num_classes(name)} classes)",
                model,
                f"modern (Adam, batch {setup.batch_size})",
                trials,
                paper,
            )
        )
    files = {
        "curves": str(
            plot_curves(
                Path(output_dir) / "curves.png",
                curves,
                title="Temporal order (H&S 1997, Exp. 6)",
                ylabel="fraction of recent training sequences wrong",
            )
        )
    }
    notes = [
        "Protocol 'modern': Adam, minibatches, BCE on sigmoid outputs; 'sequences' = steps x "
        "batch size, not the paper's online protocol, so not comparable with its counts.",
        "Stopping rule as the paper: the 2000 most recent training sequences right by the "
        "|error| < 0.3 rule and their mean squared error < 0.1; then 2560 fresh test "
        "sequences; solved when at most the paper's number are wrong (1 for 6a, 2 for 6b).",
        "test error = wrong of 2560 fresh test sequences by the 0.3 rule.",
        "Model: lstmkit.LSTM standard (forget gate) with a linear head, not the paper's "
        "1997 cell blocks; positions t1, t2, t3 read as 1-based.",
        "Chrono initialisation of the LSTM biases (Tallec & Ollivier 2018, forget bias "
        "log U[1, 109], input bias its negative): without it the LSTM stayed at chance on 6a "
        "for 100,000 sequences (see the module docstring).",
        "The paper's numbers are quoted from memory of its Table 9.",
    ]
    return paper_result(
        "Temporal order (Hochreiter & Schmidhuber 1997, Exp. 6a, 6b)",
        rows,
        notes=notes,
        files=files,
        started=started,
        success=all(trial.solved for trials in curves.values() for trial in trials),
    )
