"""``lstmkit translate``: train a Seq2Seq on an offline task and compare it with a baseline.

The task ``dates`` (lstmkit.data.dates) maps human-written dates to ISO form; its test dates
never occur in training. The baseline, measured in the same run, is a nearest neighbour that
knows no rules: it answers with the training target of the training source most similar to
the test source (difflib's ratio). Exact match and character BLEU (sacrebleu) are printed for
the baseline, greedy decoding and beam search.
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.table import Table

from lstmkit.io import publish

console = Console()
TASKS = ("dates",)


def fail(error: Exception) -> None:
    console.print(f"[red]error:[/red] {error}")
    raise typer.Exit(code=2)


def nearest_neighbour(train: list[tuple[str, str]], sources: list[str]) -> list[str]:
    """For each source, the target of the most similar training source (difflib ratio)."""
    targets = {}
    for source, target in train:
        targets.setdefault(source, target)
    answers = []
    for source in sources:
        closest = difflib.get_close_matches(source, list(targets), n=1, cutoff=0.0)
        answers.append(targets[closest[0]])
    return answers


def translate(
    task: str = typer.Option("dates", help="The task: dates (human-written dates to ISO)."),
    pairs: int = typer.Option(5000, help="Training pairs."),
    test: int = typer.Option(500, help="Test pairs (dates never seen in training)."),
    epochs: int = typer.Option(10, help="Passes over the training pairs."),
    variant: str = typer.Option("standard", help="An lstmkit LSTM variant name."),
    attention: str = typer.Option("general", help="dot, general (Luong) or bahdanau."),
    hidden_size: int = typer.Option(128, help="Units of encoder (each direction) and decoder."),
    bidirectional: bool = typer.Option(True, help="A bidirectional encoder."),
    beam: int = typer.Option(5, help="Beam width of the beam-search row."),
    seed: int = typer.Option(0, help="Seed of the data, initialisation and shuffling."),
    threads: int = typer.Option(1, help="torch threads."),
    output_dir: Path | None = typer.Option(
        None, help="Write results.json and model.safetensors here."
    ),
) -> None:
    """Train a Seq2Seq (LSTM encoder-decoder with attention); compare with nearest neighbour.

    Example: lstmkit translate --task dates --pairs 5000 --epochs 10 --beam 5
    """
    from lstmkit.data.dates import date_pairs
    from lstmkit.tasks.seq2seq import Seq2Seq, evaluate

    torch.set_num_threads(threads)
    try:
        if task not in TASKS:
            raise ValueError(f"--task must be one of {TASKS}, got {task!r}")
        if beam < 1:
            raise ValueError(f"--beam must be >= 1, got {beam}")
        if output_dir is not None and not output_dir.is_dir():
            raise ValueError(f"--output-dir {output_dir} is not an existing folder")
        train, held_out = date_pairs(pairs, test, seed)
        model = Seq2Seq(
            variant=variant,
            attention=attention,
            hidden_size=hidden_size,
            bidirectional=bidirectional,
            epochs=epochs,
            seed=seed,
        )
        seen = set("".join(source for source, _ in train))
        unseen = sorted(set("".join(source for source, _ in held_out)) - seen)
        if unseen:
            raise ValueError(f"test sources hold characters training lacks: {unseen}; more --pairs")
    except (ValueError, TypeError) as error:
        fail(error)
    console.print(f"task {task}: {len(train)} training pairs, {len(held_out)} test pairs")
    sources, references = [s for s, _ in held_out], [t for _, t in held_out]
    rows = []
    start = time.perf_counter()
    baseline = nearest_neighbour(train, sources)
    rows.append(
        {"method": "nearest neighbour (difflib)", "fit_seconds": 0.0}
        | evaluate(baseline, references)
        | {"seconds": time.perf_counter() - start}
    )
    start = time.perf_counter()
    model.fit(train)
    fit_seconds = time.perf_counter() - start
    for width in dict.fromkeys((1, beam)):
        name = "Seq2Seq greedy" if width == 1 else f"Seq2Seq beam {width}"
        rows.append(
            {"method": name, "fit_seconds": fit_seconds} | model.score(held_out, beam=width)
        )
    examples = list(
        zip(sources[:5], model.translate(sources[:5], beam=beam), references[:5], strict=True)
    )
    table = Table(title=f"{task}: {len(held_out)} test pairs, dates unseen in training")
    for column in ("method", "exact match", "BLEU (char)", "fit s", "decode s"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in rows:
        table.add_row(
            row["method"],
            f"{row['exact_match']:.3f}",
            f"{row['bleu']:.1f}",
            f"{row['fit_seconds']:.1f}",
            f"{row['seconds']:.1f}",
        )
    console.print(table)
    for source, decoded, reference in examples:
        console.print(f"{source!r} -> {decoded!r} (truth {reference!r})")
    if output_dir is not None:
        model.save(output_dir / "model.safetensors")
        settings = {"task": task, "pairs": pairs, "test": test, "threads": threads}
        _write_json(
            output_dir / "results.json",
            {"settings": settings | {"model": repr(model)}, "rows": rows, "loss": model.history},
        )


def _write_json(path: Path, value: dict) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(handle, "w") as file:
        json.dump(value, file, indent=2)
    publish(temporary, path)
