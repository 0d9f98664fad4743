"""``lstmkit recognize``: CTC recognition of digit lines against a baseline given the segmentation.

Tasks (``lstmkit.data.digit_lines``): ``digits-ocr``, lines of real handwritten digits whose
test lines come from writers held out of training; ``spoken-digits``, digit strings spoken by
espeak-ng, whose test voices are held out (needs ``apt-get install espeak-ng``). Both are
transcribed by ``lstmkit.Recognizer`` (a deep bidirectional LSTM trained with CTC), decoded by
best path and by prefix beam search.

The baseline, measured in the same run, is a per-digit classifier (scikit-learn's RBF SVC on
standardised features: the 8x8 pixels of each digit, or a spoken digit's log-mel steps
resampled to 8) trained on the training lines' digits and *given the true segmentation* of the
test lines: it sees each digit cut out and knows where the words end, so it only has to name
digits. That is an upper bound for a recogniser that must also find the digits, not a rival on
equal terms.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Table

from lstmkit.data.digit_lines import DigitLines
from lstmkit.io import publish

TASKS = ("digits-ocr", "spoken-digits")
BASELINE_SAMPLES = 8000  # the SVC fits in seconds on this many digits
HELD_OUT = {"digits-ocr": "writers", "spoken-digits": "voices"}
console = Console()


def run_task(
    task: str,
    variant: str,
    epochs: int,
    seed: int,
    beam: int,
    hidden_size: int,
    num_layers: int,
    train_lines: int,
    test_lines: int,
    output_dir: Path,
) -> dict:
    """Train and score ours and the baseline on one seed's lines; write the model and results."""
    from lstmkit.data.digit_lines import make_digit_lines, make_spoken_lines
    from lstmkit.tasks.recognition import Recognizer

    make = make_digit_lines if task == "digits-ocr" else make_spoken_lines
    start = time.perf_counter()
    train, test = make("train", train_lines, seed), make("test", test_lines, seed)
    data_seconds = time.perf_counter() - start
    model = Recognizer(
        variant=variant, hidden_size=hidden_size, num_layers=num_layers, epochs=epochs, seed=seed
    )
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(train.features, train.texts)
    fit_seconds, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
    model.save(output_dir / "model.safetensors")
    ours = {}
    for name, width in (("best_path", 1), (f"beam_{beam}", beam)):
        start = time.perf_counter()
        decoded = model.predict(test.features, beam_width=width)
        ours[name] = {
            **_rates(decoded, test.texts),
            "decode_seconds": time.perf_counter() - start,
            "samples": [[t, d] for t, d in zip(test.texts[:8], decoded[:8], strict=True)],
        }
    return {
        "task": task,
        "variant": variant,
        "seed": seed,
        "options": {
            "epochs": epochs,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "train_lines": train_lines,
            "test_lines": test_lines,
            "beam": beam,
        },
        "test_characters": sum(len(t) for t in test.texts),
        "ours": ours,
        "best_epoch": model.best_epoch_,
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": fit_cpu,
        "data_seconds": data_seconds,
        "baseline": segmented_baseline(train, test, seed),
    }


def segmented_baseline(train: DigitLines, test: DigitLines, seed: int) -> dict:
    """An SVC on the training lines' digits names each true-segmented test digit."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    start = time.perf_counter()
    x = np.concatenate([s.reshape(len(s), -1) for s in train.segments])  # [digits, features]
    y = np.array([int(c) for text in train.texts for c in text if c != " "])
    x, unique = np.unique(x, axis=0, return_index=True)  # written digits repeat across lines
    y = y[unique]
    if len(x) > BASELINE_SAMPLES:
        keep = np.random.default_rng(seed).choice(len(x), BASELINE_SAMPLES, replace=False)
        x, y = x[keep], y[keep]
    classifier = make_pipeline(StandardScaler(), SVC()).fit(x, y)  # RBF, gamma "scale"
    decoded = []
    for text, line in zip(test.texts, test.segments, strict=True):
        names = iter(classifier.predict(line.reshape(len(line), -1)).tolist())
        # the true segmentation includes the word boundaries: keep the spaces where they are
        decoded.append("".join(c if c == " " else str(next(names)) for c in text))
    return {
        **_rates(decoded, test.texts),
        "train_digits": len(x),
        "seconds": time.perf_counter() - start,
    }


def _rates(decoded: list[str], truth: list[str]) -> dict:
    from lstmkit.training.ctc import character_error_rate, word_error_rate

    return {"cer": character_error_rate(decoded, truth), "wer": word_error_rate(decoded, truth)}


def recognize(
    task: str = typer.Option("digits-ocr", help=f"One of {', '.join(TASKS)}."),
    variant: str = typer.Option("standard", help="LSTM variant (see `lstmkit variants`)."),
    epochs: int = typer.Option(25, min=1, help="Training epochs (the best on validation kept)."),
    seed: int = typer.Option(0, min=0, help="Seeds the lines, the initialisation, the batches."),
    beam: int = typer.Option(8, min=2, help="Beam width of the prefix beam search decoder."),
    hidden_size: int = typer.Option(64, min=1, help="LSTM units per direction."),
    num_layers: int = typer.Option(2, min=1, help="Bidirectional LSTM layers."),
    train_lines: int = typer.Option(3000, min=1, help="Training lines (10% held out)."),
    test_lines: int = typer.Option(500, min=1, help="Test lines (held-out writers)."),
    output_dir: Path = typer.Option(
        Path("runs/recognize"), help="Writes results.json and model.safetensors here."
    ),
) -> None:
    """Train a bidirectional LSTM with CTC on digit lines (handwritten or spoken); print CER
    and WER (best path and beam search) beside a per-digit classifier given the true
    segmentation (an upper bound), measured in the same run.

    Example: lstmkit recognize --task digits-ocr --epochs 25 --beam 8
    """
    try:
        if task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
        if not output_dir.parent.exists():
            raise FileNotFoundError(f"output_dir's folder {output_dir.parent} does not exist")
        output_dir.mkdir(exist_ok=True)
        torch.set_num_threads(1)  # a small model: more threads only contend on a shared machine
        results = run_task(
            task, variant, epochs, seed, beam, hidden_size, num_layers, train_lines, test_lines,
            output_dir,
        )  # fmt: skip
        _write_json(output_dir / "results.json", results)
    except (ValueError, TypeError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from None
    _print(results)
    console.print(f"results: {output_dir / 'results.json'}")


def _print(results: dict) -> None:
    options = results["options"]
    table = Table(
        "model", "CER", "WER", title=(
            f"{results['task']}: {options['test_lines']} test lines ({results['test_characters']} "
            f"characters) of held-out {HELD_OUT[results['task']]}, seed {results['seed']}"
        ),
    )  # fmt: skip
    for name, rates in results["ours"].items():
        decoder = (
            "best path" if name == "best_path" else f"prefix beam search, width {options['beam']}"
        )
        table.add_row(
            f"ours: BiLSTM-CTC ({results['variant']}), {decoder}",
            f"{rates['cer']:.4f}",
            f"{rates['wer']:.4f}",
        )
    baseline = results["baseline"]
    table.add_row(
        "upper bound: SVC per digit, given the true segmentation",
        f"{baseline['cer']:.4f}",
        f"{baseline['wer']:.4f}",
    )
    console.print(table)
    console.print(
        f"ours: {results['fit_cpu_seconds']:.0f} CPU s to train ({results['fit_seconds']:.0f} s "
        f"wall, 1 thread), best epoch {results['best_epoch']}"
    )
    for truth, decoded in results["ours"]["best_path"]["samples"][:4]:
        console.print(f"  truth {truth!r:>18}  decoded {decoded!r}", markup=False)


def _write_json(path: Path, value: dict) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(value, file, indent=2)
        publish(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
