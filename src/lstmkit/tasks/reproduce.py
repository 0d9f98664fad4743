"""The registry of paper reproductions: ``lstmkit reproduce NAME [--quick]``.

A reproduction is one function ``run(*, quick, output_dir, seed) -> ReproductionResult`` in
its own module; the registry keeps its name, paper and help text, and imports the module
only when the reproduction runs (so ``lstmkit --help`` stays fast). To add one, write the
module and ``register(Reproduction(...))`` below; the CLI makes it a command.

The classic-paper experiments (``classic=True``, modules in ``lstmkit/tasks/papers/``) run
several seeds and may offer the paper's own protocol: their function is
``run(*, quick, output_dir, seed, seeds, protocol)``; ``lstmkit reproduce --all`` runs them
all.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lstmkit._checks import unknown_name


@dataclass(frozen=True)
class Reproduction:
    """One paper's experiment as a command."""

    name: str  # the command: lstmkit reproduce NAME
    paper: str  # authors, year, title
    summary: str  # one line, for the list of commands
    description: str  # what runs, what it is compared with, how long it takes
    example: str  # a command line
    module: str  # where ``function`` lives; imported when the command runs
    function: str = "run"
    classic: bool = False  # a classic-paper experiment: several seeds, in ``--all``
    protocols: tuple[str, ...] = ("modern",)  # "paper" where the paper's protocol is offered
    quick_seeds: int = 1  # seeds of ``--quick`` when ``--seeds`` is not given
    full_seeds: int = 5  # seeds of the full run when ``--seeds`` is not given

    def load(self) -> Callable[..., ReproductionResult]:
        return getattr(importlib.import_module(self.module), self.function)


@dataclass
class ReproductionResult:
    """What a reproduction reports: a table, notes, the files it wrote, its wall time."""

    title: str
    columns: list[str]
    rows: list[list[str | int | float]]
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    success: bool | None = None  # whether the run met its success criterion (classic papers)

    def markdown(self) -> str:
        """The table as GitHub markdown, numbers as they are printed."""
        lines = [
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" for _ in self.columns) + "|",
        ]
        lines += ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def write(self, output_dir: Path) -> None:
        """``results.json`` and ``results.md`` in ``output_dir``, each written atomically."""
        text = json.dumps(asdict(self), indent=2)
        _write_atomic(output_dir / "results.json", text + "\n")
        notes = "".join(f"- {note}\n" for note in self.notes)
        met = "" if self.success is None else f"Success criterion met: {self.success}\n"
        body = f"# {self.title}\n\n{self.markdown()}\n\n{notes}\n{met}"
        body += f"Wall time: {self.seconds:.0f} s\n"
        _write_atomic(output_dir / "results.md", body)


def format_cell(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


REPRODUCTIONS: dict[str, Reproduction] = {}


def register(reproduction: Reproduction) -> Reproduction:
    if reproduction.name in REPRODUCTIONS:
        raise ValueError(f"a reproduction named {reproduction.name!r} is already registered")
    REPRODUCTIONS[reproduction.name] = reproduction
    return reproduction


def get(name: str) -> Reproduction:
    if name not in REPRODUCTIONS:
        raise unknown_name("reproduction", name, REPRODUCTIONS)
    return REPRODUCTIONS[name]


def run(
    name: str,
    *,
    quick: bool = False,
    output_dir: Path | None = None,
    seed: int = 0,
    seeds: int | None = None,
    protocol: str = "modern",
) -> ReproductionResult:
    """Run the reproduction ``name``; its files go to ``output_dir`` (default
    ``runs/reproduce/NAME``), which is created. ``seeds`` (default: the reproduction's own,
    fewer with ``quick``) and ``protocol`` apply to the classic-paper experiments."""
    reproduction = get(name)
    if protocol not in reproduction.protocols:
        choices = ", ".join(repr(p) for p in reproduction.protocols)
        raise ValueError(f"protocol must be one of {choices} for {name}, got {protocol!r}")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    if not reproduction.classic and seeds not in (None, 1):
        raise ValueError(f"seeds: {name} runs one seed (use --seed to choose it), got {seeds}")
    output_dir = Path("runs/reproduce") / name if output_dir is None else Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    function = reproduction.load()
    if reproduction.classic:
        if seeds is None:
            seeds = reproduction.quick_seeds if quick else reproduction.full_seeds
        with one_thread():
            result = function(
                quick=quick, output_dir=output_dir, seed=seed, seeds=seeds, protocol=protocol
            )
    else:
        result = function(quick=quick, output_dir=output_dir, seed=seed)
    result.write(output_dir)
    return result


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread inside the block, then the caller's setting again: the classic
    experiments' tiny ops run fastest so, and their timings compare across machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def classic_names() -> list[str]:
    """The classic-paper experiments, in the order ``--all`` runs them."""
    return [name for name, reproduction in REPRODUCTIONS.items() if reproduction.classic]


def run_classic(
    *,
    quick: bool = False,
    output_dir: Path = Path("runs/reproduce"),
    seed: int = 0,
    seeds: int | None = None,
    report: Callable[[ReproductionResult], None] | None = None,
) -> ReproductionResult:
    """Every classic-paper experiment in turn, each into ``output_dir / NAME``; ``report`` sees
    each result as it ends. Returns (and writes to ``output_dir / "all"``) one table: each
    experiment, whether it met its success criterion, its wall time."""
    started = time.perf_counter()
    rows: list[list[str | int | float]] = []
    for name in classic_names():
        result = run(name, quick=quick, output_dir=Path(output_dir) / name, seed=seed, seeds=seeds)
        if report is not None:
            report(result)
        met = "-" if result.success is None else ("yes" if result.success else "no")
        rows.append([name, REPRODUCTIONS[name].paper, met, round(result.seconds, 1)])
    combined = ReproductionResult(
        title="The classic LSTM papers" + (" (quick)" if quick else ""),
        columns=["reproduction", "paper", "success criterion met", "time (s)"],
        rows=rows,
        notes=[f"Each experiment's table and plot: {Path(output_dir)}/NAME/results.md"],
        seconds=time.perf_counter() - started,
        success=all(row[2] == "yes" for row in rows),
    )
    (Path(output_dir) / "all").mkdir(parents=True, exist_ok=True)
    combined.write(Path(output_dir) / "all")
    return combined


register(
    Reproduction(
        name="convlstm",
        paper="Shi et al. 2015, Convolutional LSTM Network: A Machine Learning Approach for "
        "Precipitation Nowcasting",
        summary="ConvLSTM (1, 2, 3 layers) against FC-LSTM on moving handwritten digits.",
        description=(
            "Trains Shi et al.'s encoder-forecaster with ConvLSTM layers (1, 2 and 3 layers) "
            "and with FC-LSTM layers on moving digits (two scikit-learn handwritten digits "
            "bouncing in a 32x32 frame, Moving MNIST at half resolution, generated offline): "
            "read 10 frames, predict the next 10. Reports the test cross-entropy per sequence "
            "and the parameter counts, and draws a PNG strip of input, target and predicted "
            "frames. Shi et al. found, on Moving MNIST: ConvLSTM 3 layers 3670.85, 2 layers "
            "3733.56, FC-LSTM 4832.49, with far fewer parameters. The full run takes about "
            "17 minutes on 2 CPU cores; --quick about 3."
        ),
        example="lstmkit reproduce convlstm --quick --output-dir runs/convlstm-quick",
        module="lstmkit.tasks.convlstm",
    )
)

register(
    Reproduction(
        name="xlstm-formal",
        paper="Beck et al. 2024, xLSTM: Extended Long Short-Term Memory (Sec. 4.1); tasks of "
        "Deletang et al. 2023, Neural Networks and the Chomsky Hierarchy",
        summary="State tracking: LSTM, sLSTM, xLSTM[1:1] on parity, even pairs, cycle "
        "navigation, modular arithmetic; train on lengths <= 40, test on 40..256.",
        description=(
            "Trains each model (an embedding, a 1-layer lstmkit.LSTM or a 2-block "
            "lstmkit.xLSTM with one head, a linear head) on sequences of lengths 3 to 40 of "
            "four regular languages and tests it on lengths 40 to 256; reports accuracy "
            "scaled so chance is 0 and perfect 100, next to Walker et al. 2025's rows (as "
            "quoted in PD-SSM Table 2): LSTM 100 / 100 / 99.9 / 100 on cycle nav / even "
            "pairs / mod arith / parity, sLSTM 32.5 / 100 / 27.7 / 100, xLSTM[1:1] 53.5 / "
            "99.0 / 29.3 / 100, Transformer 24.4 / 90.4 / 23.6 / 52.2. 5,000 steps of 64 "
            "sequences, about 400 times fewer sequences than the published protocol (see "
            "docs/xlstm.md). The full run takes about 25 minutes on one CPU core; --quick "
            "about 5."
        ),
        example="lstmkit reproduce xlstm-formal --quick --output-dir runs/xlstm-formal-quick",
        module="lstmkit.tasks.papers.xlstm_formal",
    )
)

register(
    Reproduction(
        name="xlstm-mqar",
        paper="Beck et al. 2024, xLSTM: Extended Long Short-Term Memory (Sec. 4.1, Fig. 5); "
        "task of Arora et al. 2023, Zoology",
        summary="Multi-Query Associative Recall at (context 64, 4 pairs) and (128, 8): the "
        "mLSTM stack against the LSTM.",
        description=(
            "Trains a 2-block mLSTM stack (xLSTM[1:0]) and a 2-layer LSTM, each with an "
            "embedding and a linear head, to recall the value of every queried key; reports "
            "the accuracy at the query positions. The paper plots xLSTM against Transformers "
            "and SSMs at a vocabulary of 8192 (Fig. 5, no table); this run is smaller (a "
            "vocabulary of 128, far fewer steps), so only the order compares. The full run "
            "took 45 minutes on a shared 2-core machine (the mLSTM at context 128 most of "
            "it); --quick a few."
        ),
        example="lstmkit reproduce xlstm-mqar --quick",
        module="lstmkit.tasks.papers.xlstm_formal",
        function="run_mqar",
    )
)

# ----------------------------------------------------------------- the classic LSTM papers
_H97 = "Hochreiter & Schmidhuber 1997, Long Short-Term Memory"
_MODERN = (
    " The default protocol trains with Adam on minibatches, so its sequence counts compare "
    "with the paper's only in order."
)


def _classic(
    name: str,
    paper: str,
    summary: str,
    description: str,
    module: str,
    function: str = "run",
    protocols: tuple[str, ...] = ("modern",),
) -> None:
    register(
        Reproduction(
            name=name,
            paper=paper,
            summary=summary,
            description=description + _MODERN,
            example=f"lstmkit reproduce {name} --quick",
            module=f"lstmkit.tasks.papers.{module}",
            function=function,
            classic=True,
            protocols=protocols,
        )
    )


_classic(
    "reber",
    _H97 + " (Exp. 1)",
    "Embedded Reber grammar: predict the legal next symbols.",
    "Trains lstm1997 to predict the next symbol of embedded Reber strings until, on all 256 "
    "training and 256 test strings, the legal next symbols are always the most active "
    "outputs (the paper's criterion). Paper: 100% of trials, 8,440 strings on average (3 "
    "blocks of 2 cells, lr 0.5). --protocol paper: online SGD at lr 0.5, 6 cells, sigmoid "
    "outputs and squared error. Full run about 10 s (paper protocol about 2 minutes); "
    "--quick a few seconds.",
    "reber",
    "run_embedded",
    ("modern", "paper"),
)
_classic(
    "continual-reber",
    "Gers, Schmidhuber & Cummins 2000, Learning to Forget: Continual Prediction with LSTM",
    "Continual embedded Reber grammar, no resets: lstm1997 against the forget gate.",
    "Embedded Reber strings in one stream, never reset: the 1997 LSTM (no forget gate) "
    "fails, its cell states growing without bound, while the forget gate (standard) learns "
    "to reset itself; the full run adds lstm1997 with a reset at each string. Success: 10 "
    "fresh streams of 1,000 strings predicted without one error. Also draws the cell-state "
    "magnitude along a stream (cell_states.png). Full run about 2 minutes; --quick about 15 s.",
    "reber",
    "run_continual",
)
_classic(
    "long-lag",
    _H97 + " (Exp. 2a, 2c)",
    "Noise-free and very long time lags (p=100; q=p=100 and 1000 with distractors).",
    "2a: two training sequences whose last symbol repeats the first over p = 100 steps; "
    "2c: b, x or y, then q random distractors, e, and x or y again (q = p = 100, and 1000 "
    "in the full run). Success, as the paper: every output error below 0.25 (2a) or 0.2 (2c) "
    "for 10,000 successive sequences. Paper: 2a 100% after 5,040 sequences; 2c 31,000 and "
    "49,000. --protocol paper: online SGD at the paper's rates, its 2a cell and 2c's 2 cells. "
    "Full run about 2 minutes (paper protocol about 10); --quick a few seconds.",
    "long_lag",
    "run_long_lag",
    ("modern", "paper"),
)
_classic(
    "noise-signal",
    _H97 + " (Exp. 3a)",
    "Noise and signal on the same channel: classify from the first N=3 steps, T=100.",
    "One real input: the first 3 steps are +1 or -1 (the class), the rest Gaussian noise, "
    "100 to 110 steps; the class is read at the end. Success, as the paper: ST1, none of 256 "
    "test sequences misclassified (|error| >= 0.2), and ST2, ST1 with mean absolute error "
    "below 0.01. Paper: ST1 after 27,380 sequences, ST2 after 39,850, 0.000195 of 2560 "
    "misclassified. Full run under a minute; --quick seconds.",
    "long_lag",
    "run_noise_signal",
)
_classic(
    "adding",
    _H97 + " (Exp. 4)",
    "The adding problem at T=100, 500 and 1000.",
    "The paper's adding problem (values in U[-1, 1], two marked, target 0.5 + (X1 + X2)/4, "
    "lengths in [T, 1.1T]) with its stop criterion, then 2560 test sequences; success: at "
    "most 1 wrong (|error| >= 0.04). Paper: T=100 1/2560 wrong after 74,000 sequences, T=500 "
    "0 after 209,000, T=1000 1 after 853,000. --quick runs T=100 only. "
    "Full run about 9 minutes; --quick a few seconds.",
    "arithmetic",
    "run_adding",
)
_classic(
    "multiplication",
    _H97 + " (Exp. 5)",
    "The multiplication problem at T=100.",
    "As the adding problem with values in U[0, 1] and the target X1 * X2, at the paper's "
    "two stops: n_seq = 140 (paper: 139/2560 wrong, MSE 0.0223, after 482,000 sequences) and, "
    "in the full run, n_seq = 13 (13 wrong, MSE 0.0139, after 1,273,000). Full run under a "
    "minute; --quick a few seconds.",
    "arithmetic",
    "run_multiplication",
)
_classic(
    "temporal-order",
    _H97 + " (Exp. 6a, 6b)",
    "Temporal order of widely separated symbols, 4 and 8 classes.",
    "Classify sequences of 100-110 symbols by the order of two (6a) or three (6b) X/Y "
    "symbols far apart, with the paper's stop rule and |error| < 0.3 criterion on 2560 test "
    "sequences. Paper: 31,390 and 571,100 sequences. Chrono initialisation of the biases "
    "(without it the LSTM stayed at chance). Full run under a minute; --quick a few seconds.",
    "temporal_order",
)
_classic(
    "counting",
    "Gers & Schmidhuber 2001, LSTM Recurrent Networks Learn Simple Context-Free and "
    "Context-Sensitive Languages",
    "a^n b^n and a^n b^n c^n: train on n <= 10, the largest n each variant generalises to.",
    "Next-symbol prediction on S a^n b^n T and S a^n b^n c^n T: peephole, standard and "
    "lstm1997 learn the strings with n <= 10, then every n = 1, 2, ... is tested until the "
    "first string not accepted. Paper: the best peephole LSTM generalised to n = 1000 on "
    "a^n b^n. --quick runs peephole only. Full run about a minute; --quick a few seconds.",
    "counting",
)
_classic(
    "timing",
    "Gers, Schraudolph & Schmidhuber 2002, Learning Precise Timing with LSTM Recurrent Networks",
    "Tell spike intervals of 49 and 50 steps apart; generate spikes without resets.",
    "peephole against standard: classify two spikes 49 or 50 steps apart, and generate a "
    "spike every 10 steps from one start spike, judged on a free run twice the training "
    "length, no resets, no teacher forcing. --quick runs the generator with peephole only. "
    "Full run under a minute; --quick a few seconds.",
    "timing",
)
_classic(
    "variant-study",
    "Greff, Srivastava, Koutnik, Steunebrink & Schmidhuber 2015, LSTM: A Search Space Odyssey",
    "The eight variants and peephole on the adding problem and a character model.",
    "Vanilla LSTM (peephole) and NIG, NFG, NOG, NIAF, NOAF, NP, CIFG, FGR on the adding "
    "problem (T=20) and a character model of the King James Bible, the same random-search "
    "configurations for every variant (2 per seed), Welch's t-test against the vanilla LSTM. "
    "Greff et al.: NFG and NOAF hurt everywhere, CIFG and NP never. Full run about 7 minutes; "
    "--quick about 1.",
    "variant_study",
)
_classic(
    "copy",
    "Arjovsky, Shah & Bengio 2016, Unitary Evolution Recurrent Neural Networks",
    "The copy task: remember 10 symbols over T blanks (T=10, and T=100 in the full run).",
    "Cross-entropy per step against the memoryless baseline 10 ln 8 / (T + 20); success: "
    "below 10% of the baseline. The paper's LSTM barely beats the baseline at T=100; the full "
    "run trains T=10 and T=100. Full run about 10 minutes; --quick about 15 s.",
    "copy_task",
)
