"""Hochreiter & Schmidhuber 1997, Long Short-Term Memory: Experiments 2a, 2c and 3a.

``lstmkit reproduce long-lag``: long time lags in symbol sequences.

- Exp. 2a, noise-free sequences with long time lags (p = 100). Symbols a_1..a_{p-1},
  a_p = x, a_{p+1} = y, one-hot ("local") inputs. The training set is two sequences,
  (y, a_1, ..., a_{p-1}, y) and (x, a_1, ..., a_{p-1}, x), each drawn with probability 0.5;
  the net predicts the next symbol at every step, and only the last prediction depends on the
  first symbol, p steps back. The paper: "A successful run is one that fulfills the following
  criterion: after training, during 10,000 successive, randomly chosen input sequences, the
  maximal absolute error of all output units is always below 0.25." LSTM (one memory cell
  and an input gate, no output gate; g the logistic sigmoid, h the identity; output units
  that read the input and the cell; online learning rate 1.0) succeeded in 100% of 18 trials,
  after 5,040 training sequences on average (Table 2).
- Exp. 2c, very long time lags with distractors (q = p = 100 and q = p = 1000). Symbols
  a_1..a_p (the distractors), e, b, x, y (p + 4, one-hot). A sequence is b, then x or y (the
  signal), then q + k distractors drawn uniformly from a_1..a_p, then the trigger e, then the
  signal again; k is 0, 1, 2, ... with probability 1/10 (9/10)^k (the paper: after the prefix
  of length q + 2, "additional elements with probability 9/10 [printed 1/10, a misprint: the
  expected length needs 9/10] or, alternatively, an e with probability 1/10"). The minimal
  length is q + 4 and the minimal lag q + 1; the expected length is q + 13 by this reading
  (the paper prints q + 14). Only the final prediction has a target, on 2 output units (x, y).
  The paper: "Success is defined as 'prediction error (for final sequence element) of both
  output units always below 0.2, for 10,000 successive, randomly chosen input sequences'".
  LSTM (2 memory cells with input and output gates, no biases, learning rate 0.01) needed
  31,000 sequences at q = p = 100 and 49,000 at q = p = 1000 (means of 20 trials, Table 3).

``lstmkit reproduce noise-signal``: Exp. 3a, Bengio et al.'s (1994) "2-sequence problem" as
the paper runs it. One real-valued input line; the first N = 3 elements are 1.0 for class 1
and -1.0 for class 2 (no noise on them in 3a; 3b adds it), every later element is Gaussian
noise of mean 0 and variance 0.2; the length is drawn uniformly between T = 100 and
T + T/10. The target at the end is 1.0 (class 1) or 0.0 (class 2); "correct classification
is defined as 'absolute output error at sequence end below 0.2'". Stopping criteria: "ST1:
none of 256 sequences from a randomly chosen test set is misclassified. ST2: ST1 is
satisfied, and mean absolute test set error is below 0.01. In case of ST2, an additional test
set consisting of 2560 randomly chosen sequences is used to determine the fraction of
misclassified sequences." Paper (T = 100, N = 3; 3 cell blocks of size 1, learning rate 1.0;
means of 10 trials): ST1 after 27,380 sequences, ST2 after 39,850, 0.000195 of the 2560
misclassified.

How we check the criteria: at check points training pauses and the frozen net is tested on
fresh sequences. "10,000 successive sequences all below the threshold" is checked as 10,000
fresh sequences in a row (after a cheap probe of ``PROBE`` sequences, which must pass first).
In Exp. 2a the two training sequences are the only sequences, so 10,000 random draws of them
(both appear with probability 1 - 2^-9999) pass exactly when both pass: the check runs both.
Exp. 2a's criterion covers every output unit at every step; 2c's the final step only.

Protocols: ``"modern"`` (default): Adam on minibatches, an embedding in place of the one-hot
input layer (the same function class, and memory-light at p = 1000), 8 cells (2a: the
paper's 2a cell; 2c and 3a: the ``lstm1997`` variant, no forget gate, tanh activations)
whose input gates start shut (biases -1..-5, at q = p = 1000 -3..-7: the paper's remedy
for state drift), sigmoid output units with binary cross-entropy. ``"paper"`` (long-lag
only): online SGD (one sequence per step) at the paper's learning rate on the summed
squared error, one-hot inputs, the paper's cell counts, no biases, weights uniform in
[-0.2, 0.2], and in 2a the paper's late cell (``CellAddedLater``); where lstmkit's cells
differ from the paper's (see ``_paper_net``) the notes say so. Exp. 2c at q = p = 1000 runs
in the full ``"modern"`` run only (skipped by ``quick``; ``"paper"`` would take about 15
minutes per seed here).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lstmkit
from lstmkit.tasks.papers.common import (
    Trial,
    check_protocol,
    paper_result,
    plot_curves,
    seed_list,
    sgd_or_adam,
    summary_row,
    train_until_solved,
)
from lstmkit.tasks.reproduce import ReproductionResult

# ------------------------------------------------------------ the paper's numbers (H&S 1997)
PAPER_2A = {"p": 100, "sequences": 5_040, "success": "100% of 18"}  # Table 2
PAPER_2C = {100: 31_000, 1000: 49_000}  # Table 3, q = p; means of 20 trials
PAPER_3A = {"T": 100, "N": 3, "st1": 27_380, "st2": 39_850, "misclassified": 0.000195}
THRESHOLD_2A = 0.25  # max absolute error of every output unit
THRESHOLD_2C = 0.2  # error of both output units at the final element
THRESHOLD_3A = 0.2  # absolute output error at the sequence end
ST2_MEAN_ERROR = 0.01  # 3a: mean absolute test error for ST2
SUCCESSIVE = 10_000  # "10,000 successive, randomly chosen input sequences"
PROBE = 1_000  # cheap first look at a check point; the 10,000 run only if it passes
ST1_TEST, FINAL_TEST = 256, 2560  # Exp. 3a's test sets
NOISE_VARIANCE = 0.2  # Exp. 3a: the noise elements' variance
EXTRA_PROBABILITY = 0.9  # Exp. 2c: another distractor (else the trigger e)
_DEFAULT_P, _LONG_P, _DEFAULT_T = 100, 1000, 100  # the rows' sizes (tests shrink them)


# ------------------------------------------------------------------------- the data
def _check_size(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def noise_free_sequences(p: int, batch: int, generator: torch.Generator) -> Tensor:
    """Exp. 2a: ``batch`` sequences of symbols ``[B, p + 1]``, each (y, a_1..a_{p-1}, y) or
    (x, a_1..a_{p-1}, x) with probability 0.5.

    Symbol ids: a_i is ``i - 1`` (0..p-2), x is ``p - 1``, y is ``p``; p + 1 symbols in all.
    The net reads ``symbols[:, :-1]`` and predicts ``symbols[:, 1:]``.
    """
    _check_size("p", p, 2)
    _check_size("batch", batch, 1)
    first = p - 1 + torch.randint(0, 2, (batch,), generator=generator)  # x or y
    middle = torch.arange(p - 1).expand(batch, p - 1)  # a_1 .. a_{p-1}
    return torch.cat([first[:, None], middle, first[:, None]], dim=1)


def distractor_sequences(
    p: int,
    q: int,
    batch: int,
    generator: torch.Generator,
    *,
    extra_probability: float = EXTRA_PROBABILITY,
) -> tuple[Tensor, Tensor, Tensor]:
    """Exp. 2c: ``(inputs [B, T], lengths [B], labels [B])``.

    A sequence is b, s, q + k distractors (uniform over a_1..a_p), e, s, where the signal s is
    x or y with probability 0.5 and k >= 0 has probability (1 - r) r^k, r = extra_probability.
    The net reads all but the final s (``lengths`` = q + k + 3 symbols, padded with e to the
    batch's longest) and predicts s after reading e. Symbol ids: a_i is ``i - 1``, e is ``p``,
    b ``p + 1``, x ``p + 2``, y ``p + 3``; ``labels`` is 0 for x, 1 for y.
    """
    _check_size("p", p, 1)
    _check_size("q", q, 0)
    _check_size("batch", batch, 1)
    if not 0.0 <= extra_probability < 1.0:
        raise ValueError(f"extra_probability must be in [0, 1), got {extra_probability!r}")
    e, b, x = p, p + 1, p + 2
    labels = torch.randint(0, 2, (batch,), generator=generator)
    uniform = torch.rand(batch, generator=generator, dtype=torch.float64)
    if extra_probability > 0:  # geometric k: P(k >= n) = r^n
        extra = torch.floor(torch.log1p(-uniform) / math.log(extra_probability)).long()
    else:
        extra = torch.zeros(batch, dtype=torch.long)
    lengths = q + extra + 3  # b, s, q + k distractors, e
    longest = int(lengths.max())
    inputs = torch.randint(0, p, (batch, longest), generator=generator)
    inputs[:, 0] = b
    inputs[:, 1] = x + labels
    steps = torch.arange(longest)
    inputs[steps[None, :] >= (lengths - 1)[:, None]] = e  # the trigger, then padding
    return inputs, lengths, labels


def two_sequence_problem(
    T: int,
    N: int,
    batch: int,
    generator: torch.Generator,
    *,
    noise_variance: float = NOISE_VARIANCE,
) -> tuple[Tensor, Tensor, Tensor]:
    """Exp. 3a: ``(inputs [B, T_max, 1], lengths [B], targets [B])``.

    Lengths are uniform in [T, T + T // 10]; the first N elements are 1.0 (class 1, target
    1.0) or -1.0 (class 2, target 0.0); every later element is Gaussian noise of mean 0 and
    variance ``noise_variance``. Padding past a sequence's length is 0.
    """
    _check_size("T", T, 1)
    _check_size("N", N, 1)
    _check_size("batch", batch, 1)
    if N > T:
        raise ValueError(f"N must be at most T={T}, got N={N}")
    if not noise_variance >= 0:
        raise ValueError(f"noise_variance must be >= 0, got {noise_variance!r}")
    lengths = torch.randint(T, T + T // 10 + 1, (batch,), generator=generator)
    targets = torch.randint(0, 2, (batch,), generator=generator).float()
    longest = int(lengths.max())
    inputs = math.sqrt(noise_variance) * torch.randn(batch, longest, generator=generator)
    inputs[:, :N] = (2 * targets - 1)[:, None]
    inputs[torch.arange(longest)[None, :] >= lengths[:, None]] = 0.0
    return inputs[..., None], lengths, targets


# ---------------------------------------------------------------------- the criteria
def sequence_errors(outputs: Tensor, targets: Tensor) -> Tensor:
    """The largest absolute error of any output unit at any step, per sequence: ``[B]``.

    ``outputs``/``targets``: ``[B, ...]`` (outputs in [0, 1], targets 0/1 or real)."""
    if outputs.shape != targets.shape:
        raise ValueError(
            f"outputs and targets must have the same shape, got {tuple(outputs.shape)} and "
            f"{tuple(targets.shape)}"
        )
    return (outputs - targets).abs().reshape(len(outputs), -1).amax(dim=1)


def all_below(errors: Tensor, threshold: float) -> bool:
    """The 1997 paper's success test: every sequence's error strictly below ``threshold``."""
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    return bool((errors < threshold).all())


def stopping_criteria(errors: Tensor) -> tuple[bool, bool]:
    """Exp. 3a's (ST1, ST2) from the absolute end errors ``[256]`` of a fresh test set: ST1
    none misclassified (error >= 0.2), ST2 ST1 and a mean absolute error below 0.01."""
    st1 = all_below(errors, THRESHOLD_3A)
    return st1, st1 and float(errors.mean()) < ST2_MEAN_ERROR


# ------------------------------------------------------------------------- the model
class LagNet(nn.Module):
    """Input layer, one ``lstmkit.LSTM`` layer, sigmoid output units.

    ``symbols``: the number of input symbols (one-hot with ``embedding=None``, else looked
    up in an ``embedding``-wide table); None for real-valued input of width 1. With
    ``skip`` the output units read the input layer as well as the cells (the paper's Exp. 2a
    wiring: "each layer has connections from all layers below"). ``input_gate_bias``: one
    value per cell added to the input gates' biases at init (shut gates keep the cells from
    drifting, as the paper initialises them in Exp. 3a).

    Input: ``[B, T]`` symbol ids (or ``[B, T, 1]`` reals), optional ``lengths [B]``.
    Output: ``[B, T, outputs]`` in (0, 1), or ``[B, outputs]`` at each sequence's last step
    with ``last_only``.
    """

    def __init__(
        self,
        symbols: int | None,
        hidden: int,
        outputs: int,
        *,
        embedding: int | None = None,
        skip: bool = False,
        variant: str | lstmkit.LSTMVariant = "lstm1997",
        bias: bool = True,
        sigma_c: str | None = None,
        sigma_h: str | None = None,
        input_gate_bias: tuple[float, ...] = (),
    ) -> None:
        super().__init__()
        self.symbols = symbols
        if symbols is None:
            width = 1
            self.embed = None
        elif embedding is None:
            width = symbols
            self.embed = None
        else:
            width = embedding
            self.embed = nn.Embedding(symbols, embedding)
        self.skip = skip
        self.lstm = lstmkit.LSTM(
            width, hidden, variant=variant, bias=bias, batch_first=True,
            sigma_c=sigma_c, sigma_h=sigma_h,
        )  # fmt: skip
        self.readout = nn.Linear(hidden + (width if skip else 0), outputs, bias=bias)
        if input_gate_bias:  # the paper's remedy for state drift (its Sec. 4): gates start shut
            if not bias or len(input_gate_bias) != hidden:
                raise ValueError(
                    f"input_gate_bias needs bias=True and one value per cell ({hidden}), got "
                    f"{len(input_gate_bias)} values with bias={bias}"
                )
            with torch.no_grad():  # gate order i, (f,) g, o: the input gate's block is first
                self.lstm.bias_ih_l0[:hidden] += torch.tensor(input_gate_bias)

    def encode(self, inputs: Tensor) -> Tensor:
        if self.symbols is None:
            return inputs  # [B, T, 1]
        if self.embed is not None:
            return self.embed(inputs)  # [B, T, E]
        return F.one_hot(inputs, self.symbols).float()  # [B, T, V]

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None, *, last_only: bool = False
    ) -> Tensor:
        encoded = self.encode(inputs)
        cells, _ = self.lstm(encoded, lengths=lengths)  # [B, T, H]
        features = torch.cat([cells, encoded], dim=-1) if self.skip else cells
        if last_only:
            ends = lengths if lengths is not None else torch.full((len(inputs),), inputs.shape[1])
            features = features[torch.arange(len(inputs)), ends - 1]  # [B, H(+V)]
        return torch.sigmoid(self.readout(features))


def _shut_gates(hidden: int, spread: tuple[float, float] = (-1.0, -5.0)) -> tuple[float, ...]:
    """Input gate biases spread over the cells from ``spread[0]`` to ``spread[1]`` (the
    paper's Exp. 3a uses -1, -3, -5 for its three cells): the cells start nearly shut, so
    they do not drift."""
    return tuple(torch.linspace(spread[0], spread[1], hidden).tolist())


def _cell_2a() -> lstmkit.LSTMVariant:
    """The paper's Exp. 2a cell: an input gate and no output gate, g the logistic sigmoid,
    h the identity (no forget gate, as every 1997 cell)."""
    return lstmkit.LSTMVariant(
        "cell_2a", forget_gate=False, output_gate=False, sigma_c="sigmoid", sigma_h="identity",
        paper="Hochreiter & Schmidhuber 1997, Exp. 2a",
    )  # fmt: skip


def _paper_net(symbols: int, hidden: int, outputs: int, *, experiment: str) -> LagNet:
    """The paper's net as close as lstmkit's cells allow, weights uniform in [-0.2, 0.2].

    2a: one cell with an input gate and no output gate, g the logistic sigmoid, h the identity,
    output units reading input and cell; the recurrent weights are fixed at 0, since the
    paper's 2a cell and gate read the input units only. 2c: ``hidden`` cells of
    ``lstm1997`` (input and output gates), no biases; the paper's g in [-2, 2] and h in
    [-1, 1] are scaled sigmoids, here tanh (range [-1, 1] both), and the paper's gates also
    read the previous gate activations (lstmkit's read the cell outputs only).
    """
    if experiment == "2a":
        net = LagNet(symbols, hidden, outputs, skip=True, variant=_cell_2a(), bias=False)
    else:
        net = LagNet(symbols, hidden, outputs, variant="lstm1997", bias=False)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.uniform_(-0.2, 0.2)
        if experiment == "2a":  # the paper's 2a cell and gate read the input units only
            net.lstm.weight_hh_l0.zero_()
            net.lstm.weight_hh_l0.requires_grad_(False)
    return net


class CellAddedLater:
    """The paper's Exp. 2a schedule: "Memory cell and input gate are added once the error has
    stopped decreasing". Until then the output units' weights from the cells are held at 0
    (the cells are cut off and the input-to-output weights learn the local transitions); the
    cells join when the mean training error of a window of ``window`` sequences falls by less
    than 1% against the window before. Where the paper's "stopped decreasing" is this rule
    is our reading.
    """

    def __init__(self, readout: nn.Linear, hidden: int, window: int = 50) -> None:
        self.added, self.window, self.losses, self.previous = False, window, [], None
        with torch.no_grad():
            readout.weight[:, :hidden].zero_()  # the readout reads [cells, input]
        mask = torch.ones_like(readout.weight)
        mask[:, :hidden] = 0
        readout.weight.register_hook(lambda grad: grad if self.added else grad * mask)

    def record(self, loss: float) -> None:
        self.losses.append(loss)
        if self.added or len(self.losses) < self.window:
            return
        mean, self.losses = sum(self.losses) / len(self.losses), []
        if self.previous is not None and mean > 0.99 * self.previous:
            self.added = True
        self.previous = mean


# ------------------------------------------------------------------- the experiments
@dataclass(frozen=True)
class Setup:
    """How one experiment trains under one protocol."""

    hidden: int  # memory cells
    batch: int  # sequences per optimiser step (1: online)
    lr: float
    max_sequences: int  # training budget of one trial
    check_every: int  # training sequences between checks
    embedding: int | None = 32  # modern: embedding width; None: one-hot (paper)
    gate_bias: tuple[float, float] = (-1.0, -5.0)  # modern: input gate biases, first to last


MODERN_2A = Setup(hidden=8, batch=16, lr=3e-2, max_sequences=40_000, check_every=160)
PAPER_2A_SETUP = Setup(
    hidden=1, batch=1, lr=1.0, max_sequences=20_000, check_every=100, embedding=None
)
MODERN_2C = Setup(hidden=8, batch=32, lr=1e-2, max_sequences=100_000, check_every=640)
MODERN_2C_LONG = Setup(
    hidden=8, batch=32, lr=1e-2, max_sequences=50_000, check_every=1280, gate_bias=(-3.0, -7.0)
)
PAPER_2C_SETUP = Setup(
    hidden=2, batch=1, lr=0.01, max_sequences=60_000, check_every=500, embedding=None
)
MODERN_3A = Setup(hidden=8, batch=32, lr=1e-2, max_sequences=60_000, check_every=320)


def _seeded_model(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` under ``seed`` without touching the caller's global random state."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def _loss(outputs: Tensor, targets: Tensor, protocol: str) -> Tensor:
    """Modern: mean binary cross-entropy; paper: half the summed squared error (per sequence,
    as online gradient descent on the paper's error)."""
    if protocol == "paper":
        return 0.5 * (outputs - targets).pow(2).sum() / len(outputs)
    return F.binary_cross_entropy(outputs, targets)


def _step(model: nn.Module, optimiser: torch.optim.Optimizer, loss: Tensor) -> float:
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return float(loss.detach())


def noise_free_trial(
    seed: int, protocol: str, *, p: int = 100, setup: Setup | None = None
) -> Trial:
    """One trial of Exp. 2a; the criterion is checked on both training sequences (see the
    module docstring). Trial.test_error: the fraction of the two sequences that fail."""
    check_protocol(protocol)
    setup = setup or (PAPER_2A_SETUP if protocol == "paper" else MODERN_2A)
    generator = torch.Generator().manual_seed(seed)
    symbols = p + 1
    if protocol == "paper":
        model = _seeded_model(
            seed, lambda: _paper_net(symbols, setup.hidden, symbols, experiment="2a")
        )
    else:
        model = _seeded_model(
            seed,
            lambda: LagNet(
                symbols, setup.hidden, symbols, embedding=setup.embedding, skip=True,
                variant=_cell_2a(), input_gate_bias=_shut_gates(setup.hidden, setup.gate_bias),
            ),
        )  # fmt: skip
    optimiser = sgd_or_adam(model, protocol, setup.lr)
    both = torch.stack([
        torch.cat([torch.tensor([first]), torch.arange(p - 1), torch.tensor([first])])
        for first in (p - 1, p)
    ])  # fmt: skip

    schedule = CellAddedLater(model.readout, setup.hidden) if protocol == "paper" else None

    def train_step() -> float:
        sequences = noise_free_sequences(p, setup.batch, generator)
        targets = F.one_hot(sequences[:, 1:], symbols).float()
        loss = _step(model, optimiser, _loss(model(sequences[:, :-1]), targets, protocol))
        if schedule is not None:
            schedule.record(loss)
        return loss

    def errors() -> Tensor:
        with torch.no_grad():
            outputs = model(both[:, :-1])
        return sequence_errors(outputs, F.one_hot(both[:, 1:], symbols).float())

    def check() -> tuple[bool, float]:
        found = errors()
        return all_below(found, THRESHOLD_2A), float(found.mean())

    def test() -> float:
        return float((errors() >= THRESHOLD_2A).float().mean())

    return train_until_solved(
        train_step, check, sequences_per_step=setup.batch, max_sequences=setup.max_sequences,
        check_every=setup.check_every, seed=seed, test=test,
    )  # fmt: skip


def distractor_trial(
    seed: int, protocol: str, *, p: int = 100, q: int | None = None, setup: Setup | None = None
) -> Trial:
    """One trial of Exp. 2c (q = p unless given). Trial.test_error: the fraction of 10,000
    fresh sequences whose final prediction misses by 0.2 or more on either output unit."""
    check_protocol(protocol)
    q = p if q is None else q
    setup = setup or (PAPER_2C_SETUP if protocol == "paper" else MODERN_2C)
    generator = torch.Generator().manual_seed(seed)
    test_generator = torch.Generator().manual_seed(10_000 + seed)  # never the training stream
    symbols = p + 4
    if protocol == "paper":
        model = _seeded_model(seed, lambda: _paper_net(symbols, setup.hidden, 2, experiment="2c"))
    else:
        model = _seeded_model(
            seed,
            lambda: LagNet(
                symbols, setup.hidden, 2, embedding=setup.embedding,
                input_gate_bias=_shut_gates(setup.hidden, setup.gate_bias),
            ),
        )  # fmt: skip
    optimiser = sgd_or_adam(model, protocol, setup.lr)
    chunk = max(1, min(1000, 2_000_000 // (q + 20)))  # test batches of ~2M steps

    def train_step() -> float:
        inputs, lengths, labels = distractor_sequences(p, q, setup.batch, generator)
        outputs = model(inputs, lengths, last_only=True)  # [B, 2]
        return _step(model, optimiser, _loss(outputs, F.one_hot(labels, 2).float(), protocol))

    def errors(count: int) -> Tensor:
        found = []
        with torch.no_grad():
            for start in range(0, count, chunk):
                size = min(chunk, count - start)
                inputs, lengths, labels = distractor_sequences(p, q, size, test_generator)
                outputs = model(inputs, lengths, last_only=True)
                found.append(sequence_errors(outputs, F.one_hot(labels, 2).float()))
        return torch.cat(found)

    def check() -> tuple[bool, float]:
        probe = errors(PROBE)
        if not all_below(probe, THRESHOLD_2C):
            return False, float(probe.mean())
        return all_below(errors(SUCCESSIVE), THRESHOLD_2C), float(probe.mean())

    def test() -> float:
        return float((errors(SUCCESSIVE) >= THRESHOLD_2C).float().mean())

    return train_until_solved(
        train_step, check, sequences_per_step=setup.batch, max_sequences=setup.max_sequences,
        check_every=setup.check_every, seed=seed, test=test,
    )  # fmt: skip


def two_sequence_trial(
    seed: int, *, T: int = 100, N: int = 3, setup: Setup = MODERN_3A
) -> tuple[Trial, Trial]:
    """One trial of Exp. 3a (modern protocol): trains until ST2 and returns the trial seen at
    ST2 and the same trial seen at ST1 (``sequences`` = the count when ST1 first held).
    ``test_error``: the fraction of 2560 fresh sequences misclassified after training."""
    generator = torch.Generator().manual_seed(seed)
    test_generator = torch.Generator().manual_seed(10_000 + seed)
    model = _seeded_model(
        seed,
        lambda: LagNet(
            None, setup.hidden, 1, input_gate_bias=_shut_gates(setup.hidden, setup.gate_bias)
        ),
    )
    optimiser = sgd_or_adam(model, "modern", setup.lr)
    seen = {"sequences": 0, "st1": None}

    def train_step() -> float:
        inputs, lengths, targets = two_sequence_problem(T, N, setup.batch, generator)
        outputs = model(inputs, lengths, last_only=True)[:, 0]
        seen["sequences"] += setup.batch
        return _step(model, optimiser, F.binary_cross_entropy(outputs, targets))

    def errors(count: int) -> Tensor:
        inputs, lengths, targets = two_sequence_problem(T, N, count, test_generator)
        with torch.no_grad():
            return (model(inputs, lengths, last_only=True)[:, 0] - targets).abs()

    def check() -> tuple[bool, float]:
        found = errors(ST1_TEST)
        st1, st2 = stopping_criteria(found)
        if st1 and seen["st1"] is None:
            seen["st1"] = seen["sequences"]
        return st2, float(found.mean())

    def test() -> float:
        return float((errors(FINAL_TEST) >= THRESHOLD_3A).float().mean())

    at_st2 = train_until_solved(
        train_step, check, sequences_per_step=setup.batch, max_sequences=setup.max_sequences,
        check_every=setup.check_every, seed=seed, test=test,
    )  # fmt: skip
    at_st1 = Trial(
        seed=seed, solved=seen["st1"] is not None, sequences=seen["st1"],
        test_error=at_st2.test_error, seconds=at_st2.seconds, curve=at_st2.curve,
    )  # fmt: skip
    return at_st2, at_st1


# ------------------------------------------------------------------------ the commands
def _say(line: str) -> None:
    print(line, flush=True)


def _describe(setup: Setup, protocol: str) -> str:
    if protocol == "paper":
        return f"paper: online SGD lr {setup.lr:g}, squared error"
    return f"modern: Adam lr {setup.lr:g}, batch {setup.batch}, BCE"


def _run_trials(label: str, seeds: list[int], trial: Callable[[int], Trial]) -> list[Trial]:
    trials = []
    for seed in seeds:
        result = trial(seed)
        trials.append(result)
        _say(
            f"{label} seed {seed}: solved={result.solved} sequences={result.sequences} "
            f"test={result.test_error:.4g} ({result.seconds:.0f} s)"
        )
    return trials


def run_long_lag(
    *,
    quick: bool = False,
    output_dir: Path,
    seed: int = 0,
    seeds: int = 5,
    protocol: str = "modern",
) -> ReproductionResult:
    """Exp. 2a (p = 100) and 2c (q = p = 100; and q = p = 1000 in the full modern run) over
    ``seeds`` seeds from ``seed``; ``quick`` skips q = p = 1000."""
    check_protocol(protocol)
    started = time.perf_counter()
    output_dir = Path(output_dir)
    chosen = seed_list(seed, seeds)
    setup_2a = PAPER_2A_SETUP if protocol == "paper" else MODERN_2A
    setup_2c = PAPER_2C_SETUP if protocol == "paper" else MODERN_2C
    model_2a = f"2a cell (no output gate) x{setup_2a.hidden}, outputs read input"
    model_2c = f"lstm1997, {setup_2c.hidden} cells"
    rows, curves = [], {}

    p, long_p = _DEFAULT_P, _LONG_P
    trials = _run_trials("2a", chosen, lambda s: noise_free_trial(s, protocol, p=p))
    rows.append(summary_row(
        f"2a noise-free, p={p}", model_2a, _describe(setup_2a, protocol), trials,
        f"100% of 18; {PAPER_2A['sequences']:,} (mean)",
    ))  # fmt: skip
    curves[f"2a p={p}"] = trials

    trials = _run_trials("2c", chosen, lambda s: distractor_trial(s, protocol, p=p))
    rows.append(summary_row(
        f"2c distractors, q=p={p}", model_2c, _describe(setup_2c, protocol), trials,
        f"{PAPER_2C[100]:,} (mean of 20)",
    ))  # fmt: skip
    curves[f"2c q=p={p}"] = trials

    long_run = not quick and protocol == "modern"
    if long_run:
        trials = _run_trials(
            "2c long", chosen,
            lambda s: distractor_trial(s, protocol, p=long_p, setup=MODERN_2C_LONG),
        )  # fmt: skip
        rows.append(summary_row(
            f"2c distractors, q=p={long_p}", model_2c, _describe(setup_2c, protocol), trials,
            f"{PAPER_2C[1000]:,} (mean of 20)",
        ))  # fmt: skip
        curves[f"2c q=p={long_p}"] = trials

    figure = plot_curves(
        output_dir / "curves.png", curves,
        title="H&S 1997 Exp. 2a/2c: mean per-sequence max |error| at check points",
        ylabel="mean max |output error|",
    )  # fmt: skip
    notes = [
        "Criteria as the paper states them: 2a every output unit at every step below 0.25, "
        "2c both output units at the final element below 0.2, for 10,000 successive random "
        "sequences; checked at check points on 10,000 fresh sequences with the net frozen "
        "(2a: on its only two sequences, which is the same test).",
        "test error: fraction of 10,000 fresh sequences (2a: of its two sequences) that fail "
        "the criterion after training; sequences to success: median [range] over solved "
        "trials, counted at the first passing check point (the paper reports means).",
    ]
    if protocol == "paper":
        notes += [
            "Paper protocol: online SGD (one sequence per step) at the paper's learning rates "
            "(2a: 1.0, 2c: 0.01) on half the summed squared error, one-hot inputs, no biases, "
            "weights uniform in [-0.2, 0.2]; 2a one cell with an input gate and no output gate "
            "(g sigmoid, h identity), outputs reading input and cell; 2c 2 lstm1997 cells. "
            "Sequence counts compare with the paper's here.",
            "Deviations: 2a's recurrent weights are held at 0 (the paper's 2a cell reads the "
            "input only); 2c's gates read the cell outputs h_{t-1}, the paper's also the "
            "gates; 2c uses tanh for g and h (the "
            "paper's [-2, 2] and [-1, 1] sigmoids); 2a's cells join once the training error "
            "of a 50-sequence window falls by less than 1% (our reading of the paper's 'once "
            "the error has stopped decreasing'). Budgets: 20,000 sequences (2a), 60,000 (2c). "
            "q=p=1000 is not run under this protocol (about 15 minutes per seed online here).",
        ]
    else:
        notes += [
            f"Modern protocol: Adam (lr {setup_2a.lr:g} for 2a, {setup_2c.lr:g} for 2c) on "
            f"minibatches of {setup_2a.batch} (2a) and {setup_2c.batch} (2c) sequences, binary "
            f"cross-entropy on sigmoid output units, a {setup_2c.embedding}-wide embedding in "
            "place of the one-hot input layer, input gate biases spread from -1 to -5 at init "
            "(the paper's remedy for state drift), else PyTorch's default init. 2a: "
            f"{setup_2a.hidden} of the paper's 2a cells (input gate, no output gate, g sigmoid, "
            "h identity), output units reading the cells and the input as in the paper; 2c: "
            f"{setup_2c.hidden} lstm1997 cells (tanh). Sequence counts are not comparable with "
            "the paper's online counts.",
            "Without the shut input gates, 2c failed 2 of 4 seeds and 3a 1 of 2; with tanh "
            "lstm1997 cells in place of the 2a cell, 2a failed within 20,000-40,000 sequences "
            "(the cell state drifts and tanh saturates).",
            f"q=p={long_p}: budget {MODERN_2C_LONG.max_sequences:,} sequences per trial, input "
            "gate biases -3 to -7 (with -1 to -5, 3 of 5 seeds stayed at chance; with -3 to -7 "
            "in a trial run, 1 of 4).",
        ]
        if quick:
            notes.append("--quick: q=p=1000 skipped (the full run has it as its own row).")
    return paper_result(
        "Hochreiter & Schmidhuber 1997, Exp. 2a and 2c: long time lags",
        rows, notes=notes, files={"curves": str(figure)}, started=started,
        # every trial at p = 100 solved (q = p = 1000 is the slow case, reported apart)
        success=all(t.solved for name in (f"2a p={p}", f"2c q=p={p}") for t in curves[name]),
    )  # fmt: skip


def run_noise_signal(
    *,
    quick: bool = False,
    output_dir: Path,
    seed: int = 0,
    seeds: int = 5,
    protocol: str = "modern",
) -> ReproductionResult:
    """Exp. 3a (T = 100, N = 3) over ``seeds`` seeds from ``seed``: rows at ST1 and ST2."""
    check_protocol(protocol, ("modern",))
    started = time.perf_counter()
    output_dir = Path(output_dir)
    at_st2, at_st1 = [], []
    for one in seed_list(seed, seeds):
        st2, st1 = two_sequence_trial(one, T=_DEFAULT_T, setup=MODERN_3A)
        at_st2.append(st2)
        at_st1.append(st1)
        _say(
            f"3a seed {one}: ST1 at {st1.sequences}, ST2 at {st2.sequences}, "
            f"misclassified {st2.test_error:.4g} ({st2.seconds:.0f} s)"
        )
    model = f"lstm1997, {MODERN_3A.hidden} cells"
    protocol_text = _describe(MODERN_3A, "modern")
    rows = [
        summary_row(
            "3a 2-sequence, T=100, N=3: ST1", model, protocol_text, at_st1,
            f"{PAPER_3A['st1']:,} (mean of 10)",
        ),
        summary_row(
            "3a 2-sequence, T=100, N=3: ST2", model, protocol_text, at_st2,
            f"{PAPER_3A['st2']:,}; {PAPER_3A['misclassified']} misclassified",
        ),
    ]  # fmt: skip
    figure = plot_curves(
        output_dir / "curves.png", {"3a T=100 N=3": at_st2},
        title="H&S 1997 Exp. 3a: mean |error| on 256 fresh test sequences",
        ylabel="mean absolute test error",
    )  # fmt: skip
    notes = [
        "Criteria as the paper states them: ST1 none of 256 fresh test sequences misclassified "
        "(absolute error at the end >= 0.2); ST2 ST1 and a mean absolute test error below "
        "0.01; checked every "
        f"{MODERN_3A.check_every} training sequences on a fresh 256-sequence test set. test "
        "error: the fraction of 2560 fresh sequences misclassified after ST2 (the paper's "
        "measure).",
        f"Modern protocol: Adam (lr {MODERN_3A.lr:g}) on minibatches of {MODERN_3A.batch}, "
        f"binary cross-entropy on a sigmoid output, {MODERN_3A.hidden} lstm1997 cells (tanh) "
        "with input gate biases spread from -1 to -5 at init (the paper's remedy for state "
        "drift; without it 1 of 2 seeds stuck at chance), else PyTorch's default init. The "
        "paper: online, learning rate 1.0, 3 cell "
        "blocks of size 1 with input gate biases -1, -3, -5 and output gate biases -2, -4, -6; "
        "its sequence counts are not comparable with ours.",
        "The paper notes that random weight guessing solves this problem faster than any "
        "gradient method; it shows only that noise and signal on one channel do no harm.",
    ]
    return paper_result(
        "Hochreiter & Schmidhuber 1997, Exp. 3a: noise and signal on the same channel",
        rows, notes=notes, files={"curves": str(figure)}, started=started,
        success=all(trial.solved for trial in at_st2),
    )  # fmt: skip
