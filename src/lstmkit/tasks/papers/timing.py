"""Gers, Schraudolph & Schmidhuber 2002, "Learning precise timing with LSTM recurrent
networks" (JMLR 3:115-143): ``lstmkit reproduce timing``.

**The claim** (the abstract, quoted): LSTM "augmented by 'peephole connections' from its
internal cells to its multiplicative gates can learn the fine distinction between sequences
of spikes spaced either 50 or 49 time steps apart without the help of any short training
exemplars. Without external resets or teacher forcing, our LSTM variant also learns to
generate stable streams of precisely timed spikes". The paper compares LSTM with and
without peepholes; as we recall, the variant without peepholes failed the finest timing
tasks. We are sure of the abstract; the tables' figures (which periods and delays each
variant solved, and how many training sequences it took) we do not quote, as we could not
check them.

**Two experiments here** (our setups; the paper's are close to, not the same as, these):

- ``spikes 49/50`` (the paper's "measuring spike delays" family, reduced to its headline
  distinction): the input is a stream of ``length`` steps, 0 everywhere but two spikes (1)
  ``d`` in {49, 50} steps apart, the first at a random offset; at the step of the second
  spike the network must say which (sigmoid output > 0.5 for 50). No short exemplars: every
  training sequence has d = 49 or 50. Solved: every possible sequence (each offset, each d)
  classified right. We are unsure whether the paper's network answered at the second spike
  or produced a delay estimate in a continual stream; ours answers once per sequence.
- ``spikes every T`` (the paper's "generating timed spikes", GTS): the input is one start
  spike, then nothing; the output must spike (> 0.5) exactly every T steps after it and stay
  below 0.5 at every other step, with no reset and no teacher forcing. Training sequences
  hold ``train_periods`` periods and start at a random step (so the network times from the
  start spike, not from the sequence's beginning); the criterion is judged on a free run of
  ``test_periods`` periods, twice the training length: every step right. We are unsure
  how the paper started the generator (a start spike, or none) and which periods it used.

**Our protocol ("modern").** Adam on minibatches (BCE), one layer of ``hidden`` cells and a
linear read-out; variants ``peephole`` (the paper's) and ``standard`` (no peepholes).
"sequences to success" counts training sequences (steps x batch size), which is not the
paper's protocol (online gradient descent), so the counts are not comparable with it.
"test error": the fraction of test sequences misclassified (49/50) or of free-run steps
wrong (spikes every T) at the end of training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lstmkit
from lstmkit.tasks.papers.common import (
    PROTOCOL_HELP,
    Trial,
    check_protocol,
    paper_result,
    plot_curves,
    seed_list,
    summary_row,
    train_until_solved,
)
from lstmkit.tasks.reproduce import ReproductionResult

VARIANTS = ("peephole", "standard")
SHORT, LONG = 49, 50  # the two spike distances to tell apart
PAPER = {
    "interval": "peephole: tells 49 from 50 (abstract); no peepholes: fails the finest timing",
    "generate": "peephole: stable timed spikes without resets (abstract)",
}


# --------------------------------------------------------------------------- the data
def spike_pairs(offsets: Tensor, distances: Tensor, length: int) -> tuple[Tensor, Tensor, Tensor]:
    """Two spikes per sequence: the first at ``offsets[b]``, the second ``distances[b]``
    steps later. Returns inputs ``[B, length, 1]``, labels ``[B]`` (1.0 where the distance
    is ``LONG``) and the step of the second spike ``[B]`` (where the answer is read)."""
    if offsets.shape != distances.shape or offsets.dim() != 1:
        raise ValueError(
            f"offsets and distances must be [B] of one shape, got {tuple(offsets.shape)} "
            f"and {tuple(distances.shape)}"
        )
    if not bool(((distances == SHORT) | (distances == LONG)).all()):
        raise ValueError(f"distances must be {SHORT} or {LONG}, got {distances.unique().tolist()}")
    second = offsets + distances
    if bool((offsets < 0).any()) or bool((second >= length).any()):
        raise ValueError(f"offsets must be >= 0 and offset + distance < length ({length})")
    inputs = torch.zeros(offsets.shape[0], length, 1)
    rows = torch.arange(offsets.shape[0])
    inputs[rows, offsets, 0] = 1.0
    inputs[rows, second, 0] = 1.0
    return inputs, (distances == LONG).float(), second


def random_spike_pairs(
    batch_size: int, length: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """``spike_pairs`` with a uniform offset in [0, length - LONG) and a fair coin for 49/50."""
    _check_length(length)
    offsets = torch.randint(0, length - LONG, (batch_size,), generator=generator)
    distances = torch.where(torch.rand(batch_size, generator=generator) < 0.5, SHORT, LONG)
    return spike_pairs(offsets, distances, length)


def all_spike_pairs(length: int) -> tuple[Tensor, Tensor, Tensor]:
    """Every sequence of the task: each offset in [0, length - LONG) with each distance."""
    _check_length(length)
    offsets = torch.arange(length - LONG).repeat(2)
    distances = torch.tensor([SHORT, LONG]).repeat_interleave(length - LONG)
    return spike_pairs(offsets, distances, length)


def timed_spikes(starts: Tensor, period: int, periods: int) -> tuple[Tensor, Tensor]:
    """A start spike at ``starts[b]``, then target spikes every ``period`` steps, ``periods``
    of them. Returns inputs ``[B, L, 1]`` and targets ``[B, L]`` (1 at the spike steps), with
    L = max(starts) + period * periods + 1 (the step of the last spike included)."""
    if isinstance(period, bool) or not isinstance(period, int) or period < 2:
        raise ValueError(f"period must be an int >= 2, got {period!r}")
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
        raise ValueError(f"periods must be an int >= 1, got {periods!r}")
    if starts.dim() != 1 or bool((starts < 0).any()):
        raise ValueError(f"starts must be [B] of steps >= 0, got {starts.tolist()}")
    length = int(starts.max()) + period * periods + 1
    rows = torch.arange(starts.shape[0])
    inputs = torch.zeros(starts.shape[0], length, 1)
    inputs[rows, starts, 0] = 1.0
    targets = torch.zeros(starts.shape[0], length)
    for k in range(1, periods + 1):
        targets[rows, starts + k * period] = 1.0
    return inputs, targets


# --------------------------------------------------------------------------- the model
class SpikeNet(nn.Module):
    """Spikes ``[B, L, 1]`` -> one logit per step ``[B, L]``: one LSTM layer, a linear read-out."""

    def __init__(self, variant: str, hidden: int) -> None:
        super().__init__()
        self.lstm = lstmkit.LSTM(1, hidden, variant=variant, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, inputs: Tensor) -> Tensor:
        hidden, _ = self.lstm(inputs)  # [B, L, H]
        return self.head(hidden).squeeze(-1)


def spikes_right(logits: Tensor, targets: Tensor) -> Tensor:
    """``[B]`` bool: every step's output on the right side of 0.5 (logit 0); ``[B, L]``."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    return ((logits > 0) == (targets > 0.5)).all(dim=1)


# --------------------------------------------------------------------------- the trials
@dataclass(frozen=True)
class TimingScale:
    """Sizes and budget of one experiment's trials."""

    hidden: int = 8
    batch_size: int = 32
    lr: float = 0.01
    clip: float = 1.0  # gradient norm: without it Adam jumped away from found solutions
    max_sequences: int = 64_000
    check_every: int = 640
    length: int = 100  # spikes 49/50: steps per sequence
    period: int = 10  # spikes every T: T
    train_periods: int = 10
    test_periods: int = 20


def _fit(
    model: nn.Module,
    loss_of: Callable[[], Tensor],
    check: Callable[[], tuple[bool, float]],
    scale: TimingScale,
    seed: int,
) -> Trial:
    optimiser = torch.optim.Adam(model.parameters(), lr=scale.lr)

    def train_step() -> float:
        loss = loss_of()
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), scale.clip)
        optimiser.step()
        return float(loss.detach())

    return train_until_solved(
        train_step,
        torch.no_grad()(check),
        sequences_per_step=scale.batch_size,
        max_sequences=scale.max_sequences,
        check_every=scale.check_every,
        seed=seed,
    )


def interval_trial(variant: str, seed: int, scale: TimingScale) -> Trial:
    """Spikes 49 or 50 steps apart: train until every sequence is told right."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = SpikeNet(variant, scale.hidden)
    test_inputs, test_labels, test_steps = all_spike_pairs(scale.length)
    rows = torch.arange(test_labels.shape[0])

    def loss_of() -> Tensor:
        inputs, labels, steps = random_spike_pairs(scale.batch_size, scale.length, generator)
        logits = model(inputs)[torch.arange(labels.shape[0]), steps]  # [B]
        return F.binary_cross_entropy_with_logits(logits, labels)

    def check() -> tuple[bool, float]:
        logits = model(test_inputs)[rows, test_steps]
        wrong = float(((logits > 0).float() != test_labels).float().mean())
        return wrong == 0.0, wrong

    return _fit(model, loss_of, check, scale, seed)


def generate_trial(variant: str, seed: int, scale: TimingScale) -> Trial:
    """Spikes every ``scale.period`` steps: train on runs of ``train_periods`` periods from a
    random start, judge a free run of ``test_periods`` periods."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = SpikeNet(variant, scale.hidden)
    test_inputs, test_targets = timed_spikes(torch.zeros(1, dtype=torch.long), scale.period,
                                             scale.test_periods)  # fmt: skip
    # spikes are 1 step in T: weigh them up so that "never spike" is not a cheap minimum
    spike_weight = torch.tensor(float(scale.period - 1))

    def loss_of() -> Tensor:
        starts = torch.randint(0, scale.period, (scale.batch_size,), generator=generator)
        inputs, targets = timed_spikes(starts, scale.period, scale.train_periods)
        return F.binary_cross_entropy_with_logits(model(inputs), targets, pos_weight=spike_weight)

    def check() -> tuple[bool, float]:
        logits = model(test_inputs)
        wrong = float(((logits > 0).float() != test_targets).float().mean())
        return bool(spikes_right(logits, test_targets).all()), wrong

    return _fit(model, loss_of, check, scale, seed)


# The 49/50 task stays at chance in every setting we tried (see the notes), so its budget is
# kept small; the quick run is the spike generator's peephole row at one seed.
SCALES = {"interval": TimingScale(max_sequences=32_000), "generate": TimingScale()}
EXPERIMENTS = {
    "interval": ("spikes 49/50", interval_trial),
    "generate": (f"spikes every T={SCALES['generate'].period}", generate_trial),
}
QUICK_EXPERIMENTS = ("generate",)


def run(
    *,
    quick: bool = False,
    output_dir: Path,
    seed: int = 0,
    seeds: int = 5,
    protocol: str = "modern",
) -> ReproductionResult:
    """Telling 49 from 50 steps, and generating spikes every T steps: ``peephole`` against
    ``standard`` (``quick``: ``peephole`` only)."""
    check_protocol(protocol, ("modern",))
    started = time.perf_counter()
    variants = VARIANTS[:1] if quick else VARIANTS
    keys = QUICK_EXPERIMENTS if quick else tuple(EXPERIMENTS)
    rows, curves = [], {}
    for key in keys:
        experiment, trial_of = EXPERIMENTS[key]
        for variant in variants:
            trials = [trial_of(variant, s, SCALES[key]) for s in seed_list(seed, seeds)]
            rows.append(summary_row(experiment, variant, protocol, trials, PAPER[key]))
            curves[f"{experiment} {variant}"] = trials
    plot = plot_curves(
        Path(output_dir) / "curves.png",
        curves,
        title="Precise timing: test error while training",
        ylabel="fraction wrong",
        log_y=False,
    )
    interval, generate = SCALES["interval"], SCALES["generate"]
    notes = [
        f"Protocol {protocol}: {PROTOCOL_HELP[protocol]} (lr {generate.lr}, batch "
        f"{generate.batch_size}, gradient norm clipped at {generate.clip}), one layer of "
        f"{generate.hidden} cells; the paper trained online with gradient descent, so "
        "'sequences to success' (steps x batch size) is not comparable with its counts.",
        f"spikes 49/50: sequences of {interval.length} steps, two spikes 49 or 50 apart at a "
        "random offset, the answer read at the second spike; solved = all "
        f"{2 * (interval.length - LONG)} possible sequences right; at most "
        f"{interval.max_sequences:,} sequences. Not reproduced: both variants stay at chance. "
        "Probes beyond this budget (64,000 sequences; forget bias 2, 3 or 5; identity output "
        "activation; 16 cells; lstm1997) stayed at chance too, and so did a continual "
        "stream (spikes every 49 or 50 steps, the answer at each spike; 48,000 sequences).",
        f"spikes every T: T = {generate.period}, a start spike then no input; trained on "
        f"{generate.train_periods} periods from a random start, judged on a free run of "
        f"{generate.test_periods} periods (every step on the right side of 0.5); no resets, no "
        "teacher forcing. T = 20 was probed (2 seeds per variant, 64,000 sequences): neither "
        "variant solved it, so it is not a row.",
        "Our setups simplify the paper's (module docstring); the paper's table figures are "
        "not quoted, only its abstract's claims.",
    ]
    if quick:
        notes.append(
            "Quick run: the spike generator with the paper's model (peephole) only; the "
            "49/50 task, which we do not reproduce, runs in the full run."
        )
    return paper_result(
        "Gers, Schraudolph & Schmidhuber 2002: precise timing",
        rows,
        notes=notes,
        files={"curves": str(plot)},
        started=started,
        # the claim we reproduce: peephole LSTM generates the timed spikes
        success=all(trial.solved for trial in curves[f"{EXPERIMENTS['generate'][0]} peephole"]),
    )


def _check_length(length: int) -> None:
    if isinstance(length, bool) or not isinstance(length, int) or length <= LONG:
        raise ValueError(f"length must be an int > {LONG}, got {length!r}")
