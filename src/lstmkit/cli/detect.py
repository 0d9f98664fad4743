"""``lstmkit detect``: our anomaly detectors against a rolling z-score and an isolation forest."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def detect(
    dataset: str = typer.Option(
        "kdd135", help="kdd135 (UCR archive series 135, aeon) or mitdb (ECG, sktime)."
    ),
    variant: str = typer.Option("standard", help="The LSTM variant of both scorers."),
    max_steps: int = typer.Option(600, help="Optimiser steps per detector."),
    seed: int = typer.Option(0, help="Seed of the networks and the isolation forest."),
    output_dir: Path | None = typer.Option(
        None, help="Write results.json and one PNG per scorer here."
    ),
) -> None:
    """Fit on the normal training part, score the test part; compare with a rolling z-score and
    scikit-learn's IsolationForest fit on the same data in the same run.

    Example: lstmkit detect --dataset mitdb --output-dir runs/detect-mitdb
    """
    from lstmkit.tasks import anomaly_benchmark as bench

    try:
        data = bench.load_anomaly_dataset(dataset)
        result = bench.run_anomaly_benchmark(
            data, variant=variant, max_steps=max_steps, seed=seed, say=_say
        )
    except (ValueError, TypeError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from None
    names = list(dict.fromkeys(name for row in result.rows for name in row.scores))
    table = Table("method", *names, "seconds", title=f"{dataset}: test part")
    for row in result.rows:
        table.add_row(
            row.method,
            *(f"{row.scores[n]:.3f}" if n in row.scores else "" for n in names),
            f"{row.seconds:.1f}",
        )
    console.print(table)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        rows = [vars(row) for row in result.rows]
        (output_dir / "results.json").write_text(
            json.dumps({"dataset": dataset, "rows": rows}, indent=1)
        )
        for scorer, detector in result.detectors.items():
            detector.plot(
                output_dir / f"{scorer}.png",
                data.test,
                labels=data.labels,
                title=f"{dataset}, {scorer} scorer: red detected, gray labelled",
            )
        console.print(f"wrote results.json and the plots under {output_dir}")


def _say(line: str) -> None:
    console.print(line, markup=False, style="dim")
