"""Greff, Srivastava, Koutnik, Steunebrink & Schmidhuber 2015, "LSTM: A Search Space Odyssey",
in small: ``lstmkit reproduce variant-study``.

The paper trains the vanilla LSTM (V: peepholes, tanh in and out, lstmkit's ``peephole``) and
eight variants, each with one thing changed, on TIMIT, IAM Online and JSB Chorales; 200
random-search trials per variant and dataset. In its words (Sec. 5.1): "Removing the output
activation function (NOAF) or the forget gate (NFG) significantly hurt performance on all
three datasets"; coupling the input and forget gate (CIFG) and removing the peepholes (NP)
did not significantly change performance; removing the input gate (NIG), the output gate
(NOG) or the input activation (NIAF) significantly hurt on speech and handwriting but not on
music; full gate recurrence (FGR) did not help and hurt on music. "Significant" is Welch's
t-test at p < 0.05 between a variant's test errors and V's, on the best 10% of the trials.

Here, two tasks that run on a CPU in minutes:

- ``adding``: the adding problem (``lstmkit.data.synthetic.adding_problem``, T = 50), test MSE
  on fresh sequences; predicting the mean scores 1/6.
- ``char``: a character model of the King James Bible (``lstmkit.data.text.kjv_text``: a
  300,000-character training slice, a held-out 20,000-character test slice), test bits per
  character on windows of the test slice.

A small random search (``sample_configs``): K configurations of learning rate, hidden size and
Adam's beta1 (Greff's momentum), the SAME K for every variant (paired: same initial seed, same
training batches), each trained for a fixed number of Adam steps. ``K = configs_per_seed *
seeds``. Every variant's K test errors are compared with V's by Welch's t-test (all K trials:
with K this small, a top 10% would be one trial); a variant "hurts" on a task when its mean
error is higher and p < 0.05.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lstmkit
from lstmkit.data.synthetic import adding_problem
from lstmkit.tasks.papers.common import check_protocol, seed_list
from lstmkit.tasks.reproduce import ReproductionResult

# Greff's names -> lstmkit variants; V first (every test compares with it).
VARIANTS: dict[str, str] = {
    "V": "peephole",
    "NIG": "nig",
    "NFG": "nfg",
    "NOG": "nog",
    "NIAF": "niaf",
    "NOAF": "noaf",
    "NP": "np",
    "CIFG": "cifg",
    "FGR": "fgr",
}
GREFF_DATASETS = ("TIMIT", "IAM Online", "JSB Chorales")
# Greff et al. 2015, Sec. 5.1 and Fig. 3: the datasets on which a variant was significantly
# worse than V (Welch's t-test, p < 0.05, best 10% of 200 trials). No variant was better.
GREFF_HURTS: dict[str, tuple[str, ...]] = {
    "NIG": ("TIMIT", "IAM Online"),
    "NFG": GREFF_DATASETS,
    "NOG": ("TIMIT", "IAM Online"),
    "NIAF": ("TIMIT", "IAM Online"),
    "NOAF": GREFF_DATASETS,
    "NP": (),
    "CIFG": (),
    "FGR": ("JSB Chorales",),
}
TASKS = ("adding", "char")
SIGNIFICANCE = 0.05  # Greff's level for Welch's t-test
ADDING_MEAN_PREDICTOR_MSE = 1 / 6  # the MSE of always answering 1.0
ADDING_LEARNED_MSE = 0.05  # the quick run's criterion: V learned the adding problem


@dataclass(frozen=True)
class StudyScale:
    """Sizes and budgets of one run (``QUICK``, ``FULL``)."""

    configs_per_seed: int  # K = configs_per_seed * seeds configurations per variant
    adding_hidden: tuple[int, ...]  # the hidden sizes a configuration draws from, per task
    char_hidden: tuple[int, ...]
    batch_size: int
    adding_length: int  # T of the adding problem
    adding_steps: int  # Adam steps per adding trial
    adding_test: int  # fresh test sequences
    char_steps: int  # Adam steps per character-model trial
    char_window: int  # characters per training and test window
    train_chars: int = 300_000  # the training slice: the first train_chars of the text
    test_chars: int = 20_000  # the held-out slice right after it


QUICK = StudyScale(
    configs_per_seed=4,
    adding_hidden=(16, 32),
    char_hidden=(32, 64),
    batch_size=32,
    adding_length=20,
    adding_steps=600,
    adding_test=1000,
    char_steps=100,
    char_window=50,
)
FULL = replace(QUICK, configs_per_seed=2, char_steps=300, char_window=100)


# --------------------------------------------------------------------- the random search
@dataclass(frozen=True)
class Config:
    """One random-search configuration, shared by every variant."""

    index: int
    seed: int  # initial weights and training batches
    learning_rate: float
    hidden_size: int
    beta1: float  # Adam's first-moment decay: Greff's momentum

    def describe(self) -> str:
        return f"lr={self.learning_rate:.2g} H={self.hidden_size} beta1={self.beta1:.2f}"


LEARNING_RATES = (3e-3, 3e-2)  # log-uniform
BETA1_ONE_MINUS = (0.03, 0.5)  # 1 - beta1 log-uniform, as Greff's momentum: beta1 in [0.5, 0.97]


def sample_configs(count: int, seed: int, hidden_sizes: Sequence[int]) -> list[Config]:
    """``count`` configurations from ``seed``: learning rate log-uniform in ``LEARNING_RATES``,
    hidden size uniform from ``hidden_sizes``, beta1 = 1 - log-uniform(``BETA1_ONE_MINUS``)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    if not hidden_sizes or any(
        isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden_sizes
    ):
        raise ValueError(f"hidden_sizes must be positive integers, got {hidden_sizes!r}")
    generator = torch.Generator().manual_seed(seed)

    def log_uniform(low: float, high: float) -> float:
        u = torch.rand((), generator=generator).item()
        return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))

    configs = []
    for index in range(count):
        learning_rate = log_uniform(*LEARNING_RATES)
        hidden = hidden_sizes[int(torch.randint(len(hidden_sizes), (), generator=generator))]
        beta1 = 1.0 - log_uniform(*BETA1_ONE_MINUS)
        configs.append(Config(index, seed * 1000 + index, learning_rate, hidden, beta1))
    return configs


# --------------------------------------------------------------------------- the models
class LastStepRegressor(nn.Module):
    """``[T, B, D] -> [B, 1]``: an LSTM of one variant, a linear read-out of its last step."""

    def __init__(self, input_size: int, hidden_size: int, variant: str) -> None:
        super().__init__()
        self.lstm = lstmkit.LSTM(input_size, hidden_size, variant=variant)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        output = self.lstm(x)[0]  # [T, B, H]
        return self.head(output[-1])


class CharModel(nn.Module):
    """Character ids ``[T, B]`` -> next-character logits ``[T, B, V]`` (one-hot input, as
    Greff's networks read their inputs directly, no embedding)."""

    def __init__(self, vocabulary: int, hidden_size: int, variant: str) -> None:
        super().__init__()
        self.vocabulary = vocabulary
        self.lstm = lstmkit.LSTM(vocabulary, hidden_size, variant=variant)
        self.head = nn.Linear(hidden_size, vocabulary)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.lstm(F.one_hot(ids, self.vocabulary).float())[0])


def build(config: Config, make: type[nn.Module], *args: object) -> nn.Module:
    """``make(*args)`` initialised from ``config.seed``, leaving the global generator alone:
    every variant of one configuration starts from the same seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return make(*args)


def adam(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, betas=(config.beta1, 0.999)
    )


# --------------------------------------------------------------------------- the tasks
def adding_trial(
    variant: str, config: Config, scale: StudyScale, test: tuple[Tensor, Tensor]
) -> float:
    """Train on ``scale.adding_steps`` fresh batches; the test MSE on ``test`` (x, y)."""
    model = build(config, LastStepRegressor, 2, config.hidden_size, variant)
    optimiser = adam(model, config)
    generator = torch.Generator().manual_seed(config.seed)  # the same batches for every variant
    for _ in range(scale.adding_steps):
        x, y = adding_problem(scale.batch_size, scale.adding_length, generator)  # [T, B, 2]
        loss = F.mse_loss(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return F.mse_loss(model(test[0]), test[1]).item()


@dataclass(frozen=True)
class CharCorpus:
    """A training stream and test windows of one text, as character ids."""

    train: Tensor  # [N] ids
    test_windows: Tensor  # [W + 1, n_windows] ids: each column one window and its next char
    vocabulary: int
    unigram_bits: float  # entropy of the test slice's character frequencies (a level to beat)


def char_corpus(text: str, scale: StudyScale) -> CharCorpus:
    """The first ``scale.train_chars`` characters to train on, the next ``scale.test_chars``
    cut into windows of ``scale.char_window`` (+1 target) to test on."""
    needed = scale.train_chars + scale.test_chars
    if len(text) < needed:
        raise ValueError(f"text must hold at least {needed} characters, got {len(text)}")
    piece = text[:needed]
    characters = sorted(set(piece))
    index = {ch: i for i, ch in enumerate(characters)}
    ids = torch.tensor([index[ch] for ch in piece], dtype=torch.long)
    train, test = ids[: scale.train_chars], ids[scale.train_chars :]
    span = scale.char_window + 1
    windows = test[: (test.numel() // span) * span].reshape(-1, span).T.contiguous()
    counts = torch.bincount(test, minlength=len(characters)).double()
    p = counts[counts > 0] / counts.sum()
    return CharCorpus(train, windows, len(characters), float(-(p * p.log2()).sum()))


def char_trial(variant: str, config: Config, scale: StudyScale, corpus: CharCorpus) -> float:
    """Train on ``scale.char_steps`` batches of random windows (zero state at each window's
    start); the test bits per character over the test windows."""
    model = build(config, CharModel, corpus.vocabulary, config.hidden_size, variant)
    optimiser = adam(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    span = scale.char_window + 1
    offsets = torch.arange(span).unsqueeze(1)  # [W + 1, 1]
    for _ in range(scale.char_steps):
        starts = torch.randint(
            corpus.train.numel() - span, (scale.batch_size,), generator=generator
        )
        window = corpus.train[starts.unsqueeze(0) + offsets]  # [W + 1, B]
        logits = model(window[:-1])  # [W, B, V]
        loss = F.cross_entropy(logits.reshape(-1, corpus.vocabulary), window[1:].reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        logits = model(corpus.test_windows[:-1])
        nats = F.cross_entropy(
            logits.reshape(-1, corpus.vocabulary), corpus.test_windows[1:].reshape(-1)
        )
    return nats.item() / math.log(2)


# ------------------------------------------------------------------------- the analysis
def welch_p(errors: Sequence[float], reference: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test between two samples (nan when undefined)."""
    from scipy.stats import ttest_ind

    if len(errors) < 2 or len(reference) < 2:
        raise ValueError(
            f"errors and reference need at least 2 values each, got {len(errors)} and "
            f"{len(reference)}"
        )
    return float(ttest_ind(errors, reference, equal_var=False).pvalue)


def verdict(errors: Sequence[float], reference: Sequence[float]) -> tuple[float, str]:
    """(p, "hurts" | "helps" | "same"): significance at ``SIGNIFICANCE`` and the sign of the
    difference of the means (lower error is better)."""
    p = welch_p(errors, reference)
    if not p < SIGNIFICANCE:  # nan too: no evidence of a difference
        return p, "same"
    return p, "hurts" if statistics.fmean(errors) > statistics.fmean(reference) else "helps"


def quick_criterion(adding_errors: dict[str, Sequence[float]]) -> tuple[bool, str]:
    """The quick run's success: V learns the adding problem, i.e. the best of its random-search
    configurations reaches a test MSE below ``ADDING_LEARNED_MSE`` (the mean predictor scores
    1/6). At the quick size no difference between variants is reliable (see the notes)."""
    best = min(adding_errors["V"])
    solved = best < ADDING_LEARNED_MSE
    return solved, (
        f"V's best adding test MSE {best:.3g} "
        f"{'<' if solved else '>='} {ADDING_LEARNED_MSE} (mean predictor: 0.167)"
    )


# ------------------------------------------------------------------------------ the run
@dataclass
class TaskErrors:
    """Every variant's test errors on one task, in configuration order (paired)."""

    task: str
    measure: str  # "test MSE" or "test bits/char"
    errors: dict[str, list[float]]  # Greff name -> one error per configuration
    seconds: dict[str, float]  # Greff name -> training time of all its trials
    diverged: dict[str, int]  # Greff name -> trials whose error was not finite (-> `trivial`)
    trivial: float  # the trivial predictor's error: the mean (adding), the unigram model (char)


def run_task(
    task: str,
    configs: Sequence[Config],
    trial: Callable[[str, Config], float],
    trivial: float,
    measure: str,
) -> TaskErrors:
    """``trial(variant, config) -> error`` for every variant and configuration. A trial that
    diverges (nan or inf) scores ``trivial``, the trivial predictor's error, so one blow-up does
    not make a t-test undefined."""
    result = TaskErrors(task, measure, {}, {}, {}, trivial)
    for name, variant in VARIANTS.items():
        start = time.perf_counter()
        errors = [trial(variant, config) for config in configs]
        result.seconds[name] = time.perf_counter() - start
        result.diverged[name] = sum(not math.isfinite(e) for e in errors)
        result.errors[name] = [e if math.isfinite(e) else trivial for e in errors]
    return result


def run(
    *,
    quick: bool = False,
    output_dir: Path = Path("runs/reproduce/variant-study"),
    seed: int = 0,
    seeds: int = 5,
    protocol: str = "modern",
    scale: StudyScale | None = None,
) -> ReproductionResult:
    """The nine variants on the adding problem and the KJV character model; see the module
    docstring. ``seeds`` scales the random search: ``configs_per_seed * seeds`` configurations
    per variant and task (quick: 4 per seed; full: 2 per seed, 10 at the default 5).
    ``scale`` replaces ``QUICK`` / ``FULL`` (tests run a tiny one)."""
    check_protocol(protocol, ("modern",))
    started = time.perf_counter()
    scale = scale or (QUICK if quick else FULL)
    count = scale.configs_per_seed * len(seed_list(seed, seeds))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    test = adding_problem(
        scale.adding_test, scale.adding_length, torch.Generator().manual_seed(10**6 + seed)
    )
    adding_configs = sample_configs(count, seed, scale.adding_hidden)
    adding = run_task(
        "adding",
        adding_configs,
        lambda variant, config: adding_trial(variant, config, scale, test),
        ADDING_MEAN_PREDICTOR_MSE,
        "test MSE",
    )

    from lstmkit.data.text import kjv_text

    corpus = char_corpus(kjv_text(), scale)
    char_configs = sample_configs(count, seed, scale.char_hidden)
    char = run_task(
        "char",
        char_configs,
        lambda variant, config: char_trial(variant, config, scale, corpus),
        corpus.unigram_bits,
        "test bits/char",
    )

    solved, criterion = quick_criterion(adding.errors)
    plot = plot_errors(output_dir / "curves.png", [adding, char], count)
    trials = write_trials(output_dir / "trials.json", [adding, char], adding_configs, char_configs)
    return ReproductionResult(
        title=f"Greff et al. 2015, LSTM: A Search Space Odyssey, in small ({count} paired "
        "configurations per variant)",
        columns=COLUMNS,
        rows=[table_row(name, adding, char) for name in VARIANTS],
        notes=[
            *notes(scale, count, seed, adding_configs, char_configs, adding, char, corpus),
            f"Quick criterion ({'met' if solved else 'NOT met'}): {criterion}.",
        ],
        files={"curves": str(plot), "trials": str(trials)},
        seconds=time.perf_counter() - started,
        success=solved,
    )


COLUMNS = [
    "variant",
    "lstmkit",
    "adding: test MSE",
    "adding: p vs V",
    "char: test bits/char",
    "char: p vs V",
    "ours: hurts on",
    "Greff: hurts on",
    "time (s)",
]


def median_best(errors: Sequence[float]) -> str:
    return f"{statistics.median(errors):.3g} [{min(errors):.3g}]"


def table_row(name: str, adding: TaskErrors, char: TaskErrors) -> list[str | int | float]:
    """One variant: median [best] error and Welch's p against V per task, where it is
    significantly worse (or better) here, and where Greff found it worse."""
    cells: list[str | int | float] = [name, VARIANTS[name]]
    hurts, helps = [], []
    for task in (adding, char):
        cells.append(median_best(task.errors[name]))
        if name == "V":
            cells.append("-")
            continue
        p, outcome = verdict(task.errors[name], task.errors["V"])
        cells.append(f"{p:.2g}" + ("" if outcome == "same" else f" ({outcome})"))
        {"hurts": hurts, "helps": helps, "same": []}[outcome].append(task.task)
    ours = ", ".join(hurts) or "-"
    if helps:
        ours += f" (better on {', '.join(helps)})"
    greff = "-" if name == "V" else (", ".join(GREFF_HURTS[name]) or "none")
    seconds = round(adding.seconds[name] + char.seconds[name], 1)
    return [*cells, ours if name != "V" else "-", greff, seconds]


def notes(
    scale: StudyScale,
    count: int,
    seed: int,
    adding_configs: Sequence[Config],
    char_configs: Sequence[Config],
    adding: TaskErrors,
    char: TaskErrors,
    corpus: CharCorpus,
) -> list[str]:
    diverged = {task.task: {n: d for n, d in task.diverged.items() if d} for task in (adding, char)}
    return [
        "Protocol modern: Adam on minibatches of "
        f"{scale.batch_size}, no gradient clipping, one layer, default init (U(+-1/sqrt H), "
        "no forget bias); Greff trained online SGD with Nesterov momentum, 200 trials per "
        "variant and dataset, on TIMIT, IAM Online and JSB Chorales (not redistributable "
        "or too slow here).",
        f"Random search, paired: {count} configurations (seed {seed}), the same for every "
        "variant: learning rate log-uniform in [3e-3, 3e-2], beta1 = 1 - log-uniform[0.03, "
        f"0.5], hidden size from {scale.adding_hidden} (adding) or {scale.char_hidden} (char); "
        "each configuration fixes the initial-weight seed and the training batches. Greff "
        "also sampled input noise; not here (it mostly hurt there, and would add variance).",
        f"Adding problem: T = {scale.adding_length}, {scale.adding_steps} Adam steps, test MSE "
        f"on {scale.adding_test} fresh sequences; the mean predictor scores 0.167.",
        f"Character model: the first {scale.train_chars:,} characters of the King James Bible "
        f"(kjv_text) to train, the next {scale.test_chars:,} to test, vocabulary "
        f"{corpus.vocabulary}, one-hot input, windows of {scale.char_window} characters from a "
        f"zero state, {scale.char_steps} Adam steps; test bits per character (unigram model: "
        f"{corpus.unigram_bits:.2f}).",
        "p vs V: Welch's t-test (scipy.stats.ttest_ind, equal_var=False) on ALL trials of the "
        "variant against all of V's (Greff: the best 10% of 200; with K this small that would "
        "be one trial); 'hurts' = p < 0.05 and a higher mean error. Test errors are median "
        "[best] over the configurations.",
        f"Trials that diverged (error set to the trivial predictor's): {diverged}.",
        "curves.png: every trial's test error per variant (dots), the median (black bar), V's "
        "median (dashed), the trivial predictor (dotted red); trials.json: every error and "
        "configuration.",
        "Configurations: adding "
        + "; ".join(c.describe() for c in adding_configs)
        + " | char H: "
        + ", ".join(str(c.hidden_size) for c in char_configs)
        + ".",
    ]


def write_trials(
    path: Path,
    tasks: Sequence[TaskErrors],
    adding_configs: Sequence[Config],
    char_configs: Sequence[Config],
) -> Path:
    """Every trial's configuration and test error as JSON, written atomically."""
    import json
    import os
    import tempfile

    from lstmkit.io import publish

    configs = {"adding": adding_configs, "char": char_configs}
    body = {
        task.task: {
            "measure": task.measure,
            "configs": [asdict(config) for config in configs[task.task]],
            "errors": task.errors,
            "seconds": task.seconds,
        }
        for task in tasks
    }
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(body, file, indent=1)
        publish(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def plot_errors(path: Path, tasks: Sequence[TaskErrors], count: int) -> Path:
    """One panel per task: every trial's test error per variant (dots, jittered), the
    median as a bar; V's median as a dashed line."""
    from lstmkit.tasks.plotting import save_figure

    def draw(figure) -> None:
        generator = torch.Generator().manual_seed(0)
        for number, task in enumerate(tasks):
            axes = figure.add_subplot(1, len(tasks), number + 1)
            for x, errors in enumerate(task.errors.values()):
                jitter = (torch.rand(len(errors), generator=generator) - 0.5) * 0.3
                axes.scatter(
                    [x + j for j in jitter.tolist()], errors, s=12, alpha=0.7, color=f"C{x}"
                )
                median = statistics.median(errors)
                axes.plot([x - 0.3, x + 0.3], [median, median], color="black", linewidth=1.5)
            axes.axhline(statistics.median(task.errors["V"]), color="grey", linestyle="--")
            axes.axhline(task.trivial, color="red", linestyle=":", linewidth=1)
            axes.set_xticks(range(len(task.errors)), list(task.errors), rotation=45)
            if task.task == "adding":
                axes.set_yscale("log")
            axes.set_ylabel(task.measure)
            axes.set_title(f"{task.task}: {count} configurations per variant", fontsize="medium")

    return save_figure(path, draw, width=9.0, height=3.6)
